//! A subscriber's bounded queue: two lanes (critical first), a slow-consumer policy, and
//! waiting for both threads (condvar) and tasks (`Notify`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::Notify;

use super::{Delivery, Priority, RecvError, SlowConsumer};

/// Rounds of spinning (then yielding) before a blocking receive sleeps.
const SPIN_STEPS: u32 = 10;

#[derive(Debug, Default)]
struct State {
    critical: VecDeque<Delivery>,
    info: VecDeque<Delivery>,
    /// Deliveries dropped (drop-oldest) since the subscriber last learned of it.
    missed: u64,
    /// Set when the subscription ends: unsubscribed, or cut off as a slow consumer.
    closed: Option<RecvError>,
}

impl State {
    fn len(&self) -> usize {
        self.critical.len() + self.info.len()
    }
}

/// Why a push did not enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The subscription is closed (before or because of this push).
    Closed,
}

#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<State>,
    capacity: usize,
    policy: SlowConsumer,
    readable: Condvar,
    writable: Condvar,
    task_readable: Notify,
    task_writable: Notify,
}

/// What a push did, for the publisher's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Queued after dropping the oldest delivery.
    DroppedOldest,
}

impl Queue {
    pub(crate) fn new(capacity: usize, policy: SlowConsumer) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
            policy,
            readable: Condvar::new(),
            writable: Condvar::new(),
            task_readable: Notify::new(),
            task_writable: Notify::new(),
        })
    }

    fn enqueue(&self, st: &mut State, d: Delivery) {
        match d.message.priority {
            Priority::Critical => st.critical.push_back(d),
            Priority::Informational => st.info.push_back(d),
        }
    }

    fn wake_reader(&self) {
        self.readable.notify_one();
        self.task_readable.notify_one();
    }

    /// Pushes without ever blocking; a full queue under [`SlowConsumer::Block`] returns the
    /// delivery back so the caller can wait (`Err(Ok(d))`).
    pub(crate) fn try_push(&self, d: Delivery) -> Result<Pushed, Result<Delivery, PushError>> {
        let mut st = self.state.lock();
        if st.closed.is_some() {
            return Err(Err(PushError::Closed));
        }
        let mut pushed = Pushed::Queued;
        if st.len() >= self.capacity {
            match self.policy {
                SlowConsumer::DropOldest => {
                    // Informational deliveries go first: a critical one is dropped only when
                    // the queue holds nothing else.
                    if st.info.pop_front().is_none() {
                        st.critical.pop_front();
                    }
                    st.missed += 1;
                    pushed = Pushed::DroppedOldest;
                }
                SlowConsumer::Disconnect => {
                    st.closed = Some(RecvError::Disconnected);
                    drop(st);
                    self.wake_reader();
                    return Err(Err(PushError::Closed));
                }
                SlowConsumer::Block => return Err(Ok(d)),
            }
        }
        self.enqueue(&mut st, d);
        drop(st);
        self.wake_reader();
        Ok(pushed)
    }

    /// Pushes, waiting (this thread) for room under [`SlowConsumer::Block`].
    pub(crate) fn push_blocking(&self, d: Delivery) -> Result<Pushed, PushError> {
        let d = match self.try_push(d) {
            Ok(p) => return Ok(p),
            Err(Err(e)) => return Err(e),
            Err(Ok(d)) => d,
        };
        let mut st = self.state.lock();
        loop {
            if st.closed.is_some() {
                return Err(PushError::Closed);
            }
            if st.len() < self.capacity {
                self.enqueue(&mut st, d);
                drop(st);
                self.wake_reader();
                return Ok(Pushed::Queued);
            }
            self.writable.wait(&mut st);
        }
    }

    /// Pushes, waiting (this task) for room under [`SlowConsumer::Block`].
    pub(crate) async fn push_async(&self, d: Delivery) -> Result<Pushed, PushError> {
        let mut d = match self.try_push(d) {
            Ok(p) => return Ok(p),
            Err(Err(e)) => return Err(e),
            Err(Ok(d)) => d,
        };
        loop {
            let room = self.task_writable.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push(d) {
                Ok(p) => return Ok(p),
                Err(Err(e)) => return Err(e),
                Err(Ok(back)) => d = back,
            }
            room.await;
        }
    }

    fn pop(&self, st: &mut State) -> Option<Result<Delivery, RecvError>> {
        if st.missed > 0 {
            let n = std::mem::take(&mut st.missed);
            return Some(Err(RecvError::Lagged(n)));
        }
        let d = st.critical.pop_front().or_else(|| st.info.pop_front());
        if let Some(d) = d {
            self.writable.notify_one();
            self.task_writable.notify_one();
            return Some(Ok(d));
        }
        st.closed.map(Err)
    }

    pub(crate) fn try_recv(&self) -> Result<Delivery, RecvError> {
        let mut st = self.state.lock();
        self.pop(&mut st).unwrap_or(Err(RecvError::Empty))
    }

    pub(crate) fn recv_timeout(&self, timeout: Option<Duration>) -> Result<Delivery, RecvError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        // Spin briefly before sleeping, as crossbeam's channels do: a message arriving within
        // a few microseconds is taken without the futex sleep and wake-up (several µs each).
        for step in 0..SPIN_STEPS {
            if let Some(r) = self.pop(&mut self.state.lock()) {
                return r;
            }
            for _ in 0..(1u32 << step.min(6)) {
                std::hint::spin_loop();
            }
            if step >= 6 {
                std::thread::yield_now();
            }
        }
        let mut st = self.state.lock();
        loop {
            if let Some(r) = self.pop(&mut st) {
                return r;
            }
            match deadline {
                None => self.readable.wait(&mut st),
                Some(at) => {
                    if self.readable.wait_until(&mut st, at).timed_out() {
                        return self.pop(&mut st).unwrap_or(Err(RecvError::Empty));
                    }
                }
            }
        }
    }

    pub(crate) async fn recv_async(&self) -> Result<Delivery, RecvError> {
        loop {
            let ready = self.task_readable.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            match self.try_recv() {
                Err(RecvError::Empty) => ready.await,
                other => return other,
            }
        }
    }

    /// Whether the queue was closed (cut off or dropped), whatever is still queued.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }

    /// Ends the subscription: readers drain what is queued, then get `reason`.
    pub(crate) fn close(&self, reason: RecvError) {
        let mut st = self.state.lock();
        if st.closed.is_none() {
            st.closed = Some(reason);
        }
        drop(st);
        self.readable.notify_all();
        self.writable.notify_all();
        self.task_readable.notify_waiters();
        self.task_writable.notify_waiters();
    }

    pub(crate) fn len(&self) -> usize {
        self.state.lock().len()
    }
}
