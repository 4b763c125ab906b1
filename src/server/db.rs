//! The server's keyspace: Redis keys mapped to cache namespaces by key prefix, values tagged
//! with their Redis type so a command on the wrong type gets `WRONGTYPE`.
//!
//! A stored value is one tag byte then the payload: `s` a string (the bytes), `h` a hash of up
//! to 128 fields (postcard of its field/value pairs), `H` a larger hash (the same pairs after
//! an index sorted by field name; see [`encode_hash`]).

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
const INDEXED_HASH: u8 = b'H';

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

/// The most fields a hash keeps in the plain layout, whose reads scan it: past it the indexed
/// layout finds a field by binary search. (`OBJECT ENCODING` answers by Redis's own rule.)
const MAX_PLAIN_FIELDS: usize = 128;

/// Encodes a hash from its fields and values, in order. Up to [`MAX_PLAIN_FIELDS`] fields, the
/// plain layout: the tag `h`, then postcard's `Vec<(&[u8], &[u8])>` (a varint count, then each
/// field and value as a varint length and its bytes). Past that, the indexed layout: the tag
/// `H`, the count as a little-endian `u32`, one `u32` offset per field into the entries that
/// follow, in the order of the field names, then the entries as in the plain layout, in
/// order. [`hash_fields`] reads either back without copying.
pub fn encode_hash(fields: &[(&[u8], &[u8])]) -> Bytes {
    if fields.len() > MAX_PLAIN_FIELDS
        && let Some(raw) = encode_indexed(fields)
    {
        return raw;
    }
    encode_hash_plain(fields)
}

/// The indexed layout of `fields`; `None` when a count or an offset would not fit a `u32`.
fn encode_indexed(fields: &[(&[u8], &[u8])]) -> Option<Bytes> {
    let n = u32::try_from(fields.len()).ok()?;
    let mut entries = Vec::new();
    let mut offsets = Vec::with_capacity(fields.len());
    for (f, v) in fields {
        offsets.push(u32::try_from(entries.len()).ok()?);
        put_entry(&mut entries, f, v);
    }
    u32::try_from(entries.len()).ok()?;
    let mut order: Vec<usize> = (0..fields.len()).collect();
    order.sort_unstable_by(|&a, &b| fields[a].0.cmp(fields[b].0));
    let mut out = Vec::with_capacity(5 + 4 * fields.len() + entries.len());
    out.push(INDEXED_HASH);
    out.extend_from_slice(&n.to_le_bytes());
    for i in order {
        out.extend_from_slice(&offsets[i].to_le_bytes());
    }
    out.extend_from_slice(&entries);
    Some(Bytes::from(out))
}

/// A field and its value as both layouts keep them: each a varint length and its bytes.
fn put_entry(out: &mut Vec<u8>, field: &[u8], value: &[u8]) {
    put_varint(out, field.len() as u64);
    out.extend_from_slice(field);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// Why [`Indexed::set`] made no hash.
enum SetError {
    /// The stored bytes do not parse.
    Damaged,
    /// The result would outgrow the layout's `u32` offsets.
    TooLarge,
}

/// One field of an indexed hash, borrowed.
struct Entry<'a> {
    field: &'a [u8],
    value: &'a [u8],
    /// Where the value is within the entries, its length prefix included.
    value_span: (usize, usize),
}

/// A stored hash in the indexed layout, borrowed.
struct Indexed<'a> {
    /// The offsets, 4 bytes each, in field-name order.
    index: &'a [u8],
    /// The entries.
    entries: &'a [u8],
}

impl<'a> Indexed<'a> {
    fn of(raw: &'a [u8]) -> Option<Self> {
        let (&INDEXED_HASH, body) = raw.split_first()? else {
            return None;
        };
        let n = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
        let entries_at = n.checked_mul(4)?.checked_add(4)?;
        Some(Self {
            index: body.get(4..entries_at)?,
            entries: &body[entries_at..],
        })
    }

    fn len(&self) -> usize {
        self.index.len() / 4
    }

    fn offset(&self, i: usize) -> usize {
        let at = &self.index[4 * i..4 * i + 4];
        u32::from_le_bytes([at[0], at[1], at[2], at[3]]) as usize
    }

    /// The `i`-th entry in name order.
    fn entry(&self, i: usize) -> Option<Entry<'a>> {
        let at = self.offset(i);
        let (field, after) = prefixed(self.entries.get(at..)?)?;
        let value_at = self.entries.len() - after.len();
        let (value, next) = prefixed(after)?;
        Some(Entry {
            field,
            value,
            value_span: (value_at, self.entries.len() - next.len()),
        })
    }

    /// Where `field` is in name order (`Ok`), or where it would go (`Err`); `None` for bytes
    /// that do not parse.
    fn search(&self, field: &[u8]) -> Option<Result<usize, usize>> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid)?.field.cmp(field) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(Ok(mid)),
            }
        }
        Some(Err(lo))
    }

    /// The fields and values in the order they were added.
    fn fields(&self) -> Option<Vec<(&'a [u8], &'a [u8])>> {
        let mut rest = self.entries;
        let mut out = Vec::with_capacity(self.len());
        for _ in 0..self.len() {
            let (f, after) = prefixed(rest)?;
            let (v, next) = prefixed(after)?;
            out.push((f, v));
            rest = next;
        }
        rest.is_empty().then_some(out)
    }

    /// This hash with `field` set to `value` (a new field added last), copied around the
    /// change, and whether the field is new.
    fn set(&self, field: &[u8], value: &[u8]) -> Result<(Bytes, bool), SetError> {
        let found = self.search(field).ok_or(SetError::Damaged)?;
        let mut entry = Vec::with_capacity(field.len() + value.len() + 20);
        let (n, index_change, entries) = match found {
            Ok(i) => {
                let (start, end) = self.entry(i).ok_or(SetError::Damaged)?.value_span;
                put_varint(&mut entry, value.len() as u64);
                entry.extend_from_slice(value);
                (self.len(), None, (start, end))
            }
            Err(i) => {
                put_entry(&mut entry, field, value);
                let end = self.entries.len();
                (self.len() + 1, Some(i), (end, end))
            }
        };
        let (start, end) = entries;
        let grown = self.entries.len() - (end - start) + entry.len();
        u32::try_from(grown).map_err(|_| SetError::TooLarge)?;
        let mut out = Vec::with_capacity(5 + 4 * n + grown);
        out.push(INDEXED_HASH);
        let count = u32::try_from(n).map_err(|_| SetError::TooLarge)?;
        out.extend_from_slice(&count.to_le_bytes());
        match index_change {
            // A new field goes last in the entries: no offset moves.
            Some(i) => {
                out.extend_from_slice(&self.index[..4 * i]);
                out.extend_from_slice(&(start as u32).to_le_bytes());
                out.extend_from_slice(&self.index[4 * i..]);
            }
            None if entry.len() == end - start => out.extend_from_slice(self.index),
            // Offsets past the changed value move by the change in its length.
            None => {
                for i in 0..self.len() {
                    let off = self.offset(i);
                    // An offset inside the changed value is damage (it would move below 0).
                    let off = if off > start {
                        (off + entry.len())
                            .checked_sub(end - start)
                            .ok_or(SetError::Damaged)?
                    } else {
                        off
                    };
                    out.extend_from_slice(&(off as u32).to_le_bytes());
                }
            }
        }
        out.extend_from_slice(&self.entries[..start]);
        out.extend_from_slice(&entry);
        out.extend_from_slice(&self.entries[end..]);
        Ok((Bytes::from(out), found.is_err()))
    }

    /// This hash without the fields at `gone` (positions in name order, sorted, distinct,
    /// fewer than all), copied around them.
    fn remove(&self, gone: &[usize]) -> Option<Bytes> {
        // The removed entries' spans in the entries, in entry order, and the bytes removed
        // before each span ends.
        let mut spans = Vec::with_capacity(gone.len());
        for &i in gone {
            spans.push((self.offset(i), self.entry(i)?.value_span.1));
        }
        spans.sort_unstable();
        // Overlapping entries are damage.
        if spans.windows(2).any(|w| w[0].1 > w[1].0) {
            return None;
        }
        let mut removed_through = Vec::with_capacity(spans.len());
        let mut total = 0;
        for &(start, end) in &spans {
            total += end - start;
            removed_through.push(total);
        }
        let n = self.len() - gone.len();
        let mut out = Vec::with_capacity(5 + 4 * n + self.entries.len().saturating_sub(total));
        out.push(INDEXED_HASH);
        out.extend_from_slice(&u32::try_from(n).ok()?.to_le_bytes());
        for i in (0..self.len()).filter(|i| gone.binary_search(i).is_err()) {
            let off = self.offset(i);
            let before = spans.partition_point(|&(start, _)| start < off);
            let shift = before.checked_sub(1).map_or(0, |k| removed_through[k]);
            // A kept offset inside a removed entry is damage.
            out.extend_from_slice(&(off.checked_sub(shift)? as u32).to_le_bytes());
        }
        let mut at = 0;
        for &(start, end) in &spans {
            out.extend_from_slice(self.entries.get(at..start)?);
            at = end;
        }
        out.extend_from_slice(&self.entries[at..]);
        Some(Bytes::from(out))
    }
}

/// A stored hash without the fields `names` names: how many it had, and the hash left (`None`
/// when none is left or none was removed); `None` when `raw` is not a hash. A large hash is
/// copied around the removed fields; one that falls to the plain layout's size is re-encoded.
pub fn hash_remove<N: AsRef<[u8]>>(raw: &[u8], names: &[N]) -> Option<(usize, Option<Bytes>)> {
    if let Some(h) = Indexed::of(raw) {
        let mut gone = Vec::new();
        for name in names {
            if let Ok(i) = h.search(name.as_ref())? {
                gone.push(i);
            }
        }
        gone.sort_unstable();
        gone.dedup();
        if gone.is_empty() || gone.len() == h.len() {
            return Some((gone.len(), None));
        }
        if h.len() - gone.len() > MAX_PLAIN_FIELDS {
            return Some((gone.len(), Some(h.remove(&gone)?)));
        }
    }
    let mut fields = hash_fields(raw)?;
    let before = fields.len();
    fields.retain(|(f, _)| !names.iter().any(|n| n.as_ref() == *f));
    let removed = before - fields.len();
    let left = (removed > 0 && !fields.is_empty()).then(|| encode_hash(&fields));
    Some((removed, left))
}

/// The fields and values of a stored hash, borrowed from its bytes (one allocation for the
/// list, none per field), in the order they were added; `None` when `raw` holds a string or
/// bytes no command wrote.
pub fn hash_fields(raw: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    match raw.split_first() {
        Some((&HASH, rest)) => postcard::from_bytes(rest).ok(),
        Some((&INDEXED_HASH, _)) => Indexed::of(raw)?.fields(),
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
        Some((&INDEXED_HASH, _)) => Indexed::of(raw).map(|h| h.len() as u64),
        _ => None,
    }
}

/// The value of `field` in a stored hash, found without allocating (a scan of the plain
/// layout, a binary search of the indexed one): `Some(None)` when the hash lacks it, `None`
/// when `raw` is not a hash.
pub fn hash_get<'a>(raw: &'a [u8], field: &[u8]) -> Option<Option<&'a [u8]>> {
    if let Some(h) = Indexed::of(raw) {
        return match h.search(field)? {
            Ok(i) => Some(Some(h.entry(i)?.value)),
            Err(_) => Some(None),
        };
    }
    let (_, value) = hash_find(raw, field)?;
    // The span starts at the value's length prefix.
    Some(value.and_then(|(start, _)| prefixed(&raw[start..]).map(|(v, _)| v)))
}

/// Where a stored plain hash's count ends, and the span of `field`'s value (its length prefix
/// included) if it has one; `None` when `raw` is not a plain hash.
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
/// change; `None` when `raw` is not a hash. The `bool` says whether the field is new. The
/// result is what [`encode_hash`] makes of the same fields.
pub fn hash_set(raw: &[u8], field: &[u8], value: &[u8]) -> Option<(Bytes, bool)> {
    if let Some(h) = Indexed::of(raw) {
        return match h.set(field, value) {
            Ok(done) => Some(done),
            Err(SetError::Damaged) => None,
            Err(SetError::TooLarge) => {
                // Past the reach of `u32` offsets: the plain layout.
                let mut fields = h.fields()?;
                let new = set_in(&mut fields, field, value);
                Some((encode_hash_plain(&fields), new))
            }
        };
    }
    let n = hash_len(raw)?;
    if n > MAX_PLAIN_FIELDS as u64 {
        // A plain hash too large for the plain layout (one that outgrew `u32` offsets):
        // rebuilt, indexed if it fits again.
        let mut fields = hash_fields(raw)?;
        let new = set_in(&mut fields, field, value);
        return Some((encode_hash(&fields), new));
    }
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
        None if n == MAX_PLAIN_FIELDS as u64 => {
            // One field more than the plain layout keeps.
            let mut fields = hash_fields(raw)?;
            fields.push((field, value));
            Some((encode_hash(&fields), true))
        }
        None => {
            out.push(HASH);
            put_varint(&mut out, n + 1);
            out.extend_from_slice(&raw[header..]);
            put_entry(&mut out, field, value);
            Some((Bytes::from(out), true))
        }
    }
}

/// Sets `field` in a list of fields (added last when new); whether it is new.
fn set_in<'a>(fields: &mut Vec<(&'a [u8], &'a [u8])>, field: &'a [u8], value: &'a [u8]) -> bool {
    match fields.iter_mut().find(|(f, _)| *f == field) {
        Some(slot) => {
            slot.1 = value;
            false
        }
        None => {
            fields.push((field, value));
            true
        }
    }
}

/// The plain layout whatever the count (for a hash too large for `u32` offsets).
fn encode_hash_plain(fields: &[(&[u8], &[u8])]) -> Bytes {
    // Serializing byte slices into a Vec cannot fail.
    postcard::to_extend(fields, vec![HASH]).map_or_else(|_| Bytes::new(), Bytes::from)
}

/// `TYPE`'s name for a stored value, from its tag alone (`None`: bytes no command wrote).
pub fn stored_type(raw: &[u8]) -> Option<&'static str> {
    match *raw.first()? {
        STRING => Some("string"),
        HASH | INDEXED_HASH => Some("hash"),
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

    /// `hash_set` copies around one change and `hash_get`/`hash_len` read without decoding:
    /// after any sequence of sets the bytes are what `encode_hash` makes of the same fields,
    /// in the plain layout up to 128 fields and the indexed one past them.
    #[test]
    fn in_place_hash_sets_and_reads_match_the_whole_hash_encoder() {
        let mut model: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut raw = encode_hash(&[(b"f0", b"")]);
        model.push((b"f0".to_vec(), Vec::new()));
        let mut x = 7u64;
        let mut indexed_seen = false;
        for step in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let field = format!("f{}", x % 300).into_bytes();
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
            let layout = if model.len() > MAX_PLAIN_FIELDS {
                INDEXED_HASH
            } else {
                HASH
            };
            assert_eq!(raw[0], layout, "step {step}");
            indexed_seen |= layout == INDEXED_HASH;
            if step % 97 == 0 {
                assert_eq!(
                    hash_fields(&raw),
                    Some(pairs),
                    "insertion order, step {step}"
                );
            }
        }
        assert!(
            indexed_seen && model.len() > MAX_PLAIN_FIELDS,
            "{}",
            model.len()
        );
        assert_eq!(hash_len(&raw), Some(model.len() as u64));
        assert_eq!(stored_type(&raw), Some("hash"));
        for (f, v) in &model {
            assert_eq!(hash_get(&raw, f), Some(Some(&v[..])));
        }
        for absent in [&b"nope"[..], b"", b"f", b"f99999", b"\xff"] {
            assert_eq!(hash_get(&raw, absent), Some(None), "{absent:?}");
        }
        // Fewer fields again (HDEL re-encodes): back to the plain layout.
        let few: Vec<(&[u8], &[u8])> = model[..MAX_PLAIN_FIELDS]
            .iter()
            .map(|(f, v)| (&f[..], &v[..]))
            .collect();
        assert_eq!(encode_hash(&few)[0], HASH);
        let s = encode_str(b"v");
        assert_eq!((hash_len(&s), hash_get(&s, b"f0")), (None, None));
        assert!(hash_set(&s, b"f", b"v").is_none());
        // A truncated hash: the scan stops and finds nothing past the cut.
        let plain = encode_hash(&few);
        assert_eq!(hash_get(&plain[..10], b"f149"), None);
    }

    /// `hash_remove` copies a large hash around the removed fields: the bytes are what
    /// `encode_hash` makes of the fields left, in either layout, and the count is of the
    /// distinct fields it had.
    #[test]
    fn hash_removals_match_the_whole_hash_encoder() {
        let names: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("k{}", (i * 7) % 300).into_bytes())
            .collect();
        let values: Vec<Vec<u8>> = (0..300).map(|i| vec![b'v'; (i * 13) % 150]).collect();
        let mut model: Vec<(&[u8], &[u8])> = names
            .iter()
            .zip(&values)
            .map(|(f, v)| (&f[..], &v[..]))
            .collect();
        let mut raw = encode_hash(&model);
        let mut x = 3u64;
        while !model.is_empty() {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // One to five names, some repeated, some absent.
            let picks: Vec<Vec<u8>> = (0..1 + (x >> 60) % 5)
                .map(|k| format!("k{}", ((x >> (8 * k)) % 320) as usize).into_bytes())
                .collect();
            let before = model.len();
            model.retain(|(f, _)| !picks.iter().any(|p| p == f));
            let (removed, left) = hash_remove(&raw, &picks).unwrap();
            assert_eq!(removed, before - model.len(), "{picks:?}");
            match left {
                Some(next) => {
                    assert_eq!(next, encode_hash(&model), "{} left", model.len());
                    raw = next;
                }
                None => assert!(removed == 0 || model.is_empty()),
            }
        }
        assert!(hash_remove(&encode_str(b"v"), &[b"f"]).is_none());
    }

    /// Damaged bytes of an indexed hash (a snapshot written by another build, say) read as no
    /// hash or as some hash, and never panic.
    #[test]
    fn damaged_indexed_hashes_never_panic() {
        let names: Vec<String> = (0..200).map(|i| format!("field{i}")).collect();
        // The first value long, so that shrinking it moves every later offset.
        let long = [b'v'; 200];
        let fields: Vec<(&[u8], &[u8])> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_bytes(), if i == 0 { &long[..] } else { &b"value"[..] }))
            .collect();
        let raw = encode_hash(&fields);
        assert_eq!(raw[0], INDEXED_HASH);
        let mut x = 11u64;
        for round in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Whole or cut short, with one byte flipped.
            let cut = if round % 2 == 0 {
                raw.len()
            } else {
                (x >> 40) as usize % raw.len()
            };
            let mut damaged = raw[..cut].to_vec();
            if cut > 1 {
                let at = 1 + (x >> 33) as usize % (cut - 1);
                damaged[at] ^= (x >> 7) as u8 | 1;
            }
            let _ = hash_fields(&damaged);
            let _ = hash_len(&damaged);
            let _ = hash_get(&damaged, b"field150");
            let _ = hash_set(&damaged, b"field150", b"w");
            let _ = hash_set(&damaged, b"field0", b"w");
            let _ = hash_set(&damaged, b"new", b"w");
            let _ = hash_remove(&damaged, &[&b"field0"[..], b"field150"]);
            let _ = hash_remove(&damaged, &[b"field3"]);
        }
        assert_eq!(hash_fields(&raw[..raw.len() - 1]), None, "truncated");
        // An offset aimed inside another entry's value: refused, not wrapped around.
        let mut sorted: Vec<&String> = names.iter().collect();
        sorted.sort();
        let slot = |name: &str| 5 + 4 * sorted.iter().position(|n| *n == name).unwrap();
        let mut inside = raw.to_vec();
        assert_eq!(
            &inside[slot("field0")..slot("field0") + 4],
            &0u32.to_le_bytes()
        );
        inside[slot("field1")..slot("field1") + 4].copy_from_slice(&100u32.to_le_bytes());
        assert!(hash_set(&inside, b"field0", b"w").is_none());
        assert!(hash_remove(&inside, &[b"field0"]).is_none());
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
