//! Pub/sub: ephemeral channels and Redis-glob patterns with a bounded queue per subscriber and
//! an explicit slow-consumer policy; durable subscriptions (consumer groups on a log topic with
//! ack, redelivery and dead letters); idempotent publish; fallback sinks behind a breaker.

mod dedup;
mod durable;
mod queue;
mod sink;

pub use durable::{DEAD_LETTER_HEADERS, DurableConfig, DurableDelivery, DurableSubscription};
pub use sink::{Breaker, BreakerConfig, FallbackSink, Sink, SinkError, SinkState};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use self::dedup::Dedup;
use self::queue::{PushError, Pushed, Queue};
use crate::glob::glob_match;
use crate::metrics::{LatencyHistogram, PubSubStats};

/// How urgent a message is. Under a backlog a subscriber receives every queued critical message
/// before any informational one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Priority {
    /// Payment confirmations, fraud alerts: delivered first.
    Critical,
    /// Everything else (the default).
    #[default]
    Informational,
}

/// What a subscriber's full queue does with the next message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowConsumer {
    /// Drop the oldest queued message; the subscriber's next receive reports how many it
    /// missed ([`RecvError::Lagged`]).
    #[default]
    DropOldest,
    /// Cut the subscriber off: its next receives drain the queue, then get
    /// [`RecvError::Disconnected`].
    Disconnect,
    /// Make the publisher wait for room (embedded use only: a stuck subscriber stalls its
    /// publishers).
    Block,
}

/// A published message, shared by every subscriber that receives it (the payload is never
/// copied per subscriber).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// The channel it was published on.
    pub channel: Arc<str>,
    /// The payload.
    pub payload: Bytes,
    /// Its priority.
    pub priority: Priority,
    /// When it was published (for latency measurements).
    pub published_at: Instant,
    /// Where the message is stored in the log, when its publisher appended it there first
    /// (the durable channels of `quipu serve`): the event id of SSE and WebSocket clients.
    pub offset: Option<u64>,
}

/// One message as one subscriber receives it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delivery {
    /// The message (shared).
    pub message: Arc<Message>,
    /// The pattern that matched, for pattern subscriptions.
    pub pattern: Option<Arc<str>>,
}

/// Why a receive returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing queued (non-blocking receive, or the timeout passed).
    #[error("no message")]
    Empty,
    /// This many messages were dropped (drop-oldest) since the last receive; receiving again
    /// continues with the oldest message still queued.
    #[error("missed {0} messages")]
    Lagged(u64),
    /// The subscriber was cut off as a slow consumer ([`SlowConsumer::Disconnect`]).
    #[error("disconnected as a slow consumer")]
    Disconnected,
    /// The pub/sub hub is gone.
    #[error("closed")]
    Closed,
}

/// Queue settings of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionConfig {
    /// Most messages queued. Default 1,024.
    pub capacity: usize,
    /// What a full queue does. Default [`SlowConsumer::DropOldest`].
    pub policy: SlowConsumer,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        Self {
            capacity: 1024,
            policy: SlowConsumer::DropOldest,
        }
    }
}

impl SubscriptionConfig {
    /// Sets the queue capacity (default 1,024).
    #[must_use]
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Sets the slow-consumer policy (default drop-oldest).
    #[must_use]
    pub fn with_policy(mut self, policy: SlowConsumer) -> Self {
        self.policy = policy;
        self
    }
}

/// Per-publish options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishOptions {
    /// Priority (default informational).
    pub priority: Priority,
    /// A message id: a second publish of the same id within the dedup window is dropped.
    pub message_id: Option<String>,
    /// The log offset the publisher stored the message at (default none), passed on in
    /// [`Message::offset`].
    pub offset: Option<u64>,
}

impl PublishOptions {
    /// Marks the message critical.
    #[must_use]
    pub fn critical(mut self) -> Self {
        self.priority = Priority::Critical;
        self
    }

    /// Sets the message id for deduplication.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// Records where the message is stored in the log (default none).
    #[must_use]
    pub fn at_offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Published {
    /// Delivered to this many subscriber queues.
    Delivered(usize),
    /// Dropped: a message with the same id was published within the dedup window.
    Duplicate,
}

type SubId = u64;

#[derive(Debug)]
struct Sub {
    id: SubId,
    queue: Arc<Queue>,
}

#[derive(Debug, Default)]
struct Registry {
    channels: HashMap<Arc<str>, Vec<Sub>>,
    patterns: Vec<(Arc<str>, Sub)>,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    disconnected: AtomicU64,
    duplicates: AtomicU64,
}

#[derive(Debug)]
struct Hub {
    registry: RwLock<Registry>,
    next_id: AtomicU64,
    counters: Counters,
    latency: LatencyHistogram,
    dedup: Mutex<Dedup>,
}

/// The pub/sub hub: cheap to clone, all clones share subscribers.
///
/// ```
/// use quipu::{PubSub, SubscriptionConfig};
///
/// let hub = PubSub::new();
/// let riders = hub.psubscribe(&["delivery:*:position"], SubscriptionConfig::default());
/// hub.publish("delivery:77:position", "-0.18,-78.47");
/// let d = riders.try_recv().unwrap();
/// assert_eq!(&d.message.payload[..], b"-0.18,-78.47");
/// assert_eq!(d.pattern.as_deref(), Some("delivery:*:position"));
/// ```
#[derive(Debug, Clone)]
pub struct PubSub {
    hub: Arc<Hub>,
}

impl Default for PubSub {
    fn default() -> Self {
        Self::new()
    }
}

/// A subscription to channels or patterns; unsubscribes when dropped.
#[derive(Debug)]
pub struct Subscription {
    id: SubId,
    queue: Arc<Queue>,
    hub: Weak<Hub>,
}

impl PubSub {
    /// A hub with a dedup window of 5 minutes.
    #[must_use]
    pub fn new() -> Self {
        Self::with_dedup_window(Duration::from_secs(300))
    }

    /// A hub whose idempotent publishes remember message ids for `window`.
    #[must_use]
    pub fn with_dedup_window(window: Duration) -> Self {
        Self {
            hub: Arc::new(Hub {
                registry: RwLock::new(Registry::default()),
                next_id: AtomicU64::new(1),
                counters: Counters::default(),
                latency: LatencyHistogram::default(),
                dedup: Mutex::new(Dedup::new(window)),
            }),
        }
    }

    fn new_sub(&self, config: SubscriptionConfig) -> Subscription {
        Subscription {
            id: self.hub.next_id.fetch_add(1, Relaxed),
            queue: Queue::new(config.capacity, config.policy),
            hub: Arc::downgrade(&self.hub),
        }
    }

    /// Subscribes to exact channel names.
    #[must_use]
    pub fn subscribe(&self, channels: &[&str], config: SubscriptionConfig) -> Subscription {
        let sub = self.new_sub(config);
        for c in channels {
            sub.add_channel(c);
        }
        sub
    }

    /// Subscribes to Redis glob patterns (`*`, `?`, `[a-z]`).
    #[must_use]
    pub fn psubscribe(&self, patterns: &[&str], config: SubscriptionConfig) -> Subscription {
        let sub = self.new_sub(config);
        for p in patterns {
            sub.add_pattern(p);
        }
        sub
    }

    /// Publishes an informational message; returns the number of subscribers it was queued for.
    /// Under [`SlowConsumer::Block`] this waits for room in a full queue.
    pub fn publish(&self, channel: &str, payload: impl Into<Bytes>) -> usize {
        match self.publish_with(channel, payload, &PublishOptions::default()) {
            Published::Delivered(n) => n,
            Published::Duplicate => 0,
        }
    }

    /// Publishes with a priority and, optionally, a message id deduplicated within the window.
    pub fn publish_with(
        &self,
        channel: &str,
        payload: impl Into<Bytes>,
        options: &PublishOptions,
    ) -> Published {
        let Some(deliveries) = self.prepare(channel, || payload.into(), options) else {
            return Published::Duplicate;
        };
        let mut n = 0;
        for (queue, d) in deliveries {
            n += usize::from(self.account(queue.push_blocking(d)));
        }
        Published::Delivered(n)
    }

    /// [`publish_with`](Self::publish_with) for async code: under [`SlowConsumer::Block`]
    /// the task (not the thread) waits for room.
    pub async fn publish_async(
        &self,
        channel: &str,
        payload: impl Into<Bytes>,
        options: &PublishOptions,
    ) -> Published {
        let Some(deliveries) = self.prepare(channel, || payload.into(), options) else {
            return Published::Duplicate;
        };
        let mut n = 0;
        for (queue, d) in deliveries {
            n += usize::from(self.account(queue.push_async(d).await));
        }
        Published::Delivered(n)
    }

    /// The server's `PUBLISH` of a payload still in a connection's input buffer: copied only
    /// if someone listens (a publish to an idle channel allocates nothing). Informational,
    /// no message id; the server's subscriptions never block, so neither does this.
    pub(crate) fn publish_copied(&self, channel: &str, payload: &[u8]) -> usize {
        let options = PublishOptions::default();
        let Some(deliveries) = self.prepare(channel, || Bytes::copy_from_slice(payload), &options)
        else {
            return 0;
        };
        let mut n = 0;
        for (queue, d) in deliveries {
            n += usize::from(self.account(queue.push_blocking(d)));
        }
        n
    }

    /// The deliveries of a message; `payload` is called only when there is at least one.
    fn prepare(
        &self,
        channel: &str,
        payload: impl FnOnce() -> Bytes,
        options: &PublishOptions,
    ) -> Option<Vec<(Arc<Queue>, Delivery)>> {
        if let Some(id) = &options.message_id
            && !self.hub.dedup.lock().first_time(id, Instant::now())
        {
            self.hub.counters.duplicates.fetch_add(1, Relaxed);
            return None;
        }
        self.hub.counters.published.fetch_add(1, Relaxed);
        // Collect the queues under the read lock, push after releasing it: a blocking push
        // must not hold the registry.
        let reg = self.hub.registry.read();
        let mut targets: Targets = Vec::new();
        if let Some(subs) = reg.channels.get(channel) {
            targets.extend(subs.iter().map(|s| (Arc::clone(&s.queue), None)));
        }
        for (pattern, s) in &reg.patterns {
            if glob_match(pattern.as_bytes(), channel.as_bytes()) {
                targets.push((Arc::clone(&s.queue), Some(Arc::clone(pattern))));
            }
        }
        drop(reg);
        if targets.is_empty() {
            // Nobody listens: no message to build (a server's PUBLISH to an idle channel).
            return Some(Vec::new());
        }
        let message = Arc::new(Message {
            channel: channel.into(),
            payload: payload(),
            priority: options.priority,
            published_at: Instant::now(),
            offset: options.offset,
        });
        Some(
            targets
                .into_iter()
                .map(|(queue, pattern)| {
                    let d = Delivery {
                        message: Arc::clone(&message),
                        pattern,
                    };
                    (queue, d)
                })
                .collect(),
        )
    }

    fn account(&self, pushed: Result<Pushed, PushError>) -> bool {
        let c = &self.hub.counters;
        match pushed {
            Ok(Pushed::Queued) => true,
            Ok(Pushed::DroppedOldest) => {
                c.dropped.fetch_add(1, Relaxed);
                true
            }
            Err(PushError::Closed) => {
                c.disconnected.fetch_add(1, Relaxed);
                false
            }
        }
    }

    /// Subscribers of exact channel `channel` (Redis `PUBSUB NUMSUB`).
    #[must_use]
    pub fn subscribers(&self, channel: &str) -> usize {
        self.hub
            .registry
            .read()
            .channels
            .get(channel)
            .map_or(0, Vec::len)
    }

    /// Channels with at least one subscriber matching `pattern` (Redis `PUBSUB CHANNELS`).
    #[must_use]
    pub fn channels(&self, pattern: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .hub
            .registry
            .read()
            .channels
            .keys()
            .filter(|c| glob_match(pattern.as_bytes(), c.as_bytes()))
            .map(|c| c.to_string())
            .collect();
        out.sort();
        out
    }

    /// How many channels have at least one subscriber (`INFO`'s `pubsub_channels`), without
    /// listing them.
    #[must_use]
    pub fn channel_count(&self) -> usize {
        self.hub.registry.read().channels.len()
    }

    /// Pattern subscriptions in place (Redis `PUBSUB NUMPAT`).
    #[must_use]
    pub fn pattern_count(&self) -> usize {
        self.hub.registry.read().patterns.len()
    }

    /// A copy of the hub's counters and its publish→receive latency histogram.
    #[must_use]
    pub fn stats(&self) -> PubSubStats {
        let c = &self.hub.counters;
        PubSubStats {
            published: c.published.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            disconnected: c.disconnected.load(Relaxed),
            duplicates: c.duplicates.load(Relaxed),
            latency_p50: self.hub.latency.quantile(0.5),
            latency_p99: self.hub.latency.quantile(0.99),
        }
    }
}

type Targets = Vec<(Arc<Queue>, Option<Arc<str>>)>;

impl Subscription {
    /// Adds a channel to this subscription.
    pub fn add_channel(&self, channel: &str) {
        if let Some(hub) = self.hub.upgrade() {
            let mut reg = hub.registry.write();
            let subs = reg.channels.entry(channel.into()).or_default();
            if !subs.iter().any(|s| s.id == self.id) {
                subs.push(Sub {
                    id: self.id,
                    queue: Arc::clone(&self.queue),
                });
            }
        }
    }

    /// Adds a pattern to this subscription.
    pub fn add_pattern(&self, pattern: &str) {
        if let Some(hub) = self.hub.upgrade() {
            let mut reg = hub.registry.write();
            if !reg
                .patterns
                .iter()
                .any(|(p, s)| s.id == self.id && &**p == pattern)
            {
                reg.patterns.push((
                    pattern.into(),
                    Sub {
                        id: self.id,
                        queue: Arc::clone(&self.queue),
                    },
                ));
            }
        }
    }

    /// Removes a channel from this subscription.
    pub fn remove_channel(&self, channel: &str) {
        if let Some(hub) = self.hub.upgrade() {
            let mut reg = hub.registry.write();
            if let Some(subs) = reg.channels.get_mut(channel) {
                subs.retain(|s| s.id != self.id);
                if subs.is_empty() {
                    reg.channels.remove(channel);
                }
            }
        }
    }

    /// Removes a pattern from this subscription.
    pub fn remove_pattern(&self, pattern: &str) {
        if let Some(hub) = self.hub.upgrade() {
            hub.registry
                .write()
                .patterns
                .retain(|(p, s)| !(s.id == self.id && &**p == pattern));
        }
    }

    fn delivered(&self, r: Result<Delivery, RecvError>) -> Result<Delivery, RecvError> {
        if let (Ok(d), Some(hub)) = (&r, self.hub.upgrade()) {
            hub.counters.delivered.fetch_add(1, Relaxed);
            hub.latency.record(d.message.published_at.elapsed());
        }
        r
    }

    /// Receives without waiting.
    ///
    /// # Errors
    /// [`RecvError::Empty`] when nothing is queued; [`RecvError::Lagged`] once after drops;
    /// [`RecvError::Disconnected`] after a slow-consumer cut-off (once the queue is drained).
    pub fn try_recv(&self) -> Result<Delivery, RecvError> {
        self.delivered(self.queue.try_recv())
    }

    /// Receives, blocking this thread up to `timeout` (`None`: forever).
    ///
    /// # Errors
    /// As [`try_recv`](Self::try_recv); `Empty` when the timeout passes.
    pub fn recv_blocking(&self, timeout: Option<Duration>) -> Result<Delivery, RecvError> {
        self.delivered(self.queue.recv_timeout(timeout))
    }

    /// Receives, waiting asynchronously.
    ///
    /// # Errors
    /// As [`try_recv`](Self::try_recv), never `Empty`.
    pub async fn recv(&self) -> Result<Delivery, RecvError> {
        let r = self.queue.recv_async().await;
        self.delivered(r)
    }

    /// Messages queued now.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether the slow-consumer policy cut this subscription off: no message reaches it any
    /// more (what is queued can still be drained). A server closes such a client's connection
    /// even while its socket is stuck.
    #[must_use]
    pub fn is_cut_off(&self) -> bool {
        self.queue.is_closed()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.queue.close(RecvError::Closed);
        if let Some(hub) = self.hub.upgrade() {
            let mut reg = hub.registry.write();
            reg.channels.retain(|_, subs| {
                subs.retain(|s| s.id != self.id);
                !subs.is_empty()
            });
            reg.patterns.retain(|(_, s)| s.id != self.id);
        }
    }
}
