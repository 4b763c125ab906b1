//! Every public error of quipu, one `#[non_exhaustive]` enum per family, all converting into
//! [`Error`].

use std::io;
use std::path::PathBuf;

/// The error type of every public quipu operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An event-log operation failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A cache operation failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The durable store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event-sourcing operation failed.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A configuration value was rejected before anything was opened or written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another process (or another `Quipu` in this process) holds the data directory.
    #[error("data directory {path} is locked by another quipu instance")]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// An I/O error outside any subsystem (opening the data directory, its lock file).
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The path the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has a value outside its allowed range.
    #[error("invalid config `{field}`: {reason}")]
    Invalid {
        /// The field's name.
        field: &'static str,
        /// Why the value is rejected.
        reason: String,
    },
}

/// An error of the event log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The topic name is empty, too long, reserved, or contains characters other than
    /// `[A-Za-z0-9._-]`.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The rejected name.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// No topic of that name exists.
    #[error("topic {0:?} does not exist")]
    TopicNotFound(String),
    /// A topic of that name already exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// The partition number is not below the topic's partition count.
    #[error("topic {topic:?} has {partitions} partitions; partition {partition} does not exist")]
    PartitionNotFound {
        /// The topic.
        topic: String,
        /// The requested partition.
        partition: u32,
        /// How many partitions the topic has.
        partitions: u32,
    },
    /// A record (or batch) is larger than the topic's `max_record_bytes`.
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An append carried no records.
    #[error("an append needs at least one record")]
    EmptyBatch,
    /// The requested offset is outside `[start, end]` of the partition.
    #[error("offset {requested} is out of range: the partition holds [{start}, {end})")]
    OffsetOutOfRange {
        /// The requested offset.
        requested: u64,
        /// The first offset still held.
        start: u64,
        /// The next offset to be written.
        end: u64,
    },
    /// An earlier fsync failed: the partition refuses writes, because what is on disk can no
    /// longer be known. Reopen the log to recover from what reached the disk.
    #[error("partition {topic}/{partition} is poisoned after a failed fsync: {cause}")]
    Poisoned {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The original error's text.
        cause: String,
    },
    /// The disk is full: the append was not acknowledged and nothing acknowledged before it is
    /// lost. Like a failed fsync, it poisons the partition: free space, then reopen the log.
    #[error("storage full while writing {path}")]
    StorageFull {
        /// The file being written.
        path: PathBuf,
    },
    /// An I/O error on a log file.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk fail their checks (CRC, length, magic) somewhere other than a torn tail,
    /// or anywhere under `RecoveryMode::Strict`.
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt {
        /// The segment or metadata file.
        path: PathBuf,
        /// Byte position of the first bad byte.
        position: u64,
        /// What check failed.
        reason: String,
    },
    /// The data was written by a newer quipu whose format this version cannot read.
    #[error("{path} has format version {found}; this quipu reads up to version {supported}")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// An idempotent append skipped sequence numbers: a batch in between was never written.
    #[error("producer {producer_id}: expected sequence {expected}, got {got}")]
    OutOfOrderSequence {
        /// The producer.
        producer_id: u64,
        /// The next sequence the partition expects.
        expected: u32,
        /// The sequence received.
        got: u32,
    },
    /// An idempotent append repeats an old sequence number too far back to tell what it was.
    #[error("producer {producer_id}: sequence {got} is older than the retained window")]
    StaleSequence {
        /// The producer.
        producer_id: u64,
        /// The sequence received.
        got: u32,
    },
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
}

impl LogError {
    /// Wraps an I/O error, turning "no space left on device" into [`LogError::StorageFull`].
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::StorageFull {
            LogError::StorageFull { path }
        } else {
            LogError::Io { path, source }
        }
    }
}

/// Shorthand for results of quipu operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of the cache.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The entry alone is larger than its namespace's whole byte budget.
    #[error("entry of {bytes} bytes exceeds namespace {namespace:?} budget of {max_bytes} bytes")]
    TooLarge {
        /// The namespace.
        namespace: String,
        /// The entry's weight (key + value + per-entry overhead).
        bytes: u64,
        /// The namespace's budget.
        max_bytes: u64,
    },
    /// No namespace of that name exists.
    #[error("no cache namespace {0:?}")]
    NoSuchNamespace(String),
    /// A namespace of that name exists already.
    #[error("cache namespace {0:?} exists already")]
    NamespaceExists(String),
    /// A namespace name is empty, too long, or holds characters outside `[A-Za-z0-9._-]`.
    #[error("invalid namespace name {0:?}")]
    InvalidNamespaceName(String),
    /// `increment` found a value that is not a decimal 64-bit integer, or the result overflows.
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// The loader of `get_or_load` failed (shared by every waiter of that load; cached only
    /// with negative caching).
    #[error("loader failed: {0}")]
    Load(std::sync::Arc<dyn std::error::Error + Send + Sync>),
    /// The namespace's store call failed (write-through) or its pending-write journal did
    /// (write-behind); the cache was left unchanged.
    #[error("persisting namespace {namespace:?} failed: {reason}")]
    Persist {
        /// The namespace.
        namespace: String,
        /// What failed.
        reason: String,
    },
    /// The namespace needs a store (write-through, write-behind, warming from the store) and
    /// the cache has none.
    #[error("namespace {0:?} needs a store and the cache has none")]
    NoStore(String),
    /// A snapshot file could not be written or read.
    #[error("snapshot {path}: {reason}")]
    Snapshot {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A warming schedule could not be parsed or names an unknown time zone.
    #[error("invalid schedule {spec:?}: {reason}")]
    InvalidSchedule {
        /// The schedule as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// An error of the durable store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store's backend failed (I/O, corruption, a remote database being down).
    #[error("store backend: {0}")]
    Backend(String),
    /// A table (keyspace) name is empty or too long.
    #[error("invalid store table name {0:?}")]
    InvalidTable(String),
    /// The store was closed.
    #[error("store is closed")]
    Closed,
}

/// An error of event sourcing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The stream was not at the expected version: another writer got there first.
    #[error("stream {stream:?} is at version {actual}, expected {expected}")]
    Conflict {
        /// The stream.
        stream: String,
        /// What the caller expected.
        expected: String,
        /// The stream's version now.
        actual: u64,
    },
    /// A stored event or snapshot could not be decoded.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// A stream name is empty or longer than 256 bytes.
    #[error("invalid stream name {0:?}")]
    InvalidStream(String),
}
