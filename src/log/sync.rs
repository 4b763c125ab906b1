//! The sync thread of a partition: writes the buffer out and fsyncs — for `Always` topics with
//! group commit, for `Interval` and `Never` on their schedule — and the one fsync path every
//! caller shares.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;

use super::partition::{Core, State, Unsealed, flush_buffer, mark_durable, poison};
use super::storage::StorageFile;
use crate::config::Durability;

/// How long `Durability::Never` data may sit in the write buffer.
const NEVER_FLUSH_DELAY: Duration = Duration::from_millis(10);

/// What the sync thread knows to size its group-commit window.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    pub pending: u32,
    pub last_size: u32,
    pub last_fsync: Duration,
    pub window_open: bool,
}

/// The longest the sync thread waits for more appenders before an fsync.
const MAX_GROUP_WINDOW: Duration = Duration::from_millis(2);

/// Every fsync of a partition goes through here, one at a time, and fsyncs the sealed segment
/// still waiting for it (see [`roll`](super::partition::roll)) first: whatever an fsync makes
/// durable, everything before it is durable too. Once one fails, none may report success:
/// Linux reports a failed write-back to one fsync caller only, so a later fsync of the same
/// file can succeed although the pages it was meant to cover are gone.
pub(crate) fn fsync(core: &Core, file: &Arc<dyn StorageFile>) -> std::io::Result<()> {
    let mut unsealed = core.fsync_lock.lock();
    if let Some(sealed) = unsealed.take() {
        sync_file(core, &sealed.file)?;
    }
    sync_file(core, file)
}

/// Hands a rolled segment to the sync thread to fsync. One already waiting is fsynced now (the
/// caller poisons the partition if that fails: the error and the path of the file).
pub(crate) fn seal_later(
    core: &Core,
    sealed: Unsealed,
) -> Result<(), (std::io::Error, std::path::PathBuf)> {
    let mut unsealed = core.fsync_lock.lock();
    if let Some(previous) = unsealed.take() {
        sync_file(core, &previous.file).map_err(|e| (e, previous.path))?;
    }
    *unsealed = Some(sealed);
    Ok(())
}

/// The sync thread's side of [`seal_later`]: fsyncs the waiting segment, if any, and makes
/// its records durable.
fn seal(core: &Core) {
    let (sealed, result) = {
        let mut unsealed = core.fsync_lock.lock();
        let Some(sealed) = unsealed.take() else {
            // An fsync since the roll took it.
            return;
        };
        let result = sync_file(core, &sealed.file);
        (sealed, result)
    };
    let mut st = core.state.lock();
    match result {
        Ok(()) => {
            mark_durable(core, &mut st, sealed.end);
            drop(st);
            core.durable.advance(sealed.end);
        }
        Err(e) => {
            poison(core, &mut st, &e, &sealed.path);
        }
    }
}

/// One fsync, under `fsync_lock`.
fn sync_file(core: &Core, file: &Arc<dyn StorageFile>) -> std::io::Result<()> {
    if core.fsync_failed.load(Ordering::Acquire) {
        return Err(std::io::Error::other(
            "an earlier fsync of this partition failed",
        ));
    }
    let result = file.sync_data();
    core.ctx.metrics.fsyncs(1);
    if result.is_err() {
        core.fsync_failed.store(true, Ordering::Release);
        core.ctx.metrics.fsync_failures(1);
    }
    result
}

/// The sync thread: writes the buffer out and fsyncs, for every waiter at once; returns when
/// the partition closes or after `LogConfig::sync_thread_idle` without work.
pub(crate) fn sync_loop(core: &Core) {
    let durability = core.config.durability;
    loop {
        let mut st = core.state.lock();
        loop {
            if st.closed {
                return;
            }
            if st.seal_wanted {
                break;
            }
            match durability {
                Durability::Always if st.sync_requested && !st.sync_deferred && !st.syncing => {
                    wait_for_group(core, &mut st);
                    if st.syncing || !st.sync_requested || st.sync_deferred {
                        // An appender completed the group and leads its fsync itself.
                        continue;
                    }
                    break;
                }
                Durability::Interval(_) | Durability::Never if st.dirty_since.is_some() => {
                    let delay = match durability {
                        Durability::Interval(d) => d,
                        _ => NEVER_FLUSH_DELAY,
                    };
                    let deadline = st
                        .dirty_since
                        .and_then(|t| t.checked_add(delay))
                        .unwrap_or_else(far_future);
                    if Instant::now() >= deadline {
                        break;
                    }
                    core.sync_wanted.wait_until(&mut st, deadline);
                }
                _ => {
                    let idle = core.ctx.config.sync_thread_idle;
                    let timed_out = core.sync_wanted.wait_for(&mut st, idle).timed_out();
                    if timed_out
                        && !st.sync_requested
                        && !st.syncing
                        && !st.seal_wanted
                        && st.dirty_since.is_none()
                    {
                        // Nothing asked of this thread for `idle`: the next append starts
                        // another (`ensure_sync_thread`), under the same lock.
                        st.sync_alive = false;
                        return;
                    }
                }
            }
        }
        if std::mem::take(&mut st.seal_wanted) {
            drop(st);
            seal(core);
            continue;
        }
        st.sync_requested = false;
        st.dirty_since = None;
        match durability {
            Durability::Never => {
                // A failed write poisons the partition inside `flush_buffer`; nothing waits here.
                if st.poisoned.is_none() {
                    let _ = flush_buffer(core, &mut st);
                }
            }
            Durability::Always | Durability::Interval(_) => {
                st.syncing = true;
                sync_group(core, st);
            }
        }
    }
}

/// Writes the buffer out, fsyncs, and releases the appenders it covers. Called by the sync
/// thread or by the appender that completed a group (the leader), with `st.syncing` set so that
/// no one else starts an fsync meanwhile; clears it.
pub(crate) fn sync_group(core: &Core, mut st: MutexGuard<'_, State>) {
    if st.poisoned.is_some() || flush_buffer(core, &mut st).is_err() {
        st.syncing = false;
        return;
    }
    let target = st.next_offset;
    let group = std::mem::take(&mut st.group.pending);
    let file = Arc::clone(&st.active().file);
    let path = st.active().log_path.clone();
    drop(st);
    let started = Instant::now();
    let result = fsync(core, &file);
    let took = started.elapsed();
    let mut st = core.state.lock();
    st.group.last_size = group.max(1);
    st.group.last_fsync = took;
    st.syncing = false;
    match result {
        Ok(()) => {
            mark_durable(core, &mut st, target);
            // Appends that came during the fsync, unless their thread leads the next one.
            let more = st.sync_requested && !st.sync_deferred;
            drop(st);
            // Released outside the state lock, which they will want next.
            core.durable.advance(target);
            if more {
                core.sync_wanted.notify_one();
            }
        }
        Err(e) => {
            poison(core, &mut st, &e, &path);
        }
    }
}

/// A deadline that never comes, for durations too large to add to `Instant::now()`.
pub(crate) fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600))
        .unwrap_or(now)
}

/// Group commit window: the appenders released by the last fsync are usually about to append
/// again. Waiting for as many of them as the last fsync covered (at most one fsync's duration,
/// at most 2 ms) lets one fsync cover them all instead of racing ahead with the first one. A lone
/// appender never waits: its group size is 1.
fn wait_for_group(core: &Core, st: &mut MutexGuard<'_, State>) {
    if st.group.pending >= st.group.last_size {
        return;
    }
    let window = st.group.last_fsync.min(MAX_GROUP_WINDOW);
    let deadline = Instant::now() + window;
    st.group.window_open = true;
    while st.group.pending < st.group.last_size && !st.closed && !st.syncing {
        if core.sync_wanted.wait_until(st, deadline).timed_out() {
            break;
        }
    }
    st.group.window_open = false;
}
