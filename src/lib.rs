//! Quipu is an in-process data engine: a durable, append-only event log (topics, partitions,
//! group commit, crash recovery, retention, compaction, consumer groups), with the cache,
//! pub/sub and a Redis-protocol server built on top of it. It keeps records fast and without
//! losing one: an append acknowledged with [`Durability::Always`] survives a crash.
//!
//! ```
//! # fn main() -> Result<(), quipu::Error> {
//! # let dir = tempfile::tempdir().map_err(|e| quipu::Error::Io { path: ".".into(), source: e })?;
//! use quipu::{Durability, Message, Quipu, TopicConfig};
//!
//! let db = Quipu::open(dir.path())?;
//! let payments = db.log().create_topic(
//!     "payments",
//!     TopicConfig::default().with_partitions(2).with_durability(Durability::Always),
//! )?;
//! let receipt = payments.append(Message::new(r#"{"amount":"12.50"}"#).with_key("acct-1"))?;
//! assert!(receipt.synced); // fsynced before append returned
//!
//! let records = payments.read(receipt.partition, 0, 100)?;
//! assert_eq!(records[0].key.as_deref(), Some(&b"acct-1"[..]));
//! # Ok(()) }
//! ```
#![deny(missing_docs, unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod cache;
mod clock;
mod config;
mod engine;
mod error;
mod events;
mod glob;
mod log;
mod metrics;
mod pubsub;
#[cfg(feature = "server")]
pub mod server;
mod store;

pub use cache::{
    BoxError, BreakerState, Cache, CacheBuilder, DEFAULT_NAMESPACE, ENTRY_OVERHEAD, EntryOptions,
    HitRatioAlert, HitRatioCallback, Invalidation, InvalidationTarget, Journal, Modify, Namespace,
    RemovalCause, RemovalListener, Schedule, SnapshotReport, TtlChange,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    CacheConfig, Cleanup, Consistency, Durability, EvictionPolicy, LogConfig, NamespaceConfig,
    Persistence, RecoveryMode, TopicConfig,
};
pub use engine::{EventInvalidator, EventMapper, Quipu, QuipuBuilder};
pub use error::{CacheError, ConfigError, Error, EventError, LogError, Result, StoreError};
pub use events::{
    Aggregate, EventStore, ExpectedVersion, NewEvent, Projection, ProjectionRunner, SNAPSHOT_TABLE,
    StoredEvent,
};
pub use glob::glob_match;
pub use log::{
    AppendReceipt, Appender, BatchView, ConsumerGroup, Follower, FsStorage, Log, Message,
    Partition, PartitionLag, Record, RecordBatch, RecordView, RecordViews, RecoveryProgress,
    Storage, StorageFile, Topic, TopicAppender,
};
pub use metrics::{CacheStats, DurableStats, LogMetrics, LogStats, PubSubStats};
pub use pubsub::{
    Breaker, BreakerConfig, DEAD_LETTER_HEADERS, Delivery, DurableConfig, DurableDelivery,
    DurableSubscription, FallbackSink, Message as PubSubMessage, Priority, PubSub, PublishOptions,
    Published, RecvError, Sink, SinkError, SinkState, SlowConsumer, Subscription,
    SubscriptionConfig,
};
pub use store::{MemoryStore, RedbStore, Store, StoreOp};

/// Entry points for the fuzz targets in `fuzz/`; not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::cache::decode_snapshot_for_fuzzing;
    pub use crate::log::fuzzing::*;
}
