//! Business events as cache invalidations: records of a log topic mapped to invalidations by
//! the application, applied to the cache and published on its invalidation channel. A consumer
//! group (`_invalidate.<topic>`) remembers how far it got, so after a restart no event is
//! skipped (an event applied twice only drops an entry twice).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cache::{Cache, Invalidation};
use crate::error::Error;
use crate::log::{ConsumerGroup, Log, Record};

/// Maps one business event to the invalidations it implies.
pub type EventMapper = Arc<dyn Fn(&Record) -> Vec<Invalidation> + Send + Sync>;

const BATCH: usize = 512;
const IDLE: Duration = Duration::from_millis(20);

/// Follows a topic and invalidates the cache from its records; stops when dropped.
#[derive(Debug)]
pub struct EventInvalidator {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    topic: String,
    group: Arc<ConsumerGroup>,
    cache: Cache,
    mapper: EventMapper,
    stop: AtomicBool,
    /// One step at a time: after `run_once` returns, every event appended before it was called
    /// has been applied, whether by this call or by the background thread.
    step: parking_lot::Mutex<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventInvalidator")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn run_once(&self) -> Result<usize, Error> {
        let _step = self.step.lock();
        let records = self.group.poll(&self.topic, BATCH)?;
        let mut dropped = 0;
        for (_, record) in &records {
            for inv in (self.mapper)(record) {
                dropped += self.cache.apply_invalidation(&inv);
            }
        }
        if !records.is_empty() {
            self.group.commit_positions()?;
        }
        Ok(dropped)
    }
}

impl EventInvalidator {
    pub(crate) fn start(
        log: &Log,
        cache: &Cache,
        topic: &str,
        mapper: EventMapper,
        background: bool,
    ) -> Result<Self, Error> {
        log.topic(topic)?;
        let shared = Arc::new(Shared {
            topic: topic.to_owned(),
            group: log.consumer_group(&format!("_invalidate.{topic}"))?,
            cache: cache.clone(),
            mapper,
            stop: AtomicBool::new(false),
            step: parking_lot::Mutex::new(()),
        });
        let thread = if background {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name("quipu-invalidate".to_owned())
                .spawn(move || {
                    while !s.stop.load(Ordering::Acquire) {
                        match s.run_once() {
                            Ok(_) => std::thread::sleep(IDLE),
                            // The topic or log is gone (closing): stop following.
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| Error::Io {
                    path: std::path::PathBuf::new(),
                    source: e,
                })?;
            Some(spawned)
        } else {
            None
        };
        Ok(Self { shared, thread })
    }

    /// Applies every event available now; returns the entries dropped. The background thread
    /// does this continuously; tests call it to step deterministically.
    ///
    /// # Errors
    /// Log errors reading the topic or committing the group.
    pub fn run_once(&self) -> Result<usize, Error> {
        self.shared.run_once()
    }
}

impl Drop for EventInvalidator {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
