//! The threads that serve RESP connections. Each runs its own single-threaded tokio runtime,
//! with its own epoll and timers, and keeps every connection it is given until it closes.
//!
//! Why not the multi-threaded runtime that runs the rest: there one worker holds the I/O
//! driver while the others sleep on a futex, and each batch of ready sockets wakes a sleeping
//! worker and may move tasks between threads. With small requests (an unpipelined `GET` is
//! a read, a lookup and a write) those wake-ups were the largest cost measured: perf put 18%
//! of the server's samples in the scheduler's context switch. A thread per core that waits in
//! its own `epoll_wait`, as a Redis I/O thread does, pays none of them. Connections are dealt
//! out in turn, so the load is even while clients are alike; nothing moves a busy connection
//! later. Commands still run against the shared sharded engine from every thread.

use std::thread::JoinHandle;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The running I/O threads; dropping this stops them (their remaining tasks are dropped).
#[derive(Debug)]
pub(crate) struct IoThreads {
    handles: Vec<Handle>,
    stop: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    next: usize,
}

impl IoThreads {
    /// Starts `n` threads (at least one).
    pub(crate) fn start(n: usize) -> std::io::Result<Self> {
        let mut me = Self {
            handles: Vec::new(),
            stop: Vec::new(),
            threads: Vec::new(),
            next: 0,
        };
        for i in 0..n.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            me.handles.push(runtime.handle().clone());
            me.stop.push(stop);
            let thread = std::thread::Builder::new()
                .name(format!("quipu-io-{i}"))
                .spawn(move || {
                    // Runs the connections spawned on it until told to stop (or the sender is
                    // dropped), then drops whatever is left.
                    let _ = runtime.block_on(stopped);
                })?;
            me.threads.push(thread);
        }
        Ok(me)
    }

    /// The runtime of the thread whose turn it is.
    pub(crate) fn next(&mut self) -> &Handle {
        let i = self.next % self.handles.len();
        self.next = self.next.wrapping_add(1);
        &self.handles[i]
    }

    /// Tells every thread to stop (once; later calls find nothing to send).
    fn signal(&mut self) {
        for s in self.stop.drain(..) {
            let _ = s.send(());
        }
    }

    /// Stops the threads and waits for them.
    pub(crate) fn stop(mut self) {
        self.signal();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for IoThreads {
    fn drop(&mut self) {
        self.signal();
    }
}

/// The default number of I/O threads: half the cores, rounded up (one on a 2-core VPS).
///
/// Measured on 2 cores with the client on the same machine (docs/BENCHMARKS.md): one thread
/// matched Redis unpipelined with a lower p99 (0.38–0.47 ms against 0.44–0.50); two gave
/// 1.1–1.6× Redis's throughput with `-P 16` but 5–20% less unpipelined and a p99 of 0.9–3.6 ms
/// (three busy threads on two cores: a preempted I/O thread stalls its connections for a
/// scheduler slice). On the small VPS quipu is for, the application shares the machine, so
/// half the cores are left to it, to the log's fsync threads and to HTTP, as Redis's advice for
/// `io-threads` also leaves cores free. A machine of its own can set `threads` to its cores.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .div_ceil(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_every_thread_in_turn_and_stop_ends_them() {
        let mut io = IoThreads::start(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..4 {
            let tx = tx.clone();
            io.next().spawn(async move {
                let name = std::thread::current().name().map(str::to_owned);
                tx.send(name).unwrap();
            });
        }
        let mut names: Vec<String> = (0..4).map(|_| rx.recv().unwrap().unwrap()).collect();
        names.sort();
        assert_eq!(
            names,
            ["quipu-io-0", "quipu-io-0", "quipu-io-1", "quipu-io-1"]
        );
        // A task that never ends does not keep a thread from stopping.
        io.next().spawn(std::future::pending::<()>());
        io.stop();
    }
}
