//! `Quipu`: opens a data directory, owns and wires the subsystems.

mod invalidation;
mod journal;

pub use self::invalidation::{EventInvalidator, EventMapper};

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use self::journal::LogJournal;
use crate::cache::Cache;
use crate::clock::{Clock, SystemClock};
use crate::config::{CacheConfig, LogConfig};
use crate::error::Error;
use crate::log::{FsStorage, Log, RecoveryProgress, Storage};
use crate::pubsub::PubSub;
use crate::store::{RedbStore, Store};

/// An open quipu data directory.
///
/// ```
/// # fn main() -> Result<(), quipu::Error> {
/// # let dir = tempfile::tempdir().map_err(|e| quipu::Error::Io { path: ".".into(), source: e })?;
/// use quipu::{Message, Quipu};
///
/// let db = Quipu::open(dir.path())?;
/// let events = db.log().topic_or_create("events")?;
/// let receipt = events.append(Message::new("hello"))?;
/// assert_eq!(receipt.offset, 0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Quipu {
    dir: PathBuf,
    log: Log,
    cache: Cache,
    store: Arc<dyn Store>,
    pubsub: PubSub,
    // Held for the lifetime of the instance: the OS releases the lock if the process dies.
    _lock: File,
}

impl Quipu {
    /// Opens (creating if needed) the data directory with default settings.
    ///
    /// # Errors
    /// [`Error::Locked`] if another instance has it open; log recovery errors.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        Self::builder(dir).open()
    }

    /// A builder for non-default settings.
    pub fn builder(dir: impl AsRef<Path>) -> QuipuBuilder {
        QuipuBuilder {
            dir: dir.as_ref().to_owned(),
            log: LogConfig::default(),
            storage: Arc::new(FsStorage),
            clock: Arc::new(SystemClock),
            cache: CacheConfig::default(),
            store: None,
            progress: None,
        }
    }

    /// The cache. Its write-behind journal is a log topic per namespace (`_cache.<name>`),
    /// its store is [`store`](Self::store), its snapshots live in `<data>/cache/`.
    #[must_use]
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Invalidates the cache from business events: every record of `topic` goes through
    /// `mapper`, and the invalidations it returns are applied and published. A background
    /// thread follows the topic until the returned handle is dropped; a consumer group keeps
    /// its place across restarts.
    ///
    /// ```
    /// # fn main() -> Result<(), quipu::Error> {
    /// # let dir = tempfile::tempdir().map_err(|e| quipu::Error::Io { path: ".".into(), source: e })?;
    /// use quipu::{Invalidation, InvalidationTarget, Message, Quipu};
    ///
    /// let db = Quipu::open(dir.path())?;
    /// let prices = db.log().topic_or_create("price-changes")?;
    /// db.cache().default_namespace().insert("price:sku-1", "1.25")?;
    /// let feed = db.invalidate_on("price-changes", |r| {
    ///     let key = r.key.clone().unwrap_or_default();
    ///     vec![Invalidation::new("default", InvalidationTarget::Key(key))]
    /// })?;
    /// prices.append(Message::new("1.40").with_key("price:sku-1"))?;
    /// feed.run_once()?;
    /// assert!(db.cache().default_namespace().get("price:sku-1").is_none());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`LogError::TopicNotFound`](crate::LogError) when the topic does not exist.
    pub fn invalidate_on(
        &self,
        topic: &str,
        mapper: impl Fn(&crate::log::Record) -> Vec<crate::cache::Invalidation> + Send + Sync + 'static,
    ) -> Result<EventInvalidator, Error> {
        EventInvalidator::start(&self.log, &self.cache, topic, Arc::new(mapper), true)
    }

    /// The ephemeral pub/sub hub (durable subscriptions are opened on the log with
    /// [`DurableSubscription::open`](crate::DurableSubscription::open)).
    #[must_use]
    pub fn pubsub(&self) -> &PubSub {
        &self.pubsub
    }

    /// The durable key-value store (by default redb in `<data>/store.redb`).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The event log.
    #[must_use]
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The data directory.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Flushes and fsyncs everything and releases the directory. Dropping a `Quipu` does the
    /// same.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for Quipu {
    fn drop(&mut self) {
        // Write order on the way out: pending write-behind reaches the store and critical
        // namespaces are snapshotted while the log is still open, then the log closes, all
        // before the lock file is released: no write may land after another process can open
        // the directory, even while handles to topics are still alive elsewhere.
        let _ = self.cache.close();
        self.log.close();
    }
}

/// Settings for [`Quipu::open`]; every setter states its default.
#[must_use]
pub struct QuipuBuilder {
    dir: PathBuf,
    log: LogConfig,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    cache: CacheConfig,
    store: Option<Arc<dyn Store>>,
    progress: Option<Box<RecoveryReport>>,
}

impl std::fmt::Debug for QuipuBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuipuBuilder")
            .field("dir", &self.dir)
            .field("log", &self.log)
            .field("cache", &self.cache)
            .field("custom_store", &self.store.is_some())
            .field("on_recovery", &self.progress.is_some())
            .finish_non_exhaustive()
    }
}

/// What [`QuipuBuilder::on_recovery`] calls.
type RecoveryReport = dyn Fn(RecoveryProgress<'_>);

impl QuipuBuilder {
    /// The cache's configuration (default [`CacheConfig::default`]).
    pub fn cache_config(mut self, config: CacheConfig) -> Self {
        self.cache = config;
        self
    }

    /// The durable store (default: [`RedbStore`] in `<data>/store.redb`). Applications plug in
    /// their own database here.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The log's configuration (default [`LogConfig::default`]).
    pub fn log_config(mut self, config: LogConfig) -> Self {
        self.log = config;
        self
    }

    /// The file system the log writes through (default: the real one). Tests inject faults here.
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = storage;
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Called after each log topic is recovered while the directory opens (default: nothing).
    pub fn on_recovery(mut self, progress: impl Fn(RecoveryProgress<'_>) + 'static) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Opens the directory.
    ///
    /// # Errors
    /// As [`Quipu::open`].
    pub fn open(self) -> Result<Quipu, Error> {
        let io = |path: &Path, source| Error::Io {
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let lock_path = self.dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: self.dir }),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path, e)),
        }
        let progress = self.progress.unwrap_or_else(|| Box::new(|_| {}));
        let log = Log::open_reporting(
            &self.dir.join("log"),
            self.log,
            self.storage,
            Arc::clone(&self.clock),
            &*progress,
        )?;
        let store: Arc<dyn Store> = match self.store {
            Some(s) => s,
            None => Arc::new(RedbStore::open(self.dir.join("store.redb"))?),
        };
        let cache = Cache::builder()
            .config(self.cache)
            .clock(self.clock)
            .store(Arc::clone(&store))
            .journal(Arc::new(LogJournal::new(&log)?))
            .snapshot_dir(self.dir.join("cache"))
            .build()?;
        Ok(Quipu {
            dir: self.dir,
            log,
            cache,
            store,
            pubsub: PubSub::new(),
            _lock: lock,
        })
    }
}
