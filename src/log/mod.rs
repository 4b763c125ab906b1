//! The append-only event log: topics → partitions → segments of CRC-checked record batches.

mod appender;
mod cleanup;
mod durable;
mod groups;
mod index;
mod meta;
mod partition;
mod producer;
mod read;
mod record;
mod recovery;
mod segment;
mod storage;
mod sync;
mod topic;
mod view;

#[doc(hidden)]
pub mod fuzzing;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use serde::{Deserialize, Serialize};

pub use appender::{Appender, TopicAppender};
pub use groups::{ConsumerGroup, PartitionLag};
pub use partition::{AppendReceipt, Partition};
pub use read::{BatchView, Follower, RecordBatch};
pub(crate) use record::crc32c;
pub use record::{Message, Record};
pub use storage::{FsStorage, Storage, StorageFile};
pub use topic::Topic;
pub use view::{RecordView, RecordViews};

use crate::clock::{Clock, SystemClock};
use crate::config::{LogConfig, TopicConfig};
use crate::error::LogError;
use crate::metrics::{LogMetrics, LogStats};

/// The newest on-disk layout of the log directory this build reads.
const LOG_FORMAT: u32 = 1;
// Starts with "__", which topic names may not: no topic can collide with it.
const FORMAT_FILE: &str = "__format";
const TOPIC_META: &str = "topic.meta";
const GROUPS_DIR: &str = "__groups";

/// What every partition shares.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub storage: Arc<dyn Storage>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<LogMetrics>,
    pub config: Arc<LogConfig>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FormatMarker {
    log_format: u32,
}

/// How far opening the log has got: reported after each topic is recovered.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RecoveryProgress<'a> {
    /// The topic just recovered.
    pub topic: &'a str,
    /// Topics recovered so far, this one included.
    pub topics_done: usize,
    /// Topics in the directory.
    pub topics_total: usize,
}

/// The event log: a directory of topics. Cheap to clone; clones share everything.
///
/// Usually reached through [`Quipu::log`](crate::Quipu::log); see [`Topic`] for appends and
/// reads.
#[derive(Debug, Clone)]
pub struct Log {
    inner: Arc<LogInner>,
}

#[derive(Debug)]
pub(crate) struct LogInner {
    dir: PathBuf,
    ctx: Context,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    groups: Mutex<HashMap<String, Arc<ConsumerGroup>>>,
    /// Serialises topic creation and deletion.
    admin: Mutex<()>,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Drop for LogInner {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        for t in self.topics.read().values() {
            t.close();
        }
    }
}

impl Log {
    /// Opens the log in `dir` with the real file system and clock.
    ///
    /// # Errors
    /// [`LogError::UnsupportedFormat`] for a directory written by a newer quipu; recovery
    /// errors ([`LogError::Corrupt`]) per the configured [`RecoveryMode`](crate::RecoveryMode);
    /// [`LogError::Io`].
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Self, crate::Error> {
        Self::open_with(
            dir.as_ref(),
            config,
            Arc::new(FsStorage),
            Arc::new(SystemClock),
        )
    }

    /// Opens the log with an injected file system and clock (tests, fault injection).
    ///
    /// # Errors
    /// As [`open`](Self::open), plus [`ConfigError`](crate::ConfigError) for a bad config.
    pub fn open_with(
        dir: &Path,
        config: LogConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, crate::Error> {
        Self::open_reporting(dir, config, storage, clock, &|_| {})
    }

    /// As [`open_with`](Self::open_with), telling `progress` after each topic is recovered
    /// (a server shows it while a large data directory opens).
    ///
    /// # Errors
    /// As [`open_with`](Self::open_with).
    pub fn open_reporting(
        dir: &Path,
        config: LogConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        progress: &dyn Fn(RecoveryProgress<'_>),
    ) -> Result<Self, crate::Error> {
        config.validate()?;
        let maintenance = config.maintenance_interval;
        let ctx = Context {
            storage,
            clock,
            metrics: Arc::new(LogMetrics::default()),
            config: Arc::new(config),
        };
        let s = ctx.storage.as_ref();
        let io = |e| LogError::io(dir, e);
        s.create_dir_all(dir).map_err(io)?;
        let marker = dir.join(FORMAT_FILE);
        match meta::read::<FormatMarker>(s, &marker)? {
            Some(m) if m.log_format > LOG_FORMAT => {
                return Err(LogError::UnsupportedFormat {
                    path: marker,
                    found: m.log_format,
                    supported: LOG_FORMAT,
                }
                .into());
            }
            Some(_) => {}
            None => meta::write(
                s,
                &marker,
                &FormatMarker {
                    log_format: LOG_FORMAT,
                },
            )?,
        }
        let mut topics = HashMap::new();
        let names: Vec<String> = s
            .list(dir)
            .map_err(io)?
            .into_iter()
            .filter(|name| !name.starts_with("__") && s.exists(&dir.join(name).join(TOPIC_META)))
            .collect();
        for (done, name) in names.iter().enumerate() {
            let meta_path = dir.join(name).join(TOPIC_META);
            let config: TopicConfig =
                meta::read(s, &meta_path)?.ok_or_else(|| LogError::Corrupt {
                    path: meta_path.clone(),
                    position: 0,
                    reason: "missing topic metadata".to_owned(),
                })?;
            let topic = Topic::open(name, dir.join(name), config, &ctx)?;
            progress(RecoveryProgress {
                topic: name,
                topics_done: done + 1,
                topics_total: names.len(),
            });
            topics.insert(name.clone(), Arc::new(topic));
        }
        let log = Self {
            inner: Arc::new(LogInner {
                dir: dir.to_owned(),
                ctx,
                topics: RwLock::new(topics),
                groups: Mutex::new(HashMap::new()),
                admin: Mutex::new(()),
                stop: Arc::new((Mutex::new(false), Condvar::new())),
            }),
        };
        if let Some(every) = maintenance {
            log.spawn_maintenance(every);
        }
        Ok(log)
    }

    fn spawn_maintenance(&self, every: Duration) {
        let weak: Weak<LogInner> = Arc::downgrade(&self.inner);
        let stop = Arc::clone(&self.inner.stop);
        let _ = std::thread::Builder::new()
            .name("quipu-maintenance".into())
            .spawn(move || {
                loop {
                    {
                        let mut stopped = stop.0.lock();
                        if !*stopped {
                            stop.1.wait_for(&mut stopped, every);
                        }
                        if *stopped {
                            return;
                        }
                    }
                    let Some(inner) = weak.upgrade() else { return };
                    // Errors surface again on the next explicit call; metrics count what happened.
                    let _ = (Log { inner }).run_maintenance();
                }
            });
    }

    /// The log's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The clock the log stamps records with (shared with what is built on the log).
    #[must_use]
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.inner.ctx.clock)
    }

    /// Creates a topic.
    ///
    /// # Errors
    /// [`LogError::InvalidTopicName`], [`LogError::TopicExists`],
    /// [`ConfigError`](crate::ConfigError) via [`crate::Error`] for a bad config, [`LogError::Io`].
    pub fn create_topic(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> Result<Arc<Topic>, crate::Error> {
        validate_name(name)?;
        config.validate()?;
        let _admin = self.inner.admin.lock();
        if self.inner.topics.read().contains_key(name) {
            return Err(LogError::TopicExists(name.to_owned()).into());
        }
        let s = self.inner.ctx.storage.as_ref();
        let dir = self.inner.dir.join(name);
        s.create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
        meta::write(s, &dir.join(TOPIC_META), &config)?;
        s.sync_dir(&self.inner.dir)
            .map_err(|e| LogError::io(&self.inner.dir, e))?;
        let topic = Arc::new(Topic::open(name, dir, config, &self.inner.ctx)?);
        self.inner
            .topics
            .write()
            .insert(name.to_owned(), Arc::clone(&topic));
        Ok(topic)
    }

    /// An existing topic.
    ///
    /// # Errors
    /// [`LogError::TopicNotFound`].
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, LogError> {
        self.inner
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::TopicNotFound(name.to_owned()))
    }

    /// An existing topic, or a new one with the log's default topic config.
    ///
    /// # Errors
    /// As [`create_topic`](Self::create_topic).
    pub fn topic_or_create(&self, name: &str) -> Result<Arc<Topic>, crate::Error> {
        if let Ok(t) = self.topic(name) {
            return Ok(t);
        }
        match self.create_topic(name, self.inner.ctx.config.default_topic.clone()) {
            Err(crate::Error::Log(LogError::TopicExists(_))) => Ok(self.topic(name)?),
            other => other,
        }
    }

    /// Names of all topics, sorted.
    #[must_use]
    pub fn topics(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.topics.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Deletes a topic and its files. Handles to it still held fail with [`LogError::Closed`].
    ///
    /// # Errors
    /// [`LogError::TopicNotFound`], [`LogError::Io`].
    pub fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        let _admin = self.inner.admin.lock();
        let topic = self
            .inner
            .topics
            .write()
            .remove(name)
            .ok_or_else(|| LogError::TopicNotFound(name.to_owned()))?;
        topic.close();
        let s = self.inner.ctx.storage.as_ref();
        let dir = self.inner.dir.join(name);
        s.remove_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
        s.sync_dir(&self.inner.dir)
            .map_err(|e| LogError::io(&self.inner.dir, e))
    }

    /// A consumer group, created on first use; every call with the same name shares one handle.
    ///
    /// # Errors
    /// [`LogError::InvalidTopicName`] (groups follow the topic name rules), [`LogError::Io`],
    /// [`LogError::Corrupt`] for a damaged offsets file.
    pub fn consumer_group(&self, name: &str) -> Result<Arc<ConsumerGroup>, LogError> {
        validate_name(name)?;
        let mut groups = self.inner.groups.lock();
        if let Some(g) = groups.get(name) {
            return Ok(Arc::clone(g));
        }
        let s = self.inner.ctx.storage.as_ref();
        let dir = self.inner.dir.join(GROUPS_DIR);
        if !s.exists(&dir) {
            s.create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
            s.sync_dir(&self.inner.dir)
                .map_err(|e| LogError::io(&self.inner.dir, e))?;
        }
        let group = Arc::new(ConsumerGroup::open(
            self,
            name,
            dir.join(format!("{name}.offsets")),
        )?);
        groups.insert(name.to_owned(), Arc::clone(&group));
        Ok(group)
    }

    /// Names of the consumer groups that have committed offsets on disk, sorted (a group
    /// that never committed leaves no trace and is not listed).
    ///
    /// # Errors
    /// [`LogError::Io`] if the groups directory cannot be listed.
    pub fn consumer_groups(&self) -> Result<Vec<String>, LogError> {
        let s = self.inner.ctx.storage.as_ref();
        let dir = self.inner.dir.join(GROUPS_DIR);
        if !s.exists(&dir) {
            return Ok(Vec::new());
        }
        let mut names: Vec<String> = s
            .list(&dir)
            .map_err(|e| LogError::io(&dir, e))?
            .into_iter()
            .filter_map(|f| f.strip_suffix(".offsets").map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes a consumer group and its committed offsets; returns whether it had any on disk.
    /// Handles to it still held keep working in memory but a later commit through them
    /// writes the group back, so drop them first.
    ///
    /// # Errors
    /// [`LogError::InvalidTopicName`], [`LogError::Io`].
    pub fn delete_consumer_group(&self, name: &str) -> Result<bool, LogError> {
        validate_name(name)?;
        let mut groups = self.inner.groups.lock();
        groups.remove(name);
        let s = self.inner.ctx.storage.as_ref();
        let dir = self.inner.dir.join(GROUPS_DIR);
        let path = dir.join(format!("{name}.offsets"));
        if !s.exists(&path) {
            return Ok(false);
        }
        s.remove_file(&path).map_err(|e| LogError::io(&path, e))?;
        s.sync_dir(&dir).map_err(|e| LogError::io(&dir, e))?;
        Ok(true)
    }

    /// Runs retention and compaction on every topic now.
    ///
    /// # Errors
    /// The first error met; the other topics are still processed.
    pub fn run_maintenance(&self) -> Result<(), LogError> {
        let topics: Vec<Arc<Topic>> = self.inner.topics.read().values().cloned().collect();
        let mut first = None;
        for t in topics {
            if let Err(e) = t.enforce_retention().and_then(|_| t.compact()) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The log's counters.
    #[must_use]
    pub fn stats(&self) -> LogStats {
        self.inner.ctx.metrics.snapshot()
    }

    /// Flushes and fsyncs every partition and refuses further appends.
    pub fn close(&self) {
        *self.inner.stop.0.lock() = true;
        self.inner.stop.1.notify_all();
        for t in self.inner.topics.read().values() {
            t.close();
        }
    }
}

/// The longest topic or group name, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 200;

/// Topic and group names: 1 to [`MAX_NAME_LEN`] characters of `[A-Za-z0-9._-]`, not `.` or
/// `..`, not starting with `__` (reserved).
pub(crate) fn validate_name(name: &str) -> Result<(), LogError> {
    let bad = |reason| {
        Err(LogError::InvalidTopicName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return bad("must be 1 to 200 characters");
    }
    if name == "." || name == ".." {
        return bad("cannot be . or ..");
    }
    if name.starts_with("__") {
        return bad("names starting with __ are reserved");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only A-Z, a-z, 0-9, '.', '_' and '-' are allowed");
    }
    Ok(())
}
