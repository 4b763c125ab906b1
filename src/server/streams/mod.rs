//! Redis streams on the log: each stream key is a single-partition log topic
//! (`stream.<escaped key>`) appended with the server's `appendfsync` durability (`always` by
//! default: an acknowledged `XADD` is on disk). Entry IDs are `<record timestamp ms>-<log offset>` (see [`ids`]); quipu assigns them.
//!
//! Consumer groups keep their pending entries in memory; their existence and progress (the
//! lowest offset not yet acknowledged) are a log consumer group each, so after a restart a
//! group resumes there and delivers again what was delivered but not acknowledged.

mod add;
mod group;
mod ids;
mod info;
mod pending;
mod range;
mod read;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::watch;

pub(crate) use self::add::{AddReply, PipelinedAdds, prepare_xadd, start_xadd};
pub(crate) use self::read::{is_blocking, start_read};

use self::group::StreamState;
use super::Shared;
use super::reply::Out;
use crate::config::TopicConfig;
use crate::log::{Record, Topic};

/// The stream state of a server: the consumer groups of the streams used so far, and a signal
/// that wakes blocked readers when a stream or group appears or goes away.
#[derive(Debug)]
pub(crate) struct Streams {
    /// By topic name; loaded from the log on first use.
    states: RwLock<HashMap<String, Arc<StreamState>>>,
    changed: watch::Sender<u64>,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            states: RwLock::new(HashMap::new()),
            changed: watch::channel(0).0,
        }
    }
}

impl Streams {
    /// Commits every group's progress now (at shutdown and on saves). The commits fsync, so
    /// they run after the stream and group locks are released: XREADGROUP, XACK and the
    /// rest do not wait for them.
    pub(crate) fn commit_all(&self) {
        let committers: Vec<_> = self
            .states
            .read()
            .values()
            .flat_map(|st| {
                st.groups
                    .lock()
                    .values()
                    .map(group::Group::progress_committer)
                    .collect::<Vec<_>>()
            })
            .collect();
        for c in committers {
            c.run();
        }
    }

    /// Wakes the blocked readers so they look again.
    pub(crate) fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Runs a stream command other than XADD (which the connection loop runs, to share fsyncs).
pub(crate) fn exec(shared: &Arc<Shared>, cmd: &str, args: &[Bytes], out: &mut Out) {
    // WRONGTYPE before anything else for the commands whose key is the first argument and
    // which Redis checks so. XREAD/XREADGROUP check per key; the others check their arguments
    // (or subcommand) first and the type after, as Redis does (`refuse_other_type`).
    let key = match cmd {
        "xread" | "xreadgroup" | "xrange" | "xrevrange" | "xtrim" | "xpending" | "xgroup"
        | "xinfo" | "xautoclaim" => None,
        _ => args.get(1),
    };
    if key.is_some_and(|k| other_type(shared, k)) {
        return out.error(crate::server::db::WRONGTYPE);
    }
    match cmd {
        "xlen" => add::xlen(shared, args, out),
        "xtrim" => add::xtrim(shared, args, out),
        "xdel" => out.error("ERR XDEL is not supported: quipu streams are append-only logs"),
        "xrange" => range::xrange(shared, args, false, out),
        "xrevrange" => range::xrange(shared, args, true, out),
        "xread" | "xreadgroup" => read::exec(shared, args, out),
        "xgroup" => group::xgroup(shared, args, out),
        "xack" => pending::xack(shared, args, out),
        "xpending" => pending::xpending(shared, args, out),
        "xclaim" => pending::xclaim(shared, args, out),
        "xautoclaim" => pending::xautoclaim(shared, args, out),
        "xinfo" => info::xinfo(shared, args, out),
        _ => out.error(&format!("ERR unknown command '{cmd}'")),
    }
}

/// Escapes a key into topic-name characters: bytes outside `keep` become `_xx` (hex).
fn escape(key: &[u8], keep: impl Fn(u8) -> bool, into: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    into.reserve(key.len());
    for &b in key {
        if keep(b) {
            into.push(b as char);
        } else {
            into.push('_');
            into.push(HEX[usize::from(b >> 4)] as char);
            into.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

/// The bytes [`escape`] wrote as `s`; `None` for text it cannot have written.
pub(crate) fn unescape(s: &str) -> Option<Bytes> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'_' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(Bytes::from(out))
}

/// Every stream's key, from the log's topic names (`stream.` + the escaped key).
pub(crate) fn keys(shared: &Shared) -> Vec<Bytes> {
    shared
        .log
        .topics()
        .iter()
        .filter_map(|name| name.strip_prefix("stream.").and_then(unescape))
        .collect()
}

/// The topic of a stream key: `stream.` then the key with bytes outside `[A-Za-z0-9.-]`
/// written as `_xx` (hex).
pub(crate) fn topic_name(key: &[u8]) -> String {
    let mut s = String::from(STREAM_PREFIX);
    escape(
        key,
        |b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-',
        &mut s,
    );
    s
}

/// The stream's topic; created (and blocked readers woken) if `create` and it does not exist.
///
/// # Errors
/// The error reply (`ERR …`) when the topic cannot be created: a key too long for a topic name.
pub(crate) fn stream(
    shared: &Shared,
    key: &[u8],
    create: bool,
) -> Result<Option<Arc<Topic>>, String> {
    let name = topic_name(key);
    if let Ok(t) = shared.log.topic(&name) {
        return Ok(Some(t));
    }
    if !create {
        return Ok(None);
    }
    shared.db.streams.creating(key);
    match shared.log.create_topic(
        &name,
        TopicConfig::default()
            .with_partitions(1)
            .with_durability(shared.stream_durability),
    ) {
        Ok(t) => {
            shared.streams.notify();
            Ok(Some(t))
        }
        // The only rule a `stream.` name can break: its length.
        Err(crate::Error::Log(crate::error::LogError::InvalidTopicName { .. })) => {
            shared.db.streams.deleted(key);
            Err(format!(
                "ERR quipu keeps a stream's key in a topic name of at most {} bytes: {} bytes of \
                 [A-Za-z0-9.-], each other byte taking 3",
                crate::log::MAX_NAME_LEN - STREAM_PREFIX.len(),
                crate::log::MAX_NAME_LEN - STREAM_PREFIX.len(),
            ))
        }
        // Created by another connection in between.
        Err(_) => shared
            .log
            .topic(&name)
            .map(Some)
            .map_err(|e| format!("ERR {e}")),
    }
}

/// The prefix of every stream's topic name.
const STREAM_PREFIX: &str = "stream.";

/// Whether `key` holds a string or hash: stream commands on it are a type error. (A stream
/// and a cache key of one name can only both exist after a SET or HSET raced an XADD that
/// created the stream.)
fn other_type(shared: &Shared, key: &[u8]) -> bool {
    shared.db.ns(key).contains(key)
}

/// Answers `WRONGTYPE` and returns `true` when `key` holds a string or hash: for the
/// commands that check their arguments before the key's type, as Redis does.
fn refuse_other_type(shared: &Shared, key: &[u8], out: &mut Out) -> bool {
    let other = other_type(shared, key);
    if other {
        out.error(crate::server::db::WRONGTYPE);
    }
    other
}

/// Whether `key` is a stream (for `EXISTS` and `TYPE`).
pub(crate) fn exists(shared: &Shared, key: &[u8]) -> bool {
    shared.db.streams.contains(key)
}

/// Deletes the stream `key`, its topic and its consumer groups (a write of `key` for WATCH);
/// returns whether it existed.
///
/// # Errors
/// The text of a log error while deleting files.
pub(crate) fn delete(shared: &Shared, key: &[u8]) -> Result<bool, String> {
    let name = topic_name(key);
    if shared.log.topic(&name).is_err() {
        return Ok(false);
    }
    // Groups first: a crash in between leaves a stream without groups, never groups that a
    // new stream of the same name would take over.
    let state = shared.streams.states.write().remove(&name);
    group::delete_all(shared, key, state.as_deref());
    let result = shared.log.delete_topic(&name);
    shared.streams.notify();
    match result {
        Ok(()) => {
            shared.db.streams.deleted(key);
            // A write of the key for WATCH, whatever the caller writes next (or fails to).
            shared.db.notifier.touches.touch(key);
            Ok(true)
        }
        Err(crate::error::LogError::TopicNotFound(_)) => Ok(false),
        Err(e) => Err(format!("ERR {e}")),
    }
}

/// The entry's ID.
fn entry_id(r: &Record) -> ids::StreamId {
    ids::StreamId {
        ms: r.timestamp,
        seq: r.offset,
    }
}

/// Writes `[id, [field, value, …]]`.
fn write_entry(out: &mut Out, r: &Record) {
    out.array(2);
    out.bulk(entry_id(r).to_string().as_bytes());
    let pairs: Vec<(&[u8], &[u8])> = r
        .value
        .as_deref()
        .and_then(|v| postcard::from_bytes(v).ok())
        .unwrap_or_default();
    out.array(pairs.len() * 2);
    for (f, v) in pairs {
        out.bulk(f);
        out.bulk(v);
    }
}

/// The lowercase text of an option argument.
fn lower(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

/// `ERR wrong number of arguments for '<cmd>' command`.
fn wrong_args(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

/// Milliseconds now, on the clock the log stamps entries with.
fn now_ms(shared: &Shared) -> u64 {
    shared.log.clock().now_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_survives_the_topic_name_and_back() {
        let key: Vec<u8> = (0..=255).collect();
        let name = topic_name(&key);
        let escaped = name.strip_prefix("stream.").unwrap();
        assert!(
            escaped
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{escaped}"
        );
        assert_eq!(unescape(escaped).unwrap(), key);
        assert_eq!(topic_name(b"key:1"), "stream.key_3a1");
        assert_eq!(unescape("_zz"), None, "not hex");
        assert_eq!(unescape("_4"), None, "cut short");
    }
}
