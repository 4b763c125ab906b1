//! Appenders waiting for their records to be fsynced. Tasks leave a waker; after each fsync
//! only the tasks whose records are now durable are woken, each directly, instead of all of
//! them queueing on one lock. Threads, on Linux, sleep on one futex word that each fsync bumps
//! and wakes with a single system call: with 16 appender threads waking them one `unpark` at
//! a time took the sync thread 16 system calls per fsync on the critical path. Elsewhere
//! threads park like tasks.

use std::future::Future;
use std::pin::Pin;
#[cfg(target_os = "linux")]
use std::sync::atomic::AtomicU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
#[cfg(not(target_os = "linux"))]
use std::thread::Thread;

use parking_lot::Mutex;

#[derive(Debug)]
enum Waiter {
    #[cfg(not(target_os = "linux"))]
    Thread(Thread),
    Task(Waker),
}

impl Waiter {
    fn wake(self) {
        match self {
            #[cfg(not(target_os = "linux"))]
            Waiter::Thread(t) => t.unpark(),
            Waiter::Task(w) => w.wake(),
        }
    }
}

/// The durable offset of a partition and who waits for it.
#[derive(Debug)]
pub(crate) struct Durable {
    /// Every offset below this is fsynced.
    offset: AtomicU64,
    /// Set when the partition is poisoned or closed: nothing more will become durable.
    stopped: AtomicBool,
    /// `(end, waiter)`: wake once `offset >= end`.
    waiters: Mutex<Vec<(u64, Waiter)>>,
    /// Bumped after every change of `offset` or `stopped`; threads sleep on it.
    #[cfg(target_os = "linux")]
    generation: AtomicU32,
    /// Threads sleeping on `generation` (the waker skips the system call when none are).
    #[cfg(target_os = "linux")]
    sleepers: AtomicU32,
}

impl Durable {
    pub fn new(offset: u64) -> Self {
        Self {
            offset: AtomicU64::new(offset),
            stopped: AtomicBool::new(false),
            waiters: Mutex::new(Vec::new()),
            #[cfg(target_os = "linux")]
            generation: AtomicU32::new(0),
            #[cfg(target_os = "linux")]
            sleepers: AtomicU32::new(0),
        }
    }

    pub fn offset(&self) -> u64 {
        self.offset.load(Ordering::Acquire)
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Records that everything below `to` is durable and wakes those waiting for it.
    pub fn advance(&self, to: u64) {
        self.offset.fetch_max(to, Ordering::AcqRel);
        self.wake(|end| end <= to);
    }

    /// Nothing more will become durable: wakes every waiter.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake(|_| true);
    }

    fn wake(&self, due: impl Fn(u64) -> bool) {
        #[cfg(target_os = "linux")]
        {
            // Sequentially consistent with the sleeper's increment and load in `wait`: either
            // it sees the new generation (and the offset stored before it), or this sees it.
            self.generation.fetch_add(1, Ordering::SeqCst);
            if self.sleepers.load(Ordering::SeqCst) > 0 {
                use rustix::thread::futex;
                // The kernel reads the count as an `int`: `u32::MAX` would wake one.
                let _ = futex::wake(&self.generation, futex::Flags::PRIVATE, i32::MAX as u32);
            }
        }
        // The store above happens before this lock; a waiter registers under the same lock and
        // re-checks after, so no wake-up is lost.
        let woken: Vec<Waiter> = {
            let mut waiters = self.waiters.lock();
            waiters
                .extract_if(.., |(end, _)| due(*end))
                .map(|(_, w)| w)
                .collect()
        };
        for w in woken {
            w.wake();
        }
    }

    /// Blocks until offsets below `end` are durable (`true`) or the partition stops (`false`).
    #[cfg(target_os = "linux")]
    pub fn wait(&self, end: u64) -> bool {
        use rustix::thread::futex;
        loop {
            if self.offset() >= end {
                return true;
            }
            if self.is_stopped() {
                return false;
            }
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            let generation = self.generation.load(Ordering::SeqCst);
            if self.offset() < end && !self.is_stopped() {
                // Returns at once if the generation moved since it was read; spurious returns
                // (a wake for an earlier fsync, a signal) are fine: the loop checks again.
                let _ = futex::wait(&self.generation, futex::Flags::PRIVATE, generation, None);
            }
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Blocks until offsets below `end` are durable (`true`) or the partition stops (`false`).
    #[cfg(not(target_os = "linux"))]
    pub fn wait(&self, end: u64) -> bool {
        loop {
            if self.offset() >= end {
                return true;
            }
            if self.is_stopped() {
                return false;
            }
            self.waiters
                .lock()
                .push((end, Waiter::Thread(std::thread::current())));
            if self.offset() < end && !self.is_stopped() {
                // Spurious returns are fine: the loop checks again.
                std::thread::park();
            }
        }
    }

    /// Async [`wait`](Self::wait).
    pub fn wait_async(&self, end: u64) -> DurableWait<'_> {
        DurableWait { durable: self, end }
    }
}

/// The future of [`Durable::wait_async`].
#[derive(Debug)]
pub(crate) struct DurableWait<'a> {
    durable: &'a Durable,
    end: u64,
}

impl Future for DurableWait<'_> {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let d = self.durable;
        if d.offset() >= self.end {
            return Poll::Ready(true);
        }
        if d.is_stopped() {
            return Poll::Ready(false);
        }
        d.waiters
            .lock()
            .push((self.end, Waiter::Task(cx.waker().clone())));
        if d.offset() >= self.end {
            return Poll::Ready(true);
        }
        if d.is_stopped() {
            return Poll::Ready(false);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn waiters_wake_when_their_offset_is_durable_or_on_stop() {
        let d = Arc::new(Durable::new(0));
        let early = {
            let d = Arc::clone(&d);
            std::thread::spawn(move || d.wait(5))
        };
        let late = {
            let d = Arc::clone(&d);
            std::thread::spawn(move || d.wait(50))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        d.advance(10);
        assert!(early.join().unwrap());
        d.stop();
        assert!(!late.join().unwrap());
        assert!(d.waiters.lock().is_empty());
    }
}
