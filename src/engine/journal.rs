//! The write-behind journal on the log: one single-partition topic per namespace
//! (`_cache.<namespace>`, fsynced on every append), consumed by the `_cache-flush` group whose
//! committed offset marks what has reached the store. Segments wholly before that offset are
//! deleted after each commit.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::cache::Journal;
use crate::config::{Durability, TopicConfig};
use crate::error::Error;
use crate::log::{ConsumerGroup, Log, Message, Topic};
use crate::store::StoreOp;

const GROUP: &str = "_cache-flush";
/// Journal segments are small so that applied ones can be deleted soon.
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// Topic that journals `namespace`'s pending writes.
pub(crate) fn topic_name(namespace: &str) -> String {
    format!("_cache.{namespace}")
}

#[derive(Debug)]
pub(crate) struct LogJournal {
    log: Log,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    group: Arc<ConsumerGroup>,
}

impl LogJournal {
    pub(crate) fn new(log: &Log) -> Result<Self, Error> {
        Ok(Self {
            log: log.clone(),
            topics: Mutex::new(HashMap::new()),
            group: log.consumer_group(GROUP)?,
        })
    }

    fn topic(&self, namespace: &str) -> Result<Arc<Topic>, Error> {
        let mut topics = self.topics.lock();
        if let Some(t) = topics.get(namespace) {
            return Ok(Arc::clone(t));
        }
        let name = topic_name(namespace);
        let topic = match self.log.topic(&name) {
            Ok(t) => t,
            Err(_) => self.log.create_topic(
                &name,
                TopicConfig::default()
                    .with_partitions(1)
                    .with_durability(Durability::Always)
                    .with_segment_bytes(SEGMENT_BYTES),
            )?,
        };
        topics.insert(namespace.to_owned(), Arc::clone(&topic));
        Ok(topic)
    }
}

impl Journal for LogJournal {
    fn append(&self, namespace: &str, op: &StoreOp) -> Result<(), Error> {
        let msg = match op {
            StoreOp::Put { key, value, .. } => Message::new(value.clone()).with_key(key.clone()),
            StoreOp::Delete { key, .. } => Message::tombstone(key.clone()),
        };
        self.topic(namespace)?.append(msg)?;
        Ok(())
    }

    fn pending(&self, namespace: &str, max: usize) -> Result<(Vec<StoreOp>, u64), Error> {
        let topic = self.topic(namespace)?;
        let from = self.group.committed(topic.name(), 0).unwrap_or(0);
        let end = topic.end_offsets().first().copied().unwrap_or(0);
        if from >= end {
            return Ok((Vec::new(), from));
        }
        let records = topic.read(0, from, max)?;
        let next = records.last().map_or(from, |r| r.offset + 1);
        let ops = records
            .into_iter()
            .map(|r| {
                let key = r.key.unwrap_or_else(Bytes::new);
                match r.value {
                    Some(value) => StoreOp::Put {
                        table: namespace.to_owned(),
                        key,
                        value,
                    },
                    None => StoreOp::Delete {
                        table: namespace.to_owned(),
                        key,
                    },
                }
            })
            .collect();
        Ok((ops, next))
    }

    fn mark_done(&self, namespace: &str, position: u64) -> Result<(), Error> {
        let topic = self.topic(namespace)?;
        self.group.commit(topic.name(), 0, position)?;
        // Segments the store has fully applied are no longer needed.
        topic.delete_records_before(0, position)?;
        Ok(())
    }
}
