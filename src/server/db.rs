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

/// Encodes a string value.
pub fn encode_str(v: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(v.len() + 1);
    b.put_u8(STRING);
    b.put_slice(v);
    b.freeze()
}

/// Encodes a hash from its fields and values, in order: the tag, then postcard's
/// `Vec<(&[u8], &[u8])>` (a varint count, then each field and value as a varint length and
/// its bytes), which [`hash_fields`] reads back without copying.
pub fn encode_hash(fields: &[(&[u8], &[u8])]) -> Bytes {
    // Serializing byte slices into a Vec cannot fail.
    postcard::to_extend(fields, vec![HASH]).map_or_else(|_| Bytes::new(), Bytes::from)
}

/// The fields and values of a stored hash, borrowed from its bytes (one allocation for the
/// list, none per field); `None` when `raw` holds a string or bytes no command wrote.
pub fn hash_fields(raw: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    match raw.split_first() {
        Some((&HASH, rest)) => postcard::from_bytes(rest).ok(),
        _ => None,
    }
}

/// A varint as postcard writes lengths (LEB128, at most 10 bytes) at the front of `b`: its
/// value and how many bytes it took.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().take(10).enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One length-prefixed byte string at the front of `b`: it and the bytes after it.
fn prefixed(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, used) = varint(b)?;
    let rest = &b[used..];
    let len = usize::try_from(len).ok().filter(|&n| n <= rest.len())?;
    Some(rest.split_at(len))
}

/// The number of fields of a stored hash, from its first bytes: O(1).
pub fn hash_len(raw: &[u8]) -> Option<u64> {
    match raw.split_first() {
        Some((&HASH, rest)) => varint(rest).map(|(n, _)| n),
        _ => None,
    }
}

/// The value of `field` in a stored hash, found by a scan of its bytes without allocating:
/// `Some(None)` when the hash lacks it, `None` when `raw` is not a hash.
pub fn hash_get<'a>(raw: &'a [u8], field: &[u8]) -> Option<Option<&'a [u8]>> {
    let (_, value) = hash_find(raw, field)?;
    // The span starts at the value's length prefix.
    Some(value.and_then(|(start, _)| prefixed(&raw[start..]).map(|(v, _)| v)))
}

/// Where a stored hash's count ends, and the span of `field`'s value (its length prefix
/// included) if it has one; `None` when `raw` is not a hash.
fn hash_find(raw: &[u8], field: &[u8]) -> Option<(usize, Option<(usize, usize)>)> {
    let (&HASH, body) = raw.split_first()? else {
        return None;
    };
    let (n, used) = varint(body)?;
    let header = 1 + used;
    let mut rest = &raw[header..];
    for _ in 0..n {
        let (f, after) = prefixed(rest)?;
        let value_at = raw.len() - after.len();
        let (_, next) = prefixed(after)?;
        if f == field {
            return Some((header, Some((value_at, raw.len() - next.len()))));
        }
        rest = next;
    }
    Some((header, None))
}

/// A stored hash with `field` set to `value` (added last when new), copied around the one
/// change; `None` when `raw` is not a hash. The `bool` says whether the field is new.
pub fn hash_set(raw: &[u8], field: &[u8], value: &[u8]) -> Option<(Bytes, bool)> {
    let (header, found) = hash_find(raw, field)?;
    let mut out = Vec::with_capacity(raw.len() + field.len() + value.len() + 20);
    match found {
        Some((start, end)) => {
            out.extend_from_slice(&raw[..start]);
            put_varint(&mut out, value.len() as u64);
            out.extend_from_slice(value);
            out.extend_from_slice(&raw[end..]);
            Some((Bytes::from(out), false))
        }
        None => {
            let n = hash_len(raw)?;
            out.push(HASH);
            put_varint(&mut out, n + 1);
            out.extend_from_slice(&raw[header..]);
            put_varint(&mut out, field.len() as u64);
            out.extend_from_slice(field);
            put_varint(&mut out, value.len() as u64);
            out.extend_from_slice(value);
            Some((Bytes::from(out), true))
        }
    }
}

/// `TYPE`'s name for a stored value, from its tag alone (`None`: bytes no command wrote).
pub fn stored_type(raw: &[u8]) -> Option<&'static str> {
    match *raw.first()? {
        STRING => Some("string"),
        HASH => Some("hash"),
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

    /// A hash reads back as it was written, from the same bytes as the earlier encoder made
    /// (snapshots of critical namespaces hold them), and nothing else reads as a hash.
    #[test]
    fn hashes_read_back_without_copies_from_the_stored_layout() {
        let fields: Vec<(&[u8], &[u8])> =
            vec![(b"user", b"7"), (b"", b""), (b"cart", &[0xff; 300])];
        let raw = encode_hash(&fields);
        let mut earlier = vec![HASH];
        earlier.extend(postcard::to_allocvec(&fields).unwrap());
        assert_eq!(&raw[..], &earlier[..]);
        assert_eq!(hash_fields(&raw), Some(fields));
        assert_eq!(stored_type(&raw), Some("hash"));
        let s = encode_str(b"v");
        assert_eq!(hash_fields(&s), None);
        assert_eq!(stored_type(&s), Some("string"));
        assert_eq!(str_bytes(&raw), None);
        assert_eq!(hash_fields(&raw[..raw.len() - 1]), None, "truncated");
        assert_eq!(hash_fields(b""), None);
        assert_eq!(stored_type(b"\x09"), None);
    }

    /// `hash_set` copies around one change and `hash_get`/`hash_len` scan without decoding:
    /// after any sequence of sets the bytes are what `encode_hash` makes of the same fields.
    #[test]
    fn in_place_hash_sets_and_scans_match_the_whole_hash_encoder() {
        let mut model: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut raw = encode_hash(&[(b"f0", b"")]);
        model.push((b"f0".to_vec(), Vec::new()));
        let mut x = 7u64;
        for step in 0..600 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let field = format!("f{}", x % 150).into_bytes();
            // Values across the 1- and 2-byte varint lengths.
            let value = vec![b'v'; (x >> 20) as usize % 200];
            let (next, new) = hash_set(&raw, &field, &value).unwrap();
            match model.iter_mut().find(|(f, _)| *f == field) {
                Some(slot) => {
                    assert!(!new, "step {step}");
                    slot.1 = value;
                }
                None => {
                    assert!(new, "step {step}");
                    model.push((field, value));
                }
            }
            raw = next;
            let pairs: Vec<(&[u8], &[u8])> = model.iter().map(|(f, v)| (&f[..], &v[..])).collect();
            assert_eq!(raw, encode_hash(&pairs), "step {step}");
        }
        assert_eq!(hash_len(&raw), Some(model.len() as u64));
        for (f, v) in &model {
            assert_eq!(hash_get(&raw, f), Some(Some(&v[..])));
        }
        assert_eq!(hash_get(&raw, b"nope"), Some(None));
        let s = encode_str(b"v");
        assert_eq!((hash_len(&s), hash_get(&s, b"f0")), (None, None));
        assert!(hash_set(&s, b"f", b"v").is_none());
        // A truncated hash: the scan stops and finds nothing past the cut.
        assert_eq!(hash_get(&raw[..10], b"f149"), None);
    }

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
