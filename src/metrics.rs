//! Counters per subsystem. Nothing here exports; the server reads these and formats them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the event log, shared by all its partitions.
#[derive(Debug, Default)]
pub struct LogMetrics {
    appends: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    fsyncs: AtomicU64,
    fsync_failures: AtomicU64,
    duplicates: AtomicU64,
    truncated_bytes: AtomicU64,
    segments_deleted: AtomicU64,
    records_compacted: AtomicU64,
}

/// A point-in-time copy of [`LogMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStats {
    /// Append calls written to segment files (counted when the write buffer is written out,
    /// so buffered appends show up within one flush interval).
    pub appends: u64,
    /// Records written to segment files (counted like `appends`).
    pub records: u64,
    /// Encoded bytes written to segment files.
    pub bytes: u64,
    /// fsyncs of segment files (each one may cover many appends: group commit).
    pub fsyncs: u64,
    /// fsyncs that failed (each poisons its partition).
    pub fsync_failures: u64,
    /// Idempotent appends recognised as retries and not written again.
    pub duplicates: u64,
    /// Bytes cut from torn tails during recovery.
    pub truncated_bytes: u64,
    /// Segments deleted by retention.
    pub segments_deleted: u64,
    /// Records removed by compaction.
    pub records_compacted: u64,
}

macro_rules! counter {
    ($($name:ident),*) => {
        impl LogMetrics {
            $(
                pub(crate) fn $name(&self, n: u64) {
                    self.$name.fetch_add(n, Ordering::Relaxed);
                }
            )*

            /// Reads every counter.
            #[must_use]
            pub fn snapshot(&self) -> LogStats {
                LogStats { $($name: self.$name.load(Ordering::Relaxed)),* }
            }
        }
    };
}

counter!(
    appends,
    records,
    bytes,
    fsyncs,
    fsync_failures,
    duplicates,
    truncated_bytes,
    segments_deleted,
    records_compacted
);

impl LogStats {
    /// Records per fsync: how well group commit amortises the disk.
    #[must_use]
    pub fn records_per_fsync(&self) -> f64 {
        if self.fsyncs == 0 {
            0.0
        } else {
            self.records as f64 / self.fsyncs as f64
        }
    }
}
