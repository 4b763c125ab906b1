//! Reads: by offset, by timestamp, and following the tail (blocking and async).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::index;
use super::partition::{self, Core, Partition};
use super::record::{self, Record};
use super::segment::{self, Lent, Segment};
use crate::config::Durability;
use crate::error::LogError;

/// The segments to read from `offset` on, and the visible end, taken under the lock.
fn snapshot(core: &Core, offset: u64) -> Result<(Vec<Arc<Segment>>, u64), LogError> {
    let mut st = core.state.lock();
    if offset < st.start_offset || offset > st.visible {
        return Err(LogError::OffsetOutOfRange {
            requested: offset,
            start: st.start_offset,
            end: st.visible,
        });
    }
    if !st.buf.is_empty() && core.config.durability != Durability::Always && st.poisoned.is_none() {
        partition::flush_buffer(core, &mut st)?;
    }
    let i = st
        .segments
        .partition_point(|s| s.base_offset <= offset)
        .saturating_sub(1);
    Ok((st.segments[i..].to_vec(), st.visible))
}

fn corrupt(seg: &Segment, pos: u64, e: &record::DecodeError) -> LogError {
    segment::decode_failure(&seg.log_path, pos, e)
}

/// Reads up to `max` records at or after `offset`; also returns the visible end it read to.
pub(crate) fn read_upto(
    core: &Core,
    offset: u64,
    max: usize,
) -> Result<(Vec<Record>, u64), LogError> {
    let (segments, visible) = snapshot(core, offset)?;
    let mut out = Vec::new();
    if offset == visible || max == 0 {
        return Ok((out, visible));
    }
    let mut failure = None;
    for seg in &segments {
        if seg.base_offset >= visible || out.len() >= max {
            break;
        }
        let pos = index::position_for_offset(&seg.index.read(), offset);
        let end = seg.written();
        // Enough for the records asked for, plus a batch header and the bytes between the
        // index entry the scan starts from and `offset` (up to about one index interval).
        let wanted = (max - out.len())
            .saturating_mul(seg.bytes_per_offset())
            .saturating_add(record::HEADER_LEN)
            .saturating_add(core.config.index_interval_bytes as usize);
        let scanned = seg
            .read_scan(pos, end, wanted, |at, h, lent| {
                if h.next_offset() <= offset {
                    return ControlFlow::Continue(());
                }
                if h.base_offset >= visible {
                    return ControlFlow::Break(());
                }
                // Records slice the batch: a slice of the mapped file, or one copy of the batch.
                let batch = lent.to_bytes();
                let first = out.len();
                if let Err(e) = record::decode_records(&batch, h, &mut out) {
                    out.truncate(first);
                    failure = Some(corrupt(seg, at, &e));
                    return ControlFlow::Break(());
                }
                // Offsets grow within a batch: cut what lies before `offset` (first batch only)
                // and past the visible end or `max`.
                let before = out[first..].partition_point(|r| r.offset < offset);
                out.drain(first..first + before);
                let visible_len = first + out[first..].partition_point(|r| r.offset < visible);
                out.truncate(visible_len.min(max));
                if out.len() >= max {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .map_err(|e| LogError::io(&seg.log_path, e))?;
        if let Some(e) = failure.take() {
            return Err(e);
        }
        if let Some((at, e)) = scanned.bad {
            return Err(corrupt(seg, at, &e));
        }
    }
    Ok((out, visible))
}

/// A record batch exactly as it is on disk, its CRC verified: the unit replication and bulk
/// consumers move without decoding each record.
#[derive(Debug, Clone)]
pub struct RecordBatch {
    header: record::BatchHeader,
    bytes: Bytes,
    segment: Arc<Segment>,
    position: u64,
}

impl RecordBatch {
    /// Offset of the batch's first record slot.
    #[must_use]
    pub fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    /// The offset after the batch's last record slot.
    #[must_use]
    pub fn next_offset(&self) -> u64 {
        self.header.next_offset()
    }

    /// Records in the batch (fewer than its offset span after compaction).
    #[must_use]
    pub fn record_count(&self) -> u32 {
        self.header.count
    }

    /// Largest record timestamp in the batch.
    #[must_use]
    pub fn max_timestamp(&self) -> u64 {
        self.header.max_timestamp
    }

    /// The encoded batch, header included (docs/FORMAT.md §2).
    #[must_use]
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Decodes the batch's records; values are slices of the batch, not copies.
    ///
    /// # Errors
    /// [`LogError::Corrupt`] if the records do not decode (their CRC matched, so this means
    /// damage that the CRC could not see).
    pub fn records(&self) -> Result<Vec<Record>, LogError> {
        let mut out = Vec::with_capacity((self.header.count as usize).min(self.bytes.len()));
        record::decode_records(&self.bytes, &self.header, &mut out)
            .map_err(|e| corrupt(&self.segment, self.position, &e))?;
        Ok(out)
    }
}

/// Reads whole batches from the one holding `offset` on, until at least `max_bytes` (always at
/// least one batch when there is one).
pub(crate) fn read_batches(
    core: &Core,
    offset: u64,
    max_bytes: usize,
) -> Result<Vec<RecordBatch>, LogError> {
    let mut out: Vec<RecordBatch> = Vec::new();
    // Bytes of the batches returned so far; shared with `admit` below.
    let total = std::cell::Cell::new(0usize);
    // A batch is taken if it fits what is left of `max_bytes`, or if it is the first.
    let fits = |len: u32| total.get() == 0 || total.get().saturating_add(len as usize) <= max_bytes;
    let visitor = |seg: &Arc<Segment>, at: u64, h: &record::BatchHeader, batch: Lent<'_>| {
        if !fits(h.len) {
            return ControlFlow::Break(());
        }
        total.set(total.get() + batch.bytes.len());
        out.push(RecordBatch {
            header: *h,
            bytes: batch.to_bytes(),
            segment: Arc::clone(seg),
            position: at,
        });
        if total.get() >= max_bytes {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    // The scan does not even read a batch that would not fit: reading it only to drop it cost
    // a second read (and a second buffer) per call.
    visit_admitting(core, offset, max_bytes, |h| fits(h.len), visitor)?;
    Ok(out)
}

/// A verified batch lent to the closure of [`Partition::visit_batches`]: its bytes are valid only
/// during the call.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    header: record::BatchHeader,
    bytes: &'a [u8],
    segment: &'a Segment,
    position: u64,
}

impl<'a> BatchView<'a> {
    /// Offset of the batch's first record slot.
    #[must_use]
    pub fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    /// The offset after the batch's last record slot.
    #[must_use]
    pub fn next_offset(&self) -> u64 {
        self.header.next_offset()
    }

    /// Records in the batch.
    #[must_use]
    pub fn record_count(&self) -> u32 {
        self.header.count
    }

    /// Largest record timestamp in the batch.
    #[must_use]
    pub fn max_timestamp(&self) -> u64 {
        self.header.max_timestamp
    }

    /// The encoded batch, header included (docs/FORMAT.md §2).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes
    }

    /// The batch's records, borrowed from it: no copy, no allocation, no reference count per
    /// record. Each is checked as it is decoded (the batch's CRC already matched).
    #[must_use]
    pub fn record_views(&self) -> super::RecordViews<'a> {
        super::RecordViews::new(self)
    }

    pub(crate) fn parts(&self) -> (&'a [u8], &record::BatchHeader, &'a Segment, u64) {
        (self.bytes, &self.header, self.segment, self.position)
    }

    /// Decodes the records (copying the batch once).
    ///
    /// # Errors
    /// [`LogError::Corrupt`] if the records do not decode.
    pub fn records(&self) -> Result<Vec<Record>, LogError> {
        let bytes = Bytes::copy_from_slice(self.bytes);
        let mut out = Vec::with_capacity((self.header.count as usize).min(bytes.len()));
        record::decode_records(&bytes, &self.header, &mut out)
            .map_err(|e| corrupt(self.segment, self.position, &e))?;
        Ok(out)
    }
}

/// Lends each verified batch from the one holding `offset` up to the visible end to `f`, until
/// it breaks; returns the offset after the last batch lent.
pub(crate) fn visit_batches(
    core: &Core,
    offset: u64,
    mut f: impl FnMut(BatchView<'_>) -> ControlFlow<()>,
) -> Result<u64, LogError> {
    let mut next = offset;
    visit(core, offset, usize::MAX, |seg, at, h, batch| {
        next = h.next_offset();
        f(BatchView {
            header: *h,
            bytes: batch.bytes,
            segment: seg,
            position: at,
        })
    })?;
    Ok(next)
}

/// Walks the verified batches that hold offsets at or after `offset` and below the visible end.
fn visit(
    core: &Core,
    offset: u64,
    wanted: usize,
    f: impl FnMut(&Arc<Segment>, u64, &record::BatchHeader, Lent<'_>) -> ControlFlow<()>,
) -> Result<(), LogError> {
    visit_admitting(core, offset, wanted, |_| true, f)
}

/// [`visit`], ending before a batch `admit` refuses once its header is read, without reading
/// the rest of it (see [`Segment::read_scan_admitting`]).
fn visit_admitting(
    core: &Core,
    offset: u64,
    wanted: usize,
    mut admit: impl FnMut(&record::BatchHeader) -> bool,
    mut f: impl FnMut(&Arc<Segment>, u64, &record::BatchHeader, Lent<'_>) -> ControlFlow<()>,
) -> Result<(), LogError> {
    let (segments, visible) = snapshot(core, offset)?;
    let mut stopped = false;
    for seg in &segments {
        if seg.base_offset >= visible || stopped {
            break;
        }
        let pos = index::position_for_offset(&seg.index.read(), offset);
        let mut admitted = true;
        let scanned = seg
            .read_scan_admitting(
                pos,
                seg.written(),
                wanted,
                |h| {
                    // Batches before `offset` are skipped, not returned: always admitted.
                    admitted = h.next_offset() <= offset || admit(h);
                    admitted
                },
                |at, h, batch| {
                    if h.next_offset() <= offset {
                        return ControlFlow::Continue(());
                    }
                    if h.next_offset() > visible || f(seg, at, h, batch).is_break() {
                        stopped = true;
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                },
            )
            .map_err(|e| LogError::io(&seg.log_path, e))?;
        if let Some((at, e)) = scanned.bad {
            return Err(corrupt(seg, at, &e));
        }
        if !admitted {
            break;
        }
    }
    Ok(())
}

pub(crate) fn read(core: &Core, offset: u64, max: usize) -> Result<Vec<Record>, LogError> {
    read_upto(core, offset, max).map(|(records, _)| records)
}

pub(crate) fn offset_for_timestamp(core: &Core, ts: u64) -> Result<Option<u64>, LogError> {
    let start = core.state.lock().start_offset;
    let (segments, visible) = snapshot(core, start)?;
    for seg in &segments {
        if seg.base_offset >= visible {
            break;
        }
        if seg.max_timestamp() < ts {
            continue;
        }
        let pos = index::position_for_timestamp(&seg.index.read(), ts);
        let mut found = None;
        let mut failure = None;
        let mut decoded = Vec::new();
        let scanned = seg
            .read_scan(pos, seg.written(), 0, |at, h, batch| {
                if h.base_offset >= visible {
                    return ControlFlow::Break(());
                }
                if h.max_timestamp < ts {
                    return ControlFlow::Continue(());
                }
                decoded.clear();
                if let Err(e) = record::decode_records(&batch.to_bytes(), h, &mut decoded) {
                    failure = Some(corrupt(seg, at, &e));
                    return ControlFlow::Break(());
                }
                found = decoded
                    .iter()
                    .find(|r| r.timestamp >= ts && r.offset < visible)
                    .map(|r| r.offset);
                if found.is_some() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .map_err(|e| LogError::io(&seg.log_path, e))?;
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some((at, e)) = scanned.bad {
            return Err(corrupt(seg, at, &e));
        }
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Follows a partition's tail: each call returns the records after the last ones returned,
/// waiting for new ones if there are none yet.
///
/// ```
/// # fn main() -> Result<(), quipu::Error> {
/// # let dir = tempfile::tempdir().map_err(|e| quipu::Error::Io { path: ".".into(), source: e })?;
/// use quipu::{Message, Quipu};
/// use std::time::Duration;
///
/// let db = Quipu::open(dir.path())?;
/// let topic = db.log().topic_or_create("deliveries")?;
/// let mut tail = topic.follow(0, 0, 100)?;
/// topic.append(Message::new("rider 7 at Av. Amazonas"))?;
/// let records = tail.next_blocking(Duration::from_secs(1))?;
/// assert_eq!(records.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Follower {
    partition: Arc<Partition>,
    next: u64,
    max_records: usize,
}

impl Follower {
    pub(crate) fn new(partition: Arc<Partition>, from: u64, max_records: usize) -> Self {
        Self {
            partition,
            next: from,
            max_records: max_records.max(1),
        }
    }

    /// The next offset this follower will return.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Returns what is there now, possibly nothing; never waits.
    ///
    /// # Errors
    /// As [`Partition::read`]: notably [`LogError::OffsetOutOfRange`] when retention deleted
    /// the follower's position.
    pub fn poll(&mut self) -> Result<Vec<Record>, LogError> {
        let (records, visible) = read_upto(&self.partition.core, self.next, self.max_records)?;
        match records.last() {
            Some(last) => self.next = last.offset + 1,
            // Compaction can leave a gap up to the end: skip it.
            None => self.next = self.next.max(visible),
        }
        Ok(records)
    }

    /// Waits up to `timeout` for records; returns an empty vector if none came.
    ///
    /// # Errors
    /// As [`poll`](Self::poll), and [`LogError::Closed`] once the log is closed.
    pub fn next_blocking(&mut self, timeout: Duration) -> Result<Vec<Record>, LogError> {
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(super::sync::far_future);
        loop {
            let records = self.poll()?;
            if !records.is_empty() {
                return Ok(records);
            }
            let core = &self.partition.core;
            let mut st = core.state.lock();
            while st.visible <= self.next {
                if st.closed || st.poisoned.is_some() {
                    return Err(stopped_error(core, &st));
                }
                if core.changed.wait_until(&mut st, deadline).timed_out() {
                    return Ok(Vec::new());
                }
            }
        }
    }

    /// Waits, without blocking a thread, until records come.
    ///
    /// # Errors
    /// As [`poll`](Self::poll), and [`LogError::Closed`] once the log is closed.
    pub async fn next(&mut self) -> Result<Vec<Record>, LogError> {
        let mut rx = self.partition.core.progress.subscribe();
        loop {
            let records = self.poll()?;
            if !records.is_empty() {
                return Ok(records);
            }
            {
                let st = self.partition.core.state.lock();
                if st.visible > self.next {
                    continue;
                }
                if st.closed || st.poisoned.is_some() {
                    return Err(stopped_error(&self.partition.core, &st));
                }
            }
            if rx.changed().await.is_err() {
                return Err(LogError::Closed);
            }
        }
    }
}

/// Why a follower stops waiting: the partition is poisoned (nothing more will be appended) or
/// closed.
fn stopped_error(core: &Core, st: &partition::State) -> LogError {
    partition::check_writable(core, st)
        .err()
        .unwrap_or(LogError::Closed)
}
