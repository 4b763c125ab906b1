//! Plain configuration structs with documented defaults and `validate()`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// When an append is acknowledged relative to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Durability {
    /// Acknowledge only after the record is fsynced. Concurrent appends share one write and one
    /// fsync (group commit), so throughput grows with the number of appenders.
    Always,
    /// Acknowledge once the record is in quipu's write buffer; a background thread writes and
    /// fsyncs every interval. A crash loses at most one interval of acknowledged records.
    Interval(Duration),
    /// Acknowledge once buffered; written to the OS within 10 ms and never fsynced by quipu.
    /// A process crash loses at most 10 ms; an OS crash whatever the OS had not written.
    Never,
}

/// What recovery does with bytes that fail their checks when a partition is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecoveryMode {
    /// Truncate an incomplete or corrupt tail of the last segment (what a crash mid-write
    /// leaves); refuse to open, with [`LogError::Corrupt`](crate::LogError::Corrupt), when a
    /// bad batch is followed by good ones, since that is damage, not a torn write.
    #[default]
    TolerateCorruptTail,
    /// Refuse to open on any bad byte, even a torn tail.
    Strict,
    /// Truncate each segment at its first bad byte even if good batches follow it (in a
    /// sealed segment that leaves an offset gap). Loses those batches: an operator's choice
    /// after reading the `Corrupt` error.
    TruncateAtFirstCorruption,
}

/// How old data leaves a topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cleanup {
    /// Whole segments are deleted by retention (size and age).
    #[default]
    Delete,
    /// Sealed segments keep only the latest record per key; tombstones are dropped after
    /// `tombstone_grace`. Retention by size and age still applies if set.
    Compact,
}

/// Configuration of one topic, fixed when the topic is created and stored beside it.
///
/// ```
/// use quipu::{Durability, TopicConfig};
/// let config = TopicConfig::default()
///     .with_partitions(4)
///     .with_durability(Durability::Always);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopicConfig {
    /// Number of partitions. Default 1.
    pub partitions: u32,
    /// When appends are acknowledged. Default [`Durability::Always`].
    pub durability: Durability,
    /// A segment is rolled when it would grow past this size. Default 64 MiB.
    pub segment_bytes: u64,
    /// A segment is rolled once its first record is this old. Default 7 days.
    pub segment_age: Duration,
    /// Oldest segments are deleted while the partition is larger than this. Default none.
    pub retention_bytes: Option<u64>,
    /// Segments whose newest record is older than this are deleted. Default none.
    pub retention_age: Option<Duration>,
    /// Delete or compact. Default [`Cleanup::Delete`].
    pub cleanup: Cleanup,
    /// How long compaction keeps a tombstone so consumers see the deletion. Default 24 hours.
    pub tombstone_grace: Duration,
    /// Largest encoded record accepted. A batch may hold many records, up to 64 MiB in all.
    /// Default 1 MiB.
    pub max_record_bytes: usize,
    /// An index entry is written at least every this many bytes of log. Default 4 KiB.
    pub index_interval_bytes: u32,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            partitions: 1,
            durability: Durability::Always,
            segment_bytes: 64 * 1024 * 1024,
            segment_age: Duration::from_secs(7 * 24 * 3600),
            retention_bytes: None,
            retention_age: None,
            cleanup: Cleanup::Delete,
            tombstone_grace: Duration::from_secs(24 * 3600),
            max_record_bytes: 1024 * 1024,
            index_interval_bytes: 4096,
        }
    }
}

impl TopicConfig {
    /// Sets the number of partitions (default 1).
    #[must_use]
    pub fn with_partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Sets the durability (default [`Durability::Always`]).
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the segment size at which segments roll (default 64 MiB).
    #[must_use]
    pub fn with_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// Sets the age at which segments roll (default 7 days).
    #[must_use]
    pub fn with_segment_age(mut self, age: Duration) -> Self {
        self.segment_age = age;
        self
    }

    /// Sets retention by size (default none).
    #[must_use]
    pub fn with_retention_bytes(mut self, bytes: u64) -> Self {
        self.retention_bytes = Some(bytes);
        self
    }

    /// Sets retention by age (default none).
    #[must_use]
    pub fn with_retention_age(mut self, age: Duration) -> Self {
        self.retention_age = Some(age);
        self
    }

    /// Sets the cleanup policy (default [`Cleanup::Delete`]).
    #[must_use]
    pub fn with_cleanup(mut self, cleanup: Cleanup) -> Self {
        self.cleanup = cleanup;
        self
    }

    /// Sets how long compaction keeps tombstones (default 24 hours).
    #[must_use]
    pub fn with_tombstone_grace(mut self, grace: Duration) -> Self {
        self.tombstone_grace = grace;
        self
    }

    /// Sets the largest accepted record (default 1 MiB).
    #[must_use]
    pub fn with_max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes;
        self
    }

    /// Sets the index interval (default 4 KiB).
    #[must_use]
    pub fn with_index_interval_bytes(mut self, bytes: u32) -> Self {
        self.index_interval_bytes = bytes;
        self
    }

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.partitions == 0 || self.partitions > 4096 {
            return bad("partitions", "must be between 1 and 4096");
        }
        if let Durability::Interval(d) = self.durability
            && d.is_zero()
        {
            return bad("durability", "interval must be above zero");
        }
        if self.segment_bytes < 4096 || self.segment_bytes > (1 << 40) {
            return bad("segment_bytes", "must be between 4 KiB and 1 TiB");
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > 64 * 1024 * 1024 {
            return bad("max_record_bytes", "must be between 1 byte and 64 MiB");
        }
        if self.segment_age.is_zero() {
            return bad("segment_age", "must be above zero");
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes", "must be above zero");
        }
        Ok(())
    }
}

/// Configuration of the whole log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogConfig {
    /// What recovery does with bad bytes. Default [`RecoveryMode::TolerateCorruptTail`].
    pub recovery: RecoveryMode,
    /// The config of topics created implicitly (by `topic_or_create`). Default
    /// [`TopicConfig::default`].
    pub default_topic: TopicConfig,
    /// Bytes buffered in memory before a write to the OS. Default 64 KiB.
    pub write_buffer_bytes: usize,
    /// How often retention and compaction run in the background; `None` runs them only when
    /// called. Default 60 s.
    pub maintenance_interval: Option<Duration>,
    /// A partition's sync thread (group commit, timed flushes) exits after this long without
    /// work and the next append that needs it starts it again: thousands of idle topics hold
    /// no threads. Default 10 s.
    pub sync_thread_idle: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            recovery: RecoveryMode::default(),
            default_topic: TopicConfig::default(),
            write_buffer_bytes: 64 * 1024,
            maintenance_interval: Some(Duration::from_secs(60)),
            sync_thread_idle: Duration::from_secs(10),
        }
    }
}

impl LogConfig {
    /// Sets the recovery mode (default [`RecoveryMode::TolerateCorruptTail`]).
    #[must_use]
    pub fn with_recovery(mut self, recovery: RecoveryMode) -> Self {
        self.recovery = recovery;
        self
    }

    /// Sets the config of implicitly created topics (default [`TopicConfig::default`]).
    #[must_use]
    pub fn with_default_topic(mut self, config: TopicConfig) -> Self {
        self.default_topic = config;
        self
    }

    /// Sets the in-memory write buffer (default 64 KiB).
    #[must_use]
    pub fn with_write_buffer_bytes(mut self, bytes: usize) -> Self {
        self.write_buffer_bytes = bytes;
        self
    }

    /// Sets the background maintenance interval (default 60 s; `None` disables it).
    #[must_use]
    pub fn with_maintenance_interval(mut self, every: Option<Duration>) -> Self {
        self.maintenance_interval = every;
        self
    }

    /// Sets how long an idle partition keeps its sync thread (default 10 s).
    #[must_use]
    pub fn with_sync_thread_idle(mut self, idle: Duration) -> Self {
        self.sync_thread_idle = idle;
        self
    }

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.default_topic.validate()?;
        if self.sync_thread_idle.is_zero() {
            return Err(ConfigError::Invalid {
                field: "sync_thread_idle",
                reason: "must be more than zero".to_owned(),
            });
        }
        if self.write_buffer_bytes < 1024 {
            return Err(ConfigError::Invalid {
                field: "write_buffer_bytes",
                reason: "must be at least 1 KiB".to_owned(),
            });
        }
        Ok(())
    }
}

/// How a namespace chooses what to evict when it is over its byte budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvictionPolicy {
    /// S3-FIFO: new entries go to a small FIFO, entries read again while there move to the main
    /// FIFO, and keys evicted from the small FIFO are remembered in a ghost FIFO so they are
    /// admitted straight to main when they come back. A hit only bumps a per-entry counter.
    #[default]
    S3Fifo,
    /// Least recently used, kept as a baseline for hit-ratio comparisons: every hit takes the
    /// shard's write lock to move the entry to the front, so it is slower under contention.
    Lru,
}

/// Whether a write is visible in the durable store when the call returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Consistency {
    /// The store (if any) holds the write before the call returns. Required by
    /// [`Persistence::WriteThrough`].
    #[default]
    Immediate,
    /// The store catches up later; the write is durable in the log meanwhile. Required by
    /// [`Persistence::WriteBehind`].
    Eventual,
}

/// What survives a restart of a namespace's entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Persistence {
    /// Nothing: the namespace starts empty.
    #[default]
    None,
    /// The namespace is critical: snapshotted on close (and on demand) and restored on open.
    Snapshot,
    /// Every insert and remove goes to the store first, then to the cache, in one call.
    WriteThrough,
    /// Inserts and removes go to the cache now and to the store in batches; pending writes are
    /// durable in the log so a crash loses none.
    WriteBehind,
}

/// Configuration of one cache namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NamespaceConfig {
    /// Byte budget: key + value + [`ENTRY_OVERHEAD`](crate::ENTRY_OVERHEAD) per entry. Default
    /// 64 MiB.
    pub max_bytes: u64,
    /// Time to live of entries inserted without one. Default `None` (no expiry).
    pub ttl: Option<Duration>,
    /// Time to idle: an entry not read for this long expires. Default `None`.
    pub tti: Option<Duration>,
    /// Eviction policy. Default [`EvictionPolicy::S3Fifo`].
    pub policy: EvictionPolicy,
    /// Consistency with the store. Default [`Consistency::Immediate`].
    pub consistency: Consistency,
    /// Persistence. Default [`Persistence::None`].
    pub persistence: Persistence,
    /// How long a loader error is cached (negative caching). Default `None`: errors are not
    /// cached and the next `get_or_load` calls the loader again.
    pub negative_ttl: Option<Duration>,
    /// When an entry read through `get_or_load` has less than this left to live, it is reloaded
    /// in the background while the current value is returned. Default `None`.
    pub refresh_ahead: Option<Duration>,
    /// How often write-behind flushes pending writes to the store. Default 1 s.
    pub write_behind_interval: Duration,
    /// Most writes per write-behind store batch. Default 1,000.
    pub write_behind_batch: usize,
    /// Number of shards, a power of two. Default `next_pow2(4 × cores)`.
    pub shards: Option<usize>,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            ttl: None,
            tti: None,
            policy: EvictionPolicy::default(),
            consistency: Consistency::default(),
            persistence: Persistence::default(),
            negative_ttl: None,
            refresh_ahead: None,
            write_behind_interval: Duration::from_secs(1),
            write_behind_batch: 1000,
            shards: None,
        }
    }
}

impl NamespaceConfig {
    /// Sets the byte budget (default 64 MiB).
    #[must_use]
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets the default time to live (default none).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the default time to idle (default none).
    #[must_use]
    pub fn with_tti(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// Sets the eviction policy (default S3-FIFO).
    #[must_use]
    pub fn with_policy(mut self, policy: EvictionPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets persistence (default none). Write-behind also sets [`Consistency::Eventual`].
    #[must_use]
    pub fn with_persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        if persistence == Persistence::WriteBehind {
            self.consistency = Consistency::Eventual;
        }
        self
    }

    /// Sets the consistency (default immediate).
    #[must_use]
    pub fn with_consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Caches loader errors for `ttl` (default: errors are not cached).
    #[must_use]
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Reloads entries read through `get_or_load` in the background once they have less than
    /// `window` left to live (default off).
    #[must_use]
    pub fn with_refresh_ahead(mut self, window: Duration) -> Self {
        self.refresh_ahead = Some(window);
        self
    }

    /// Sets the write-behind flush interval (default 1 s).
    #[must_use]
    pub fn with_write_behind_interval(mut self, every: Duration) -> Self {
        self.write_behind_interval = every;
        self
    }

    /// Sets the number of shards, a power of two (default `next_pow2(4 × cores)`).
    #[must_use]
    pub fn with_shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Checks every field's range and that consistency fits persistence.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.max_bytes == 0 {
            return bad("max_bytes", "must be above zero");
        }
        if self.ttl == Some(Duration::ZERO) || self.tti == Some(Duration::ZERO) {
            return bad("ttl", "a zero ttl or tti would expire entries at once");
        }
        if let Some(shards) = self.shards
            && (shards == 0 || !shards.is_power_of_two() || shards > 1 << 16)
        {
            return bad("shards", "must be a power of two between 1 and 65536");
        }
        if self.write_behind_batch == 0 {
            return bad("write_behind_batch", "must be above zero");
        }
        match (self.persistence, self.consistency) {
            (Persistence::WriteBehind, Consistency::Immediate) => bad(
                "consistency",
                "write-behind updates the store later: use Consistency::Eventual",
            ),
            (Persistence::WriteThrough, Consistency::Eventual) => bad(
                "consistency",
                "write-through updates the store first: use Consistency::Immediate",
            ),
            _ => Ok(()),
        }
    }
}

/// Configuration of the cache as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Config of the default namespace (keys that name none). Default
    /// [`NamespaceConfig::default`].
    pub default_namespace: NamespaceConfig,
    /// How often the background task sweeps expired entries, checks hit-ratio alerts, flushes
    /// write-behind and runs scheduled warming; `None` runs them only when
    /// `run_pending_tasks` is called. Default 100 ms.
    pub maintenance_interval: Option<Duration>,
    /// Slots each shard's sweep looks at per maintenance run. Default 4,096.
    pub sweep_batch: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            default_namespace: NamespaceConfig::default(),
            maintenance_interval: Some(Duration::from_millis(100)),
            sweep_batch: 4096,
        }
    }
}

impl CacheConfig {
    /// Sets the default namespace's config.
    #[must_use]
    pub fn with_default_namespace(mut self, config: NamespaceConfig) -> Self {
        self.default_namespace = config;
        self
    }

    /// Sets the maintenance interval (default 100 ms; `None` runs maintenance only on demand).
    #[must_use]
    pub fn with_maintenance_interval(mut self, every: Option<Duration>) -> Self {
        self.maintenance_interval = every;
        self
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.default_namespace.validate()?;
        if self.sweep_batch == 0 {
            return Err(ConfigError::Invalid {
                field: "sweep_batch",
                reason: "must be above zero".to_owned(),
            });
        }
        Ok(())
    }
}
