//! A namespace: one kind of data (`sessions`, `products`, `geo` …) with its own budget, expiry,
//! policy and persistence, split into shards.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use foldhash::fast::FixedState;
use parking_lot::{Mutex, RwLock};

use super::counters::Counters;
use super::key::Key;
use super::loader::Flights;
use super::persist::Backing;
use super::shard::{Expiry, LiveEntry, Lookup, NEVER, Removed, Shard, weight};
use super::{EntryOptions, Invalidation, InvalidationTarget, RemovalCause};
use crate::clock::{Clock, millis};
use crate::config::{EvictionPolicy, NamespaceConfig, Persistence};
use crate::error::{CacheError, Error};
use crate::glob::glob_match;
use crate::metrics::CacheStats;

/// The entries one operation removed, handed to the listener after the lock is released:
/// usually none or one (an overwrite), so no allocation.
type Removals = smallvec::SmallVec<[(Removed, RemovalCause); 2]>;

/// What [`Namespace::modify`] does with the entry it looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Modify {
    /// Leave it as it is.
    Keep,
    /// Remove it.
    Remove,
    /// Set this value, with this change to its time to live.
    Set(Bytes, TtlChange),
}

/// How [`Modify::Set`] treats the entry's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TtlChange {
    /// Keep the current deadline (the namespace default for a new entry), as `KEEPTTL`.
    Keep,
    /// Never expire.
    Clear,
    /// Expire after this long.
    Set(Duration),
}

/// Called with every entry that leaves the cache and why.
pub type RemovalListener = Arc<dyn Fn(&[u8], &Bytes, RemovalCause) + Send + Sync>;

/// Called when a namespace's hit ratio over a window falls below its threshold.
pub type HitRatioCallback = Arc<dyn Fn(&HitRatioAlert) + Send + Sync>;

/// What a hit-ratio alert reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HitRatioAlert {
    /// The namespace.
    pub namespace: String,
    /// Hit ratio over the window that just closed.
    pub hit_ratio: f64,
    /// The configured threshold.
    pub threshold: f64,
    /// Reads in the window.
    pub reads: u64,
}

#[derive(Clone)]
pub(crate) struct AlertRule {
    threshold: f64,
    window_ms: u64,
    min_reads: u64,
    callback: HitRatioCallback,
    window_start: u64,
    hits_at_start: u64,
    misses_at_start: u64,
}

#[repr(align(128))]
#[derive(Debug)]
struct Padded<T>(T);

/// A handle on one cache namespace; cheap to clone, all clones share the entries.
///
/// ```
/// use quipu::{Cache, NamespaceConfig};
/// use std::time::Duration;
///
/// let cache = Cache::new();
/// let products = cache.create_namespace(
///     "products",
///     NamespaceConfig::default().with_max_bytes(1 << 20).with_ttl(Duration::from_secs(300)),
/// )?;
/// products.insert("sku-1", "arroz 1kg")?;
/// assert_eq!(products.get("sku-1").as_deref(), Some(&b"arroz 1kg"[..]));
/// assert_eq!(products.stats().hits, 1);
/// # Ok::<(), quipu::Error>(())
/// ```
#[derive(Clone)]
pub struct Namespace {
    pub(crate) inner: Arc<NsInner>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.inner.name)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

pub(crate) struct NsInner {
    pub(crate) name: Arc<str>,
    pub(crate) config: NamespaceConfig,
    shards: Box<[Padded<RwLock<Shard>>]>,
    /// Shards − 1: the shard is taken from bits 32.. of the hash. Not the top bits: hashbrown
    /// filters on the top 7, and a shard whose keys share them would filter on fewer.
    shard_mask: usize,
    hasher: FixedState,
    used: AtomicU64,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) counters: Counters,
    listener: RwLock<Option<RemovalListener>>,
    has_listener: AtomicBool,
    pub(crate) flights: Flights,
    pub(crate) backing: Backing,
    events: tokio::sync::broadcast::Sender<Invalidation>,
    alert: Mutex<Option<AlertRule>>,
}

fn default_shards() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (cores * 4).next_power_of_two()
}

impl Namespace {
    pub(crate) fn new(
        name: &str,
        config: NamespaceConfig,
        clock: Arc<dyn Clock>,
        backing: Backing,
        events: tokio::sync::broadcast::Sender<Invalidation>,
    ) -> Self {
        let n = config.shards.unwrap_or_else(default_shards);
        let hasher = FixedState::with_seed(rand_seed());
        let share = config.max_bytes / n as u64;
        let shards = (0..n)
            .map(|_| {
                Padded(RwLock::new(Shard::new(
                    config.policy,
                    share,
                    hasher.clone(),
                )))
            })
            .collect();
        Self {
            inner: Arc::new(NsInner {
                name: name.into(),
                shards,
                shard_mask: n - 1,
                hasher,
                used: AtomicU64::new(0),
                clock,
                counters: Counters::default(),
                listener: RwLock::new(None),
                has_listener: AtomicBool::new(false),
                flights: Flights::default(),
                backing,
                events,
                alert: Mutex::new(None),
                config,
            }),
        }
    }

    /// The namespace's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The namespace's config.
    #[must_use]
    pub fn config(&self) -> &NamespaceConfig {
        &self.inner.config
    }

    /// Reads a value; a hit bumps only the entry's own access counter.
    #[must_use]
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<Bytes> {
        self.inner.get(key.as_ref())
    }

    /// Reads a value in place: `read` sees it under the shard's read lock and its result is
    /// returned (`None` on a miss). For copying a value out (into a reply buffer, say) without
    /// taking a reference to it; keep `read` short, writers of that shard wait for it.
    /// Counts a hit or a miss exactly as [`get`](Self::get) does.
    ///
    /// ```
    /// let cache = quipu::Cache::new();
    /// let ns = cache.default_namespace();
    /// ns.insert("greeting", "hola")?;
    /// let mut reply = Vec::new();
    /// let len = ns.get_with("greeting", |v| {
    ///     reply.extend_from_slice(v);
    ///     v.len()
    /// });
    /// assert_eq!(len, Some(4));
    /// assert_eq!(reply, b"hola");
    /// assert_eq!(ns.get_with("missing", |v| v.len()), None);
    /// # Ok::<(), quipu::Error>(())
    /// ```
    pub fn get_with<T>(&self, key: impl AsRef<[u8]>, read: impl FnOnce(&[u8]) -> T) -> Option<T> {
        self.inner.get_with(key.as_ref(), |v| read(v))
    }

    /// Whether a live entry exists (counts neither a hit nor a miss). An entry found past its
    /// deadline is removed, as a read removes it.
    #[must_use]
    pub fn contains(&self, key: impl AsRef<[u8]>) -> bool {
        self.inner.contains(key.as_ref())
    }

    /// Reads many values at once.
    #[must_use]
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Option<Bytes>> {
        keys.iter().map(|k| self.inner.get(k.as_ref())).collect()
    }

    /// Inserts with the namespace's default TTL and TTI. Write-through namespaces write the
    /// store first; write-behind namespaces journal the write first.
    ///
    /// # Errors
    /// [`CacheError::TooLarge`] when the entry exceeds the whole budget;
    /// [`CacheError::Persist`] when the store or journal refused it (the cache is unchanged).
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Result<(), Error> {
        self.insert_with(key, value, &EntryOptions::default())
    }

    /// Inserts with its own time to live.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn insert_with_ttl(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        ttl: Duration,
    ) -> Result<(), Error> {
        self.insert_with(key, value, &EntryOptions::default().ttl(ttl))
    }

    /// Inserts with explicit options: TTL, TTI and tags.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn insert_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        options: &EntryOptions,
    ) -> Result<(), Error> {
        let key = key.as_ref();
        let value = value.into();
        self.inner.check_weight(key, &value)?;
        self.inner.backing.before_put(&self.inner, key, &value)?;
        self.inner.put_cached(key, value, options);
        Ok(())
    }

    /// Inserts many entries; stops at the first error.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn insert_many<K, V>(&self, entries: impl IntoIterator<Item = (K, V)>) -> Result<(), Error>
    where
        K: AsRef<[u8]>,
        V: Into<Bytes>,
    {
        for (k, v) in entries {
            self.insert(k, v)?;
        }
        Ok(())
    }

    /// Removes an entry (and, for write-through and write-behind namespaces, the store's
    /// copy); returns the value it had.
    ///
    /// # Errors
    /// [`CacheError::Persist`] when the store or journal refused the delete.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        let key = key.as_ref();
        self.inner.backing.before_delete(&self.inner, key)?;
        Ok(self.inner.remove_cached(key, RemovalCause::Explicit))
    }

    /// Atomically replaces the value of `key` by `f(current)`; `None` from `f` removes it.
    /// Returns the new value. The entry keeps its deadline and tags.
    ///
    /// # Errors
    /// As [`insert`](Self::insert) and [`remove`](Self::remove).
    pub fn update(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnOnce(Option<&Bytes>) -> Option<Bytes>,
    ) -> Result<Option<Bytes>, Error> {
        self.inner.update(key.as_ref(), |cur| Ok(f(cur)))
    }

    /// Adds `delta` to a decimal integer value (a missing entry counts as 0), as Redis `INCRBY`.
    ///
    /// # Errors
    /// [`CacheError::NotAnInteger`] when the value is not a decimal `i64` or the sum overflows.
    pub fn increment(&self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64, Error> {
        let mut result = 0;
        self.inner.update(key.as_ref(), |cur| {
            let n = match cur {
                None => 0,
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or(CacheError::NotAnInteger)?,
            };
            result = n.checked_add(delta).ok_or(CacheError::NotAnInteger)?;
            Ok(Some(Bytes::from(result.to_string())))
        })?;
        Ok(result)
    }

    /// Sets `key` to `new` only if its current value equals `expected` (`None`: absent).
    /// `new = None` removes it. Returns whether the swap happened.
    ///
    /// # Errors
    /// As [`update`](Self::update).
    pub fn compare_and_set(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: Option<Bytes>,
    ) -> Result<bool, Error> {
        let mut swapped = false;
        self.inner.update(key.as_ref(), |cur| {
            if cur.map(|b| &b[..]) == expected {
                swapped = true;
                Ok(new)
            } else {
                Ok(cur.cloned())
            }
        })?;
        Ok(swapped)
    }

    /// The general atomic read-modify-write (what Redis `SET … NX GET`, `GETDEL`, `GETEX`
    /// need): `f` sees the live value under the shard's write lock and returns what to do.
    /// Returns the value before the change. Persisted like an insert or remove.
    ///
    /// # Errors
    /// As [`insert`](Self::insert) and [`remove`](Self::remove), and whatever `f` returns.
    pub fn modify(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnOnce(Option<&Bytes>) -> Result<Modify, CacheError>,
    ) -> Result<Option<Bytes>, Error> {
        self.inner.modify(key.as_ref(), f)
    }

    /// `Err(TooLarge)` when `value` at `key` could never be stored here (over the budget):
    /// what a write would fail with before it changes anything.
    pub(crate) fn check_fits(&self, key: &[u8], value: &Bytes) -> Result<(), Error> {
        Ok(self.inner.check_weight(key, value)?)
    }

    /// Time left to live: `None` when absent, `Some(None)` when the entry does not expire.
    #[must_use]
    pub fn ttl(&self, key: impl AsRef<[u8]>) -> Option<Option<Duration>> {
        let (deadline, now) = self.deadline(key.as_ref())?;
        Some(deadline.map(|d| Duration::from_millis(d - now)))
    }

    /// When the entry expires, in milliseconds by the cache's [`Clock`](crate::Clock) (since
    /// the Unix epoch with the system clock), as Redis's `PEXPIRETIME`: `None` when absent,
    /// `Some(None)` when the entry does not expire.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cache = quipu::Cache::new();
    /// let ns = cache.default_namespace();
    /// ns.insert_with_ttl("s:1", "ana", Duration::from_secs(60))?;
    /// ns.insert("s:2", "luis")?;
    /// let at = ns.expires_at("s:1").flatten().expect("it expires");
    /// assert!(at > 1_700_000_000_000); // the Unix time in ms, a minute from now
    /// assert_eq!(ns.expires_at("s:2"), Some(None));
    /// assert_eq!(ns.expires_at("s:3"), None);
    /// # Ok::<(), quipu::Error>(())
    /// ```
    #[must_use]
    pub fn expires_at(&self, key: impl AsRef<[u8]>) -> Option<Option<u64>> {
        self.deadline(key.as_ref()).map(|(deadline, _)| deadline)
    }

    /// A live entry's deadline (`None` inside: it never expires) and the clock reading it was
    /// checked against.
    fn deadline(&self, key: &[u8]) -> Option<(Option<u64>, u64)> {
        let (hash, shard) = self.inner.locate(key);
        let now = self.inner.clock.now_millis();
        let deadline = shard.read().deadline(hash, key, now)?;
        Some(((deadline != NEVER).then_some(deadline), now))
    }

    /// Sets a new time to live on a live entry (`None` makes it never expire); returns whether
    /// the entry existed.
    pub fn expire(&self, key: impl AsRef<[u8]>, ttl: Option<Duration>) -> bool {
        let key = key.as_ref();
        let (hash, shard) = self.inner.locate(key);
        let now = self.inner.clock.now_millis();
        let expiry = Expiry {
            ttl_deadline: ttl.map_or(NEVER, |t| now.saturating_add(millis(t))),
            tti_ms: 0,
        };
        shard.write().set_deadline(hash, key, expiry, now)
    }

    /// Drops the cached copy of `key` (the store keeps its own) and publishes the
    /// invalidation. Returns whether an entry was dropped.
    pub fn invalidate(&self, key: impl AsRef<[u8]>) -> bool {
        let key = key.as_ref();
        let target = InvalidationTarget::Key(Bytes::copy_from_slice(key));
        let n = self.inner.apply(&target);
        self.inner.publish(target);
        n > 0
    }

    /// Drops every entry inserted with `tag`; returns how many.
    pub fn invalidate_tag(&self, tag: &str) -> usize {
        let target = InvalidationTarget::Tag(tag.into());
        let n = self.inner.apply(&target);
        self.inner.publish(target);
        n
    }

    /// Drops every entry whose key matches the Redis glob `pattern`; returns how many.
    pub fn invalidate_pattern(&self, pattern: &str) -> usize {
        let target = InvalidationTarget::Pattern(pattern.into());
        let n = self.inner.apply(&target);
        self.inner.publish(target);
        n
    }

    /// Drops every entry (the store keeps its copies) and publishes the invalidation.
    pub fn invalidate_all(&self) -> usize {
        let n = self.inner.apply(&InvalidationTarget::All);
        self.inner.publish(InvalidationTarget::All);
        n
    }

    /// Keys of live entries matching the Redis glob `pattern`.
    #[must_use]
    pub fn keys(&self, pattern: &str) -> Vec<Bytes> {
        self.inner
            .keys_where(|k| glob_match(pattern.as_bytes(), k))
            .into_iter()
            .map(Bytes::from)
            .collect()
    }

    /// The tags a live entry was inserted with.
    #[must_use]
    pub fn tags(&self, key: impl AsRef<[u8]>) -> Vec<String> {
        let key = key.as_ref();
        let (hash, shard) = self.inner.locate(key);
        shard
            .read()
            .tags(hash, key)
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    /// How many entries have a deadline and the mean time they have left (Redis's `INFO`
    /// `expires` and `avg_ttl`), from counters kept as deadlines change: O(shards). As in Redis,
    /// an entry past its deadline counts until a read or the sweep removes it (its time left
    /// counts as negative in the mean, which is at least zero); entries with a time to idle
    /// count in the number but not in the mean (reads move their deadlines).
    #[must_use]
    pub fn expiring(&self) -> (u64, Duration) {
        let now = self.inner.clock.now_millis();
        let (n, timed, sum) = self
            .inner
            .shards
            .iter()
            .map(|s| s.0.read().deadlines())
            .fold((0u64, 0u64, 0u128), |(n, t, sum), d| {
                (n + d.count, t + d.timed, sum + d.sum)
            });
        // Summed in u128: a million keys with deadlines centuries away overflow u64.
        let left = sum.saturating_sub(u128::from(timed) * u128::from(now));
        let mean = left.checked_div(u128::from(timed)).unwrap_or(0);
        (
            n,
            Duration::from_millis(u64::try_from(mean).unwrap_or(u64::MAX)),
        )
    }

    /// Number of entries (expired ones not yet swept included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.0.read().len()).sum()
    }

    /// Whether the namespace holds no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes counted against the budget (key + value + per-entry overhead of every entry).
    #[must_use]
    pub fn bytes_used(&self) -> u64 {
        self.inner.used.load(Relaxed)
    }

    /// A copy of the namespace's counters.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        let entries = self.len() as u64;
        self.inner
            .counters
            .snapshot(entries, self.bytes_used(), self.inner.config.max_bytes)
    }

    /// Sets the listener called with every entry that leaves the namespace (evicted,
    /// expired, removed, replaced, invalidated). It runs on the thread that removed the entry,
    /// after the shard lock is released.
    pub fn set_removal_listener(
        &self,
        listener: impl Fn(&[u8], &Bytes, RemovalCause) + Send + Sync + 'static,
    ) {
        *self.inner.listener.write() = Some(Arc::new(listener));
        self.inner.has_listener.store(true, Relaxed);
    }

    /// Calls `callback` whenever the hit ratio over a window of `window` falls below
    /// `threshold` with at least `min_reads` reads in the window. Checked by maintenance.
    pub fn set_hit_ratio_alert(
        &self,
        threshold: f64,
        window: Duration,
        min_reads: u64,
        callback: impl Fn(&HitRatioAlert) + Send + Sync + 'static,
    ) {
        *self.inner.alert.lock() = Some(AlertRule {
            threshold,
            window_ms: millis(window).max(1),
            min_reads,
            callback: Arc::new(callback),
            window_start: self.inner.clock.now_millis(),
            hits_at_start: self.inner.counters.hits.sum(),
            misses_at_start: self.inner.counters.misses.sum(),
        });
    }
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher as _, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

impl NsInner {
    fn locate(&self, key: &[u8]) -> (u64, &RwLock<Shard>) {
        let hash = self.hasher.hash_one(key);
        let idx = self.shard_index(hash);
        (hash, &self.shards[idx].0)
    }

    fn shard_index(&self, hash: u64) -> usize {
        (hash >> 32) as usize & self.shard_mask
    }

    /// Reads without counting or touching the entry.
    pub(crate) fn peek(&self, key: &[u8]) -> Option<Bytes> {
        let (hash, shard) = self.locate(key);
        let now = self.clock.now_millis();
        shard.read().peek(hash, key, now).cloned()
    }

    /// Whether `key` holds a live entry. One whose deadline has passed is removed on the way
    /// (as a read removes it, and as Redis's `EXISTS` deletes it), so that `len` stops counting
    /// it; the hit and miss counters are left alone.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        let (hash, shard) = self.locate(key);
        let now = self.clock.now_millis();
        let live = {
            let g = shard.read();
            match g.find(hash, key) {
                None => return false,
                Some(i) => g.live_value_at(i, now).is_some(),
            }
        };
        if !live {
            self.remove_expired(hash, shard, key);
        }
        live
    }

    /// Removes `key` if its deadline has passed (another thread may have done it already).
    fn remove_expired(&self, hash: u64, shard: &RwLock<Shard>, key: &[u8]) {
        let now = self.clock.now_millis();
        let removed = shard.write().remove_if_expired(hash, key, now);
        if let Some(r) = removed {
            self.used.fetch_sub(r.weight, Relaxed);
            self.notify(smallvec::smallvec![(r, RemovalCause::Expired)]);
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.get_with(key, Bytes::clone)
    }

    /// A read that hands the live value to `read` under the shard's lock instead of cloning
    /// it out (a clone writes the value's reference count: one more cache line, shared by
    /// every core reading that key).
    pub(crate) fn get_with<T>(&self, key: &[u8], read: impl FnOnce(&Bytes) -> T) -> Option<T> {
        let (hash, shard) = self.locate(key);
        let found = if self.config.policy == EvictionPolicy::Lru {
            let mut g = shard.write();
            let found = g.lookup(hash, key, || self.clock.now_millis(), read);
            if matches!(found, Lookup::Hit(_)) {
                g.touch_lru(hash, key);
            }
            found
        } else {
            shard
                .read()
                .lookup(hash, key, || self.clock.now_millis(), read)
        };
        match found {
            Lookup::Hit(v) => {
                self.counters.hits.add(1);
                Some(v)
            }
            Lookup::Expired => {
                self.counters.misses.add(1);
                self.remove_expired(hash, shard, key);
                None
            }
            Lookup::Miss => {
                self.counters.misses.add(1);
                None
            }
        }
    }

    /// The deadline a value loaded or inserted now gets, before any per-entry option.
    pub(crate) fn expiry(&self, options: &EntryOptions, now: u64) -> Expiry {
        let ttl = options.ttl.or(self.config.ttl);
        let tti = options.tti.or(self.config.tti);
        Expiry {
            ttl_deadline: ttl.map_or(NEVER, |t| now.saturating_add(millis(t))),
            tti_ms: tti.map_or(0, |t| u32::try_from(millis(t)).unwrap_or(u32::MAX).max(1)),
        }
    }

    pub(crate) fn check_weight(&self, key: &[u8], value: &Bytes) -> Result<(), CacheError> {
        let w = weight(key.len(), value.len());
        if w > self.config.max_bytes {
            return Err(CacheError::TooLarge {
                namespace: self.name.to_string(),
                bytes: w,
                max_bytes: self.config.max_bytes,
            });
        }
        Ok(())
    }

    /// Puts into memory only (persistence already done, or not wanted: warming, restores).
    pub(crate) fn put_cached(&self, key: &[u8], value: Bytes, options: &EntryOptions) {
        if self.check_weight(key, &value).is_err() {
            return;
        }
        let now = self.clock.now_millis();
        let expiry = self.expiry(options, now);
        self.put_with_expiry(key, value, expiry, &options.tags, now);
    }

    pub(crate) fn put_with_expiry(
        &self,
        key: &[u8],
        value: Bytes,
        expiry: Expiry,
        tags: &[Arc<str>],
        now: u64,
    ) {
        let (hash, shard) = self.locate(key);
        let mut removed = Removals::new();
        {
            let mut g = shard.write();
            let found = g.find(hash, key);
            self.insert_locked(
                &mut g,
                found,
                hash,
                key,
                value,
                expiry,
                tags,
                now,
                &mut removed,
            );
        }
        self.counters.inserts.add(1);
        if self.used.load(Relaxed) > self.config.max_bytes {
            self.evict_elsewhere(self.shard_index(hash), now, &mut removed);
        }
        self.notify(removed);
    }

    /// Inserts under the shard's write lock, then evicts from that shard (never the new entry)
    /// while the namespace is over budget. The one place that charges the budget for an insert.
    #[allow(clippy::too_many_arguments)]
    fn insert_locked(
        &self,
        g: &mut Shard,
        found: Option<u32>,
        hash: u64,
        key: &[u8],
        value: Bytes,
        expiry: Expiry,
        tags: &[Arc<str>],
        now: u64,
        removed: &mut Removals,
    ) {
        let w = weight(key.len(), value.len());
        let (slot, replaced) = g.insert_found(found, hash, key, value, expiry, tags, now);
        // At most one read-modify-write of the shared counter per insert: it is the one write
        // every core makes.
        match replaced {
            Some(mut r) => {
                // An overwrite of the same size (a counter, a fixed-size record) leaves the
                // shared line alone: no write, so it is not pulled from the other cores.
                if w != r.weight {
                    self.used.fetch_add(w.wrapping_sub(r.weight), Relaxed);
                }
                if self.has_listener.load(Relaxed) {
                    r.key = Key::new(key);
                }
                removed.push((r, RemovalCause::Replaced));
            }
            None => {
                self.used.fetch_add(w, Relaxed);
            }
        }
        while self.used.load(Relaxed) > self.config.max_bytes {
            let Some(r) = g.evict_one(slot, now) else {
                break;
            };
            self.used.fetch_sub(r.weight, Relaxed);
            // `notify` reports an expired victim as `Expired`.
            removed.push((r, RemovalCause::Size));
        }
    }

    /// Evicts from the other shards, one at a time, until the budget holds.
    fn evict_elsewhere(&self, from: usize, now: u64, removed: &mut Removals) {
        let n = self.shards.len();
        for step in 1..n {
            let mut g = self.shards[(from + step) % n].0.write();
            while self.used.load(Relaxed) > self.config.max_bytes {
                let Some(r) = g.evict_one(u32::MAX, now) else {
                    break;
                };
                self.used.fetch_sub(r.weight, Relaxed);
                let cause = if r.expired {
                    RemovalCause::Expired
                } else {
                    RemovalCause::Size
                };
                removed.push((r, cause));
            }
            if self.used.load(Relaxed) <= self.config.max_bytes {
                return;
            }
        }
    }

    pub(crate) fn remove_cached(&self, key: &[u8], cause: RemovalCause) -> Option<Bytes> {
        let (hash, shard) = self.locate(key);
        let now = self.clock.now_millis();
        let r = shard.write().remove(hash, key, now)?;
        self.used.fetch_sub(r.weight, Relaxed);
        let live = !r.expired;
        let value = r.value.clone();
        let cause = if live { cause } else { RemovalCause::Expired };
        self.notify(smallvec::smallvec![(r, cause)]);
        live.then_some(value)
    }

    /// Read-modify-write under the shard's write lock, persisted like an insert or remove.
    /// Returns the new value.
    fn update(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&Bytes>) -> Result<Option<Bytes>, CacheError>,
    ) -> Result<Option<Bytes>, Error> {
        let mut next = None;
        self.modify(key, |cur| {
            let v = f(cur)?;
            next.clone_from(&v);
            Ok(match v {
                Some(v) if Some(&v) == cur => Modify::Keep,
                Some(v) => Modify::Set(v, TtlChange::Keep),
                None if cur.is_none() => Modify::Keep,
                None => Modify::Remove,
            })
        })?;
        Ok(next)
    }

    /// The general read-modify-write: `f` sees the live value and decides; returns the value
    /// before the change.
    pub(crate) fn modify(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&Bytes>) -> Result<Modify, CacheError>,
    ) -> Result<Option<Bytes>, Error> {
        let (hash, shard) = self.locate(key);
        let now = self.clock.now_millis();
        let mut removed = Removals::new();
        let previous = {
            let mut g = shard.write();
            // One lookup serves the read, the TTL, the tags and the write.
            let found = g.find(hash, key);
            // Borrowed, not cloned: a clone is a reference-count write on the old value's
            // buffer (often its first touch: a cache miss), and the old value is moved out
            // below when it is replaced or removed.
            let current = found.and_then(|i| g.live_value_at(i, now));
            let live = current.is_some();
            match f(current)? {
                Modify::Keep => return Ok(current.cloned()),
                Modify::Set(v, ttl) => {
                    self.check_weight(key, &v)?;
                    self.backing.before_put(self, key, &v)?;
                    let expiry = match ttl {
                        TtlChange::Keep => match found.and_then(|i| g.live_deadline_at(i, now)) {
                            Some(d) => Expiry {
                                ttl_deadline: d,
                                tti_ms: 0,
                            },
                            None => self.expiry(&EntryOptions::default(), now),
                        },
                        TtlChange::Clear => Expiry {
                            ttl_deadline: NEVER,
                            tti_ms: 0,
                        },
                        TtlChange::Set(t) => Expiry {
                            ttl_deadline: now.saturating_add(millis(t)),
                            tti_ms: 0,
                        },
                    };
                    let tags = found.map(|i| g.tags_at(i)).unwrap_or_default();
                    self.insert_locked(
                        &mut g,
                        found,
                        hash,
                        key,
                        v,
                        expiry,
                        &tags,
                        now,
                        &mut removed,
                    );
                    self.counters.inserts.add(1);
                }
                Modify::Remove => {
                    self.backing.before_delete(self, key)?;
                    if let Some(r) = g.remove(hash, key, now) {
                        self.used.fetch_sub(r.weight, Relaxed);
                        removed.push((r, RemovalCause::Explicit));
                    }
                }
            }
            // The replaced or removed entry is the first one recorded; it is the previous value
            // only if it was live. A listener reads it too, so it gets a clone; otherwise the
            // value is moved out.
            match removed.first_mut() {
                Some((r, _)) if live && self.has_listener.load(Relaxed) => Some(r.value.clone()),
                Some((r, _)) if live => Some(std::mem::take(&mut r.value)),
                _ => None,
            }
        };
        if self.used.load(Relaxed) > self.config.max_bytes {
            self.evict_elsewhere(self.shard_index(hash), now, &mut removed);
        }
        self.notify(removed);
        Ok(previous)
    }

    fn keys_where(&self, mut keep: impl FnMut(&[u8]) -> bool) -> Vec<Box<[u8]>> {
        let now = self.clock.now_millis();
        self.shards
            .iter()
            .flat_map(|s| s.0.read().keys_where(now, &mut keep))
            .collect()
    }

    /// Applies an invalidation to this process's entries (without publishing it).
    pub(crate) fn apply(&self, target: &InvalidationTarget) -> usize {
        self.counters.invalidations.fetch_add(1, Relaxed);
        if let InvalidationTarget::Key(k) = target {
            return usize::from(self.remove_cached(k, RemovalCause::Invalidated).is_some());
        }
        let now = self.clock.now_millis();
        let mut removed = Removals::new();
        for s in &self.shards {
            let mut g = s.0.write();
            let keys = match target {
                InvalidationTarget::Key(_) => Vec::new(),
                InvalidationTarget::Tag(t) => g.keys_tagged(t),
                InvalidationTarget::Pattern(p) => {
                    g.keys_where(now, |k| glob_match(p.as_bytes(), k))
                }
                InvalidationTarget::All => {
                    for r in g.clear(now) {
                        self.used.fetch_sub(r.weight, Relaxed);
                        removed.push((r, RemovalCause::Invalidated));
                    }
                    continue;
                }
            };
            for key in keys {
                let hash = self.hasher.hash_one(&*key);
                if let Some(r) = g.remove(hash, &key, now) {
                    self.used.fetch_sub(r.weight, Relaxed);
                    removed.push((r, RemovalCause::Invalidated));
                }
            }
        }
        let n = removed.iter().filter(|(r, _)| !r.expired).count();
        self.notify(removed);
        n
    }

    fn publish(&self, target: InvalidationTarget) {
        // No receiver is fine: nobody follows invalidations.
        let _ = self.events.send(Invalidation {
            namespace: self.name.to_string(),
            target,
        });
    }

    fn notify(&self, removed: Removals) {
        if removed.is_empty() {
            return;
        }
        for (r, cause) in &removed {
            let cause = if r.expired {
                RemovalCause::Expired
            } else {
                *cause
            };
            self.counters.removed(cause, 1);
        }
        if !self.has_listener.load(Relaxed) {
            return;
        }
        let listener = self.listener.read().clone();
        if let Some(listener) = listener {
            for (r, cause) in removed {
                let cause = if r.expired {
                    RemovalCause::Expired
                } else {
                    cause
                };
                listener(r.key.as_bytes(), &r.value, cause);
            }
        }
    }

    /// Frees expired entries without waiting for a read; checks the hit-ratio alert.
    pub(crate) fn maintain(&self, sweep_batch: usize) {
        let now = self.clock.now_millis();
        let mut out = Vec::new();
        for s in &self.shards {
            s.0.write().sweep(now, sweep_batch, &mut out);
        }
        for r in &out {
            self.used.fetch_sub(r.weight, Relaxed);
        }
        self.notify(
            out.into_iter()
                .map(|r| (r, RemovalCause::Expired))
                .collect(),
        );
        self.check_alert(now);
    }

    fn check_alert(&self, now: u64) {
        let fired = {
            let mut rule = self.alert.lock();
            let Some(rule) = rule.as_mut() else { return };
            if now < rule.window_start.saturating_add(rule.window_ms) {
                return;
            }
            let (hits, misses) = (self.counters.hits.sum(), self.counters.misses.sum());
            let dh = hits - rule.hits_at_start;
            let dm = misses - rule.misses_at_start;
            rule.window_start = now;
            rule.hits_at_start = hits;
            rule.misses_at_start = misses;
            let reads = dh + dm;
            let ratio = if reads == 0 {
                1.0
            } else {
                dh as f64 / reads as f64
            };
            (reads >= rule.min_reads.max(1) && ratio < rule.threshold).then(|| {
                let alert = HitRatioAlert {
                    namespace: self.name.to_string(),
                    hit_ratio: ratio,
                    threshold: rule.threshold,
                    reads,
                };
                (Arc::clone(&rule.callback), alert)
            })
        };
        if let Some((callback, alert)) = fired {
            callback(&alert);
        }
    }

    /// How many shards the namespace has: `SCAN` walks them one after another.
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// One step of `SCAN` in shard `shard` (see `Shard::scan_slots`): the slot to resume
    /// from, or `None` when the shard is done (also for a shard that does not exist).
    pub(crate) fn scan_shard(
        &self,
        shard: usize,
        from: u32,
        budget: usize,
        visit: impl FnMut(&[u8]),
    ) -> Option<u32> {
        let now = self.clock.now_millis();
        self.shards
            .get(shard)?
            .0
            .read()
            .scan_slots(from, now, budget, visit)
    }

    /// A live key picked at random (`pick(n)` uniform in `0..n`), `None` if there is none.
    pub(crate) fn random_key(&self, mut pick: impl FnMut(usize) -> usize) -> Option<Bytes> {
        let now = self.clock.now_millis();
        let n = self.shards.len();
        let first = pick(n);
        (0..n).find_map(|k| {
            let shard = self.shards[(first + k) % n].0.read();
            shard.random_key(now, &mut pick).map(Bytes::copy_from_slice)
        })
    }

    /// Live entries of every shard, for snapshots.
    pub(crate) fn entries(&self) -> Vec<LiveEntry> {
        let now = self.clock.now_millis();
        self.shards
            .iter()
            .flat_map(|s| s.0.read().entries(now))
            .collect()
    }

    pub(crate) fn persistence(&self) -> Persistence {
        self.config.persistence
    }
}
