//! The server's keyspace: Redis keys mapped to cache namespaces by key prefix, values tagged
//! with their Redis type so a command on the wrong type gets `WRONGTYPE`.
//!
//! A stored value is one tag byte then the payload: `s` a string (the bytes), `h` a hash
//! (postcard of its field/value pairs).

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use foldhash::fast::FixedState;

use crate::cache::{Cache, Namespace};
use crate::log::Log;
use crate::pubsub::PubSub;
use crate::server::notify::Notifier;

const STRING: u8 = b's';
const HASH: u8 = b'h';

/// The reply to a command on a key holding another type.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// A key-prefix → namespace rule.
#[derive(Debug, Clone)]
pub struct PrefixRule {
    /// Keys starting with this go to `namespace`.
    pub prefix: String,
    /// The namespace.
    pub namespace: Namespace,
}

/// What a key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string.
    Str(Bytes),
    /// A hash: field/value pairs in insertion order.
    Hash(Vec<(Bytes, Bytes)>),
}

impl Value {
    /// Redis `TYPE` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Str(_) => "string",
            Self::Hash(_) => "hash",
        }
    }
}

/// Encodes a string value.
pub fn encode_str(v: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(v.len() + 1);
    b.put_u8(STRING);
    b.put_slice(v);
    b.freeze()
}

/// Encodes a hash value.
pub fn encode_hash(fields: &[(Bytes, Bytes)]) -> Bytes {
    let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|(f, v)| (&f[..], &v[..])).collect();
    let mut out = vec![HASH];
    out.extend(postcard::to_allocvec(&pairs).unwrap_or_default());
    Bytes::from(out)
}

/// Decodes a stored value; `None` for bytes no command wrote (treated as absent).
pub fn decode(raw: &Bytes) -> Option<Value> {
    match *raw.first()? {
        STRING => Some(Value::Str(raw.slice(1..))),
        HASH => {
            let pairs: Vec<(&[u8], &[u8])> = postcard::from_bytes(&raw[1..]).ok()?;
            Some(Value::Hash(
                pairs
                    .into_iter()
                    .map(|(f, v)| (Bytes::copy_from_slice(f), Bytes::copy_from_slice(v)))
                    .collect(),
            ))
        }
        _ => None,
    }
}

/// A stored value's string bytes, in place; `None` when it holds another type.
pub fn str_bytes(raw: &[u8]) -> Option<&[u8]> {
    match raw.split_first() {
        Some((&STRING, v)) => Some(v),
        _ => None,
    }
}

/// The keyspace shared by every connection.
#[derive(Debug, Clone)]
pub struct Db {
    /// The cache holding the keys.
    pub cache: Cache,
    /// Key-prefix rules, longest prefix first.
    pub rules: Arc<Vec<PrefixRule>>,
    /// Pub/sub.
    pub pubsub: PubSub,
    /// Keyspace notifications.
    pub notifier: Notifier,
    /// Which keys are streams.
    pub streams: StreamKeys,
}

/// Which keys are streams (log topics `stream.<escaped key>`), as the string and hash
/// commands ask: on a stream they answer `WRONGTYPE`, and `SET` replaces it, as in Redis.
///
/// A counter per key hash (4,096 slots, raised before a stream is created and lowered after
/// one is deleted) answers most keys without the topic lookup, which builds the escaped name
/// and takes the log's lock: a SET next to a few streams pays one hash and one load. A slot
/// never counts fewer streams than it holds; a create that lost a race counts one too many,
/// which costs only the lookup.
#[derive(Debug, Clone)]
pub struct StreamKeys {
    log: Log,
    counts: Arc<[AtomicU32]>,
}

const FILTER_SLOTS: usize = 4096;

impl StreamKeys {
    /// The stream keys of `log`'s topics.
    pub fn new(log: Log) -> Self {
        let keys = Self {
            log,
            counts: (0..FILTER_SLOTS).map(|_| AtomicU32::new(0)).collect(),
        };
        for name in keys.log.topics() {
            if let Some(key) = name
                .strip_prefix("stream.")
                .and_then(crate::server::streams::unescape)
            {
                keys.creating(&key);
            }
        }
        keys
    }

    /// The filter slot of `key`.
    fn slot(key: &[u8]) -> usize {
        FixedState::with_seed(0x5157_4950_5553_5452).hash_one(key) as usize % FILTER_SLOTS
    }

    /// Whether `key` is a stream.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.counts[Self::slot(key)].load(Ordering::Acquire) != 0
            && self
                .log
                .topic(&crate::server::streams::topic_name(key))
                .is_ok()
    }

    /// Called before the stream `key`'s topic is created, so that
    /// [`contains`](Self::contains) looks for it.
    pub fn creating(&self, key: &[u8]) {
        self.counts[Self::slot(key)].fetch_add(1, Ordering::AcqRel);
    }

    /// Called after the stream `key`'s topic was deleted (only then: a slot must not count
    /// fewer streams than it holds).
    pub fn deleted(&self, key: &[u8]) {
        // Never below zero, whatever a caller does.
        let _ =
            self.counts[Self::slot(key)]
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

impl Db {
    /// The namespace a key belongs to.
    pub fn ns(&self, key: &[u8]) -> &Namespace {
        self.rules
            .iter()
            .find(|r| key.starts_with(r.prefix.as_bytes()))
            .map_or_else(|| self.cache.default_namespace(), |r| &r.namespace)
    }

    /// Every namespace keys can live in.
    pub fn namespaces(&self) -> Vec<Namespace> {
        let mut all = vec![self.cache.default_namespace().clone()];
        for r in self.rules.iter() {
            if !all.iter().any(|n| n.name() == r.namespace.name()) {
                all.push(r.namespace.clone());
            }
        }
        all
    }

    /// Whether `key` is routed to `ns` (a key in the wrong namespace is invisible).
    pub fn owns(&self, ns: &Namespace, key: &[u8]) -> bool {
        self.ns(key).name() == ns.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LogConfig, TopicConfig};
    use crate::server::streams::topic_name;

    #[test]
    fn stream_keys_know_the_streams_of_the_log_and_the_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let topic = |key: &[u8]| {
            log.create_topic(&topic_name(key), TopicConfig::default())
                .unwrap();
        };
        topic(b"old key");
        let streams = StreamKeys::new(log.clone());
        assert!(streams.contains(b"old key"), "found at start");
        assert!(!streams.contains(b"other"));
        // A key whose filter slot counts a stream is still looked up: not a stream.
        let twin = (0u32..)
            .map(|i| format!("twin{i}"))
            .find(|k| StreamKeys::slot(k.as_bytes()) == StreamKeys::slot(b"old key"))
            .unwrap();
        assert!(!streams.contains(twin.as_bytes()), "{twin}");
        streams.creating(b"new");
        assert!(!streams.contains(b"new"), "no topic yet");
        topic(b"new");
        assert!(streams.contains(b"new"));
        log.delete_topic(&topic_name(b"new")).unwrap();
        assert!(!streams.contains(b"new"), "deleted");
        // Deleted streams empty their slots again: no lookup for the next key there.
        streams.deleted(b"new");
        let slot = StreamKeys::slot(b"new");
        assert_eq!(streams.counts[slot].load(Ordering::Relaxed), 0);
        streams.deleted(b"new");
        assert_eq!(
            streams.counts[slot].load(Ordering::Relaxed),
            0,
            "not below zero"
        );
        assert!(streams.contains(b"old key"));
    }
}
