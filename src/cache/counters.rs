//! Per-namespace counters. Hits and misses are striped over cache lines so that readers on
//! different cores never write the same line.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::cache::RemovalCause;
use crate::metrics::CacheStats;

const STRIPES: usize = 16;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Cell(AtomicU64);

/// A counter split over [`STRIPES`] cache lines; each thread adds to its own stripe.
#[derive(Debug, Default)]
pub(crate) struct Striped([Cell; STRIPES]);

fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // Const-initialised: no lazy-init check on the hit path.
        static STRIPE: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT.fetch_add(1, Relaxed) % STRIPES;
        s.set(v);
        v
    })
}

impl Striped {
    /// Adds without a locked read-modify-write: a stripe has one writer thread unless more
    /// than `STRIPES` threads share the namespace, and then a rare lost increment only makes a
    /// statistic slightly low. This keeps the hit path free of atomic RMW beyond the lock.
    pub(crate) fn add(&self, n: u64) {
        let cell = &self.0[stripe()].0;
        cell.store(cell.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.0.iter().map(|c| c.0.load(Relaxed)).sum()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub hits: Striped,
    pub misses: Striped,
    /// Striped too: every write inserts (and usually replaces), from every core.
    pub inserts: Striped,
    pub loads: AtomicU64,
    pub load_failures: AtomicU64,
    pub load_nanos: AtomicU64,
    pub removed: [Striped; 5],
    pub invalidations: AtomicU64,
    pub store_failures: AtomicU64,
}

impl Counters {
    pub(crate) fn removed(&self, cause: RemovalCause, n: u64) {
        self.removed[cause as usize].add(n);
    }

    pub(crate) fn snapshot(&self, entries: u64, bytes: u64, max_bytes: u64) -> CacheStats {
        let r = |c: RemovalCause| self.removed[c as usize].sum();
        CacheStats {
            hits: self.hits.sum(),
            misses: self.misses.sum(),
            inserts: self.inserts.sum(),
            loads: self.loads.load(Relaxed),
            load_failures: self.load_failures.load(Relaxed),
            load_time: std::time::Duration::from_nanos(self.load_nanos.load(Relaxed)),
            evicted_size: r(RemovalCause::Size),
            expired: r(RemovalCause::Expired),
            removed_explicit: r(RemovalCause::Explicit),
            replaced: r(RemovalCause::Replaced),
            invalidated: r(RemovalCause::Invalidated),
            store_failures: self.store_failures.load(Relaxed),
            entries,
            bytes,
            max_bytes,
        }
    }
}
