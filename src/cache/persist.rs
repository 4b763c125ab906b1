//! Write-through and write-behind: how a namespace's writes reach the [`Store`].
//!
//! Write-through calls the store before touching memory, so a failed store call leaves the
//! cache unchanged. Write-behind appends the write to a durable [`Journal`] (the engine backs
//! it with a log topic), updates memory, and returns; maintenance later reads the journal in
//! batches, applies each batch to the store atomically and only then marks it done. A crash
//! between the two replays the batch (puts and deletes are idempotent). When the store fails,
//! a circuit breaker waits (100 ms doubling to 30 s) before trying again; nothing is dropped.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use parking_lot::Mutex;

use super::namespace::NsInner;
use crate::config::Persistence;
use crate::error::{CacheError, Error};
use crate::store::{Store, StoreOp};

/// A durable queue of pending store writes, one stream per namespace. The engine implements it
/// on the log; a position is opaque to the cache.
pub trait Journal: Send + Sync + Debug {
    /// Appends `op` durably before returning.
    ///
    /// # Errors
    /// Any error: the write is refused and the cache stays unchanged.
    fn append(&self, namespace: &str, op: &StoreOp) -> Result<(), Error>;

    /// Up to `max` oldest writes not yet marked done, and the position just past them.
    ///
    /// # Errors
    /// Any error: the flush is retried later.
    fn pending(&self, namespace: &str, max: usize) -> Result<(Vec<StoreOp>, u64), Error>;

    /// Marks every write before `position` as applied to the store.
    ///
    /// # Errors
    /// Any error: the writes are applied again later (harmless, they are idempotent).
    fn mark_done(&self, namespace: &str, position: u64) -> Result<(), Error>;
}

const BACKOFF_MIN_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 30_000;

/// State of the write-behind circuit breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// The store answers; flushes run on schedule.
    #[default]
    Closed,
    /// The store failed; no call until the given clock time (ms).
    Open {
        /// When the next attempt may run.
        retry_at: u64,
        /// Consecutive failures.
        failures: u32,
    },
}

#[derive(Debug, Default)]
struct Flush {
    breaker: BreakerState,
    last_run: u64,
}

/// What a namespace writes to besides memory.
#[derive(Default)]
pub(crate) struct Backing {
    pub store: Option<Arc<dyn Store>>,
    pub journal: Option<Arc<dyn Journal>>,
    flush: Mutex<Flush>,
}

impl Backing {
    pub(crate) fn new(store: Option<Arc<dyn Store>>, journal: Option<Arc<dyn Journal>>) -> Self {
        Self {
            store,
            journal,
            flush: Mutex::new(Flush::default()),
        }
    }

    fn store(&self, ns: &NsInner) -> Result<&Arc<dyn Store>, CacheError> {
        self.store
            .as_ref()
            .ok_or_else(|| CacheError::NoStore(ns.name.to_string()))
    }

    fn persist_err(ns: &NsInner, e: impl std::fmt::Display) -> CacheError {
        CacheError::Persist {
            namespace: ns.name.to_string(),
            reason: e.to_string(),
        }
    }

    pub(crate) fn before_put(&self, ns: &NsInner, key: &[u8], value: &Bytes) -> Result<(), Error> {
        match ns.persistence() {
            Persistence::WriteThrough => {
                self.store(ns)?
                    .put(&ns.name, key, value)
                    .map_err(|e| Self::persist_err(ns, e))?;
            }
            Persistence::WriteBehind => {
                let op = StoreOp::Put {
                    table: ns.name.to_string(),
                    key: Bytes::copy_from_slice(key),
                    value: value.clone(),
                };
                self.journal(ns)?
                    .append(&ns.name, &op)
                    .map_err(|e| Self::persist_err(ns, e))?;
            }
            Persistence::None | Persistence::Snapshot => {}
        }
        Ok(())
    }

    pub(crate) fn before_delete(&self, ns: &NsInner, key: &[u8]) -> Result<(), Error> {
        match ns.persistence() {
            Persistence::WriteThrough => {
                self.store(ns)?
                    .delete(&ns.name, key)
                    .map_err(|e| Self::persist_err(ns, e))?;
            }
            Persistence::WriteBehind => {
                let op = StoreOp::Delete {
                    table: ns.name.to_string(),
                    key: Bytes::copy_from_slice(key),
                };
                self.journal(ns)?
                    .append(&ns.name, &op)
                    .map_err(|e| Self::persist_err(ns, e))?;
            }
            Persistence::None | Persistence::Snapshot => {}
        }
        Ok(())
    }

    fn journal(&self, ns: &NsInner) -> Result<&Arc<dyn Journal>, CacheError> {
        self.journal.as_ref().ok_or_else(|| CacheError::Persist {
            namespace: ns.name.to_string(),
            reason: "write-behind needs a journal: open the cache through Quipu".to_owned(),
        })
    }

    pub(crate) fn breaker(&self) -> BreakerState {
        self.flush.lock().breaker
    }

    /// Applies pending write-behind batches to the store. `force` ignores the interval (not
    /// an open breaker). Returns the writes applied.
    pub(crate) fn flush(&self, ns: &NsInner, now: u64, force: bool) -> Result<u64, Error> {
        if ns.persistence() != Persistence::WriteBehind {
            return Ok(0);
        }
        let (Some(store), Some(journal)) = (&self.store, &self.journal) else {
            return Ok(0);
        };
        let mut flush = self.flush.lock();
        if let BreakerState::Open { retry_at, .. } = flush.breaker
            && now < retry_at
        {
            return Ok(0);
        }
        let interval = crate::clock::millis(ns.config.write_behind_interval);
        if !force
            && flush.breaker == BreakerState::Closed
            && now < flush.last_run.saturating_add(interval)
        {
            return Ok(0);
        }
        flush.last_run = now;
        let mut applied = 0;
        loop {
            let (ops, position) = journal.pending(&ns.name, ns.config.write_behind_batch)?;
            if ops.is_empty() {
                return Ok(applied);
            }
            if let Err(e) = store.apply(&ops) {
                ns.counters.store_failures.fetch_add(1, Relaxed);
                let failures = match flush.breaker {
                    BreakerState::Open { failures, .. } => failures.saturating_add(1),
                    BreakerState::Closed => 1,
                };
                let wait = BACKOFF_MIN_MS
                    .saturating_mul(1 << failures.min(20).saturating_sub(1))
                    .min(BACKOFF_MAX_MS);
                flush.breaker = BreakerState::Open {
                    retry_at: now.saturating_add(wait),
                    failures,
                };
                return Err(Self::persist_err(ns, e).into());
            }
            flush.breaker = BreakerState::Closed;
            journal.mark_done(&ns.name, position)?;
            applied += ops.len() as u64;
        }
    }
}
