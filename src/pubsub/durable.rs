//! Durable subscriptions: a consumer group on a log topic with competing consumers,
//! at-least-once delivery with ack and nack, an ack deadline, a delivery count, a backoff
//! schedule, dead letters after the last delivery, re-drive, and a critical lane read first.
//!
//! Every offset between a partition's committed offset and its fetch position is either in
//! flight (delivered, not acked) or pending (waiting for its redelivery time); whatever is
//! neither is done. The committed offset is the first offset not done, committed durably to the
//! log's consumer group at most every `commit_interval` (and on `commit`/drop): a crash
//! redelivers from there, so nothing acknowledged late is lost, only redelivered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::clock::{Clock, millis};
use crate::config::{Durability, TopicConfig};
use crate::error::Error;
use crate::log::{ConsumerGroup, Log, Record, Topic};
use crate::metrics::DurableStats;

/// Header names a dead letter carries: origin topic, partition, offset, reason, delivery count.
pub const DEAD_LETTER_HEADERS: [&str; 5] = [
    "x-origin-topic",
    "x-origin-partition",
    "x-origin-offset",
    "x-reason",
    "x-delivery-count",
];

/// Settings of a durable subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DurableConfig {
    /// A delivery not acked within this is redelivered. Default 30 s.
    pub ack_deadline: Duration,
    /// After this many deliveries a failing message goes to the dead-letter topic. Default 5.
    pub max_deliveries: u32,
    /// Wait before the n-th redelivery (the last entry repeats). Default 1 s, 5 s, 30 s.
    pub backoff: Vec<Duration>,
    /// The dead-letter topic. Default `<topic>.dlq`.
    pub dead_letter_topic: Option<String>,
    /// A critical lane: this topic is read before the main one. Default none.
    pub critical_topic: Option<String>,
    /// How often acknowledged progress is committed durably. Default 1 s.
    pub commit_interval: Duration,
}

impl Default for DurableConfig {
    fn default() -> Self {
        Self {
            ack_deadline: Duration::from_secs(30),
            max_deliveries: 5,
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            dead_letter_topic: None,
            critical_topic: None,
            commit_interval: Duration::from_secs(1),
        }
    }
}

impl DurableConfig {
    /// Sets the ack deadline (default 30 s).
    #[must_use]
    pub fn with_ack_deadline(mut self, d: Duration) -> Self {
        self.ack_deadline = d;
        self
    }

    /// Sets the most deliveries before dead-lettering (default 5).
    #[must_use]
    pub fn with_max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n.max(1);
        self
    }

    /// Sets the backoff schedule (default 1 s, 5 s, 30 s).
    #[must_use]
    pub fn with_backoff(mut self, schedule: Vec<Duration>) -> Self {
        self.backoff = schedule;
        self
    }

    /// Sets the dead-letter topic (default `<topic>.dlq`).
    #[must_use]
    pub fn with_dead_letter_topic(mut self, topic: &str) -> Self {
        self.dead_letter_topic = Some(topic.to_owned());
        self
    }

    /// Sets a critical lane read before the main topic (default none).
    #[must_use]
    pub fn with_critical_topic(mut self, topic: &str) -> Self {
        self.critical_topic = Some(topic.to_owned());
        self
    }

    /// Sets how often progress is committed (default 1 s; zero commits on every ack).
    #[must_use]
    pub fn with_commit_interval(mut self, d: Duration) -> Self {
        self.commit_interval = d;
        self
    }
}

/// One delivery of a durable message; ack or nack it through its subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DurableDelivery {
    /// The topic it came from (the critical lane or the main topic).
    pub topic: Arc<str>,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// The record.
    pub record: Record,
    /// 1 on the first delivery, then 2, 3 …
    pub delivery_count: u32,
}

#[derive(Debug)]
struct Held {
    record: Record,
    count: u32,
    /// In flight: the ack deadline. Pending: when it may be redelivered.
    at: u64,
}

#[derive(Debug, Default)]
struct Part {
    fetched: u64,
    committed: u64,
    inflight: BTreeMap<u64, Held>,
    pending: BTreeMap<u64, Held>,
}

impl Part {
    /// The first offset that is neither in flight nor pending.
    fn done_upto(&self) -> u64 {
        let a = self.inflight.keys().next().copied().unwrap_or(self.fetched);
        let b = self.pending.keys().next().copied().unwrap_or(self.fetched);
        a.min(b)
    }
}

#[derive(Debug, Default)]
struct State {
    /// (lane, partition) → state; lane 0 is the critical topic when there is one.
    parts: BTreeMap<(usize, u32), Part>,
    last_commit: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    redelivered: AtomicU64,
    acked: AtomicU64,
    dead_lettered: AtomicU64,
}

type Alert = Arc<dyn Fn(&DurableStats) + Send + Sync>;

struct AlertRule {
    max_lag: u64,
    max_dead_letters: u64,
    callback: Alert,
    lag_above: bool,
    dead_above: bool,
}

struct Inner {
    lanes: Vec<Arc<Topic>>,
    dead_letters: Arc<Topic>,
    group: Arc<ConsumerGroup>,
    config: DurableConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    counters: Counters,
    /// (max lag, max dead letters, callback, lag above, dead letters above).
    alert: Mutex<Option<AlertRule>>,
}

/// A durable subscription: a consumer group on a topic. Clones are competing consumers of the
/// same group: each message goes to one of them.
///
/// ```
/// # fn main() -> Result<(), quipu::Error> {
/// # let dir = tempfile::tempdir().map_err(|e| quipu::Error::Io { path: ".".into(), source: e })?;
/// use quipu::{DurableConfig, DurableSubscription, Message, Quipu};
///
/// let db = Quipu::open(dir.path())?;
/// let orders = db.log().topic_or_create("orders")?;
/// orders.append(Message::new("order 1 paid"))?;
/// let sub = DurableSubscription::open(db.log(), "orders", "notifier", DurableConfig::default())?;
/// let batch = sub.receive(10)?;
/// assert_eq!(batch.len(), 1);
/// sub.ack(&batch[0])?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DurableSubscription {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DurableSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableSubscription")
            .field("group", &self.inner.group.name())
            .finish_non_exhaustive()
    }
}

fn header(record: &Record, name: &str) -> Option<Bytes> {
    record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

impl DurableSubscription {
    /// Opens (or resumes) the group `group` on `topic`, creating the dead-letter topic if
    /// needed. Resuming starts from the group's committed offsets: what was delivered and not
    /// acknowledged before a crash is delivered again.
    ///
    /// # Errors
    /// [`LogError::TopicNotFound`](crate::LogError) for a missing topic or critical lane.
    pub fn open(log: &Log, topic: &str, group: &str, config: DurableConfig) -> Result<Self, Error> {
        let mut lanes = Vec::new();
        if let Some(critical) = &config.critical_topic {
            lanes.push(log.topic(critical)?);
        }
        lanes.push(log.topic(topic)?);
        let dlq_name = config
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{topic}.dlq"));
        let dead_letters = match log.topic(&dlq_name) {
            Ok(t) => t,
            Err(_) => log.create_topic(
                &dlq_name,
                TopicConfig::default()
                    .with_partitions(1)
                    .with_durability(Durability::Always),
            )?,
        };
        let group = log.consumer_group(group)?;
        let mut state = State::default();
        for (lane, t) in lanes.iter().enumerate() {
            for p in t.partitions() {
                let start = p.start_offset();
                let committed = group
                    .committed(t.name(), p.id())
                    .unwrap_or(start)
                    .clamp(start, p.end_offset().max(start));
                state.parts.insert(
                    (lane, p.id()),
                    Part {
                        fetched: committed,
                        committed,
                        ..Part::default()
                    },
                );
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                lanes,
                dead_letters,
                group,
                config,
                clock: log.clock(),
                state: Mutex::new(state),
                counters: Counters::default(),
                alert: Mutex::new(None),
            }),
        })
    }

    fn lane_of(&self, topic: &str) -> Option<usize> {
        self.inner.lanes.iter().position(|t| t.name() == topic)
    }

    /// Up to `max` deliveries: due redeliveries first, critical lane first, then new records.
    /// Deliveries whose ack deadline passed are taken back (and redelivered or dead-lettered)
    /// first. Never blocks.
    ///
    /// # Errors
    /// Log errors reading the topic or writing a dead letter.
    pub fn receive(&self, max: usize) -> Result<Vec<DurableDelivery>, Error> {
        let inner = &self.inner;
        let now = inner.clock.now_millis();
        let deadline = now.saturating_add(millis(inner.config.ack_deadline));
        let mut out = Vec::new();
        let mut st = inner.state.lock();
        // Missed ack deadlines count as failed deliveries.
        let keys: Vec<(usize, u32)> = st.parts.keys().copied().collect();
        for key in &keys {
            let expired: Vec<u64> = st.parts[key]
                .inflight
                .iter()
                .filter(|(_, h)| h.at <= now)
                .map(|(o, _)| *o)
                .collect();
            for offset in expired {
                // Redelivered at once: the wait was the deadline itself.
                self.fail(&mut st, *key, offset, "ack deadline passed", now, false)?;
            }
        }
        // Due redeliveries, lane by lane.
        for key in &keys {
            let part = st.parts.get_mut(key).ok_or_else(closed)?;
            let due: Vec<u64> = part
                .pending
                .iter()
                .filter(|(_, h)| h.at <= now)
                .map(|(o, _)| *o)
                .take(max - out.len())
                .collect();
            for offset in due {
                if let Some(mut held) = part.pending.remove(&offset) {
                    held.count += 1;
                    held.at = deadline;
                    out.push(self.delivery(key.0, key.1, offset, &held));
                    part.inflight.insert(offset, held);
                    inner.counters.redelivered.fetch_add(1, Relaxed);
                }
            }
            if out.len() >= max {
                break;
            }
        }
        // New records, critical lane first.
        for key in &keys {
            if out.len() >= max {
                break;
            }
            let topic = &inner.lanes[key.0];
            let part = st.parts.get_mut(key).ok_or_else(closed)?;
            let end = topic.partition(key.1)?.end_offset();
            if part.fetched >= end {
                continue;
            }
            let records = topic.read(key.1, part.fetched, max - out.len())?;
            for record in records {
                let offset = record.offset;
                part.fetched = offset + 1;
                let held = Held {
                    record,
                    count: 1,
                    at: deadline,
                };
                out.push(self.delivery(key.0, key.1, offset, &held));
                part.inflight.insert(offset, held);
            }
        }
        inner
            .counters
            .delivered
            .fetch_add(out.len() as u64, Relaxed);
        drop(st);
        self.check_alert();
        Ok(out)
    }

    /// [`receive`](Self::receive), waiting up to `timeout` for at least one delivery.
    ///
    /// # Errors
    /// As [`receive`](Self::receive).
    pub fn receive_blocking(
        &self,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<DurableDelivery>, Error> {
        let until = std::time::Instant::now() + timeout;
        loop {
            let got = self.receive(max)?;
            if !got.is_empty() || std::time::Instant::now() >= until {
                return Ok(got);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// [`receive`](Self::receive) for async code, waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`receive`](Self::receive).
    pub async fn receive_async(
        &self,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<DurableDelivery>, Error> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.receive(max)?;
            if !got.is_empty() || tokio::time::Instant::now() >= until {
                return Ok(got);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn delivery(&self, lane: usize, partition: u32, offset: u64, held: &Held) -> DurableDelivery {
        DurableDelivery {
            topic: self.inner.lanes[lane].name().into(),
            partition,
            offset,
            record: held.record.clone(),
            delivery_count: held.count,
        }
    }

    /// Acknowledges a delivery: it will not be delivered again. Acking twice, or a delivery
    /// already taken back after its deadline, is a no-op.
    ///
    /// # Errors
    /// Log errors committing the group's offsets.
    pub fn ack(&self, d: &DurableDelivery) -> Result<(), Error> {
        let Some(lane) = self.lane_of(&d.topic) else {
            return Ok(());
        };
        let mut st = self.inner.state.lock();
        if let Some(part) = st.parts.get_mut(&(lane, d.partition))
            && part.inflight.remove(&d.offset).is_some()
        {
            self.inner.counters.acked.fetch_add(1, Relaxed);
        }
        self.maybe_commit(&mut st, false)
    }

    /// Rejects a delivery: it is redelivered after the backoff, or dead-lettered with `reason`
    /// once it has been delivered `max_deliveries` times.
    ///
    /// # Errors
    /// Log errors writing the dead letter.
    pub fn nack(&self, d: &DurableDelivery, reason: &str) -> Result<(), Error> {
        let Some(lane) = self.lane_of(&d.topic) else {
            return Ok(());
        };
        let now = self.inner.clock.now_millis();
        let mut st = self.inner.state.lock();
        self.fail(&mut st, (lane, d.partition), d.offset, reason, now, true)?;
        self.maybe_commit(&mut st, false)?;
        drop(st);
        self.check_alert();
        Ok(())
    }

    /// Moves an in-flight message to pending (after its backoff, if `backoff`) or to the
    /// dead-letter topic.
    #[allow(clippy::too_many_arguments)]
    fn fail(
        &self,
        st: &mut State,
        key: (usize, u32),
        offset: u64,
        reason: &str,
        now: u64,
        backoff: bool,
    ) -> Result<(), Error> {
        let inner = &self.inner;
        let Some(part) = st.parts.get_mut(&key) else {
            return Ok(());
        };
        let Some(mut held) = part.inflight.remove(&offset) else {
            return Ok(());
        };
        if held.count >= inner.config.max_deliveries {
            let origin = inner.lanes[key.0].name();
            let mut msg = held.record.to_message();
            for (name, value) in DEAD_LETTER_HEADERS.iter().zip([
                origin.to_owned(),
                key.1.to_string(),
                offset.to_string(),
                reason.to_owned(),
                held.count.to_string(),
            ]) {
                msg = msg.with_header(*name, value);
            }
            if let Err(e) = inner.dead_letters.append(msg) {
                // Keep it in flight: nothing is dropped when the dead-letter write fails.
                part.inflight.insert(offset, held);
                return Err(e.into());
            }
            inner.counters.dead_lettered.fetch_add(1, Relaxed);
            return Ok(());
        }
        let schedule = &inner.config.backoff;
        let wait = if backoff {
            schedule
                .get(
                    (held.count as usize)
                        .saturating_sub(1)
                        .min(schedule.len().saturating_sub(1)),
                )
                .copied()
                .unwrap_or(Duration::ZERO)
        } else {
            Duration::ZERO
        };
        held.at = now.saturating_add(millis(wait));
        part.pending.insert(offset, held);
        Ok(())
    }

    /// Commits the done prefix of every partition if the commit interval has passed (or
    /// `force`); between commits, acknowledged progress lives in memory only and a crash
    /// redelivers it.
    fn maybe_commit(&self, st: &mut State, force: bool) -> Result<(), Error> {
        let now = self.inner.clock.now_millis();
        let interval = millis(self.inner.config.commit_interval);
        if !force && now < st.last_commit.saturating_add(interval) {
            return Ok(());
        }
        let mut entries = Vec::new();
        for (&(lane, p), part) in &st.parts {
            let upto = part.done_upto();
            if upto > part.committed {
                entries.push(((lane, p), self.inner.lanes[lane].name(), upto));
            }
        }
        if entries.is_empty() {
            return Ok(());
        }
        let refs: Vec<(&str, u32, u64)> =
            entries.iter().map(|((_, p), t, o)| (*t, *p, *o)).collect();
        self.inner.group.commit_all(&refs)?;
        for (key, _, upto) in entries {
            if let Some(part) = st.parts.get_mut(&key) {
                part.committed = upto;
            }
        }
        st.last_commit = now;
        Ok(())
    }

    /// Commits acknowledged progress durably now.
    ///
    /// # Errors
    /// Log errors committing.
    pub fn commit(&self) -> Result<(), Error> {
        let mut st = self.inner.state.lock();
        self.maybe_commit(&mut st, true)
    }

    /// Appends up to `max` dead letters back to their origin topic (keeping their key, value
    /// and application headers) and removes them from the dead-letter queue's backlog; returns
    /// how many were re-driven. The redriven copies are new records: delivery counts restart.
    ///
    /// # Errors
    /// Log errors reading the dead letters or appending to the origin topic.
    pub fn redrive(&self, log: &Log, max: usize) -> Result<usize, Error> {
        let dlq = &self.inner.dead_letters;
        let group = log.consumer_group(&format!("{}.redrive", self.inner.group.name()))?;
        let records = group.poll(dlq.name(), max)?;
        for (_, r) in &records {
            let origin = header(r, DEAD_LETTER_HEADERS[0])
                .and_then(|b| String::from_utf8(b.to_vec()).ok())
                .unwrap_or_else(|| {
                    self.inner.lanes[self.inner.lanes.len() - 1]
                        .name()
                        .to_owned()
                });
            let mut msg = r.to_message();
            msg.headers
                .retain(|(k, _)| !DEAD_LETTER_HEADERS.contains(&k.as_str()));
            log.topic(&origin)?.append(msg)?;
        }
        group.commit_positions()?;
        Ok(records.len())
    }

    /// Counters, lag and in-flight count.
    #[must_use]
    pub fn stats(&self) -> DurableStats {
        let c = &self.inner.counters;
        let st = self.inner.state.lock();
        let mut lag = 0;
        let mut in_flight = 0;
        for (&(lane, p), part) in &st.parts {
            let end = self.inner.lanes[lane]
                .partition(p)
                .map_or(part.fetched, |x| x.end_offset());
            lag += end.saturating_sub(part.done_upto());
            in_flight += part.inflight.len() as u64;
        }
        DurableStats {
            delivered: c.delivered.load(Relaxed),
            redelivered: c.redelivered.load(Relaxed),
            acked: c.acked.load(Relaxed),
            dead_lettered: c.dead_lettered.load(Relaxed),
            lag,
            in_flight,
        }
    }

    /// Calls `callback` (from `receive`, `ack` and `nack`) when the lag grows past `max_lag` or
    /// the dead-lettered count past `max_dead_letters`: once per crossing, again only after it
    /// has dropped back below.
    pub fn set_alert(
        &self,
        max_lag: u64,
        max_dead_letters: u64,
        callback: impl Fn(&DurableStats) + Send + Sync + 'static,
    ) {
        *self.inner.alert.lock() = Some(AlertRule {
            max_lag,
            max_dead_letters,
            callback: Arc::new(callback),
            lag_above: false,
            dead_above: false,
        });
    }

    fn check_alert(&self) {
        if self.inner.alert.lock().is_none() {
            return;
        }
        let s = self.stats();
        let fire = {
            let mut rule = self.inner.alert.lock();
            let Some(rule) = rule.as_mut() else { return };
            let lag_above = s.lag > rule.max_lag;
            let dead_above = s.dead_lettered > rule.max_dead_letters;
            let crossed = (lag_above && !rule.lag_above) || (dead_above && !rule.dead_above);
            rule.lag_above = lag_above;
            rule.dead_above = dead_above;
            crossed.then(|| Arc::clone(&rule.callback))
        };
        if let Some(callback) = fire {
            callback(&s);
        }
    }

    /// The dead-letter topic.
    #[must_use]
    pub fn dead_letter_topic(&self) -> &Arc<Topic> {
        &self.inner.dead_letters
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Commit what was acknowledged; a failure only means more redeliveries after restart.
        let mut st = self.state.lock();
        let mut entries = Vec::new();
        for (&(lane, p), part) in &mut st.parts {
            let upto = part.done_upto();
            if upto > part.committed {
                entries.push((self.lanes[lane].name().to_owned(), p, upto));
            }
        }
        let refs: Vec<(&str, u32, u64)> = entries
            .iter()
            .map(|(t, p, o)| (t.as_str(), *p, *o))
            .collect();
        if !refs.is_empty() {
            let _ = self.group.commit_all(&refs);
        }
    }
}

fn closed() -> Error {
    Error::Log(crate::error::LogError::Closed)
}
