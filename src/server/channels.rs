//! Durable channels, the publish path both edges share (RESP `PUBLISH` and HTTP
//! `POST /publish`): a message on a channel matching one of `durable_channels` is appended to
//! the channel's log topic first (`channel.<escaped name>`, one partition,
//! `Durability::Always`) and only then published live, carrying the record's offset. SSE and
//! long-polling clients resume from that topic; other channels are pub/sub only.

use std::sync::Arc;

use bytes::Bytes;

use crate::config::{Durability, TopicConfig};
use crate::error::{Error, LogError};
use crate::glob::glob_match;
use crate::log::{Log, Message, Topic};
use crate::pubsub::{PubSub, PublishOptions, Published};

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Receipt {
    /// Subscriber queues the message reached.
    pub receivers: usize,
    /// Its log offset, for a durable channel.
    pub offset: Option<u64>,
}

/// The publish path of the server: pub/sub hub, log, and which channels are durable.
#[derive(Debug, Clone)]
pub(crate) struct Channels {
    log: Log,
    pubsub: PubSub,
    durable: Arc<[String]>,
    /// Woken when a durable channel's topic is created, for the readers waiting for it.
    created: Arc<tokio::sync::Notify>,
}

/// What a reader finds for a channel.
pub(crate) enum DurableTopic {
    /// Not a durable channel: live messages only.
    NotDurable,
    /// Durable, but nothing was published to it yet.
    NotYet,
    /// Durable, with its topic.
    Topic(Arc<Topic>),
}

/// How often a reader of a durable channel without a topic yet looks for it besides being
/// woken by the publish that creates it.
const TOPIC_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The topic of channel `channel`: `channel.` then the name with bytes outside
/// `[A-Za-z0-9.-]` written as `_xx` (hex), so every channel name maps to a valid, distinct
/// topic name.
pub(crate) fn topic_name(channel: &str) -> String {
    let mut s = String::with_capacity(8 + channel.len());
    s.push_str("channel.");
    for &b in channel.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("_{b:02x}"));
        }
    }
    s
}

impl Channels {
    /// A publish path over `log` and `pubsub`; channels matching a glob of `durable` are
    /// logged first.
    pub(crate) fn new(log: Log, pubsub: PubSub, durable: &[String]) -> Self {
        Self {
            log,
            pubsub,
            durable: durable.into(),
            created: Arc::default(),
        }
    }

    /// The pub/sub hub.
    pub(crate) fn pubsub(&self) -> &PubSub {
        &self.pubsub
    }

    /// Whether messages on `channel` are logged before they are published.
    pub(crate) fn is_durable(&self, channel: &str) -> bool {
        self.durable
            .iter()
            .any(|g| glob_match(g.as_bytes(), channel.as_bytes()))
    }

    /// The log topic of a durable channel, created on first use; `None` for a channel that is
    /// not durable.
    ///
    /// # Errors
    /// A channel name too long for a topic name; log errors creating the topic.
    pub(crate) fn topic(&self, channel: &str) -> Result<Option<Arc<Topic>>, Error> {
        if !self.is_durable(channel) {
            return Ok(None);
        }
        let name = topic_name(channel);
        if let Ok(t) = self.log.topic(&name) {
            return Ok(Some(t));
        }
        let config = TopicConfig::default()
            .with_partitions(1)
            .with_durability(Durability::Always);
        match self.log.create_topic(&name, config) {
            Ok(t) => {
                self.created.notify_waiters();
                Ok(Some(t))
            }
            // Created by another publisher in between.
            Err(Error::Log(LogError::TopicExists(_))) => Ok(Some(self.log.topic(&name)?)),
            Err(e) => Err(e),
        }
    }

    /// For readers (SSE, long polling): the log topic of a durable channel if it exists.
    /// Readers never create one: a topic is a directory and a sync thread, and a reader may
    /// name any channel the durable patterns match. The first publish creates it.
    ///
    /// # Errors
    /// A channel whose topic name would be invalid (too long): no publish can create it.
    pub(crate) fn existing_topic(&self, channel: &str) -> Result<DurableTopic, Error> {
        if !self.is_durable(channel) {
            return Ok(DurableTopic::NotDurable);
        }
        let name = topic_name(channel);
        crate::log::validate_name(&name)?;
        Ok(match self.log.topic(&name) {
            Ok(t) => DurableTopic::Topic(t),
            Err(_) => DurableTopic::NotYet,
        })
    }

    /// Waits until the durable channel's topic exists: woken when a publish creates it, and
    /// looking again every `TOPIC_RECHECK` (the application may create it through the log);
    /// `None` at `deadline` (if any).
    pub(crate) async fn wait_topic(
        &self,
        channel: &str,
        deadline: Option<tokio::time::Instant>,
    ) -> Option<Arc<Topic>> {
        loop {
            let created = self.created.notified();
            tokio::pin!(created);
            // Registered before the check: a creation right after it still wakes us.
            created.as_mut().enable();
            match self.existing_topic(channel) {
                Ok(DurableTopic::Topic(t)) => return Some(t),
                Ok(DurableTopic::NotYet) => {}
                Ok(DurableTopic::NotDurable) | Err(_) => return None,
            }
            let now = tokio::time::Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return None;
            }
            let recheck = now + TOPIC_RECHECK;
            tokio::select! {
                () = created => {}
                () = tokio::time::sleep_until(deadline.map_or(recheck, |d| d.min(recheck))) => {}
            }
        }
    }

    fn live(&self, channel: &str, payload: Bytes, offset: Option<u64>) -> Receipt {
        let options = PublishOptions {
            offset,
            ..PublishOptions::default()
        };
        // Server subscriptions never use `SlowConsumer::Block`, so this never waits.
        let receivers = match self.pubsub.publish_with(channel, payload, &options) {
            Published::Delivered(n) => n,
            Published::Duplicate => 0,
        };
        Receipt { receivers, offset }
    }

    /// Publishes from async code: a durable channel's message is fsynced to its topic first
    /// (concurrent publishers share fsyncs), then published live.
    ///
    /// # Errors
    /// As [`topic`](Self::topic), and a failed append (nothing is published then).
    pub(crate) async fn publish(&self, channel: &str, payload: Bytes) -> Result<Receipt, Error> {
        let Some(topic) = self.topic(channel)? else {
            return Ok(self.live(channel, payload, None));
        };
        // Run in its own task: a caller that goes away (an HTTP client hanging up) must not
        // leave a logged message unpublished.
        let this = self.clone();
        let channel = channel.to_owned();
        let task = tokio::spawn(async move {
            // One partition: the channel's order is the log's.
            let partition = Arc::clone(topic.partition(0)?);
            let msgs = [Message::new(payload.clone())];
            let r = super::io::append(&partition, &msgs).await?;
            Ok::<_, Error>(this.live(&channel, payload, Some(r.offset)))
        });
        task.await.map_err(|e| Error::Io {
            path: std::path::PathBuf::new(),
            source: std::io::Error::other(e),
        })?
    }

    /// Publishes from a command that cannot await (RESP `PUBLISH`): on the multi-threaded
    /// runtime the wait for the fsync moves the worker's other tasks elsewhere first.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub(crate) fn publish_blocking(&self, channel: &str, payload: Bytes) -> Result<Receipt, Error> {
        let Some(topic) = self.topic(channel)? else {
            return Ok(self.live(channel, payload, None));
        };
        let append = || topic.append(Message::new(payload.clone()));
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let r = if multi_thread {
            tokio::task::block_in_place(append)?
        } else {
            append()?
        };
        Ok(self.live(channel, payload, Some(r.offset)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_valid_and_distinct() {
        assert_eq!(
            topic_name("delivery.42.position"),
            "channel.delivery.42.position"
        );
        assert_eq!(topic_name("a b"), "channel.a_20b");
        assert_ne!(topic_name("a_20b"), topic_name("a b"));
        assert_eq!(topic_name("ñ"), "channel._c3_b1");
    }
}
