//! A partition: its segments, the write path with group commit, reads, follow, and poisoning.
//! Recovery, retention and compaction live in sibling modules and work on the same state.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};
use tokio::sync::watch;

use super::Context;
use super::appender::Appender;
use super::durable::Durable;
use super::producer::{Admission, ProducerTable};
use super::record::{self, Message, OpenBatch, ProducerStamp, Record};
use super::segment::{IndexBuilder, Segment};
use super::sync::{GroupCommit, fsync, sync_loop};
use crate::config::{Durability, TopicConfig};
use crate::error::LogError;

/// What an append got: where its records are and how durable they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppendReceipt {
    /// The partition written.
    pub partition: u32,
    /// Offset of the first record.
    pub offset: u64,
    /// Offset of the last record.
    pub last_offset: u64,
    /// The topic's durability, which this acknowledgement honours.
    pub durability: Durability,
    /// Whether the records were fsynced before this receipt was returned.
    pub synced: bool,
    /// Whether this was a retry of an idempotent batch already in the log.
    pub duplicate: bool,
    /// Timestamp (ms) of the first record as written (for a duplicate: of the retry, since
    /// the original's is not kept).
    pub timestamp: u64,
}

/// Everything about a partition that changes, behind one lock.
#[derive(Debug)]
pub(crate) struct State {
    /// Oldest first; the last one is the active segment.
    pub segments: Vec<Arc<Segment>>,
    /// Encoded batches not yet written, whole, to the active segment's file. The first one
    /// starts at the segment's `written()`.
    pub buf: Vec<u8>,
    /// The leading bytes of `buf` that are in the file already: the head of its first batch,
    /// where a write stopped on an alignment boundary ([`write_alignment`]). The segment's
    /// `written()` counts whole batches only, so readers never meet part of one.
    pub buf_in_file: usize,
    /// Where the active segment's file ends: past its `written` bytes when space was
    /// preallocated (zeros) for an `Always` topic.
    pub allocated: u64,
    /// The batch at the end of `buf` that buffered appends still join.
    open: Option<OpenBatch>,
    /// Appends and records in `buf`, not yet added to the shared metrics.
    buffered_appends: u64,
    buffered_records: u64,
    /// Index entries whose batches are in `buf` or not yet in the `.idx` file.
    pub idx_pending: Vec<super::index::IndexEntry>,
    pub index_builder: IndexBuilder,
    /// The offset the next record gets.
    pub next_offset: u64,
    /// Every offset below this is fsynced.
    pub durable: u64,
    /// Readers see offsets below this: `durable` for `Always`, everything appended otherwise.
    pub visible: u64,
    /// The first offset still held (retention moves it).
    pub start_offset: u64,
    /// When the active segment got its first record (roll by age).
    pub active_since: Option<u64>,
    /// The latest clock reading an append used: log-assigned timestamps never go below it.
    last_clock: u64,
    pub producers: ProducerTable,
    /// Set by a failed write or fsync: the error's kind and text.
    pub poisoned: Option<(std::io::ErrorKind, String)>,
    pub closed: bool,
    /// The sync thread runs (it exits when idle; [`ensure_sync_thread`] starts it again).
    pub sync_alive: bool,
    pub sync_requested: bool,
    /// The request was made by appenders whose thread runs the fsync itself once it has nothing
    /// else to do ([`Partition::lead_sync`]) or hands it over ([`Partition::hand_off_sync`]):
    /// the sync thread was not woken for it.
    pub sync_deferred: bool,
    /// An fsync of the group is in flight (by the sync thread or a leading appender).
    pub syncing: bool,
    /// A rolled segment waits for the sync thread to fsync it.
    pub seal_wanted: bool,
    pub dirty_since: Option<Instant>,
    /// Group commit: appends waiting for the next fsync, how many the last fsync covered, and
    /// how long it took.
    pub group: GroupCommit,
}

impl State {
    pub fn active(&self) -> &Arc<Segment> {
        // A partition always has at least one segment: open creates one and retention never
        // deletes the active one.
        &self.segments[self.segments.len() - 1]
    }

    /// Bytes of the active segment including what is buffered.
    pub fn active_len(&self) -> u64 {
        self.active().written() + self.buf.len() as u64
    }
}

/// Shared by the partition handle, its sync thread and its followers.
#[derive(Debug)]
pub(crate) struct Core {
    pub topic: String,
    pub id: u32,
    pub dir: PathBuf,
    pub config: TopicConfig,
    pub ctx: Context,
    pub state: Mutex<State>,
    /// Signalled when `durable`, `visible`, `poisoned` or `closed` change.
    pub changed: Condvar,
    /// Signalled when the sync thread has work.
    pub sync_wanted: Condvar,
    /// The async side of `changed`: bumped on every change.
    pub progress: watch::Sender<u64>,
    /// Mirror of `State::durable` with the appenders waiting for it.
    pub durable: Durable,
    /// Serialises retention and compaction.
    pub maintenance: Mutex<()>,
    /// Serialises fsyncs and holds the sealed segment whose fsync is still to come (see
    /// [`roll`]); `fsync_failed` is set before it is released after a failure.
    pub fsync_lock: Mutex<Option<Unsealed>>,
    pub fsync_failed: AtomicBool,
    /// The sync thread last started, if any (it may have exited since, being idle).
    pub sync_thread: Mutex<Option<JoinHandle<()>>>,
}

/// One partition of a topic: an ordered, append-only sequence of records with dense offsets.
#[derive(Debug)]
pub struct Partition {
    pub(crate) core: Arc<Core>,
}

impl Partition {
    /// A partition on `core`; its sync thread starts with the first append that needs it.
    pub(crate) fn new(core: Core) -> Self {
        Self {
            core: Arc::new(core),
        }
    }

    /// The partition's number within its topic.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.core.id
    }

    /// The durability of the partition's topic.
    #[cfg(feature = "server")]
    pub(crate) fn durability(&self) -> Durability {
        self.core.config.durability
    }

    /// The partition's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.core.dir
    }

    /// Appends records as one batch and returns once they are as durable as the topic's
    /// [`Durability`] promises.
    ///
    /// # Errors
    /// [`LogError::EmptyBatch`], [`LogError::RecordTooLarge`], [`LogError::Poisoned`],
    /// [`LogError::StorageFull`], [`LogError::Io`], [`LogError::Closed`].
    pub fn append(&self, msgs: &[Message]) -> Result<AppendReceipt, LogError> {
        let pending = self.write(msgs, None, Leader::Blocking)?;
        self.finish(pending)
    }

    /// Like [`append`](Self::append), for a producer that may retry: a batch whose producer id
    /// and first sequence number were already appended is not written again; the receipt
    /// carries the original offsets and `duplicate: true`.
    ///
    /// # Errors
    /// As [`append`](Self::append), plus [`LogError::OutOfOrderSequence`] and
    /// [`LogError::StaleSequence`].
    pub fn append_idempotent(
        &self,
        producer_id: u64,
        sequence: u32,
        msgs: &[Message],
    ) -> Result<AppendReceipt, LogError> {
        let stamp = ProducerStamp {
            id: producer_id,
            sequence,
        };
        let pending = self.write(msgs, Some(stamp), Leader::Blocking)?;
        self.finish(pending)
    }

    /// Async [`append`](Self::append): waits for the fsync without blocking a thread.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub async fn append_async(&self, msgs: &[Message]) -> Result<AppendReceipt, LogError> {
        let pending = self.write(msgs, None, Leader::SyncThread)?;
        self.finish_async(pending).await
    }

    /// Writes the records now and returns the wait for their durability, for a caller that
    /// must place the write among other work and wait afterwards (the server writes the XADDs
    /// of a transaction inside `EXEC`, with no other command running, and waits after it).
    ///
    /// `lead`: the caller's thread runs the fsync itself once it has nothing else to do, so on
    /// an `Always` topic the sync thread is not woken for these records. The caller's thread
    /// must then soon call [`lead_sync`](Self::lead_sync) (when idle) or
    /// [`hand_off_sync`](Self::hand_off_sync) (when it stays busy); until one of them runs,
    /// the wait waits. The server's I/O threads append XADDs this way: the sync thread's
    /// wake-up and its wake-up of the I/O thread were two cross-core wake-ups per fsync, each
    /// ~66 µs on a VM whose idle virtual CPU halts (docs/BENCHMARKS.md).
    ///
    /// # Errors
    /// As [`append`](Self::append), from the write or from the wait.
    #[cfg(feature = "server")]
    pub(crate) fn start_append(
        self: &Arc<Self>,
        msgs: &[Message],
        lead: bool,
    ) -> Result<impl Future<Output = Result<AppendReceipt, LogError>> + Send + 'static, LogError>
    {
        let leader = if lead {
            Leader::WhenIdle
        } else {
            Leader::SyncThread
        };
        let pending = self.write(msgs, None, leader)?;
        let this = Arc::clone(self);
        Ok(async move { this.finish_async(pending).await })
    }

    /// Runs the fsync that appends made by [`start_append`](Self::start_append) with `lead`
    /// wait for, here and now, blocking the caller for its duration. Returns whether it ran
    /// one: not when nothing waits or the sync thread has the request. When an fsync is
    /// already running, what it does not cover goes to the sync thread after it.
    #[cfg(feature = "server")]
    pub(crate) fn lead_sync(&self) -> bool {
        let mut st = self.core.state.lock();
        if !st.sync_requested || !st.sync_deferred || st.closed || st.poisoned.is_some() {
            return false;
        }
        if st.syncing {
            // The running fsync wakes the sync thread for the rest when it ends.
            st.sync_deferred = false;
            return false;
        }
        st.syncing = true;
        st.sync_requested = false;
        st.sync_deferred = false;
        super::sync::sync_group(&self.core, st);
        true
    }

    /// Gives a deferred fsync request (see [`start_append`](Self::start_append))
    /// to the sync thread: for a thread that stayed busy.
    #[cfg(feature = "server")]
    pub(crate) fn hand_off_sync(&self) {
        let mut st = self.core.state.lock();
        if st.sync_requested && st.sync_deferred {
            st.sync_deferred = false;
            if !st.syncing {
                self.core.sync_wanted.notify_one();
            }
        }
    }

    /// Async [`append_idempotent`](Self::append_idempotent).
    ///
    /// # Errors
    /// As [`append_idempotent`](Self::append_idempotent).
    pub async fn append_idempotent_async(
        &self,
        producer_id: u64,
        sequence: u32,
        msgs: &[Message],
    ) -> Result<AppendReceipt, LogError> {
        let stamp = ProducerStamp {
            id: producer_id,
            sequence,
        };
        let pending = self.write(msgs, Some(stamp), Leader::SyncThread)?;
        self.finish_async(pending).await
    }

    /// A batching handle for one writer, the fastest way to append many small records: see
    /// [`Appender`].
    #[must_use]
    pub fn appender(self: &Arc<Self>) -> Appender {
        Appender::new(Arc::clone(self))
    }

    /// Appends the batch an [`Appender`] encoded at the start of `buf` (left empty when it
    /// succeeds).
    /// `retime`: its timestamps were assigned by the appender and move up, all by the same
    /// amount, when a write that got in first has a later one (timestamps the log assigns
    /// never go backwards).
    pub(crate) fn append_encoded(
        &self,
        buf: &mut Vec<u8>,
        batch: OpenBatch,
        retime: bool,
    ) -> Result<AppendReceipt, LogError> {
        let pending = self.write_encoded(buf, batch, retime, Leader::Blocking)?;
        self.finish(pending)
    }

    /// Async [`append_encoded`](Self::append_encoded).
    pub(crate) async fn append_encoded_async(
        &self,
        buf: &mut Vec<u8>,
        batch: OpenBatch,
        retime: bool,
    ) -> Result<AppendReceipt, LogError> {
        let pending = self.write_encoded(buf, batch, retime, Leader::SyncThread)?;
        self.finish_async(pending).await
    }

    /// Reads up to `max_records` records starting at `offset` (the first record at or after it:
    /// compaction leaves gaps). Reading at the end offset returns an empty vector.
    ///
    /// Keys and values are slices of the read buffer (up to 1 MiB), not copies: a record held
    /// keeps that buffer alive, so copy what you keep for long. To process records on the spot
    /// without even that, see [`BatchView::record_views`](super::BatchView::record_views).
    ///
    /// # Errors
    /// [`LogError::OffsetOutOfRange`] below the start or past the end; [`LogError::Corrupt`] if
    /// a batch on the way fails its CRC; [`LogError::Io`].
    pub fn read(&self, offset: u64, max_records: usize) -> Result<Vec<Record>, LogError> {
        super::read::read(&self.core, offset, max_records)
    }

    /// Reads whole, CRC-verified batches from the one holding `offset` on, at most `max_bytes`
    /// of them together, except that the first batch is returned whatever its size (as
    /// Kafka's fetch sizes work). The first batch may start before `offset`. Cheaper than
    /// [`read`](Self::read) for bulk transfer: nothing is decoded.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn read_batches(
        &self,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Vec<super::RecordBatch>, LogError> {
        super::read::read_batches(&self.core, offset, max_bytes)
    }

    /// Lends each CRC-verified batch, from the one holding `offset` to the end, to `f` without
    /// copying it, until `f` breaks. Returns the offset after the last batch lent. The cheapest
    /// way to move a partition's bytes elsewhere (a replica, a socket, a backup).
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn visit_batches(
        &self,
        offset: u64,
        f: impl FnMut(super::BatchView<'_>) -> std::ops::ControlFlow<()>,
    ) -> Result<u64, LogError> {
        super::read::visit_batches(&self.core, offset, f)
    }

    /// The offset of the first record whose timestamp is at or after `millis`, or `None` if
    /// every record is older.
    ///
    /// # Errors
    /// [`LogError::Corrupt`], [`LogError::Io`].
    pub fn offset_for_timestamp(&self, millis: u64) -> Result<Option<u64>, LogError> {
        super::read::offset_for_timestamp(&self.core, millis)
    }

    /// The first offset still held.
    #[must_use]
    pub fn start_offset(&self) -> u64 {
        self.core.state.lock().start_offset
    }

    /// The offset after the last record readers can see (the "high watermark").
    #[must_use]
    pub fn end_offset(&self) -> u64 {
        self.core.state.lock().visible
    }

    /// The offset below which every record is fsynced.
    #[must_use]
    pub fn durable_offset(&self) -> u64 {
        self.core.durable.offset()
    }

    /// Bytes held on disk (and buffered) by this partition.
    #[must_use]
    pub fn size_bytes(&self) -> u64 {
        let st = self.core.state.lock();
        st.segments.iter().map(|s| s.written()).sum::<u64>() + st.buf.len() as u64
    }

    /// Number of segment files.
    #[must_use]
    pub fn segment_count(&self) -> usize {
        self.core.state.lock().segments.len()
    }

    /// Writes out buffered records and fsyncs them, whatever the durability.
    ///
    /// # Errors
    /// [`LogError::Poisoned`] or the I/O error that poisoned the partition.
    pub fn flush(&self) -> Result<(), LogError> {
        flush_and_sync(&self.core).map(|_| ())
    }

    /// Flushes, fsyncs, persists the index and stops the sync thread. Appends after this fail
    /// with [`LogError::Closed`]. Idempotent.
    pub(crate) fn close(&self) {
        {
            let mut st = self.core.state.lock();
            if !st.closed {
                if st.poisoned.is_none() && flush_buffer(&self.core, &mut st).is_ok() {
                    // Zeros that cannot be cut are harmless: recovery cuts them.
                    let _ = trim_preallocated(&mut st);
                    let next = st.next_offset;
                    let file = Arc::clone(&st.active().file);
                    if fsync(&self.core, &file).is_ok() {
                        mark_durable(&self.core, &mut st, next);
                        self.core.durable.advance(next);
                        // Everything is durable (the fsync covered a sealed segment still
                        // waiting for its own): the next open need not walk the segments. The
                        // record rewrites the index whole, pending entries included.
                        let storage = self.core.ctx.storage.as_ref();
                        let _ = super::recovery::record_clean_close(storage, &self.core.dir, &st);
                    } else {
                        flush_index(&mut st);
                    }
                }
                st.closed = true;
                self.core.durable.stop();
            }
            self.core.changed.notify_all();
            self.core.sync_wanted.notify_all();
            self.core.progress.send_modify(|g| *g += 1);
        }
        if let Some(handle) = self.core.sync_thread.lock().take() {
            let _ = handle.join();
        }
    }

    /// Encodes and buffers a batch; does not wait for durability. `leader`: who runs the fsync
    /// an `Always` append waits for.
    fn write(
        &self,
        msgs: &[Message],
        producer: Option<ProducerStamp>,
        leader: Leader,
    ) -> Result<Pending, LogError> {
        let core = &self.core;
        if msgs.is_empty() {
            return Err(LogError::EmptyBatch);
        }
        let max = core.config.max_record_bytes;
        let mut total = record::HEADER_LEN;
        for m in msgs {
            let size = m.encoded_len();
            if size > max {
                return Err(LogError::RecordTooLarge { size, max });
            }
            total += size;
        }
        if total > record::MAX_BATCH_BYTES {
            return Err(LogError::RecordTooLarge {
                size: total,
                max: record::MAX_BATCH_BYTES,
            });
        }
        let count = u32::try_from(msgs.len()).map_err(|_| LogError::RecordTooLarge {
            size: total,
            max: record::MAX_BATCH_BYTES,
        })?;
        let (mut st, clock_now) = begin_write(core)?;
        // Timestamps the log assigns never go backwards within a partition, whatever the
        // clock does (a coarse read taken before the lock, an NTP step), so they follow
        // offset order: a stream's IDs, `<ms>-<offset>`, grow.
        let now = clock_now.max(st.last_clock);
        st.last_clock = now;
        if let Some(stamp) = producer
            && let Admission::Duplicate { base_offset } = st.producers.admit(stamp, count)?
        {
            core.ctx.metrics.duplicates(1);
            return Ok(Pending {
                base: base_offset,
                end: base_offset + u64::from(count),
                duplicate: true,
                lead: false,
                timestamp: now,
            });
        }
        make_room(core, &mut st, now, total)?;
        let base = st.next_offset;
        let end = base + u64::from(count);
        // Buffered appends join the open batch: one header and one CRC for many small appends.
        // Idempotent batches keep their own header (it carries the producer stamp), and so do
        // `Always` appends, which are written out at once anyway.
        let coalesce = producer.is_none() && core.config.durability != Durability::Always;
        let st = &mut *st;
        let max_ts = if coalesce {
            if st
                .open
                .is_some_and(|b| b.len(&st.buf) + total > OPEN_BATCH_MAX)
            {
                seal_open(st);
            }
            let first_ts = msgs[0].timestamp.unwrap_or(now);
            let batch = st
                .open
                .get_or_insert_with(|| OpenBatch::open(&mut st.buf, base, first_ts, None));
            for m in msgs {
                batch.push(&mut st.buf, m, now);
            }
            batch.max_timestamp()
        } else {
            seal_open(st);
            let position = st.active_len();
            let header = record::encode_batch(&mut st.buf, base, msgs, now, producer);
            debug_assert_eq!(header.next_offset(), end);
            add_index_entry(st, position, &header);
            header.max_timestamp
        };
        if let Some(stamp) = producer {
            st.producers.record(stamp, count, base);
        }
        let lead = commit(core, st, end, now, max_ts, count, leader);
        Ok(Pending {
            base,
            end,
            duplicate: false,
            lead,
            timestamp: msgs[0].timestamp.unwrap_or(now),
        })
    }

    /// Places an appender's batch in the buffer; see [`append_encoded`](Self::append_encoded).
    fn write_encoded(
        &self,
        buf: &mut Vec<u8>,
        mut batch: OpenBatch,
        retime: bool,
        leader: Leader,
    ) -> Result<Pending, LogError> {
        let core = &self.core;
        let (mut st, clock_now) = begin_write(core)?;
        if retime {
            batch.delay(st.last_clock.saturating_sub(batch.first_timestamp()));
            st.last_clock = st.last_clock.max(batch.max_timestamp());
        }
        let now = clock_now.max(st.last_clock);
        st.last_clock = now;
        make_room(core, &mut st, now, buf.len())?;
        let st = &mut *st;
        seal_open(st);
        let base = st.next_offset;
        batch.set_base_offset(base);
        let header = batch.seal(buf);
        let end = header.next_offset();
        let position = st.active_len();
        place_batch(core, st, buf)?;
        add_index_entry(st, position, &header);
        let lead = commit(
            core,
            st,
            end,
            now,
            header.max_timestamp,
            header.count,
            leader,
        );
        Ok(Pending {
            base,
            end,
            duplicate: false,
            lead,
            timestamp: header.first_timestamp,
        })
    }

    fn finish(&self, pending: Pending) -> Result<AppendReceipt, LogError> {
        let durability = self.core.config.durability;
        if pending.lead {
            super::sync::sync_group(&self.core, self.core.state.lock());
        }
        if durability == Durability::Always && !self.core.durable.wait(pending.end) {
            self.stopped_before(pending.end)?;
        }
        Ok(self.receipt(pending))
    }

    async fn finish_async(&self, pending: Pending) -> Result<AppendReceipt, LogError> {
        if self.core.config.durability == Durability::Always
            && !self.core.durable.wait_async(pending.end).await
        {
            self.stopped_before(pending.end)?;
        }
        Ok(self.receipt(pending))
    }

    /// The partition stopped (poisoned or closed) while an append waited for its fsync: `Ok`
    /// if the records made it anyway, the reason otherwise.
    fn stopped_before(&self, end: u64) -> Result<(), LogError> {
        let st = self.core.state.lock();
        if st.durable >= end {
            return Ok(());
        }
        check_writable(&self.core, &st)?;
        Err(LogError::Closed)
    }

    fn receipt(&self, p: Pending) -> AppendReceipt {
        let durability = self.core.config.durability;
        AppendReceipt {
            partition: self.core.id,
            offset: p.base,
            last_offset: p.end - 1,
            durability,
            synced: durability == Durability::Always,
            duplicate: p.duplicate,
            timestamp: p.timestamp,
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.close();
    }
}

/// A batch in the buffer, awaiting its durability.
#[derive(Debug, Clone, Copy)]
struct Pending {
    base: u64,
    end: u64,
    duplicate: bool,
    /// This appender fsyncs the group itself.
    lead: bool,
    /// The first record's timestamp.
    timestamp: u64,
}

pub(crate) fn check_writable(core: &Core, st: &State) -> Result<(), LogError> {
    if let Some((kind, cause)) = &st.poisoned {
        if *kind == std::io::ErrorKind::StorageFull {
            return Err(LogError::StorageFull {
                path: st.active().log_path.clone(),
            });
        }
        return Err(LogError::Poisoned {
            topic: core.topic.clone(),
            partition: core.id,
            cause: cause.clone(),
        });
    }
    if st.closed {
        return Err(LogError::Closed);
    }
    Ok(())
}

fn file_path(st: &State) -> PathBuf {
    st.active().log_path.clone()
}

/// Refuses every later write and wakes every waiter with the error. Returns the error for the
/// caller that hit it, keeping "storage full" recognisable.
pub(crate) fn poison(core: &Core, st: &mut State, e: &std::io::Error, path: &Path) -> LogError {
    let err = LogError::io(path, std::io::Error::new(e.kind(), e.to_string()));
    st.poisoned
        .get_or_insert_with(|| (e.kind(), err.to_string()));
    core.durable.stop();
    core.changed.notify_all();
    core.progress.send_modify(|g| *g += 1);
    err
}

/// Largest batch that buffered appends are coalesced into.
const OPEN_BATCH_MAX: usize = 16 * 1024;

/// Writes the open batch's header and CRC, and indexes it.
fn seal_open(st: &mut State) {
    if let Some(batch) = st.open.take() {
        let position = st.active().written() + batch.start as u64;
        let header = batch.seal(&mut st.buf);
        add_index_entry(st, position, &header);
    }
}

/// What every append does first: reads the clock (coarse: a precise read would cost as much
/// as the rest of a small append), takes the state lock, refuses a poisoned or closed
/// partition and makes sure the sync thread runs. Returns the lock and the clock reading.
fn begin_write(core: &Arc<Core>) -> Result<(MutexGuard<'_, State>, u64), LogError> {
    let clock_now = core.ctx.clock.now_millis_coarse();
    let mut st = core.state.lock();
    check_writable(core, &st)?;
    ensure_sync_thread(core, &mut st)?;
    Ok((st, clock_now))
}

/// Starts the partition's sync thread unless it runs. Called under the state lock by every
/// append before it asks the thread for anything; the thread exits only under the same lock
/// and only with nothing asked of it, so no request finds it gone.
fn ensure_sync_thread(core: &Arc<Core>, st: &mut State) -> Result<(), LogError> {
    if st.sync_alive {
        return Ok(());
    }
    let sync_core = Arc::clone(core);
    let handle = std::thread::Builder::new()
        .name(format!("quipu-sync-{}-{}", core.topic, core.id))
        .spawn(move || sync_loop(&sync_core))
        .map_err(|e| LogError::io(&core.dir, e))?;
    st.sync_alive = true;
    // The previous thread, if any, has returned or is returning: nothing to wait for.
    *core.sync_thread.lock() = Some(handle);
    Ok(())
}

/// Rolls the active segment when `total` more bytes would overfill it or it is too old, and
/// writes out the buffer when they would not fit in it.
fn make_room(core: &Core, st: &mut State, now: u64, total: usize) -> Result<(), LogError> {
    let aged = st.active_since.is_some_and(|since| {
        now.saturating_sub(since) >= crate::clock::millis(core.config.segment_age)
    });
    let active_len = st.active_len();
    if active_len > 0 && (active_len + total as u64 > core.config.segment_bytes || aged) {
        roll(core, st)?;
    }
    match write_alignment(core) {
        Some(align) => {
            // Written once the buffer passes a boundary: up to the last one it passed.
            let written = st.active().written();
            let boundary = align_down(written + st.buf.len() as u64, align);
            if boundary > written + st.buf_in_file as u64 {
                seal_open(st);
                write_out(core, st, (boundary - written) as usize)?;
            }
        }
        None => {
            if !st.buf.is_empty() && st.buf.len() + total > core.ctx.config.write_buffer_bytes {
                flush_buffer(core, st)?;
            }
        }
    }
    Ok(())
}

/// The file positions at which buffered writes end when they can choose
/// (`write_buffer_bytes` rounded down to a power of two), or `None` for an `Always` topic,
/// whose every group is written out whole before its fsync.
///
/// Linux (6.x, ext4 here) caches a file in large folios when writes cover them: 64 KiB
/// writes at multiples of 64 KiB went through the page cache at 3.6–4.2 GB/s, the
/// 65,500-byte writes of a `BufWriter` of 100-byte records at 2.3–2.7 GB/s, and 64 KiB
/// writes at page-aligned but not 64 KiB-aligned positions at 2.8–3.0 GB/s (measured; see
/// docs/BENCHMARKS.md).
fn write_alignment(core: &Core) -> Option<u64> {
    if core.config.durability == Durability::Always {
        return None;
    }
    let bytes = core.ctx.config.write_buffer_bytes as u64;
    Some((bytes + 1).next_power_of_two() / 2)
}

fn align_down(pos: u64, align: u64) -> u64 {
    pos - pos % align
}

/// Puts an appender's sealed `batch` after the buffer. When the two pass an alignment
/// boundary, what lies before it is written at once, from both in one vectored write, and the
/// batch becomes the buffer without a copy (the appender gets the old one back, emptied);
/// otherwise the batch joins the buffer.
fn place_batch(core: &Core, st: &mut State, batch: &mut Vec<u8>) -> Result<(), LogError> {
    let written = st.active().written();
    let buffered_end = written + st.buf.len() as u64;
    let boundary = write_alignment(core).map_or(0, |align| {
        align_down(buffered_end + batch.len() as u64, align)
    });
    if boundary <= buffered_end {
        if st.buf.is_empty() {
            std::mem::swap(&mut st.buf, batch);
        } else {
            st.buf.extend_from_slice(batch);
        }
        batch.clear();
        return Ok(());
    }
    let cut = (boundary - buffered_end) as usize;
    write_buffer(core, st, st.buf.len(), &batch[..cut])?;
    // Every batch that was in the buffer is in the file now, whole.
    st.active().add_written(st.buf.len() as u64);
    std::mem::swap(&mut st.buf, batch);
    batch.clear();
    st.buf_in_file = cut;
    after_write(core, st);
    Ok(())
}

/// Who runs the fsync an `Always` append waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leader {
    /// The sync thread, woken by the append.
    SyncThread,
    /// The appender itself when it is alone (a blocking caller, which waits anyway: two thread
    /// switches fewer per append); the sync thread otherwise.
    Blocking,
    /// The appender's thread once it has nothing else to do (`Partition::lead_sync`), or the
    /// sync thread if it hands the request over (`Partition::hand_off_sync`).
    WhenIdle,
}

/// Books `count` records just placed in the buffer, ending at offset `end`, and tells whoever
/// waits for them: readers at once, the sync thread for `Always` (unless `leader` defers it).
/// Returns whether the caller fsyncs the group itself now (a blocking lone appender).
fn commit(
    core: &Core,
    st: &mut State,
    end: u64,
    now: u64,
    max_ts: u64,
    count: u32,
    leader: Leader,
) -> bool {
    st.next_offset = end;
    st.active_since.get_or_insert(now);
    let active = st.active();
    active.set_next_offset(end);
    active.observe_timestamp(max_ts);
    // Counted into the shared metrics when the buffer is written: one atomic per write
    // instead of two per append.
    st.buffered_appends += 1;
    st.buffered_records += u64::from(count);
    match core.config.durability {
        Durability::Always => {
            st.group.pending += 1;
            if leader == Leader::Blocking
                && !st.syncing
                && st.group.last_size == 1
                && st.group.pending == 1
            {
                // A lone appender fsyncs its own record rather than hand it to the sync
                // thread, which would cost two thread switches per append. (Letting the
                // appender that completes a larger group lead was measured: it fragments
                // the groups and gains nothing on 2 cores.)
                st.syncing = true;
                st.sync_requested = false;
                return true;
            }
            if !st.sync_requested {
                st.sync_requested = true;
                st.sync_deferred = leader == Leader::WhenIdle;
                if !st.sync_deferred {
                    core.sync_wanted.notify_one();
                }
            } else if st.sync_deferred && leader != Leader::WhenIdle {
                // An appender that will not lead joined a deferred group: the sync thread
                // takes it over.
                st.sync_deferred = false;
                core.sync_wanted.notify_one();
            } else if st.group.window_open && st.group.pending >= st.group.last_size {
                core.sync_wanted.notify_one();
            }
        }
        Durability::Interval(_) | Durability::Never => {
            st.visible = end;
            if st.dirty_since.is_none() {
                st.dirty_since = Some(Instant::now());
                core.sync_wanted.notify_one();
            }
            core.changed.notify_all();
            if core.progress.receiver_count() > 0 {
                core.progress.send_modify(|g| *g += 1);
            }
        }
    }
    false
}

fn add_index_entry(st: &mut State, position: u64, header: &record::BatchHeader) {
    if let Some(entry) = st.index_builder.observe(position, header) {
        st.active().index.write().push(entry);
        st.idx_pending.push(entry);
    }
}

/// Writes the whole buffer to the active segment's file (no fsync).
pub(crate) fn flush_buffer(core: &Core, st: &mut State) -> Result<(), LogError> {
    seal_open(st);
    let len = st.buf.len();
    write_out(core, st, len)
}

/// Writes `buf[..upto]` to the active segment's file, what of it is not there yet (no
/// fsync), and drops from the buffer the batches now in the file whole. `upto` is the
/// buffer's length or an alignment boundary; the open batch is sealed.
fn write_out(core: &Core, st: &mut State, upto: usize) -> Result<(), LogError> {
    if upto <= st.buf_in_file {
        return Ok(());
    }
    write_buffer(core, st, upto, &[])?;
    let whole = if upto == st.buf.len() {
        upto
    } else {
        record::whole_batches_len(&st.buf[..upto])
    };
    st.active().add_written(whole as u64);
    // What follows the last whole batch moves to the front: the rest of a batch cut at the
    // boundary and the little appended since (the buffer is written when it passes one).
    st.buf.drain(..whole);
    st.buf_in_file = upto - whole;
    after_write(core, st);
    Ok(())
}

/// Writes what of `buf[..upto]` is not in the file yet, then `tail`, in one write to the
/// active segment's file, after its whole batches. A failure poisons the partition and cuts
/// the file back to its whole batches, so no torn batch sits before later ones.
fn write_buffer(core: &Core, st: &mut State, upto: usize, tail: &[u8]) -> Result<(), LogError> {
    let active = Arc::clone(st.active());
    let head = &st.buf[st.buf_in_file..upto];
    let bytes = head.len() + tail.len();
    let pos = active.written() + st.buf_in_file as u64;
    if let Err(e) = active.file.write_vectored_at(&[head, tail], pos) {
        let at = active.written();
        let _ = active.file.truncate(at);
        st.allocated = at;
        st.buf_in_file = 0;
        return Err(poison(core, st, &e, &active.log_path));
    }
    core.ctx.metrics.bytes(bytes as u64);
    st.allocated = st.allocated.max(pos + bytes as u64);
    Ok(())
}

/// What follows a write of the buffer: the counts of what it held into the shared metrics,
/// preallocation for `Always`, the `.idx` now and then.
fn after_write(core: &Core, st: &mut State) {
    core.ctx
        .metrics
        .appends(std::mem::take(&mut st.buffered_appends));
    core.ctx
        .metrics
        .records(std::mem::take(&mut st.buffered_records));
    if core.config.durability == Durability::Always {
        let active = Arc::clone(st.active());
        let end = active.written() + st.buf_in_file as u64;
        preallocate(core, st, &active, end);
    }
    // The index is derived data: appending it once per write of the buffer cost one more
    // syscall per 64 KiB (~8 ns per 100 B record); a lagging `.idx` only makes recovery scan
    // a little more. Roll and close write it out whole.
    if st.idx_pending.len() >= IDX_WRITE_ENTRIES {
        flush_index(st);
    }
}

/// How far ahead of an `Always` topic's data the active segment's file is filled with zeros.
const PREALLOCATE_BYTES: u64 = 1024 * 1024;

/// The smallest step of preallocation (one page).
const MIN_PREALLOCATE: u64 = 4096;

/// Zeros written once, for preallocation.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Keeps zero-filled space ahead of the data of an `Always` topic's active segment, so that
/// most of its fsyncs overwrite blocks the file already has: such an fsync writes data only,
/// while one that grows the file also commits the file system's journal (on ext4 here, 200 µs
/// against 90–120 µs per small write + fsync). The space is refilled when half of it is
/// used, never past the roll size; roll, close and recovery cut what is left
/// (docs/FORMAT.md §1). Preallocation is an optimisation: when it fails (a full disk), the
/// partial zeros are cut and appends go on extending the file.
fn preallocate(core: &Core, st: &mut State, active: &Segment, end: u64) {
    let limit = core.config.segment_bytes.max(end);
    // Ahead by as much as the segment already holds, up to `PREALLOCATE_BYTES`: a topic of a
    // few records (one per Redis stream, say) carries a page of zeros, not a megabyte, and a
    // busy one reaches the full window after a few doublings.
    let window = PREALLOCATE_BYTES.min(end.max(MIN_PREALLOCATE));
    if st.allocated >= (end + window / 2).min(limit) {
        return;
    }
    let target = (end + window).min(limit);
    let mut at = st.allocated;
    while at < target {
        let n = usize::try_from(target - at).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
        if active.file.write_at(&ZEROS[..n], at).is_err() {
            // What stays of the zeros if the cut fails too: roll and close try again.
            let written = at + n as u64;
            st.allocated = if active.file.truncate(end).is_ok() {
                end
            } else {
                written.max(st.allocated)
            };
            return;
        }
        at += n as u64;
    }
    st.allocated = target;
}

/// Cuts the zeros preallocated past the active segment's data, before it is sealed or closed.
pub(crate) fn trim_preallocated(st: &mut State) -> std::io::Result<()> {
    let active = st.active();
    let written = active.written();
    if st.allocated > written {
        active.file.truncate(written)?;
        st.allocated = written;
    }
    Ok(())
}

/// Index entries collected before they are appended to the `.idx` file (3 KiB).
const IDX_WRITE_ENTRIES: usize = 128;

/// Appends pending index entries to the `.idx` file. Errors are ignored: the index is derived
/// data that recovery rebuilds.
fn flush_index(st: &mut State) {
    if st.idx_pending.is_empty() {
        return;
    }
    let written = st.active().written();
    let keep = st.idx_pending.partition_point(|e| e.position < written);
    let mut bytes = Vec::with_capacity(keep * super::index::ENTRY_LEN);
    for e in &st.idx_pending[..keep] {
        e.encode(&mut bytes);
    }
    let _ = st.active().idx_file.append(&bytes);
    st.idx_pending.drain(..keep);
}

/// Makes offsets below `target` durable and visible. The caller then wakes the appenders
/// waiting for them with `core.durable.advance(target)`, ideally after unlocking.
pub(crate) fn mark_durable(core: &Core, st: &mut State, target: u64) {
    if target > st.durable {
        st.durable = target;
        if core.config.durability == Durability::Always {
            st.visible = st.visible.max(target);
        }
        core.changed.notify_all();
        core.progress.send_modify(|g| *g += 1);
    }
}

/// Writes out the buffer and fsyncs, whatever the durability; returns the offset below which
/// everything is now durable.
pub(crate) fn flush_and_sync(core: &Core) -> Result<u64, LogError> {
    let mut st = core.state.lock();
    check_writable(core, &st)?;
    flush_buffer(core, &mut st)?;
    let file = Arc::clone(&st.active().file);
    let target = st.next_offset;
    drop(st);
    let result = fsync(core, &file);
    let mut st = core.state.lock();
    match result {
        Ok(()) => {
            mark_durable(core, &mut st, target);
            drop(st);
            core.durable.advance(target);
            Ok(target)
        }
        Err(e) => {
            let path = file_path(&st);
            Err(poison(core, &mut st, &e, &path))
        }
    }
}

/// Seals the active segment (write, fsync, index) and starts a new one at the next offset.
///
/// An `Always` topic's segment is fsynced here: its records are durable already, so that
/// costs little. Another topic's segment is fsynced by the sync thread afterwards, as Kafka
/// flushes a rolled segment in the background: waiting here for the write-back of a whole
/// segment stalled the append that rolled by 150–200 ms (256 MiB). Until then it is
/// [`Unsealed`], and every fsync of the partition fsyncs it first, so nothing is reported
/// durable before it is; recovery walks the last sealed segment of such a topic whole, as it
/// does the active one (docs/FORMAT.md §1, §6). At most one segment waits: a roll that finds the
/// previous one still waiting fsyncs it first.
pub(crate) fn roll(core: &Core, st: &mut State) -> Result<(), LogError> {
    flush_buffer(core, st)?;
    let old = Arc::clone(st.active());
    if let Err(e) = trim_preallocated(st) {
        return Err(poison(core, st, &e, &old.log_path));
    }
    let next = st.next_offset;
    if core.config.durability == Durability::Always || !st.sync_alive {
        if let Err(e) = fsync(core, &old.file) {
            return Err(poison(core, st, &e, &old.log_path));
        }
        mark_durable(core, st, next);
        core.durable.advance(next);
    } else {
        let unsealed = Unsealed {
            file: Arc::clone(&old.file),
            path: old.log_path.clone(),
            end: next,
        };
        if let Err((e, path)) = super::sync::seal_later(core, unsealed) {
            return Err(poison(core, st, &e, &path));
        }
        st.seal_wanted = true;
        core.sync_wanted.notify_one();
    }
    let _ = old.rewrite_index();
    let storage = core.ctx.storage.as_ref();
    if !st.producers.is_empty() {
        let path = producers_path(&core.dir, next);
        super::meta::write(storage, &path, &st.producers)?;
    }
    let segment = Segment::open(storage, &core.dir, next, 0, next, 0, Vec::new())
        .map_err(|e| LogError::io(&core.dir, e))?;
    storage
        .sync_dir(&core.dir)
        .map_err(|e| LogError::io(&core.dir, e))?;
    st.segments.push(Arc::new(segment));
    st.allocated = 0;
    st.index_builder = IndexBuilder::new(core.config.index_interval_bytes, 0);
    st.idx_pending.clear();
    st.active_since = None;
    Ok(())
}

/// A rolled segment whose fsync is still to come: its file, for errors its path, and the
/// offset below which everything is durable once it is fsynced.
#[derive(Debug)]
pub(crate) struct Unsealed {
    pub file: Arc<dyn super::storage::StorageFile>,
    pub path: PathBuf,
    pub end: u64,
}

/// Deletes the files of the segment at `base_offset` (its `.log`, `.idx` and `.producers`,
/// those that exist); the caller fsyncs the directory.
pub(crate) fn remove_segment_files(
    storage: &dyn super::storage::Storage,
    dir: &Path,
    base_offset: u64,
) -> Result<(), LogError> {
    let (log, idx) = super::segment::paths(dir, base_offset);
    for path in [log, idx, producers_path(dir, base_offset)] {
        if storage.exists(&path) {
            storage
                .remove_file(&path)
                .map_err(|e| LogError::io(&path, e))?;
        }
    }
    Ok(())
}

/// Where the producer state as of a segment's start is kept.
pub(crate) fn producers_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.producers"))
}

/// A fresh state for a partition whose segments were recovered.
pub(crate) fn state(
    segments: Vec<Arc<Segment>>,
    next_offset: u64,
    start_offset: u64,
    active_since: Option<u64>,
    index_builder: IndexBuilder,
    producers: ProducerTable,
) -> State {
    let allocated = segments.last().map_or(0, |s| s.written());
    State {
        segments,
        buf: Vec::new(),
        buf_in_file: 0,
        allocated,
        open: None,
        buffered_appends: 0,
        buffered_records: 0,
        idx_pending: Vec::new(),
        index_builder,
        next_offset,
        durable: next_offset,
        visible: next_offset,
        start_offset,
        active_since,
        last_clock: 0,
        producers,
        poisoned: None,
        closed: false,
        sync_alive: false,
        sync_requested: false,
        sync_deferred: false,
        syncing: false,
        seal_wanted: false,
        dirty_since: None,
        group: GroupCommit::default(),
    }
}

/// Builds the shared core of a partition.
pub(crate) fn core(
    topic: &str,
    id: u32,
    dir: PathBuf,
    config: TopicConfig,
    ctx: Context,
    st: State,
) -> Core {
    let (progress, _) = watch::channel(0);
    let durable = st.durable;
    Core {
        topic: topic.to_owned(),
        id,
        dir,
        config,
        ctx,
        state: Mutex::new(st),
        changed: Condvar::new(),
        sync_wanted: Condvar::new(),
        durable: Durable::new(durable),
        progress,
        maintenance: Mutex::new(()),
        fsync_lock: Mutex::new(None),
        fsync_failed: AtomicBool::new(false),
        sync_thread: Mutex::new(None),
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::time::Duration;

    use super::*;
    use crate::config::LogConfig;
    use crate::log::{Log, Topic};

    /// A log in a fresh directory with one `Always` topic, and the topic's partition.
    fn always_partition() -> (tempfile::TempDir, Log, Arc<Partition>) {
        let dir = tempfile::tempdir().expect("dir");
        let log = Log::open(dir.path(), LogConfig::default()).expect("open");
        let topic: Arc<Topic> = log
            .create_topic(
                "t",
                TopicConfig::default().with_durability(Durability::Always),
            )
            .expect("create");
        let p = Arc::clone(topic.partition(0).expect("partition"));
        (dir, log, p)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Long enough for a sync thread that was woken to have fsynced.
    const UNLED: Duration = Duration::from_millis(200);

    #[test]
    fn a_deferred_fsync_waits_for_its_thread_to_lead_it() {
        let (_dir, log, p) = always_partition();
        assert!(!p.lead_sync(), "nothing waits yet");
        runtime().block_on(async {
            let msgs = [Message::new("a")];
            let mut append = pin!(p.start_append(&msgs, true).expect("write"));
            // The sync thread was not woken: unled, the append is not acknowledged.
            assert!(tokio::time::timeout(UNLED, &mut append).await.is_err());
            assert_eq!(p.durable_offset(), 0);
            let before = log.stats().fsyncs;
            assert!(p.lead_sync());
            assert_eq!(log.stats().fsyncs, before + 1);
            let receipt = append.await.expect("append");
            assert!(receipt.synced);
            assert_eq!(p.durable_offset(), 1);
            assert!(!p.lead_sync(), "nothing waits any more");
        });
    }

    #[test]
    fn a_deferred_fsync_handed_off_is_run_by_the_sync_thread() {
        let (_dir, _log, p) = always_partition();
        runtime().block_on(async {
            let msgs = [Message::new("a")];
            let mut append = pin!(p.start_append(&msgs, true).expect("write"));
            assert!(tokio::time::timeout(UNLED, &mut append).await.is_err());
            p.hand_off_sync();
            let receipt = tokio::time::timeout(Duration::from_secs(10), append)
                .await
                .expect("the sync thread fsyncs it")
                .expect("append");
            assert!(receipt.synced);
            assert!(!p.lead_sync(), "the sync thread has it");
        });
    }

    #[test]
    fn an_appender_that_will_not_lead_gives_a_deferred_group_to_the_sync_thread() {
        let (_dir, _log, p) = always_partition();
        runtime().block_on(async {
            let first = [Message::new("a")];
            let mut deferred = pin!(p.start_append(&first, true).expect("write"));
            assert!(tokio::time::timeout(UNLED, &mut deferred).await.is_err());
            // An ordinary append wakes the sync thread, whose fsync covers both.
            let second = [Message::new("b")];
            let (a, b) = tokio::time::timeout(
                Duration::from_secs(10),
                futures_util::future::join(deferred, p.append_async(&second)),
            )
            .await
            .expect("both are fsynced without a lead");
            assert!(a.expect("deferred").synced && b.expect("ordinary").synced);
            assert_eq!(p.durable_offset(), 2);
        });
    }
}
