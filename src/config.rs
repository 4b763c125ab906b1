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
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            recovery: RecoveryMode::default(),
            default_topic: TopicConfig::default(),
            write_buffer_bytes: 64 * 1024,
            maintenance_interval: Some(Duration::from_secs(60)),
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

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.default_topic.validate()?;
        if self.write_buffer_bytes < 1024 {
            return Err(ConfigError::Invalid {
                field: "write_buffer_bytes",
                reason: "must be at least 1 KiB".to_owned(),
            });
        }
        Ok(())
    }
}
