//! The server's keyspace: Redis keys mapped to cache namespaces by key prefix, values tagged
//! with their Redis type so a command on the wrong type gets `WRONGTYPE`.
//!
//! A stored value is one tag byte then the payload: `s` a string (the bytes), `h` a hash
//! (postcard of its field/value pairs).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{BufMut, Bytes, BytesMut};

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
#[derive(Debug, Clone)]
pub struct StreamKeys {
    log: Log,
    /// Set before the first stream is created (or at start when one exists), never cleared:
    /// until then no string or hash command pays for a topic lookup.
    any: Arc<AtomicBool>,
}

impl StreamKeys {
    /// The stream keys of `log`'s topics.
    pub fn new(log: Log) -> Self {
        let any = log.topics().iter().any(|t| t.starts_with("stream."));
        Self {
            log,
            any: Arc::new(AtomicBool::new(any)),
        }
    }

    /// Whether `key` is a stream.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.any.load(Ordering::Acquire)
            && self
                .log
                .topic(&crate::server::streams::topic_name(key))
                .is_ok()
    }

    /// Called before a stream's topic is created, so that [`contains`](Self::contains) looks.
    pub fn creating(&self) {
        self.any.store(true, Ordering::Release);
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
