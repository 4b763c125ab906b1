//! The cache: namespaces of sharded in-memory entries with a byte budget, S3-FIFO eviction,
//! TTL/TTI, single-flight loading, write-through/write-behind to a [`Store`](crate::Store),
//! warming, invalidation (key, tag, pattern, events), metrics and snapshots.

mod counters;
mod ghost;
#[expect(
    unsafe_code,
    reason = "a 16-byte key with inline storage; see its SAFETY comments"
)]
mod key;
mod loader;
mod namespace;
mod persist;
mod shard;
mod snapshot;
mod warming;

pub use loader::BoxError;
pub use namespace::{
    HitRatioAlert, HitRatioCallback, Modify, Namespace, RemovalListener, TtlChange,
};
pub use persist::{BreakerState, Journal};
pub use shard::ENTRY_OVERHEAD;
pub use snapshot::SnapshotReport;
#[doc(hidden)]
pub use snapshot::decode_for_fuzzing as decode_snapshot_for_fuzzing;
pub use warming::Schedule;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use self::persist::Backing;
use self::warming::WarmJob;
use crate::clock::{Clock, SystemClock};
use crate::config::{CacheConfig, NamespaceConfig, Persistence};
use crate::error::{CacheError, Error};
use crate::store::Store;

/// Name of the namespace used for keys that name none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Why an entry left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// Removed by `remove` (or `compare_and_set`/`update` to nothing).
    Explicit,
    /// Its value was replaced by an insert.
    Replaced,
    /// Its TTL or TTI passed.
    Expired,
    /// Evicted to keep the namespace within its byte budget.
    Size,
    /// Dropped by an invalidation (key, tag, pattern, all, or a business event).
    Invalidated,
}

/// Per-entry options of an insert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryOptions {
    /// Time to live (default: the namespace's).
    pub ttl: Option<Duration>,
    /// Time to idle (default: the namespace's).
    pub tti: Option<Duration>,
    /// Tags for invalidation by tag (default none).
    pub tags: Vec<Arc<str>>,
}

impl EntryOptions {
    /// Sets the time to live.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the time to idle.
    #[must_use]
    pub fn tti(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// Adds a tag.
    #[must_use]
    pub fn tag(mut self, tag: &str) -> Self {
        self.tags.push(tag.into());
        self
    }
}

/// What an invalidation drops.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidationTarget {
    /// One key.
    Key(Bytes),
    /// Every entry carrying the tag.
    Tag(String),
    /// Every key matching the Redis glob.
    Pattern(String),
    /// Every entry.
    All,
}

/// An invalidation, as published on the cache's invalidation channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Invalidation {
    /// The namespace it applies to.
    pub namespace: String,
    /// What it drops.
    pub target: InvalidationTarget,
}

impl Invalidation {
    /// An invalidation of `target` in `namespace`.
    #[must_use]
    pub fn new(namespace: &str, target: InvalidationTarget) -> Self {
        Self {
            namespace: namespace.to_owned(),
            target,
        }
    }
}

/// The cache: a set of named [`Namespace`]s plus a default one.
///
/// ```
/// use quipu::{Cache, EntryOptions};
/// use std::time::Duration;
///
/// let cache = Cache::new();
/// let ns = cache.default_namespace();
/// ns.insert_with("geo:prov:17", "Pichincha", &EntryOptions::default().tag("geo"))?;
/// ns.insert_with_ttl("session:9", "{}", Duration::from_secs(1800))?;
/// assert_eq!(ns.invalidate_tag("geo"), 1);
/// assert!(ns.get("geo:prov:17").is_none());
/// # Ok::<(), quipu::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Cache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    config: CacheConfig,
    clock: Arc<dyn Clock>,
    store: Option<Arc<dyn Store>>,
    journal: Option<Arc<dyn Journal>>,
    snapshot_dir: Option<PathBuf>,
    namespaces: RwLock<HashMap<String, Namespace>>,
    default: Namespace,
    events: tokio::sync::broadcast::Sender<Invalidation>,
    jobs: Mutex<Vec<WarmJob>>,
    reports: Mutex<Vec<SnapshotReport>>,
    /// Held while snapshots are written: two writers of one namespace's file would interleave
    /// their bytes in its temporary file.
    snapshotting: Mutex<()>,
    stop: Mutex<bool>,
    wake: Condvar,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for CacheInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("namespaces", &self.namespaces.read().len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Cache`] with a clock, a store, a journal and a snapshot directory.
#[must_use]
#[derive(Default)]
pub struct CacheBuilder {
    config: CacheConfig,
    clock: Option<Arc<dyn Clock>>,
    store: Option<Arc<dyn Store>>,
    journal: Option<Arc<dyn Journal>>,
    snapshot_dir: Option<PathBuf>,
}

impl CacheBuilder {
    /// Sets the config (default [`CacheConfig::default`]).
    pub fn config(mut self, config: CacheConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the clock TTL and TTI read (default [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sets the store for write-through, write-behind and warming (default none).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Sets the durable journal of write-behind (default none; [`Quipu`](crate::Quipu)
    /// provides one on its log).
    pub fn journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Sets where snapshots of [`Persistence::Snapshot`] namespaces are kept (default none).
    pub fn snapshot_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.snapshot_dir = Some(dir.into());
        self
    }

    /// Builds the cache and starts its maintenance thread (if an interval is set).
    ///
    /// # Errors
    /// [`Error::Config`] when the config does not validate.
    pub fn build(self) -> Result<Cache, Error> {
        self.config.validate()?;
        Ok(self.build_valid())
    }

    /// Builds from a config known to validate. Without a maintenance thread (the OS refused
    /// one) the cache still works; maintenance then runs on `run_pending_tasks` only.
    fn build_valid(self) -> Cache {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let default = Namespace::new(
            DEFAULT_NAMESPACE,
            self.config.default_namespace.clone(),
            Arc::clone(&clock),
            Backing::new(self.store.clone(), self.journal.clone()),
            events.clone(),
        );
        let cache = Cache {
            inner: Arc::new(CacheInner {
                config: self.config,
                clock,
                store: self.store,
                journal: self.journal,
                snapshot_dir: self.snapshot_dir,
                namespaces: RwLock::new(HashMap::new()),
                default,
                events,
                jobs: Mutex::new(Vec::new()),
                reports: Mutex::new(Vec::new()),
                snapshotting: Mutex::new(()),
                stop: Mutex::new(false),
                wake: Condvar::new(),
                worker: Mutex::new(None),
            }),
        };
        cache.restore(&cache.inner.default);
        if let Some(every) = cache.inner.config.maintenance_interval {
            let weak = Arc::downgrade(&cache.inner);
            let handle = std::thread::Builder::new()
                .name("quipu-cache".to_owned())
                .spawn(move || maintenance_loop(&weak, every));
            *cache.inner.worker.lock() = handle.ok();
        }
        cache
    }
}

fn maintenance_loop(weak: &Weak<CacheInner>, every: Duration) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let cache = Cache { inner };
        cache.run_pending_tasks();
        let inner = cache.inner;
        let mut stop = inner.stop.lock();
        if *stop {
            return;
        }
        inner.wake.wait_for(&mut stop, every);
        if *stop {
            return;
        }
    }
}

impl Default for Cache {
    fn default() -> Self {
        Self::new()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Cache {
    /// An in-memory cache with the default config and the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build_valid()
    }

    /// A builder for a cache with a clock, store, journal or snapshot directory.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// The namespace for keys that name none.
    #[must_use]
    pub fn default_namespace(&self) -> &Namespace {
        &self.inner.default
    }

    /// Creates a namespace; restores its snapshot if it is [`Persistence::Snapshot`].
    ///
    /// # Errors
    /// [`CacheError::NamespaceExists`], [`CacheError::InvalidNamespaceName`],
    /// [`CacheError::NoStore`] for write-through/write-behind without a store, or
    /// [`Error::Config`].
    pub fn create_namespace(
        &self,
        name: &str,
        config: NamespaceConfig,
    ) -> Result<Namespace, Error> {
        config.validate()?;
        if !valid_name(name) {
            return Err(CacheError::InvalidNamespaceName(name.to_owned()).into());
        }
        if matches!(
            config.persistence,
            Persistence::WriteThrough | Persistence::WriteBehind
        ) && self.inner.store.is_none()
        {
            return Err(CacheError::NoStore(name.to_owned()).into());
        }
        let ns = {
            let mut all = self.inner.namespaces.write();
            if all.contains_key(name) || name == DEFAULT_NAMESPACE {
                return Err(CacheError::NamespaceExists(name.to_owned()).into());
            }
            let ns = Namespace::new(
                name,
                config,
                Arc::clone(&self.inner.clock),
                Backing::new(self.inner.store.clone(), self.inner.journal.clone()),
                self.inner.events.clone(),
            );
            all.insert(name.to_owned(), ns.clone());
            ns
        };
        self.restore(&ns);
        // Write-behind writes journaled before a crash reach the store now.
        if ns.config().persistence == Persistence::WriteBehind {
            let _ = ns.flush_write_behind();
        }
        Ok(ns)
    }

    /// The namespace called `name` (`"default"` is the default namespace).
    #[must_use]
    pub fn namespace(&self, name: &str) -> Option<Namespace> {
        if name == DEFAULT_NAMESPACE {
            return Some(self.inner.default.clone());
        }
        self.inner.namespaces.read().get(name).cloned()
    }

    /// Every namespace, the default one first.
    #[must_use]
    pub fn namespaces(&self) -> Vec<Namespace> {
        let mut all = vec![self.inner.default.clone()];
        let mut named: Vec<Namespace> = self.inner.namespaces.read().values().cloned().collect();
        named.sort_by(|a, b| a.name().cmp(b.name()));
        all.extend(named);
        all
    }

    /// Follows every invalidation made through this cache (to forward to other processes or
    /// clients). Lagging receivers lose the oldest, as tokio's broadcast channel does.
    #[must_use]
    pub fn invalidations(&self) -> tokio::sync::broadcast::Receiver<Invalidation> {
        self.inner.events.subscribe()
    }

    /// Applies an invalidation received from elsewhere (another process, a business event)
    /// and publishes it to this cache's followers. Returns the entries dropped.
    pub fn apply_invalidation(&self, invalidation: &Invalidation) -> usize {
        let Some(ns) = self.namespace(&invalidation.namespace) else {
            return 0;
        };
        match &invalidation.target {
            InvalidationTarget::Key(k) => usize::from(ns.invalidate(k)),
            InvalidationTarget::Tag(t) => ns.invalidate_tag(t),
            InvalidationTarget::Pattern(p) => ns.invalidate_pattern(p),
            InvalidationTarget::All => ns.invalidate_all(),
        }
    }

    /// Runs maintenance now: sweeps expired entries, checks hit-ratio alerts, flushes
    /// write-behind, runs due warming jobs. The background thread calls this on its interval;
    /// tests with a manual clock call it directly.
    pub fn run_pending_tasks(&self) {
        let batch = self.inner.config.sweep_batch;
        let now = self.inner.clock.now_millis();
        for ns in self.namespaces() {
            ns.inner.maintain(batch);
            // A failing store is retried by the breaker; the failure is counted in the stats.
            let _ = ns.inner.backing.flush(&ns.inner, now, false);
        }
        self.run_due_jobs(now);
    }

    /// Stops the maintenance thread, flushes write-behind and writes snapshots.
    ///
    /// # Errors
    /// The first flush or snapshot error (the others are still attempted).
    pub fn close(&self) -> Result<(), Error> {
        *self.inner.stop.lock() = true;
        self.inner.wake.notify_all();
        if let Some(worker) = self.inner.worker.lock().take()
            && worker.thread().id() != std::thread::current().id()
        {
            let _ = worker.join();
        }
        let mut first = None;
        for ns in self.namespaces() {
            if let Err(e) = ns.flush_write_behind() {
                first.get_or_insert(e);
            }
        }
        if let Err(e) = self.snapshot() {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }
}

impl Drop for CacheInner {
    fn drop(&mut self) {
        // The last handle is gone: stop maintenance (the thread sees its weak handle die) and
        // keep what critical namespaces hold.
        *self.stop.lock() = true;
        self.wake.notify_all();
        let mut all = vec![self.default.clone()];
        all.extend(self.namespaces.read().values().cloned());
        for ns in all {
            let _ = ns.flush_write_behind();
            if let Some(dir) = &self.snapshot_dir {
                let _ = snapshot::write(dir, &ns);
            }
        }
    }
}

impl Namespace {
    /// Applies every pending write-behind write to the store now (ignores the interval, not an
    /// open circuit breaker). Returns how many writes were applied.
    ///
    /// # Errors
    /// [`CacheError::Persist`] when the store fails (the writes stay pending).
    pub fn flush_write_behind(&self) -> Result<u64, Error> {
        let now = self.inner.clock.now_millis();
        self.inner.backing.flush(&self.inner, now, true)
    }

    /// The write-behind circuit breaker's state.
    #[must_use]
    pub fn breaker(&self) -> BreakerState {
        self.inner.backing.breaker()
    }
}
