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

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

use crate::config::Durability;
use crate::error::LogError;
use crate::log::{AppendReceipt, Message, Partition};

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
    pub(crate) fn start(n: usize, spin: Duration) -> std::io::Result<Self> {
        let mut me = Self {
            handles: Vec::new(),
            stop: Vec::new(),
            threads: Vec::new(),
            next: 0,
        };
        for i in 0..n.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            if !spin.is_zero() {
                runtime.spawn(poll_while_busy(spin));
            }
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

thread_local! {
    /// Reads of a few commands this thread's connections have made, and fsyncs it was asked
    /// to lead (wrapping); the poller spins while it moves.
    static ACTIVITY: Cell<u64> = const { Cell::new(0) };
    /// Every read this thread's connections have made (wrapping): the poller's sign that the
    /// thread still has work.
    static WORK: Cell<u64> = const { Cell::new(0) };
    /// The parked poller of this thread, woken by the next read.
    static POLLER: RefCell<Option<Waker>> = const { RefCell::new(None) };
    /// Whether this thread runs a poller, which leads deferred fsyncs.
    static POLLING: Cell<bool> = const { Cell::new(false) };
    /// The fsyncs this thread runs once it is idle.
    static LEADS: RefCell<Leads> = const {
        RefCell::new(Leads {
            partitions: Vec::new(),
            since: None,
        })
    };
}

/// Partitions whose fsync an I/O thread runs once it is idle, and since when the first of them
/// waits.
struct Leads {
    partitions: Vec<Arc<Partition>>,
    since: Option<Instant>,
}

/// How long a busy thread keeps an fsync it was to lead before it hands it to the sync
/// thread: the bound on what leading adds to an XADD under load that never lets the thread
/// idle (the sync thread's own group-commit window may add up to 2 ms).
const LEAD_WAIT: Duration = Duration::from_millis(1);

/// A read of at most this many commands comes from a client that waits for each reply: it
/// keeps the thread polling (`note_activity`), and its reply is written at once. A pipelined
/// read (`-P 16`) shares its wake-up among its commands, so spinning for the next one saves
/// little, while on a small machine the spinning core is one the client and the kernel's
/// loopback work could use; its replies wait for the end of the event-loop turn. (A first A/B
/// seemed to show pipelined GETs 5–10 % slower with the spin; fresh servers of the same binary
/// differed as much, so that figure is not evidence either way.)
pub(crate) const UNPIPELINED_COMMANDS: u64 = 2;

/// Called by a connection after a read of a few commands (`UNPIPELINED_COMMANDS`): keeps
/// this thread's poller spinning, or wakes it. Costs a thread-local increment when the poller
/// is already awake.
pub(crate) fn note_activity() {
    ACTIVITY.with(|a| a.set(a.get().wrapping_add(1)));
    if let Some(w) = POLLER.with(|p| p.borrow_mut().take()) {
        w.wake();
    }
}

fn activity() -> u64 {
    ACTIVITY.with(Cell::get)
}

/// Called by a connection after every read with commands in it.
pub(crate) fn note_work() {
    WORK.with(|w| w.set(w.get().wrapping_add(1)));
}

fn work() -> u64 {
    WORK.with(Cell::get)
}

/// Whether this thread will run the fsync that `partition`'s appends wait for once it has
/// nothing else to do, as Redis's event loop does before it sleeps; the caller ([`append`],
/// for XADD and durable PUBLISH) then appends with [`Partition::start_append`] and `lead`. Only
/// threads with a poller (`busy_poll_us` > 0) lead; the others leave fsyncs to the sync thread.
///
/// Why: handing the fsync to the partition's sync thread costs two cross-core wake-ups per
/// fsync (the append wakes the sync thread, the fsync's end wakes this thread), and on a VM
/// one such wake-up of an idle virtual CPU took ~66 µs, half an fsync (docs/BENCHMARKS.md).
/// Run here, the fsync starts when the thread has read all it can, and the appenders it
/// releases are this thread's own tasks, woken without a system call. The price: while it
/// runs, this thread's other connections wait, as all of Redis's do.
fn lead_when_idle(partition: &Arc<Partition>) -> bool {
    if !POLLING.with(Cell::get) {
        return false;
    }
    LEADS.with(|leads| {
        let mut leads = leads.borrow_mut();
        if !leads.partitions.iter().any(|p| Arc::ptr_eq(p, partition)) {
            leads.partitions.push(Arc::clone(partition));
        }
        leads.since.get_or_insert_with(Instant::now);
    });
    // Wakes the poller, which spins until it has led or handed off the fsync.
    note_activity();
    true
}

/// Appends `msgs` to `partition` from a task on this thread and waits until they are as
/// durable as the topic asks: on an `Always` topic from a thread with a poller, the fsync is
/// this thread's to lead ([`lead_when_idle`]); otherwise it is the sync thread's.
pub(crate) async fn append(
    partition: &Arc<Partition>,
    msgs: &[Message],
) -> Result<AppendReceipt, LogError> {
    // Only an fsync per append is worth leading: other topics never wait for one.
    let lead = partition.durability() == Durability::Always && lead_when_idle(partition);
    // The write is one command's: no transaction's `EXEC` runs in the middle of it.
    let wait = super::gate::shared(|| partition.start_append(msgs, lead))?;
    wait.await
}

/// Runs the fsyncs this thread was to lead; returns whether there were any.
fn lead_all() -> bool {
    let leads = take_leads();
    for partition in &leads {
        // Blocks for the fsync: the thread had nothing else to run.
        partition.lead_sync();
    }
    !leads.is_empty()
}

/// Hands the fsyncs this thread was to lead to their sync threads if the first has waited
/// `LEAD_WAIT` while the thread stayed busy.
fn hand_off_if_late() {
    let late = LEADS.with(|leads| {
        leads
            .borrow()
            .since
            .is_some_and(|t| t.elapsed() >= LEAD_WAIT)
    });
    if late {
        for partition in &take_leads() {
            partition.hand_off_sync();
        }
    }
}

/// Empties this thread's list of fsyncs to lead; returns what it held.
fn take_leads() -> Vec<Arc<Partition>> {
    LEADS.with(|leads| {
        let mut leads = leads.borrow_mut();
        leads.since = None;
        std::mem::take(&mut leads.partitions)
    })
}

/// Keeps the thread's event loop polling epoll without blocking while its connections are
/// busy, and lets it block once none has read anything for `spin`.
///
/// Why: with clients that wait for each reply (no pipelining), the thread runs out of work
/// between requests and blocks in `epoll_wait`; the client's next `send` then has to wake it,
/// and on a VM that wake-up (an interrupt to an idle virtual CPU) is paid inside the client's
/// system call. Spinning through `yield_now` (the runtime polls epoll with a zero timeout
/// between each turn) takes the wake-ups away while traffic flows, as io_uring's polling
/// thread does for `sq_thread_idle`: docs/BENCHMARKS.md has the measurements. The cost is the
/// thread's core while traffic flows with gaps under `spin`; an idle server spins for `spin`
/// once after its last request, then blocks as before.
///
/// It also runs the fsyncs that XADDs and durable PUBLISHes on this thread wait for
/// ([`lead_when_idle`]): after two turns of the event loop in which no connection read
/// anything.
async fn poll_while_busy(spin: Duration) {
    POLLING.with(|p| p.set(true));
    loop {
        let seen = activity();
        poll_fn(|cx| {
            if activity() == seen {
                POLLER.with(|p| *p.borrow_mut() = Some(cx.waker().clone()));
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        let mut last = (activity(), work());
        let mut since = Instant::now();
        // Turns in a row without a read. Two before leading: a task woken in the same turn as
        // this one may run after it, so one quiet turn does not prove the thread idle.
        let mut quiet = 0u32;
        loop {
            tokio::task::yield_now().await;
            let now = (activity(), work());
            if now != last {
                // Only reads of a few commands keep it spinning (`UNPIPELINED_COMMANDS`);
                // any read makes the turn busy.
                if now.0 != last.0 {
                    since = Instant::now();
                }
                last = now;
                quiet = 0;
                hand_off_if_late();
                continue;
            }
            quiet += 1;
            if quiet >= 2 && lead_all() {
                // The fsync's appenders run next: their replies are activity to wait for.
                since = Instant::now();
                quiet = 0;
            } else if since.elapsed() >= spin && !leading() {
                // (An fsync to lead keeps it spinning until it leads: parked, nothing would
                // wake it for that.)
                break;
            }
        }
    }
}

/// Whether this thread has fsyncs to lead.
fn leading() -> bool {
    LEADS.with(|leads| !leads.borrow().partitions.is_empty())
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
        let mut io = IoThreads::start(2, Duration::ZERO).unwrap();
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

    /// The CPU time an I/O thread spends while its connection reads every millisecond for
    /// 200 ms, then while nothing reads for 200 ms.
    fn cpu_busy_then_idle(spin: Duration) -> (Duration, Duration) {
        let mut io = IoThreads::start(1, spin).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        io.next().spawn(async move {
            let cpu = || {
                let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
                Duration::new(t.tv_sec.unsigned_abs(), t.tv_nsec.unsigned_abs() as u32)
            };
            let (c0, w0) = (cpu(), Instant::now());
            while w0.elapsed() < Duration::from_millis(200) {
                note_activity();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let busy = cpu() - c0;
            let c1 = cpu();
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx.send((busy, cpu() - c1)).unwrap();
        });
        let r = rx.recv().unwrap();
        io.stop();
        r
    }

    fn always_partition(dir: &std::path::Path) -> (crate::log::Log, Arc<Partition>) {
        let log = crate::log::Log::open(dir, crate::config::LogConfig::default()).unwrap();
        let topic = log
            .create_topic(
                "t",
                crate::config::TopicConfig::default()
                    .with_durability(crate::config::Durability::Always),
            )
            .unwrap();
        let p = Arc::clone(topic.partition(0).unwrap());
        (log, p)
    }

    #[test]
    fn an_idle_thread_leads_the_fsync_of_its_appends_and_one_without_a_poller_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, p) = always_partition(dir.path());
        for spin in [Duration::from_micros(20), Duration::ZERO] {
            let mut io = IoThreads::start(1, spin).unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let p = Arc::clone(&p);
            io.next().spawn(async move {
                let msgs = [crate::log::Message::new("x")];
                let led = lead_when_idle(&p);
                let receipt = if led {
                    p.start_append(&msgs, true).expect("write").await
                } else {
                    p.append_async(&msgs).await
                };
                tx.send((led, receipt.map(|r| r.synced))).unwrap();
            });
            let (led, synced) = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("acknowledged");
            assert_eq!(led, !spin.is_zero(), "spin {spin:?}");
            assert!(synced.unwrap(), "spin {spin:?}");
            io.stop();
        }
        assert_eq!(p.durable_offset(), 2);
    }

    /// Two I/O threads appending to one partition: one's lead finds the other's fsync running
    /// (and leaves the rest to the sync thread) or covers the other's records. Every append
    /// must still be acknowledged, durable.
    #[test]
    fn two_threads_leading_one_partition_acknowledge_every_append() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, p) = always_partition(dir.path());
        let mut io = IoThreads::start(2, Duration::from_micros(20)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (tasks, appends) = (16, 40);
        for t in 0..tasks {
            let p = Arc::clone(&p);
            let tx = tx.clone();
            io.next().spawn(async move {
                for i in 0..appends {
                    let msgs = [crate::log::Message::new(format!("{t}-{i}"))];
                    assert!(lead_when_idle(&p));
                    let r = p.start_append(&msgs, true).expect("write").await.unwrap();
                    assert!(r.synced);
                    assert!(p.durable_offset() > r.offset);
                }
                tx.send(()).unwrap();
            });
        }
        for _ in 0..tasks {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("every task finishes");
        }
        assert_eq!(p.durable_offset(), tasks * appends);
        io.stop();
    }

    #[test]
    fn a_thread_that_stays_busy_hands_its_fsync_to_the_sync_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, p) = always_partition(dir.path());
        let mut io = IoThreads::start(1, Duration::from_micros(20)).unwrap();
        let busy_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = Arc::clone(&busy_done);
        // A connection that reads on every turn of the event loop for 2 s: the thread is
        // never idle, so it never leads.
        io.next().spawn(async move {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                note_work();
                tokio::task::yield_now().await;
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let (tx, rx) = std::sync::mpsc::channel();
        io.next().spawn(async move {
            let msgs = [crate::log::Message::new("x")];
            assert!(lead_when_idle(&p));
            let synced = p
                .start_append(&msgs, true)
                .expect("write")
                .await
                .unwrap()
                .synced;
            tx.send((synced, busy_done.load(std::sync::atomic::Ordering::SeqCst)))
                .unwrap();
        });
        let (synced, busy_over) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("acknowledged");
        assert!(synced);
        assert!(
            !busy_over,
            "acknowledged while the thread was still busy: handed off"
        );
        io.stop();
    }

    #[test]
    fn the_thread_polls_while_reads_come_closer_than_the_spin_and_sleeps_once_they_stop() {
        // Reads 1 ms apart, under a 5 ms spin: the thread never blocks, so it is on the CPU
        // for most of those 200 ms (a loaded test machine may take some of them away).
        let (busy, idle) = cpu_busy_then_idle(Duration::from_millis(5));
        assert!(busy > Duration::from_millis(40), "busy {busy:?}");
        // Once reads stop it spins 5 ms more, then sleeps.
        assert!(idle < Duration::from_millis(30), "idle {idle:?}");
        // Without the spin the thread sleeps between reads: the CPU went to the poller.
        let (busy, idle) = cpu_busy_then_idle(Duration::ZERO);
        assert!(busy < Duration::from_millis(30), "no spin, busy {busy:?}");
        assert!(idle < Duration::from_millis(30), "no spin, idle {idle:?}");
    }
}
