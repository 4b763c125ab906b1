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

/// A point-in-time copy of one cache namespace's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads that found a live entry.
    pub hits: u64,
    /// Reads that found nothing (or an expired entry).
    pub misses: u64,
    /// Inserts (including replacements and loaded values).
    pub inserts: u64,
    /// Loader calls of `get_or_load` that succeeded.
    pub loads: u64,
    /// Loader calls that failed.
    pub load_failures: u64,
    /// Total time spent in loaders.
    pub load_time: std::time::Duration,
    /// Entries evicted to stay within the byte budget.
    pub evicted_size: u64,
    /// Entries removed because their TTL or TTI passed.
    pub expired: u64,
    /// Entries removed by `remove` or `clear`.
    pub removed_explicit: u64,
    /// Entries whose value was replaced by an insert.
    pub replaced: u64,
    /// Entries dropped by an invalidation (key, tag, pattern or event).
    pub invalidated: u64,
    /// Store calls that failed (write-behind flushes; write-through failures are returned).
    pub store_failures: u64,
    /// Live entries now.
    pub entries: u64,
    /// Bytes counted against the budget now (key + value + per-entry overhead).
    pub bytes: u64,
    /// The byte budget.
    pub max_bytes: u64,
}

impl CacheStats {
    /// Hits over reads, 0.0 before any read.
    #[must_use]
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }

    /// Mean time of a loader call, zero before any.
    #[must_use]
    pub fn average_load_time(&self) -> std::time::Duration {
        let n = self.loads + self.load_failures;
        if n == 0 {
            std::time::Duration::ZERO
        } else {
            self.load_time / u32::try_from(n).unwrap_or(u32::MAX)
        }
    }
}

/// A latency histogram with power-of-two microsecond buckets (1 µs … ~35 min), lock-free.
#[derive(Debug)]
pub(crate) struct LatencyHistogram {
    buckets: [AtomicU64; 32],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl LatencyHistogram {
    pub(crate) fn record(&self, d: std::time::Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        let b = (63 - us.leading_zeros() as usize).min(31);
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
    }

    /// The upper bound of the bucket holding quantile `q` (0.0–1.0), zero when empty.
    pub(crate) fn quantile(&self, q: f64) -> std::time::Duration {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return std::time::Duration::ZERO;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return std::time::Duration::from_micros(1u64 << (i + 1));
            }
        }
        std::time::Duration::from_micros(1u64 << 32)
    }
}

/// A point-in-time copy of a pub/sub hub's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PubSubStats {
    /// Messages published (duplicates not counted).
    pub published: u64,
    /// Messages received by subscribers.
    pub delivered: u64,
    /// Messages dropped from full drop-oldest queues.
    pub dropped: u64,
    /// Deliveries refused because the subscriber was cut off or gone.
    pub disconnected: u64,
    /// Publishes dropped as duplicates of a recent message id.
    pub duplicates: u64,
    /// Publish→receive latency, median (bucket upper bound).
    pub latency_p50: std::time::Duration,
    /// Publish→receive latency, 99th percentile (bucket upper bound).
    pub latency_p99: std::time::Duration,
}

/// A point-in-time copy of a durable subscription's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DurableStats {
    /// Deliveries handed to consumers (first deliveries and redeliveries).
    pub delivered: u64,
    /// Redeliveries (after a nack or a missed ack deadline).
    pub redelivered: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages moved to the dead-letter topic.
    pub dead_lettered: u64,
    /// Records not yet acknowledged, summed over partitions (committed offset to end).
    pub lag: u64,
    /// Messages delivered and not yet acknowledged.
    pub in_flight: u64,
}
