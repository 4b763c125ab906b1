//! Consumer groups: named readers whose committed offsets survive restarts, with lag.

use std::collections::BTreeMap;
use std::path::PathBuf;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::record::Record;
use std::sync::{Arc, Weak};

use super::{Log, LogInner, meta};
use crate::error::LogError;

/// How far a group is behind in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionLag {
    /// The partition.
    pub partition: u32,
    /// The group's committed offset (the next offset it will read), if any.
    pub committed: Option<u64>,
    /// The partition's end offset.
    pub end: u64,
    /// Records between the committed offset (or the partition's start) and the end.
    pub lag: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Offsets {
    committed: BTreeMap<(String, u32), u64>,
}

/// A consumer group: reads topics from its own positions and commits them durably. Commits are
/// fsynced before `commit` returns, so after a crash the group resumes from its last commit
/// (at-least-once); a commit past buffered records of an `Interval`/`Never` topic fsyncs them
/// first, so a commit never points past what a crash can take back.
///
/// ```
/// # fn main() -> Result<(), quipu::Error> {
/// # let dir = tempfile::tempdir().map_err(|e| quipu::Error::Io { path: ".".into(), source: e })?;
/// use quipu::{Message, Quipu};
///
/// let db = Quipu::open(dir.path())?;
/// let orders = db.log().topic_or_create("orders")?;
/// orders.append(Message::new("order 1"))?;
/// let group = db.log().consumer_group("billing")?;
/// let batch = group.poll("orders", 100)?;
/// assert_eq!(batch.len(), 1);
/// group.commit_positions()?;
/// assert_eq!(group.lag("orders")?[0].lag, 0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ConsumerGroup {
    name: String,
    path: PathBuf,
    /// Weak: the log keeps its groups, so a strong handle here would keep the log alive forever.
    log: Weak<LogInner>,
    committed: Mutex<Offsets>,
    positions: Mutex<BTreeMap<(String, u32), u64>>,
}

impl ConsumerGroup {
    pub(crate) fn open(log: &Log, name: &str, path: PathBuf) -> Result<Self, LogError> {
        let committed = meta::read(log.inner.ctx.storage.as_ref(), &path)?.unwrap_or_default();
        Ok(Self {
            name: name.to_owned(),
            path,
            log: Arc::downgrade(&log.inner),
            committed: Mutex::new(committed),
            positions: Mutex::new(BTreeMap::new()),
        })
    }

    fn log(&self) -> Result<Log, LogError> {
        self.log
            .upgrade()
            .map(|inner| Log { inner })
            .ok_or(LogError::Closed)
    }

    /// The group's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Durably records that the group has processed `topic`/`partition` up to, not including,
    /// `offset`.
    ///
    /// # Errors
    /// [`LogError::TopicNotFound`], [`LogError::PartitionNotFound`],
    /// [`LogError::OffsetOutOfRange`] past the end, [`LogError::Io`].
    pub fn commit(&self, topic: &str, partition: u32, offset: u64) -> Result<(), LogError> {
        self.commit_all(&[(topic, partition, offset)])
    }

    /// Commits several offsets in one durable write.
    ///
    /// # Errors
    /// As [`commit`](Self::commit); nothing is committed if any entry is invalid.
    pub fn commit_all(&self, entries: &[(&str, u32, u64)]) -> Result<(), LogError> {
        for &(topic, partition, offset) in entries {
            let p = self.log()?.topic(topic)?;
            let part = p.partition(partition)?;
            let end = part.end_offset();
            if offset > end {
                return Err(LogError::OffsetOutOfRange {
                    requested: offset,
                    start: part.start_offset(),
                    end,
                });
            }
            // A commit must never point past what a crash can take back (buffered records of
            // `Interval`/`Never` topics): the group would skip what is appended after a restart.
            if offset > part.durable_offset() {
                part.flush()?;
            }
        }
        let mut committed = self.committed.lock();
        let before = std::mem::take(&mut committed.committed);
        let mut next = before.clone();
        for &(topic, partition, offset) in entries {
            next.insert((topic.to_owned(), partition), offset);
        }
        committed.committed = next;
        let log = self.log()?;
        let written = meta::write(log.inner.ctx.storage.as_ref(), &self.path, &*committed);
        if written.is_err() {
            committed.committed = before;
        }
        written
    }

    /// The committed offset of `topic`/`partition`, if any.
    #[must_use]
    pub fn committed(&self, topic: &str, partition: u32) -> Option<u64> {
        self.committed
            .lock()
            .committed
            .get(&(topic.to_owned(), partition))
            .copied()
    }

    /// Lag per partition of `topic`.
    ///
    /// # Errors
    /// [`LogError::TopicNotFound`].
    pub fn lag(&self, topic: &str) -> Result<Vec<PartitionLag>, LogError> {
        let t = self.log()?.topic(topic)?;
        Ok(t.partitions()
            .iter()
            .map(|p| {
                let committed = self.committed(topic, p.id());
                let end = p.end_offset();
                let from = committed
                    .unwrap_or_else(|| p.start_offset())
                    .max(p.start_offset());
                PartitionLag {
                    partition: p.id(),
                    committed,
                    end,
                    lag: end.saturating_sub(from),
                }
            })
            .collect())
    }

    /// Reads up to `max_records` per partition of `topic` from the group's positions (its
    /// committed offsets at first, the partition start if none) and advances the positions.
    /// Returns `(partition, record)` pairs. Call [`commit_positions`](Self::commit_positions)
    /// once they are processed.
    ///
    /// # Errors
    /// [`LogError::TopicNotFound`], and as [`Partition::read`](crate::Partition::read).
    pub fn poll(&self, topic: &str, max_records: usize) -> Result<Vec<(u32, Record)>, LogError> {
        let t = self.log()?.topic(topic)?;
        let mut positions = self.positions.lock();
        let mut out = Vec::new();
        for p in t.partitions() {
            let key = (topic.to_owned(), p.id());
            let start = p.start_offset();
            // Clamped into the partition: retention may have passed a position, and a crash may
            // have taken back buffered records a commit already counted.
            let from = positions
                .get(&key)
                .copied()
                .or_else(|| self.committed(topic, p.id()))
                .unwrap_or(start)
                .clamp(start, p.end_offset().max(start));
            let records = p.read(from, max_records)?;
            let next = records.last().map_or(from, |r| r.offset + 1);
            positions.insert(key, next);
            out.extend(records.into_iter().map(|r| (p.id(), r)));
        }
        Ok(out)
    }

    /// Commits every position advanced by [`poll`](Self::poll).
    ///
    /// # Errors
    /// As [`commit_all`](Self::commit_all).
    pub fn commit_positions(&self) -> Result<(), LogError> {
        let positions = self.positions.lock().clone();
        let entries: Vec<(&str, u32, u64)> = positions
            .iter()
            .map(|((t, p), o)| (t.as_str(), *p, *o))
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        self.commit_all(&entries)
    }

    /// Moves the group's read position (not its committed offset).
    pub fn seek(&self, topic: &str, partition: u32, offset: u64) {
        self.positions
            .lock()
            .insert((topic.to_owned(), partition), offset);
    }
}
