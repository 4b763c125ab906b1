//! Keyspace notifications (`notify-keyspace-events`): the events of Redis's string, hash and
//! generic commands (`set`, `del`, `expire`, `persist`, `rename_from`, `rename_to`, `incrby`,
//! `incrbyfloat`, `append`, `setrange`, `hset`, `hdel`, `hincrby`, `hincrbyfloat`), `expired`
//! and `evicted`, published on `__keyspace@0__:<key>` (message: the event) and `__keyevent@0__:<event>`
//! (message: the key), as Redis does. Off by default; a command pays one relaxed load to learn
//! that.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::cache::{Namespace, RemovalCause};
use crate::pubsub::PubSub;

const KEYSPACE: u32 = 1;
const KEYEVENT: u32 = 1 << 1;
const GENERIC: u32 = 1 << 2;
const STRING: u32 = 1 << 3;
const HASH: u32 = 1 << 4;
const EXPIRED: u32 = 1 << 5;
const EVICTED: u32 = 1 << 6;
const LIST: u32 = 1 << 7;
const SET: u32 = 1 << 8;
const ZSET: u32 = 1 << 9;
const STREAM: u32 = 1 << 10;
/// Redis's `A`: every class.
const ALL: u32 = GENERIC | STRING | HASH | EXPIRED | EVICTED | LIST | SET | ZSET | STREAM;

/// Flag letters in the order Redis prints them.
const LETTERS: [(char, u32); 11] = [
    ('g', GENERIC),
    ('$', STRING),
    ('l', LIST),
    ('s', SET),
    ('h', HASH),
    ('z', ZSET),
    ('x', EXPIRED),
    ('e', EVICTED),
    ('t', STREAM),
    ('K', KEYSPACE),
    ('E', KEYEVENT),
];

fn parse(letters: &str) -> Result<u32, ()> {
    let mut flags = 0;
    for c in letters.chars() {
        flags |= match c {
            'A' => ALL,
            c => LETTERS.iter().find(|(l, _)| *l == c).ok_or(())?.1,
        };
    }
    Ok(flags)
}

/// An event a command or the cache reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEvent {
    /// A SET-family write.
    Set,
    /// DEL, UNLINK, GETDEL.
    Del,
    /// A key's TTL passed and it was removed.
    Expired,
    /// A key was evicted to keep its namespace within budget.
    Evicted,
    /// A TTL set (EXPIRE family, SET EX, SETEX, GETEX EX).
    Expire,
    /// A TTL removed (PERSIST, GETEX PERSIST).
    Persist,
    /// RENAME's source key.
    RenameFrom,
    /// RENAME's destination key.
    RenameTo,
    /// COPY's destination key.
    CopyTo,
    /// INCR, DECR, INCRBY, DECRBY.
    IncrBy,
    /// INCRBYFLOAT.
    IncrByFloat,
    /// APPEND.
    Append,
    /// SETRANGE.
    SetRange,
    /// HSET, HMSET, HSETNX.
    HSet,
    /// HDEL.
    HDel,
    /// HINCRBY.
    HIncrBy,
    /// HINCRBYFLOAT.
    HIncrByFloat,
}

impl KeyEvent {
    fn name(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Del => "del",
            Self::Expired => "expired",
            Self::Evicted => "evicted",
            Self::Expire => "expire",
            Self::Persist => "persist",
            Self::RenameFrom => "rename_from",
            Self::RenameTo => "rename_to",
            Self::CopyTo => "copy_to",
            Self::IncrBy => "incrby",
            Self::IncrByFloat => "incrbyfloat",
            Self::Append => "append",
            Self::SetRange => "setrange",
            Self::HSet => "hset",
            Self::HDel => "hdel",
            Self::HIncrBy => "hincrby",
            Self::HIncrByFloat => "hincrbyfloat",
        }
    }

    fn class(self) -> u32 {
        match self {
            Self::Set | Self::IncrBy | Self::IncrByFloat | Self::Append | Self::SetRange => STRING,
            Self::Del
            | Self::Expire
            | Self::Persist
            | Self::RenameFrom
            | Self::RenameTo
            | Self::CopyTo => GENERIC,
            Self::Expired => EXPIRED,
            Self::Evicted => EVICTED,
            Self::HSet | Self::HDel | Self::HIncrBy | Self::HIncrByFloat => HASH,
        }
    }
}

/// The server's notification switch and where events go.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// Writes counted for `WATCH`.
    pub(crate) touches: Arc<Touches>,
    flags: Arc<AtomicU32>,
    pubsub: PubSub,
    /// Namespaces whose expiries and evictions are reported once `x` or `e` is switched on.
    /// The removal listener is installed only then: every overwrite would call it otherwise.
    watched: Arc<Mutex<Watched>>,
}

#[derive(Debug, Default)]
struct Watched {
    namespaces: Vec<Namespace>,
    listening: bool,
}

impl Notifier {
    /// Notifications off, published on `pubsub` once switched on.
    pub fn new(pubsub: PubSub) -> Self {
        Self {
            touches: Arc::new(Touches::new()),
            flags: Arc::new(AtomicU32::new(0)),
            pubsub,
            watched: Arc::default(),
        }
    }

    /// Sets the flags from Redis's letters (`KEA`, `Kx`, `""` for off); `Err` on a letter
    /// Redis would not accept.
    pub fn configure(&self, letters: &str) -> Result<(), ()> {
        let flags = parse(letters)?;
        self.flags.store(flags, Relaxed);
        if flags & (EXPIRED | EVICTED) != 0 {
            let mut w = self.watched.lock();
            if !w.listening {
                w.listening = true;
                for ns in &w.namespaces {
                    self.listen(ns);
                }
            }
        }
        Ok(())
    }

    /// Whether [`Notifier::configure`] would accept `letters`.
    pub fn check(&self, letters: &str) -> Result<(), ()> {
        parse(letters).map(drop)
    }

    /// The flags as `CONFIG GET notify-keyspace-events` prints them.
    pub fn letters(&self) -> String {
        let flags = self.flags.load(Relaxed);
        if flags & ALL == ALL {
            let mut s = String::from("A");
            s.extend(
                LETTERS
                    .iter()
                    .filter(|(_, f)| f & (KEYSPACE | KEYEVENT) & flags != 0)
                    .map(|(l, _)| *l),
            );
            return s;
        }
        LETTERS
            .iter()
            .filter(|(_, f)| f & flags != 0)
            .map(|(l, _)| *l)
            .collect()
    }

    /// Counts a write of `key` for `WATCH`, and publishes `event` on `key` if its class is
    /// switched on. Every command that changes a key calls it (as Redis's commands signal a
    /// modified key).
    pub fn notify(&self, event: KeyEvent, key: &[u8]) {
        self.touches.touch(key);
        publish(&self.pubsub, self.flags.load(Relaxed), event, key);
    }

    /// Reports expiries and evictions of `ns` (the cache removes those on its own) once they
    /// are switched on.
    pub fn watch(&self, ns: &Namespace) {
        let mut w = self.watched.lock();
        if w.listening {
            self.listen(ns);
        }
        w.namespaces.push(ns.clone());
    }

    fn listen(&self, ns: &Namespace) {
        // A weak handle: the namespace must not keep its own listener's notifier alive.
        let flags = Arc::downgrade(&self.flags);
        let pubsub = self.pubsub.clone();
        ns.set_removal_listener(move |key, _, cause| {
            let event = match cause {
                RemovalCause::Expired => KeyEvent::Expired,
                RemovalCause::Size => KeyEvent::Evicted,
                _ => return,
            };
            if let Some(flags) = flags.upgrade() {
                publish(&pubsub, flags.load(Relaxed), event, key);
            }
        });
    }
}

/// Publishes `event` on `key` if its class is switched on in `flags`.
fn publish(pubsub: &PubSub, flags: u32, event: KeyEvent, key: &[u8]) {
    if flags & event.class() == 0 {
        return;
    }
    let name = event.name();
    // Channels are text: the keyspace channel of a key that is not UTF-8 is skipped (a lossy
    // name would reach the subscribers of other keys). Its keyevent still goes out.
    if flags & KEYSPACE != 0
        && let Ok(key) = std::str::from_utf8(key)
    {
        let channel = format!("__keyspace@0__:{key}");
        pubsub.publish(&channel, Bytes::from_static(name.as_bytes()));
    }
    if flags & KEYEVENT != 0 {
        let channel = format!("__keyevent@0__:{name}");
        pubsub.publish(&channel, Bytes::copy_from_slice(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip_as_redis_prints_them() {
        let n = Notifier::new(PubSub::new());
        assert_eq!(n.letters(), "");
        n.configure("KEA").unwrap();
        assert_eq!(n.letters(), "AKE");
        n.configure("Ex$").unwrap();
        assert_eq!(n.letters(), "$xE");
        n.configure("g$").unwrap();
        assert_eq!(
            n.letters(),
            "g$",
            "kept as Redis keeps it, though nothing is published"
        );
        assert!(n.configure("Kq").is_err());
        assert_eq!(n.letters(), "g$", "a bad letter changes nothing");
    }

    #[test]
    fn events_reach_both_channels_only_when_switched_on() {
        let ps = PubSub::new();
        let n = Notifier::new(ps.clone());
        let sub = ps.psubscribe(&["__key*"], crate::pubsub::SubscriptionConfig::default());
        n.notify(KeyEvent::Set, b"k");
        assert!(sub.try_recv().is_err(), "off by default");
        n.configure("KE$").unwrap();
        n.notify(KeyEvent::Del, b"k");
        assert!(sub.try_recv().is_err(), "generic class not on");
        n.notify(KeyEvent::Set, b"k");
        let a = sub.try_recv().unwrap();
        let b = sub.try_recv().unwrap();
        assert_eq!(&*a.message.channel, "__keyspace@0__:k");
        assert_eq!(&a.message.payload[..], b"set");
        assert_eq!(&*b.message.channel, "__keyevent@0__:set");
        assert_eq!(&b.message.payload[..], b"k");
    }
}

/// Write counters by key hash, for `WATCH` (Redis's "touched" keys): a watched key whose
/// counter moved between `WATCH` and `EXEC` was written, even if it came back to what it was
/// (created and deleted, given the deadline it had). Counted only while some connection
/// watches a key, so other writes pay one load. Keys that share a counter abort each other's
/// transactions now and then, never let one through: 65,536 counters (512 KiB).
#[derive(Debug)]
pub(crate) struct Touches {
    watching: AtomicUsize,
    counters: Box<[AtomicU64]>,
    hasher: foldhash::fast::FixedState,
}

/// A key watched: what its counter was at `WATCH`. Dropping it (EXEC, DISCARD, UNWATCH, a
/// disconnect) stops the counting once no key is watched.
#[derive(Debug)]
pub(crate) struct Watch {
    touches: Arc<Touches>,
    counter: usize,
    seen: u64,
}

impl Touches {
    fn new() -> Self {
        Self {
            watching: AtomicUsize::new(0),
            counters: (0..1 << 16).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x5741_5443_4845_5321),
        }
    }

    fn counter(&self, key: &[u8]) -> usize {
        self.hasher.hash_one(key) as usize % self.counters.len()
    }

    /// Whether some connection watches a key.
    pub(crate) fn watching(&self) -> bool {
        self.watching.load(SeqCst) > 0
    }

    /// Counts a write of `key` (while some key is watched).
    pub(crate) fn touch(&self, key: &[u8]) {
        if self.watching() {
            self.counters[self.counter(key)].fetch_add(1, SeqCst);
        }
    }

    /// Starts watching `key`.
    pub(crate) fn watch(self: &Arc<Self>, key: &[u8]) -> Watch {
        self.watching.fetch_add(1, SeqCst);
        let counter = self.counter(key);
        Watch {
            touches: Arc::clone(self),
            counter,
            seen: self.counters[counter].load(SeqCst),
        }
    }
}

impl Watch {
    /// Whether no write of the key (or of one sharing its counter) came since `WATCH`.
    pub(crate) fn untouched(&self) -> bool {
        self.touches.counters[self.counter].load(SeqCst) == self.seen
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.touches.watching.fetch_sub(1, SeqCst);
    }
}
