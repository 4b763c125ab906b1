//! [`Appender`]: one writer's batching handle on a partition; [`TopicAppender`]: one per
//! partition of a topic, records routed by key.

use std::sync::Arc;

use super::partition::{AppendReceipt, Partition};
use super::record::{Message, OpenBatch};
use super::topic::Topic;
use crate::error::LogError;

/// Largest batch an appender builds, whatever the write buffer's size.
const MAX_APPENDER_BATCH: usize = 16 * 1024 * 1024;

/// Encodes records into a batch of its own, without taking the partition's lock, and appends
/// the batch whole: when the next record would not fit in it (as many bytes as the log's
/// write buffer, 64 KiB by default), on [`flush`](Self::flush), and on drop. This is what a
/// Kafka producer's batching does, in-process: one lock, header, CRC and (for
/// [`Durability::Always`](crate::Durability::Always)) one fsync per batch instead of per
/// record, for a single writer that appends many small records.
///
/// A record is in the log, visible to readers and as durable as the topic promises only once
/// its batch is appended: [`append`](Self::append) returns the receipt of the batch it sent
/// out, if it sent one, and [`flush`](Self::flush) sends out the rest. Records get their
/// timestamps when they are given to the appender; a batch whose records would be older than
/// a write that reached the partition first (another writer's) is moved up to its time, so
/// that the timestamps the log assigns never go backwards. Other writers may append to the
/// same partition meanwhile; an appender's batch keeps its records together and in order.
///
/// ```
/// # fn main() -> Result<(), quipu::Error> {
/// # let dir = tempfile::tempdir().map_err(|e| quipu::Error::Io { path: ".".into(), source: e })?;
/// use quipu::{Message, Quipu, TopicConfig};
///
/// let db = Quipu::open(dir.path())?;
/// let clicks = db.log().create_topic("clicks", TopicConfig::default())?;
/// let mut appender = clicks.partition(0)?.appender();
/// for i in 0..1_000 {
///     appender.append(&Message::new(format!("click {i}")))?;
/// }
/// let last = appender.flush()?.expect("records were buffered");
/// assert_eq!(last.last_offset, 999);
/// assert_eq!(clicks.read(0, 999, 1)?[0].value.as_deref(), Some(&b"click 999"[..]));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Appender {
    partition: Arc<Partition>,
    /// The batch being built, header space first.
    buf: Vec<u8>,
    batch: Option<(OpenBatch, Stamps)>,
    /// The latest timestamp this appender assigned: the next one is not below it.
    last_ts: u64,
    batch_bytes: usize,
    /// The topic's `max_record_bytes`, read once.
    max_record: usize,
}

/// Where a batch's timestamps came from. The two never share a batch: only timestamps the
/// appender assigned may be moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamps {
    Assigned,
    Given,
}

impl Stamps {
    fn of(msg: &Message) -> Self {
        if msg.timestamp.is_some() {
            Self::Given
        } else {
            Self::Assigned
        }
    }
}

impl Appender {
    pub(crate) fn new(partition: Arc<Partition>) -> Self {
        let core = &partition.core;
        let batch_bytes = core.ctx.config.write_buffer_bytes.min(MAX_APPENDER_BATCH);
        let last_ts = core.ctx.clock.now_millis_coarse();
        let max_record = core.config.max_record_bytes;
        Self {
            partition,
            buf: Vec::with_capacity(batch_bytes),
            batch: None,
            last_ts,
            batch_bytes,
            max_record,
        }
    }

    /// The partition appended to.
    #[must_use]
    pub fn partition(&self) -> &Arc<Partition> {
        &self.partition
    }

    /// Records given to the appender and not yet sent out.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.batch.map_or(0, |(b, _)| b.count() as usize)
    }

    /// Adds a record to the batch. When it does not fit, the batch so far is appended first
    /// (and so is a batch of records with the other kind of timestamp: given ones and
    /// assigned ones are not mixed) and its receipt returned.
    ///
    /// # Errors
    /// [`LogError::RecordTooLarge`], and nothing is buffered or sent; or the error of
    /// appending the batch so far (as [`flush`](Self::flush)), and then the record is buffered.
    pub fn append(&mut self, msg: &Message) -> Result<Option<AppendReceipt>, LogError> {
        let stamps = Stamps::of(msg);
        let receipt = if self.must_send_before(msg, stamps)? {
            self.flush()
        } else {
            Ok(None)
        };
        self.push(msg, stamps);
        receipt
    }

    /// Async [`append`](Self::append): waits for the fsync of a batch sent out without
    /// blocking a thread.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub async fn append_async(&mut self, msg: &Message) -> Result<Option<AppendReceipt>, LogError> {
        let stamps = Stamps::of(msg);
        let receipt = if self.must_send_before(msg, stamps)? {
            self.flush_async().await
        } else {
            Ok(None)
        };
        self.push(msg, stamps);
        receipt
    }

    /// Appends the records buffered so far as one batch and returns once it is as durable as
    /// the topic's durability promises; `None` when nothing was buffered.
    ///
    /// # Errors
    /// As [`Partition::append`]; the batch's records were then not appended and are dropped
    /// (the appender is empty afterwards).
    pub fn flush(&mut self) -> Result<Option<AppendReceipt>, LogError> {
        let Some((batch, retime)) = self.take_batch() else {
            return Ok(None);
        };
        let result = self.partition.append_encoded(&mut self.buf, batch, retime);
        self.buf.clear();
        result.map(Some)
    }

    /// Async [`flush`](Self::flush).
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub async fn flush_async(&mut self) -> Result<Option<AppendReceipt>, LogError> {
        let Some((batch, retime)) = self.take_batch() else {
            return Ok(None);
        };
        let result = self
            .partition
            .append_encoded_async(&mut self.buf, batch, retime)
            .await;
        self.buf.clear();
        result.map(Some)
    }

    /// The batch to send out, and whether its timestamps may be moved (assigned ones only).
    fn take_batch(&mut self) -> Option<(OpenBatch, bool)> {
        let (batch, stamps) = self.batch.take()?;
        Some((batch, stamps == Stamps::Assigned))
    }

    /// Whether the batch must be sent out before `msg` joins; refuses a record the topic
    /// does not take.
    fn must_send_before(&self, msg: &Message, stamps: Stamps) -> Result<bool, LogError> {
        let size = msg.encoded_len();
        if size > self.max_record {
            return Err(LogError::RecordTooLarge {
                size,
                max: self.max_record,
            });
        }
        Ok(self.batch.is_some_and(|(_, batch_stamps)| {
            batch_stamps != stamps || self.buf.len() + size > self.batch_bytes
        }))
    }

    fn push(&mut self, msg: &Message, stamps: Stamps) {
        let now = match msg.timestamp {
            Some(ts) => ts,
            None => {
                // Coarse, as in `Partition::append`: a precise read would cost as much as
                // encoding the record.
                let now = (self.partition.core.ctx.clock)
                    .now_millis_coarse()
                    .max(self.last_ts);
                self.last_ts = now;
                now
            }
        };
        let buf = &mut self.buf;
        let (batch, _) = self.batch.get_or_insert_with(|| {
            debug_assert!(buf.is_empty());
            (OpenBatch::open(buf, 0, now, None), stamps)
        });
        batch.push(buf, msg, now);
    }
}

impl Drop for Appender {
    /// Sends out what is buffered; an error is lost here, so call [`flush`](Self::flush)
    /// to see it.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// One writer's batching handle on a whole topic: an [`Appender`] per partition (made when the
/// first record for it comes), each record routed as [`Topic::append`] routes it, by key.
/// Records without a key stick to one partition until its batch goes out and then move to the
/// next (Kafka's sticky partitioning): they fill whole batches instead of one small batch per
/// partition.
///
/// ```
/// # fn main() -> Result<(), quipu::Error> {
/// # let dir = tempfile::tempdir().map_err(|e| quipu::Error::Io { path: ".".into(), source: e })?;
/// use quipu::{Message, Quipu, TopicConfig};
///
/// let db = Quipu::open(dir.path())?;
/// let orders = db.log().create_topic("orders", TopicConfig::default().with_partitions(4))?;
/// let mut appender = orders.appender();
/// for i in 0..100 {
///     appender.append(&Message::new(format!("order {i}")).with_key(format!("shop-{}", i % 7)))?;
/// }
/// let receipts = appender.flush()?;
/// let appended: u64 = receipts.iter().map(|r| r.last_offset - r.offset + 1).sum();
/// assert_eq!(appended, 100);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TopicAppender {
    topic: Arc<Topic>,
    appenders: Vec<Option<Appender>>,
    /// Where records without a key go.
    sticky: u32,
}

impl TopicAppender {
    pub(crate) fn new(topic: Arc<Topic>) -> Self {
        let sticky = topic.next_round_robin();
        let appenders = (0..topic.partition_count()).map(|_| None).collect();
        Self {
            topic,
            appenders,
            sticky,
        }
    }

    /// The topic appended to.
    #[must_use]
    pub fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }

    /// Records given to the appender and not yet sent out, over all partitions.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.appenders
            .iter()
            .flatten()
            .map(Appender::buffered)
            .sum()
    }

    /// Adds a record to the batch of its partition; returns the receipt of that partition's
    /// batch when it was sent out first (as [`Appender::append`]).
    ///
    /// # Errors
    /// As [`Appender::append`].
    pub fn append(&mut self, msg: &Message) -> Result<Option<AppendReceipt>, LogError> {
        let p = self.route(msg);
        let receipt = self.appender(p).append(msg);
        self.unstick(msg, &receipt);
        receipt
    }

    /// Async [`append`](Self::append).
    ///
    /// # Errors
    /// As [`Appender::append`].
    pub async fn append_async(&mut self, msg: &Message) -> Result<Option<AppendReceipt>, LogError> {
        let p = self.route(msg);
        let receipt = self.appender(p).append_async(msg).await;
        self.unstick(msg, &receipt);
        receipt
    }

    /// Sends out every partition's batch, lowest partition first, and returns their receipts.
    ///
    /// # Errors
    /// The first error of a partition's flush (as [`Appender::flush`]): that partition's batch
    /// is dropped; the batches of later partitions stay buffered for the next flush or drop.
    pub fn flush(&mut self) -> Result<Vec<AppendReceipt>, LogError> {
        let mut receipts = Vec::new();
        for a in self.appenders.iter_mut().flatten() {
            receipts.extend(a.flush()?);
        }
        Ok(receipts)
    }

    /// Async [`flush`](Self::flush).
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub async fn flush_async(&mut self) -> Result<Vec<AppendReceipt>, LogError> {
        let mut receipts = Vec::new();
        for a in self.appenders.iter_mut().flatten() {
            receipts.extend(a.flush_async().await?);
        }
        Ok(receipts)
    }

    fn route(&self, msg: &Message) -> u32 {
        match &msg.key {
            Some(k) => self.topic.partition_for_key(k),
            None => self.sticky,
        }
    }

    fn appender(&mut self, p: u32) -> &mut Appender {
        let partitions = self.topic.partitions();
        self.appenders[p as usize].get_or_insert_with(|| partitions[p as usize].appender())
    }

    /// A keyless record whose partition sent a batch out moves the sticky partition on.
    fn unstick(&mut self, msg: &Message, receipt: &Result<Option<AppendReceipt>, LogError>) {
        if msg.key.is_none() && matches!(receipt, Ok(Some(_))) {
            self.sticky = self.topic.next_round_robin();
        }
    }
}
