//! Fallback delivery: a [`Sink`] (webhook, email, SMS adapters are the application's own) with
//! a circuit breaker; when the primary fails or its breaker is open, messages go to the
//! fallback, and only when both fail does the caller get an error (and keeps the message).

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::clock::{Clock, millis};

/// A failed delivery to a sink.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sink {sink}: {reason}")]
pub struct SinkError {
    /// The sink's name.
    pub sink: String,
    /// What failed.
    pub reason: String,
}

/// Somewhere messages can be delivered outside quipu.
pub trait Sink: Send + Sync + Debug {
    /// A short name for errors and metrics.
    fn name(&self) -> &str;

    /// Delivers one message.
    ///
    /// # Errors
    /// [`SinkError`] when the message was not delivered.
    fn deliver(&self, channel: &str, payload: &Bytes) -> Result<(), SinkError>;
}

/// Circuit-breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker. Default 5.
    pub failure_threshold: u32,
    /// How long it stays open before one trial call (half-open). Default 30 s.
    pub open_for: Duration,
}

impl BreakerConfig {
    /// Sets the consecutive failures that open the breaker (default 5).
    #[must_use]
    pub fn with_failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n.max(1);
        self
    }

    /// Sets how long the breaker stays open (default 30 s).
    #[must_use]
    pub fn with_open_for(mut self, d: Duration) -> Self {
        self.open_for = d;
        self
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the given clock time (ms).
    Open {
        /// When a trial call may go through.
        until: u64,
    },
    /// One trial call is allowed; its outcome closes or reopens the breaker.
    HalfOpen,
}

/// A circuit breaker driven by the injected clock.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<(SinkState, u32)>,
}

impl Breaker {
    /// A closed breaker.
    #[must_use]
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            clock,
            state: Mutex::new((SinkState::Closed, 0)),
        }
    }

    /// The state now (an open breaker whose time is up reads as half-open).
    #[must_use]
    pub fn state(&self) -> SinkState {
        let mut st = self.state.lock();
        if let SinkState::Open { until } = st.0
            && self.clock.now_millis() >= until
        {
            st.0 = SinkState::HalfOpen;
        }
        st.0
    }

    /// Whether a call may go through now.
    #[must_use]
    pub fn allows(&self) -> bool {
        !matches!(self.state(), SinkState::Open { .. })
    }

    /// Records a successful call.
    pub fn success(&self) {
        *self.state.lock() = (SinkState::Closed, 0);
    }

    /// Records a failed call.
    pub fn failure(&self) {
        let mut st = self.state.lock();
        st.1 = st.1.saturating_add(1);
        if st.0 == SinkState::HalfOpen || st.1 >= self.config.failure_threshold {
            let until = self
                .clock
                .now_millis()
                .saturating_add(millis(self.config.open_for));
            st.0 = SinkState::Open { until };
        }
    }
}

/// A primary sink with a fallback and a breaker on the primary.
///
/// ```
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use quipu::{BreakerConfig, FallbackSink, Sink, SinkError, SystemClock};
///
/// #[derive(Debug)]
/// struct Sms;
/// impl Sink for Sms {
///     fn name(&self) -> &str { "sms" }
///     fn deliver(&self, _: &str, _: &Bytes) -> Result<(), SinkError> { Ok(()) }
/// }
/// #[derive(Debug)]
/// struct Webhook;
/// impl Sink for Webhook {
///     fn name(&self) -> &str { "webhook" }
///     fn deliver(&self, _: &str, _: &Bytes) -> Result<(), SinkError> {
///         Err(SinkError { sink: "webhook".into(), reason: "503".into() })
///     }
/// }
/// let sink = FallbackSink::new(Arc::new(Webhook), Arc::new(Sms), BreakerConfig::default(), Arc::new(SystemClock));
/// sink.deliver("payments", &Bytes::from("paid")).unwrap(); // went by SMS
/// assert_eq!(sink.fallback_deliveries(), 1);
/// ```
#[derive(Debug)]
pub struct FallbackSink {
    primary: Arc<dyn Sink>,
    fallback: Arc<dyn Sink>,
    breaker: Breaker,
    primary_ok: AtomicU64,
    fallback_ok: AtomicU64,
    failed: AtomicU64,
}

impl FallbackSink {
    /// Wraps `primary` in a breaker with `fallback` behind it.
    #[must_use]
    pub fn new(
        primary: Arc<dyn Sink>,
        fallback: Arc<dyn Sink>,
        config: BreakerConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            primary,
            fallback,
            breaker: Breaker::new(config, clock),
            primary_ok: AtomicU64::new(0),
            fallback_ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Delivers through the primary, or the fallback when the primary fails or its breaker is
    /// open.
    ///
    /// # Errors
    /// The fallback's error when both failed: the caller still holds the message (a durable
    /// consumer nacks it, so it is redelivered or dead-lettered, never lost).
    pub fn deliver(&self, channel: &str, payload: &Bytes) -> Result<(), SinkError> {
        if self.breaker.allows() {
            match self.primary.deliver(channel, payload) {
                Ok(()) => {
                    self.breaker.success();
                    self.primary_ok.fetch_add(1, Relaxed);
                    return Ok(());
                }
                Err(_) => self.breaker.failure(),
            }
        }
        match self.fallback.deliver(channel, payload) {
            Ok(()) => {
                self.fallback_ok.fetch_add(1, Relaxed);
                Ok(())
            }
            Err(e) => {
                self.failed.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    /// The primary's breaker state (for metrics).
    #[must_use]
    pub fn breaker_state(&self) -> SinkState {
        self.breaker.state()
    }

    /// Messages delivered by the primary.
    #[must_use]
    pub fn primary_deliveries(&self) -> u64 {
        self.primary_ok.load(Relaxed)
    }

    /// Messages delivered by the fallback.
    #[must_use]
    pub fn fallback_deliveries(&self) -> u64 {
        self.fallback_ok.load(Relaxed)
    }

    /// Messages neither sink took.
    #[must_use]
    pub fn failures(&self) -> u64 {
        self.failed.load(Relaxed)
    }
}
