//! A topic: named, configured, split into partitions; routes records by key.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::appender::TopicAppender;
use super::partition::{AppendReceipt, Partition};
use super::read::Follower;
use super::record::{Message, Record};
use super::{Context, cleanup, recovery};
use crate::config::TopicConfig;
use crate::error::LogError;

/// A named stream of records split into partitions.
///
/// ```
/// # fn main() -> Result<(), quipu::Error> {
/// # let dir = tempfile::tempdir().map_err(|e| quipu::Error::Io { path: ".".into(), source: e })?;
/// use quipu::{Durability, Message, Quipu, TopicConfig};
///
/// let db = Quipu::open(dir.path())?;
/// let payments = db.log().create_topic(
///     "payments",
///     TopicConfig::default().with_partitions(4).with_durability(Durability::Always),
/// )?;
/// let receipt = payments.append(Message::new("12.50 USD").with_key("account-9"))?;
/// assert!(receipt.synced);
/// let back = payments.read(receipt.partition, receipt.offset, 10)?;
/// assert_eq!(back[0].value.as_deref(), Some(&b"12.50 USD"[..]));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Topic {
    name: String,
    config: TopicConfig,
    partitions: Vec<Arc<Partition>>,
    round_robin: AtomicU32,
}

impl Topic {
    pub(crate) fn open(
        name: &str,
        dir: PathBuf,
        config: TopicConfig,
        ctx: &Context,
    ) -> Result<Self, LogError> {
        let mut partitions = Vec::with_capacity(config.partitions as usize);
        for id in 0..config.partitions {
            let part_dir = dir.join(id.to_string());
            let p = recovery::open_partition(name, id, part_dir, config.clone(), ctx.clone())?;
            partitions.push(Arc::new(p));
        }
        Ok(Self {
            name: name.to_owned(),
            config,
            partitions,
            round_robin: AtomicU32::new(0),
        })
    }

    /// The topic's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic's configuration.
    #[must_use]
    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    /// Number of partitions.
    #[must_use]
    pub fn partition_count(&self) -> u32 {
        self.config.partitions
    }

    /// One partition.
    ///
    /// # Errors
    /// [`LogError::PartitionNotFound`].
    pub fn partition(&self, id: u32) -> Result<&Arc<Partition>, LogError> {
        self.partitions
            .get(id as usize)
            .ok_or_else(|| LogError::PartitionNotFound {
                topic: self.name.clone(),
                partition: id,
                partitions: self.config.partitions,
            })
    }

    /// All partitions, in order.
    #[must_use]
    pub fn partitions(&self) -> &[Arc<Partition>] {
        &self.partitions
    }

    /// The partition a key goes to: CRC32C of the key modulo the partition count (stable
    /// across versions and processes).
    #[must_use]
    pub fn partition_for_key(&self, key: &[u8]) -> u32 {
        super::crc32c(key) % self.config.partitions
    }

    fn route(&self, msg: &Message) -> u32 {
        match &msg.key {
            Some(k) => self.partition_for_key(k),
            None => self.next_round_robin(),
        }
    }

    /// The partition the next keyless record goes to, in turn.
    pub(crate) fn next_round_robin(&self) -> u32 {
        self.round_robin.fetch_add(1, Ordering::Relaxed) % self.config.partitions
    }

    /// A batching handle for one writer on the whole topic: see [`TopicAppender`].
    #[must_use]
    pub fn appender(self: &Arc<Self>) -> TopicAppender {
        TopicAppender::new(Arc::clone(self))
    }

    /// Appends one record to the partition of its key (round-robin without a key).
    ///
    /// # Errors
    /// As [`Partition::append`].
    pub fn append(&self, msg: Message) -> Result<AppendReceipt, LogError> {
        let p = self.route(&msg);
        self.partitions[p as usize].append(std::slice::from_ref(&msg))
    }

    /// Async [`append`](Self::append).
    ///
    /// # Errors
    /// As [`Partition::append`].
    pub async fn append_async(&self, msg: Message) -> Result<AppendReceipt, LogError> {
        let p = self.route(&msg);
        self.partitions[p as usize]
            .append_async(std::slice::from_ref(&msg))
            .await
    }

    /// Appends records to one partition as a single batch (one CRC, one index check).
    ///
    /// # Errors
    /// [`LogError::PartitionNotFound`], and as [`Partition::append`].
    pub fn append_batch(
        &self,
        partition: u32,
        msgs: &[Message],
    ) -> Result<AppendReceipt, LogError> {
        self.partition(partition)?.append(msgs)
    }

    /// Reads up to `max_records` from `partition` starting at `offset`.
    ///
    /// # Errors
    /// [`LogError::PartitionNotFound`], and as [`Partition::read`].
    pub fn read(
        &self,
        partition: u32,
        offset: u64,
        max_records: usize,
    ) -> Result<Vec<Record>, LogError> {
        self.partition(partition)?.read(offset, max_records)
    }

    /// Follows `partition` from `offset`, returning up to `max_records` per call.
    ///
    /// # Errors
    /// [`LogError::PartitionNotFound`].
    pub fn follow(
        &self,
        partition: u32,
        offset: u64,
        max_records: usize,
    ) -> Result<Follower, LogError> {
        let p = Arc::clone(self.partition(partition)?);
        Ok(Follower::new(p, offset, max_records))
    }

    /// The end offset of every partition.
    #[must_use]
    pub fn end_offsets(&self) -> Vec<u64> {
        self.partitions.iter().map(|p| p.end_offset()).collect()
    }

    /// Writes out and fsyncs every partition.
    ///
    /// # Errors
    /// The first partition's error.
    pub fn flush(&self) -> Result<(), LogError> {
        self.partitions.iter().try_for_each(|p| p.flush())
    }

    /// Applies retention by size and age now; returns the number of segments deleted.
    ///
    /// # Errors
    /// [`LogError::Io`] on a failed delete.
    pub fn enforce_retention(&self) -> Result<usize, LogError> {
        let mut n = 0;
        for p in &self.partitions {
            n += cleanup::enforce_retention(&p.core)?;
        }
        Ok(n)
    }

    /// Deletes the sealed segments of `partition` that hold only records below `offset`, as
    /// Kafka's `DeleteRecords` at segment granularity: records at or above `offset` stay, and
    /// so may some below it (those sharing a segment with kept ones). Returns the number of
    /// segments deleted.
    ///
    /// # Errors
    /// [`LogError::PartitionNotFound`]; [`LogError::Io`] on a failed delete.
    pub fn delete_records_before(&self, partition: u32, offset: u64) -> Result<usize, LogError> {
        cleanup::delete_before(&self.partition(partition)?.core, offset)
    }

    /// Compacts sealed segments now (only for [`Cleanup::Compact`](crate::Cleanup::Compact)
    /// topics); returns the number of records removed.
    ///
    /// # Errors
    /// [`LogError::Io`], [`LogError::Corrupt`].
    pub fn compact(&self) -> Result<u64, LogError> {
        let mut n = 0;
        for p in &self.partitions {
            n += cleanup::compact(&p.core)?;
        }
        Ok(n)
    }

    pub(crate) fn close(&self) {
        for p in &self.partitions {
            p.close();
            // Wait out a retention or compaction pass already running; later ones see `closed`.
            drop(p.core.maintenance.lock());
        }
    }
}
