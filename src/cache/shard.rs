//! One shard of a namespace: a hash table of slot indices, a slab of slots, and the eviction
//! queues threaded through the slots as intrusive lists.
//!
//! The shard sits under a `RwLock`. A hit takes the read lock and writes only the entry's own
//! `freq` counter (and, for time-to-idle entries, its deadline): no list is reordered on read.
//! S3-FIFO (small FIFO, main FIFO, ghost of keys evicted from small) decides what to evict; LRU
//! is kept as a baseline and reorders on every hit under the write lock.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use foldhash::fast::FixedState;
use hashbrown::HashTable;

use super::ghost::Ghost;
use super::key::Key;
use crate::config::EvictionPolicy;

/// Deadline of an entry that never expires.
pub(crate) const NEVER: u64 = u64::MAX;
const NIL: u32 = u32::MAX;
/// An entry read this many times more is kept however often it is read.
const MAX_FREQ: u8 = 3;

/// Bytes the cache holds per entry beyond its key and value bytes, counted against the
/// namespace's budget: the slot (64 bytes: the key's `Box<[u8]>` and the value's `Bytes`
/// handles, deadline, counters), its queue links (8), its hash-table index (about 6), its
/// ghost-queue share (up to about 13) and allocator headers of the key and value buffers.
/// Measured by `tests/cache_memory.rs`.
pub const ENTRY_OVERHEAD: u64 = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Free,
    Small,
    Main,
}

const TAGGED: u8 = 1;
const TTL_CAP: u8 = 2;

/// An entry: exactly one cache line, so a hit touches one line of the slab. Fields other than
/// `freq` and `expires_at` change only under the write lock. Its queue links live apart, in
/// [`Link`]s, because only inserts and evictions use them.
#[derive(Debug)]
#[repr(C, align(64))]
struct Slot {
    value: Bytes,
    /// Effective deadline in clock milliseconds, or [`NEVER`]; moved forward by reads of a
    /// time-to-idle entry.
    expires_at: AtomicU64,
    /// Time to idle in milliseconds, 0 for none.
    tti_ms: u32,
    /// 17 bytes of alignment 1, in what would otherwise be padding before the small fields.
    key: Key,
    freq: AtomicU8,
    queue: Queue,
    flags: u8,
}

impl Slot {
    fn weight(&self) -> u64 {
        weight(self.key.as_bytes().len(), self.value.len())
    }
}

// One cache line: a hit reads a single line of the slab.
const _: () = assert!(std::mem::size_of::<Slot>() == 64);

impl Slot {
    fn vacant() -> Self {
        Self {
            key: Key::default(),
            value: Bytes::new(),
            expires_at: AtomicU64::new(0),
            tti_ms: 0,
            freq: AtomicU8::new(0),
            queue: Queue::Free,
            flags: 0,
        }
    }
}

/// Slots per slab chunk.
const CHUNK: usize = 1024;

/// A slot's neighbours in its queue.
#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
};

/// Slots (and their links) in fixed-size chunks: growing never copies slots nor leaves the
/// up-to-2× spare capacity of a doubling `Vec`, so the memory per entry stays close to the
/// slot's size.
#[derive(Debug, Default)]
struct Slab {
    chunks: Vec<Box<[Slot]>>,
    links: Vec<Box<[Link]>>,
    len: usize,
}

impl Slab {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a slot; returns its index.
    fn push(&mut self, slot: Slot) -> u32 {
        if self.len == self.chunks.len() * CHUNK {
            self.chunks
                .push((0..CHUNK).map(|_| Slot::vacant()).collect());
            self.links.push(vec![UNLINKED; CHUNK].into_boxed_slice());
        }
        let i = self.len;
        self.len += 1;
        self.chunks[i / CHUNK][i % CHUNK] = slot;
        u32::try_from(i).unwrap_or(NIL)
    }
}

impl Slab {
    fn link(&self, i: u32) -> Link {
        let i = i as usize;
        self.links[i / CHUNK][i % CHUNK]
    }

    fn link_mut(&mut self, i: u32) -> &mut Link {
        let i = i as usize;
        &mut self.links[i / CHUNK][i % CHUNK]
    }
}

impl std::ops::Index<u32> for Slab {
    type Output = Slot;

    fn index(&self, i: u32) -> &Slot {
        let i = i as usize;
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl std::ops::IndexMut<u32> for Slab {
    fn index_mut(&mut self, i: u32) -> &mut Slot {
        let i = i as usize;
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

/// The weight of an entry against the byte budget.
pub(crate) fn weight(key: usize, value: usize) -> u64 {
    key as u64 + value as u64 + ENTRY_OVERHEAD
}

/// Intrusive doubly linked list of slots: `head` is the newest, `tail` the oldest.
#[derive(Debug)]
struct List {
    head: u32,
    tail: u32,
    bytes: u64,
}

impl List {
    const fn new() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            bytes: 0,
        }
    }
}

/// How an entry expires.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expiry {
    /// Deadline from the time to live, or [`NEVER`].
    pub ttl_deadline: u64,
    /// Time to idle in milliseconds, 0 for none.
    pub tti_ms: u32,
}

impl Expiry {
    fn first_deadline(self, now: u64) -> u64 {
        if self.tti_ms == 0 {
            self.ttl_deadline
        } else {
            self.ttl_deadline
                .min(now.saturating_add(u64::from(self.tti_ms)))
        }
    }
}

/// What a read under the read lock found.
pub(crate) enum Lookup<T = Bytes> {
    Hit(T),
    Expired,
    Miss,
}

/// A copy of a live entry, for snapshots.
pub(crate) struct LiveEntry {
    pub key: Box<[u8]>,
    pub value: Bytes,
    pub expires_at: u64,
    pub tags: Vec<Arc<str>>,
}

/// An entry taken out of the shard, for the removal listener.
pub(crate) struct Removed {
    pub key: Key,
    pub value: Bytes,
    pub weight: u64,
    pub expired: bool,
}

/// The entries with a deadline, kept as they change so that `INFO`'s `expires` and `avg_ttl`
/// need no walk: how many (time-to-idle ones and ones past their deadline included, as Redis
/// counts its `expires` until it deletes them), and, over those without a time to idle (whose
/// deadline reads move under the read lock), how many and the sum of their deadlines.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Deadlines {
    pub count: u64,
    pub timed: u64,
    pub sum: u128,
}

#[derive(Debug)]
pub(crate) struct Shard {
    table: HashTable<u32>,
    slots: Slab,
    free: Vec<u32>,
    small: List,
    main: List,
    ghost: Ghost,
    ttl_caps: HashMap<u32, u64>,
    deadlines: Deadlines,
    tags_of: HashMap<u32, Box<[Arc<str>]>>,
    tag_index: HashMap<Arc<str>, HashSet<u32>>,
    sweep_cursor: usize,
    policy: EvictionPolicy,
    small_target: u64,
    hasher: FixedState,
}

impl Shard {
    pub(crate) fn new(policy: EvictionPolicy, share: u64, hasher: FixedState) -> Self {
        Self {
            table: HashTable::new(),
            slots: Slab::default(),
            free: Vec::new(),
            small: List::new(),
            main: List::new(),
            ghost: Ghost::default(),
            ttl_caps: HashMap::new(),
            deadlines: Deadlines::default(),
            tags_of: HashMap::new(),
            tag_index: HashMap::new(),
            sweep_cursor: 0,
            policy,
            small_target: (share / 10).max(1),
            hasher,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// The slot of `key`, live or expired; a read-modify-write looks it up once and passes
    /// the result to the `*_at` accessors and [`Shard::insert_found`].
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| slots[i].key.as_bytes() == key)
            .copied()
    }

    /// The read path: runs under the read lock and writes only per-entry atomics.
    pub(crate) fn lookup<T>(
        &self,
        hash: u64,
        key: &[u8],
        now: impl FnOnce() -> u64,
        read: impl FnOnce(&Bytes) -> T,
    ) -> Lookup<T> {
        let Some(i) = self.find(hash, key) else {
            return Lookup::Miss;
        };
        let slot = &self.slots[i];
        let deadline = slot.expires_at.load(Relaxed);
        if deadline != NEVER {
            let now = now();
            if now >= deadline {
                return Lookup::Expired;
            }
            if slot.tti_ms != 0 {
                let cap = self.ttl_cap(i);
                let next = cap.min(now.saturating_add(u64::from(slot.tti_ms)));
                slot.expires_at.store(next, Relaxed);
            }
        }
        // Load before store: a hot entry already at the cap costs no write at all.
        let f = slot.freq.load(Relaxed);
        if f < MAX_FREQ {
            slot.freq.store(f + 1, Relaxed);
        }
        Lookup::Hit(read(&slot.value))
    }

    /// Looks without touching counters or deadlines.
    pub(crate) fn peek(&self, hash: u64, key: &[u8], now: u64) -> Option<&Bytes> {
        let i = self.find(hash, key)?;
        let slot = &self.slots[i];
        (slot.expires_at.load(Relaxed) > now).then_some(&slot.value)
    }

    /// The value in slot `i` if it is live.
    pub(crate) fn live_value_at(&self, i: u32, now: u64) -> Option<&Bytes> {
        let slot = &self.slots[i];
        (slot.expires_at.load(Relaxed) > now).then_some(&slot.value)
    }

    /// The deadline of slot `i` if it is live (`Some(NEVER)` when it does not expire).
    pub(crate) fn live_deadline_at(&self, i: u32, now: u64) -> Option<u64> {
        let d = self.slots[i].expires_at.load(Relaxed);
        (d > now).then_some(d)
    }

    /// The tags of slot `i`.
    pub(crate) fn tags_at(&self, i: u32) -> Vec<Arc<str>> {
        if self.slots[i].flags & TAGGED == 0 {
            return Vec::new();
        }
        self.tags_of.get(&i).map(|t| t.to_vec()).unwrap_or_default()
    }

    /// The deadline of a live entry (`Some(NEVER)` when it does not expire).
    pub(crate) fn deadline(&self, hash: u64, key: &[u8], now: u64) -> Option<u64> {
        let i = self.find(hash, key)?;
        let d = self.slots[i].expires_at.load(Relaxed);
        (d > now).then_some(d)
    }

    fn ttl_cap(&self, i: u32) -> u64 {
        if self.slots[i].flags & TTL_CAP == 0 {
            NEVER
        } else {
            self.ttl_caps.get(&i).copied().unwrap_or(NEVER)
        }
    }

    /// LRU only: moves a hit entry to the front. Runs under the write lock.
    pub(crate) fn touch_lru(&mut self, hash: u64, key: &[u8]) {
        if let Some(i) = self.find(hash, key) {
            self.unlink(i);
            self.push_head(i, Queue::Main);
        }
    }

    /// Inserts or replaces; returns the slot and the replaced entry. `tags` replace the old
    /// entry's tags. `found` is what [`Shard::find`] returned for `key` under this same lock:
    /// a read-modify-write looks the key up once.
    #[allow(
        clippy::too_many_arguments,
        reason = "the insert's parts, passed through"
    )]
    pub(crate) fn insert_found(
        &mut self,
        found: Option<u32>,
        hash: u64,
        key: &[u8],
        value: Bytes,
        expiry: Expiry,
        tags: &[Arc<str>],
        now: u64,
    ) -> (u32, Option<Removed>) {
        if let Some(i) = found {
            let old_weight = self.slots[i].weight();
            let new_weight = weight(key.len(), value.len());
            let queue = self.slots[i].queue;
            let list = self.list_mut(queue);
            list.bytes = list.bytes - old_weight + new_weight;
            let slot = &mut self.slots[i];
            let old = std::mem::replace(&mut slot.value, value);
            self.set_expiry(i, expiry, now);
            self.set_tags(i, tags);
            // The key stays in the slot; the caller adds a copy to the removal only when a
            // listener will read it (a long key's copy is an allocation per overwrite).
            let removed = Removed {
                key: Key::new(b""),
                value: old,
                weight: old_weight,
                expired: false,
            };
            return (i, Some(removed));
        }
        let queue = match self.policy {
            EvictionPolicy::Lru => Queue::Main,
            EvictionPolicy::S3Fifo if self.ghost.remove(hash) => Queue::Main,
            EvictionPolicy::S3Fifo => Queue::Small,
        };
        let slot = Slot {
            key: Key::new(key),
            value,
            expires_at: AtomicU64::new(NEVER),
            tti_ms: 0,
            freq: AtomicU8::new(0),
            queue: Queue::Free,
            flags: 0,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => self.slots.push(slot),
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.table
            .insert_unique(hash, i, |&j| hasher.hash_one(slots[j].key.as_bytes()));
        self.push_head(i, queue);
        self.set_expiry(i, expiry, now);
        self.set_tags(i, tags);
        (i, None)
    }

    /// The deadline of slot `i` for [`Deadlines`], and whether it is a time to live (not a
    /// time to idle); `None` for no deadline. [`Deadlines`] is kept under the write lock:
    /// uncounted before a deadline changes, counted after, uncounted when the entry goes.
    fn deadline_of(&self, i: u32) -> Option<(u128, bool)> {
        let slot = &self.slots[i];
        let d = slot.expires_at.load(Relaxed);
        (d != NEVER).then(|| (u128::from(d), slot.tti_ms == 0))
    }

    /// Counts slot `i`'s deadline in [`Deadlines`].
    fn count_deadline(&mut self, i: u32) {
        if let Some((d, timed)) = self.deadline_of(i) {
            let t = &mut self.deadlines;
            t.count += 1;
            t.timed += u64::from(timed);
            t.sum += if timed { d } else { 0 };
        }
    }

    /// Takes slot `i`'s deadline out of [`Deadlines`], before it changes or the slot is freed.
    fn uncount_deadline(&mut self, i: u32) {
        if let Some((d, timed)) = self.deadline_of(i) {
            let t = &mut self.deadlines;
            t.count -= 1;
            t.timed -= u64::from(timed);
            t.sum -= if timed { d } else { 0 };
        }
    }

    fn set_expiry(&mut self, i: u32, expiry: Expiry, now: u64) {
        self.uncount_deadline(i);
        let slot = &mut self.slots[i];
        slot.tti_ms = expiry.tti_ms;
        slot.expires_at.store(expiry.first_deadline(now), Relaxed);
        self.count_deadline(i);
        let slot = &mut self.slots[i];
        if expiry.tti_ms != 0 && expiry.ttl_deadline != NEVER {
            slot.flags |= TTL_CAP;
            self.ttl_caps.insert(i, expiry.ttl_deadline);
        } else if slot.flags & TTL_CAP != 0 {
            slot.flags &= !TTL_CAP;
            self.ttl_caps.remove(&i);
        }
    }

    /// Sets a new deadline on a live entry (EXPIRE, PERSIST); returns false when absent.
    pub(crate) fn set_deadline(&mut self, hash: u64, key: &[u8], expiry: Expiry, now: u64) -> bool {
        match self.find(hash, key) {
            Some(i) if self.slots[i].expires_at.load(Relaxed) > now => {
                self.set_expiry(i, expiry, now);
                true
            }
            _ => false,
        }
    }

    fn set_tags(&mut self, i: u32, tags: &[Arc<str>]) {
        if self.slots[i].flags & TAGGED != 0 {
            self.drop_tags(i);
        }
        if tags.is_empty() {
            return;
        }
        for tag in tags {
            self.tag_index.entry(Arc::clone(tag)).or_default().insert(i);
        }
        self.tags_of.insert(i, tags.into());
        self.slots[i].flags |= TAGGED;
    }

    fn drop_tags(&mut self, i: u32) {
        self.slots[i].flags &= !TAGGED;
        for tag in self.tags_of.remove(&i).unwrap_or_default() {
            if let Some(set) = self.tag_index.get_mut(&tag) {
                set.remove(&i);
                if set.is_empty() {
                    self.tag_index.remove(&tag);
                }
            }
        }
    }

    /// The tags of a live entry.
    pub(crate) fn tags(&self, hash: u64, key: &[u8]) -> Vec<Arc<str>> {
        self.find(hash, key)
            .and_then(|i| self.tags_of.get(&i))
            .map(|t| t.to_vec())
            .unwrap_or_default()
    }

    pub(crate) fn remove(&mut self, hash: u64, key: &[u8], now: u64) -> Option<Removed> {
        let i = self.find(hash, key)?;
        Some(self.take(i, hash, now))
    }

    /// Removes an entry if it is expired at `now` (the lazy half of expiry).
    pub(crate) fn remove_if_expired(&mut self, hash: u64, key: &[u8], now: u64) -> Option<Removed> {
        let i = self.find(hash, key)?;
        if self.slots[i].expires_at.load(Relaxed) > now {
            return None;
        }
        Some(self.take(i, hash, now))
    }

    fn take(&mut self, i: u32, hash: u64, now: u64) -> Removed {
        if let Ok(entry) = self.table.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        self.unlink(i);
        if self.slots[i].flags & TAGGED != 0 {
            self.drop_tags(i);
        }
        if self.slots[i].flags & TTL_CAP != 0 {
            self.ttl_caps.remove(&i);
        }
        self.uncount_deadline(i);
        let slot = &mut self.slots[i];
        let weight = slot.weight();
        let expired = slot.expires_at.load(Relaxed) <= now;
        slot.queue = Queue::Free;
        slot.flags = 0;
        let removed = Removed {
            key: std::mem::take(&mut slot.key),
            value: std::mem::take(&mut slot.value),
            weight,
            expired,
        };
        self.free.push(i);
        removed
    }

    fn hash_of(&self, i: u32) -> u64 {
        self.hasher.hash_one(self.slots[i].key.as_bytes())
    }

    /// Evicts one entry by the policy, never `protect` (the entry being inserted). Expired
    /// entries met on the way are evicted first.
    pub(crate) fn evict_one(&mut self, protect: u32, now: u64) -> Option<Removed> {
        match self.policy {
            EvictionPolicy::Lru => self.evict_main(protect, now),
            EvictionPolicy::S3Fifo => {
                if (self.small.bytes > self.small_target || self.main.head == NIL)
                    && let Some(r) = self.evict_small(protect, now)
                {
                    return Some(r);
                }
                self.evict_main(protect, now)
                    .or_else(|| self.evict_small(protect, now))
            }
        }
    }

    fn evict_small(&mut self, protect: u32, now: u64) -> Option<Removed> {
        loop {
            let i = self.small.tail;
            if i == NIL {
                return None;
            }
            if i == protect {
                if self.small.head == i {
                    return None;
                }
                self.unlink(i);
                self.push_head(i, Queue::Small);
                continue;
            }
            let slot = &self.slots[i];
            let expired = slot.expires_at.load(Relaxed) <= now;
            if !expired && slot.freq.load(Relaxed) > 0 {
                // Read again while on probation: promote to main.
                slot.freq.store(0, Relaxed);
                self.unlink(i);
                self.push_head(i, Queue::Main);
                continue;
            }
            let hash = self.hash_of(i);
            if !expired {
                self.ghost.push(hash, self.table.len());
            }
            return Some(self.take(i, hash, now));
        }
    }

    fn evict_main(&mut self, protect: u32, now: u64) -> Option<Removed> {
        loop {
            let i = self.main.tail;
            if i == NIL {
                return None;
            }
            if i == protect {
                if self.main.head == i {
                    return None;
                }
                self.unlink(i);
                self.push_head(i, Queue::Main);
                continue;
            }
            let slot = &self.slots[i];
            let expired = slot.expires_at.load(Relaxed) <= now;
            let f = slot.freq.load(Relaxed);
            if !expired && f > 0 && self.policy == EvictionPolicy::S3Fifo {
                slot.freq.store(f - 1, Relaxed);
                self.unlink(i);
                self.push_head(i, Queue::Main);
                continue;
            }
            let hash = self.hash_of(i);
            return Some(self.take(i, hash, now));
        }
    }

    /// Looks at up to `budget` slots from the sweep cursor and removes the expired ones.
    pub(crate) fn sweep(&mut self, now: u64, budget: usize, out: &mut Vec<Removed>) {
        if self.slots.is_empty() {
            return;
        }
        for _ in 0..budget.min(self.slots.len()) {
            if self.sweep_cursor >= self.slots.len() {
                self.sweep_cursor = 0;
            }
            let i = u32::try_from(self.sweep_cursor).unwrap_or(NIL);
            self.sweep_cursor += 1;
            let slot = &self.slots[i];
            if slot.queue != Queue::Free && slot.expires_at.load(Relaxed) <= now {
                let hash = self.hash_of(i);
                out.push(self.take(i, hash, now));
            }
        }
    }

    /// The entries with a deadline ([`Deadlines`]).
    pub(crate) fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// Walks the slab from slot `from` in index order for `SCAN`: hands each live key to
    /// `visit` until `budget` live keys were visited or `8 × budget` slots were looked at.
    /// Returns the slot to resume from, or `None` at the slab's end. A slot holds its key from
    /// insert to removal (an overwrite keeps it), so a key present for a whole walk is visited
    /// exactly once.
    pub(crate) fn scan_slots(
        &self,
        from: u32,
        now: u64,
        budget: usize,
        mut visit: impl FnMut(&[u8]),
    ) -> Option<u32> {
        let (mut live, mut looked) = (0usize, 0usize);
        let mut i = from as usize;
        while i < self.slots.len() {
            if live >= budget || looked >= budget.saturating_mul(8) {
                return u32::try_from(i).ok();
            }
            let slot = &self.slots[u32::try_from(i).ok()?];
            looked += 1;
            i += 1;
            if slot.queue != Queue::Free && slot.expires_at.load(Relaxed) > now {
                live += 1;
                visit(slot.key.as_bytes());
            }
        }
        None
    }

    /// A live key picked at random for `RANDOMKEY`: `pick(n)` is uniform in `0..n`. A few
    /// random slots first, then the first live one from a random place.
    pub(crate) fn random_key(
        &self,
        now: u64,
        pick: &mut impl FnMut(usize) -> usize,
    ) -> Option<&[u8]> {
        let n = self.slots.len();
        if self.table.is_empty() || n == 0 {
            return None;
        }
        let live = |i: usize| {
            let slot = &self.slots[u32::try_from(i).unwrap_or(NIL)];
            (slot.queue != Queue::Free && slot.expires_at.load(Relaxed) > now)
                .then(|| slot.key.as_bytes())
        };
        if let Some(key) = (0..16).find_map(|_| live(pick(n))) {
            return Some(key);
        }
        let start = pick(n);
        (0..n).find_map(|k| live((start + k) % n))
    }

    /// Keys of live entries that `keep` selects.
    pub(crate) fn keys_where(
        &self,
        now: u64,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> Vec<Box<[u8]>> {
        self.table
            .iter()
            .map(|&i| &self.slots[i])
            .filter(|s| s.expires_at.load(Relaxed) > now && keep(s.key.as_bytes()))
            .map(|s| s.key.as_bytes().into())
            .collect()
    }

    /// Live entries with their deadline and tags, for snapshots.
    pub(crate) fn entries(&self, now: u64) -> Vec<LiveEntry> {
        self.table
            .iter()
            .filter(|&&i| self.slots[i].expires_at.load(Relaxed) > now)
            .map(|&i| {
                let s = &self.slots[i];
                let tags = self.tags_of.get(&i).map(|t| t.to_vec()).unwrap_or_default();
                LiveEntry {
                    key: s.key.as_bytes().into(),
                    value: s.value.clone(),
                    expires_at: s.expires_at.load(Relaxed),
                    tags,
                }
            })
            .collect()
    }

    /// Keys carrying `tag`.
    pub(crate) fn keys_tagged(&self, tag: &str) -> Vec<Box<[u8]>> {
        self.tag_index.get(tag).map_or_else(Vec::new, |set| {
            set.iter()
                .map(|&i| self.slots[i].key.as_bytes().into())
                .collect()
        })
    }

    /// Removes everything; returns the removed entries.
    pub(crate) fn clear(&mut self, now: u64) -> Vec<Removed> {
        let all: Vec<u32> = self.table.iter().copied().collect();
        let out = all
            .into_iter()
            .map(|i| {
                let hash = self.hash_of(i);
                self.take(i, hash, now)
            })
            .collect();
        self.ghost = Ghost::default();
        self.slots = Slab::default();
        self.free = Vec::new();
        self.sweep_cursor = 0;
        out
    }

    fn list_mut(&mut self, queue: Queue) -> &mut List {
        match queue {
            Queue::Small => &mut self.small,
            Queue::Main | Queue::Free => &mut self.main,
        }
    }

    fn push_head(&mut self, i: u32, queue: Queue) {
        let w = self.slots[i].weight();
        let list = self.list_mut(queue);
        let old_head = list.head;
        list.head = i;
        if list.tail == NIL {
            list.tail = i;
        }
        list.bytes += w;
        if old_head != NIL {
            self.slots.link_mut(old_head).prev = i;
        }
        *self.slots.link_mut(i) = Link {
            prev: NIL,
            next: old_head,
        };
        self.slots[i].queue = queue;
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next, queue, w) = {
            let s = &self.slots[i];
            let l = self.slots.link(i);
            (l.prev, l.next, s.queue, s.weight())
        };
        if queue == Queue::Free {
            return;
        }
        if prev == NIL {
            self.list_mut(queue).head = next;
        } else {
            self.slots.link_mut(prev).next = next;
        }
        if next == NIL {
            self.list_mut(queue).tail = prev;
        } else {
            self.slots.link_mut(next).prev = prev;
        }
        self.list_mut(queue).bytes -= w;
        *self.slots.link_mut(i) = UNLINKED;
        self.slots[i].queue = Queue::Free;
    }
}
