//! `SAVE`, `BGSAVE`, `LASTSAVE` and the periodic background save (`save_secs`). A save makes
//! durable what a restart should find and a SIGKILL could otherwise take: every log topic is
//! written out and fsynced (streams and durable channels under `appendfsync everysec` or `no`),
//! consumer groups commit their progress, and critical namespaces are snapshotted. The
//! shutdown does the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use super::Shared;
use crate::error::LogError;

/// The server's save state.
#[derive(Debug)]
pub(crate) struct Saves {
    /// Unix seconds of the last save that succeeded (the start, before the first).
    last: AtomicU64,
    /// Whether a background save runs and whether `BGSAVE SCHEDULE` asked for another after
    /// it: one lock, so a request never falls between the thread's last look and its exit.
    state: Mutex<Background>,
    /// Signalled when a background save ends.
    idle: Condvar,
    /// The last background save succeeded (true before the first).
    last_background_ok: AtomicBool,
}

impl Default for Saves {
    fn default() -> Self {
        Self {
            last: AtomicU64::new(unix_secs()),
            state: Mutex::new(Background::default()),
            idle: Condvar::new(),
            last_background_ok: AtomicBool::new(true),
        }
    }
}

impl Saves {
    /// `LASTSAVE`.
    pub(crate) fn last(&self) -> u64 {
        self.last.load(SeqCst)
    }

    /// Whether a background save is running.
    pub(crate) fn in_progress(&self) -> bool {
        self.state.lock().running
    }

    /// Whether the last background save succeeded.
    pub(crate) fn last_background_ok(&self) -> bool {
        self.last_background_ok.load(SeqCst)
    }

    /// Waits until no background save runs (at shutdown, before the log closes).
    pub(crate) fn wait_idle(&self) {
        let mut state = self.state.lock();
        while state.running {
            self.idle.wait(&mut state);
        }
    }
}

#[derive(Debug, Default)]
struct Background {
    running: bool,
    again: bool,
}

/// Redis's reply to a save asked for while a background one runs.
pub(crate) const IN_PROGRESS: &str = "ERR Background save already in progress";

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Saves on the calling thread; `Err` is the first failure's text (the rest is still saved).
pub(crate) fn save(shared: &Shared) -> Result<(), String> {
    let mut first = None;
    for name in shared.log.topics() {
        let flushed = shared.log.topic(&name).map(|t| t.flush());
        match flushed {
            // Deleted in between (DEL of a stream): nothing left to save.
            Ok(Ok(())) | Err(_) | Ok(Err(LogError::Closed)) => {}
            Ok(Err(e)) => {
                first.get_or_insert(format!("topic {name}: {e}"));
            }
        }
    }
    shared.streams.commit_all();
    if let Err(e) = shared.db.cache.snapshot() {
        first.get_or_insert(e.to_string());
    }
    match first {
        Some(e) => Err(e),
        None => {
            shared.saves.last.store(unix_secs(), SeqCst);
            Ok(())
        }
    }
}

/// Starts a background save: `Ok` is the status reply, `Err` the error reply. One runs at a
/// time; while it does, `schedule` (`BGSAVE SCHEDULE`) asks for one more after it.
pub(crate) fn start_background(
    shared: &Arc<Shared>,
    schedule: bool,
) -> Result<&'static str, String> {
    let saves = &shared.saves;
    {
        let mut state = saves.state.lock();
        if state.running {
            if schedule {
                state.again = true;
                return Ok("Background saving scheduled");
            }
            return Err(IN_PROGRESS.to_owned());
        }
        state.running = true;
    }
    let owned = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("quipu-bgsave".into())
        .spawn(move || run_background(&owned));
    match spawned {
        Ok(_) => Ok("Background saving started"),
        Err(e) => {
            saves.state.lock().running = false;
            saves.idle.notify_all();
            Err(format!("ERR Background save could not start: {e}"))
        }
    }
}

/// The background save thread: saves, again while `SCHEDULE` asked for more.
fn run_background(shared: &Shared) {
    let saves = &shared.saves;
    loop {
        let ok = save(shared).is_ok();
        saves.last_background_ok.store(ok, SeqCst);
        let mut state = saves.state.lock();
        if !std::mem::take(&mut state.again) {
            state.running = false;
            break;
        }
    }
    saves.idle.notify_all();
}

/// Starts a background save every `every` until the server stops (one still running is
/// left alone: the next comes a period later).
pub(crate) async fn periodically(
    shared: Arc<Shared>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let _ = start_background(&shared, false);
            }
            r = stop.wait_for(|s| *s) => {
                let _ = r;
                return;
            }
        }
    }
}
