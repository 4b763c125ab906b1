//! Opening a partition: sealed segments are checked from their last index entry, the active
//! segment is walked whole (CRC per batch), a torn tail is truncated per [`RecoveryMode`], the
//! index and the producer state are rebuilt from what the log really holds. After a clean close
//! (a [`CleanClose`] record that the files still match) the active segment is checked like a
//! sealed one instead, as Kafka skips recovery after a clean shutdown.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Context;
use super::index::{self, IndexEntry};
use super::partition::{self, Partition};
use super::producer::ProducerTable;
use super::record::{self, DecodeError, NO_PRODUCER, ProducerStamp};
use super::segment::{self, IndexBuilder, Segment};
use super::storage::{self, Storage};
use crate::config::{Durability, RecoveryMode, TopicConfig};
use crate::error::LogError;

/// Opens (creating if needed) partition `id` of `topic` in `dir`.
pub(crate) fn open_partition(
    topic: &str,
    id: u32,
    dir: PathBuf,
    config: TopicConfig,
    ctx: Context,
) -> Result<Partition, LogError> {
    let storage = ctx.storage.as_ref();
    let io = |e| LogError::io(&dir, e);
    if !storage.exists(&dir) {
        storage.create_dir_all(&dir).map_err(io)?;
        if let Some(parent) = dir.parent() {
            storage
                .sync_dir(parent)
                .map_err(|e| LogError::io(parent, e))?;
        }
    }
    let mut bases = Vec::new();
    for name in storage.list(&dir).map_err(io)? {
        if name.ends_with(".tmp") || name.ends_with(".cleaned") {
            // Leftovers of an interrupted atomic write or compaction: the original is intact.
            storage.remove_file(&dir.join(&name)).map_err(io)?;
        } else if let Some(base) = name
            .strip_suffix(".log")
            .and_then(|b| b.parse::<u64>().ok())
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    // Read and removed (durably) before anything else, whatever the files: a crash from here on
    // must not find it.
    let clean = take_clean_close(storage, &dir)?;
    if bases.is_empty() {
        let segment = Segment::open(storage, &dir, 0, 0, 0, 0, Vec::new()).map_err(io)?;
        storage.sync_dir(&dir).map_err(io)?;
        let st = partition::state(
            vec![Arc::new(segment)],
            0,
            0,
            None,
            IndexBuilder::new(config.index_interval_bytes, 0),
            ProducerTable::default(),
        );
        return Ok(Partition::new(partition::core(
            topic, id, dir, config, ctx, st,
        )));
    }
    let mode = ctx.config.recovery;
    // The last sealed segment of a topic that is not `Always` was maybe never fsynced (see
    // `partition::roll`): walked whole, and if a crash tore it, it is the active segment again
    // and the one after it, written later and durable no sooner, goes. After a clean close it
    // was fsynced: trusted if it is as long as it was then.
    let mut superseded = None;
    if config.durability != Durability::Always && bases.len() >= 2 {
        let (sealed, after) = (bases[bases.len() - 2], bases[bases.len() - 1]);
        let closed_as_is = match &clean {
            Some(c) => c.sealed == Some((sealed, segment_len(storage, &dir, sealed)?)),
            None => false,
        };
        if !closed_as_is && !sealed_whole(storage, &dir, sealed, after)? {
            superseded = bases.pop();
        }
    }
    let mut segments = Vec::with_capacity(bases.len());
    let mut truncated = 0;
    for pair in bases.windows(2) {
        let seg = open_sealed(
            &mut truncated,
            storage,
            &dir,
            pair[0],
            pair[1],
            &config,
            mode,
        )?;
        segments.push(Arc::new(seg));
    }
    ctx.metrics.truncated_bytes(truncated);
    let last = bases[bases.len() - 1];
    let reopened = match clean {
        Some(c) => open_active_closed(storage, &dir, last, &config, c)?,
        None => None,
    };
    let active = match reopened {
        Some(active) => active,
        None => {
            let producers = match super::meta::read(storage, &partition::producers_path(&dir, last))
            {
                Ok(table) => table.unwrap_or_default(),
                // A damaged snapshot is rebuilt from the batches themselves.
                Err(LogError::Corrupt { .. }) => rebuild_producers(&segments)?,
                Err(e) => return Err(e),
            };
            recover_active(&dir, last, &config, &ctx, producers)?
        }
    };
    if let Some(base) = superseded {
        let dropped = remove_segment(storage, &dir, base)?;
        ctx.metrics.truncated_bytes(dropped);
    }
    segments.push(Arc::new(active.segment));
    let start = segments[0].base_offset;
    let st = partition::state(
        segments,
        active.next_offset,
        start,
        active.first_timestamp,
        active.builder,
        active.producers,
    );
    Ok(Partition::new(partition::core(
        topic, id, dir, config, ctx, st,
    )))
}

/// A sealed segment was fsynced when it was rolled: any bad byte in it is damage.
fn open_sealed(
    truncated: &mut u64,
    storage: &dyn Storage,
    dir: &Path,
    base: u64,
    next_base: u64,
    config: &TopicConfig,
    mode: RecoveryMode,
) -> Result<Segment, LogError> {
    let (log_path, idx_path) = segment::paths(dir, base);
    let file = storage
        .open(&log_path, false)
        .map_err(|e| LogError::io(&log_path, e))?;
    let len = file.len().map_err(|e| LogError::io(&log_path, e))?;
    let idx_bytes = storage::read_all(storage, &idx_path).unwrap_or_default();
    let (mut entries, from, mut builder) =
        trusted_index(file.as_ref(), &idx_bytes, base, len, config)
            .map_err(|e| LogError::io(&log_path, e))?;
    let had = entries.len();
    let mut max_ts = entries.last().map_or(0, |e| e.max_timestamp);
    let mut last_next = None;
    let end = segment::scan(file.as_ref(), from, len, |pos, h, _| {
        max_ts = max_ts.max(h.max_timestamp);
        last_next = Some(h.next_offset());
        extend_index(&mut builder, &mut entries, pos, h);
        ControlFlow::Continue(())
    })
    .map_err(|e| LogError::io(&log_path, e))?;
    // Preallocated zeros a crash left before the roll cut them: only where they can be (an
    // `Always` topic), and only after the segment's last record, so that zeroed acknowledged
    // data is still reported.
    let io = |e| LogError::io(&log_path, e);
    let complete = last_next.unwrap_or(base) == next_base;
    let bad = match end.bad {
        Some((pos, _))
            if config.durability == Durability::Always
                && complete
                && segment::zero_tail(file.as_ref(), pos, len).map_err(io)? =>
        {
            cut(file.as_ref(), pos).map_err(io)?;
            None
        }
        other => other,
    };
    if let Some((pos, e)) = bad {
        if mode != RecoveryMode::TruncateAtFirstCorruption
            || matches!(e, DecodeError::NewerVersion(_))
        {
            return Err(segment::decode_failure(&log_path, pos, &e));
        }
        file.truncate(pos).map_err(|e| LogError::io(&log_path, e))?;
        file.sync_data().map_err(|e| LogError::io(&log_path, e))?;
        *truncated += len - pos;
    }
    drop(file);
    let segment = Segment::open(
        storage,
        dir,
        base,
        end.valid_end,
        next_base,
        max_ts,
        entries,
    )
    .map_err(|e| LogError::io(&log_path, e))?;
    if segment.index.read().len() != had {
        let _ = segment.rewrite_index();
    }
    Ok(segment)
}

/// A segment's index entries as far as they can be trusted (the last one only if a valid
/// batch with its offset sits at its position), where a scan for the rest starts, and the
/// builder that continues the index from there.
fn trusted_index(
    file: &dyn storage::StorageFile,
    idx_bytes: &[u8],
    base: u64,
    len: u64,
    config: &TopicConfig,
) -> std::io::Result<(Vec<IndexEntry>, u64, IndexBuilder)> {
    let mut entries = index::decode(idx_bytes, base, len);
    if let Some(last) = entries.last().copied() {
        let mut matches = false;
        segment::scan(file, last.position, len, |_, h, _| {
            matches = h.base_offset == last.offset;
            ControlFlow::Break(())
        })?;
        if !matches {
            entries.clear();
        }
    }
    Ok(match entries.last() {
        Some(e) => {
            let (from, max_ts) = (e.position, e.max_timestamp);
            let builder = IndexBuilder::resume(config.index_interval_bytes, max_ts);
            (entries, from, builder)
        }
        None => (
            entries,
            0,
            IndexBuilder::new(config.index_interval_bytes, 0),
        ),
    })
}

/// Adds the index entry due at the batch at `pos`, if any, after trusted ones (a scan that
/// resumes at the last trusted entry sees that entry's batch again).
fn extend_index(
    builder: &mut IndexBuilder,
    entries: &mut Vec<IndexEntry>,
    pos: u64,
    h: &record::BatchHeader,
) {
    if let Some(e) = builder.observe(pos, h)
        && entries.last().is_none_or(|l| l.position < e.position)
    {
        entries.push(e);
    }
}

/// What [`Partition::close`] leaves in a partition's directory once everything in it is
/// fsynced: the active and the last sealed segment as they were then, and the producer state
/// at the end. The next open removes it first; if the files still match it, the active
/// segment is checked from its last index entry (as a sealed one) instead of walked whole, the
/// last sealed one is not walked, and the producer state is taken from it (docs/FORMAT.md §6).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CleanClose {
    pub active_base: u64,
    pub active_len: u64,
    pub next_offset: u64,
    /// The last sealed segment's base offset and length.
    pub sealed: Option<(u64, u64)>,
    /// CRC32C of the active segment's `.idx` as the close wrote it (whole, from memory).
    pub index_crc: u32,
    pub producers: ProducerTable,
}

/// The name of the [`CleanClose`] record in a partition's directory.
pub(crate) const CLEAN_CLOSE: &str = "clean-close";

/// Reads the [`CleanClose`] record of `dir`, if there is a readable one, and removes it
/// durably. A damaged or unreadable record is as good as none: the partition is recovered.
fn take_clean_close(storage: &dyn Storage, dir: &Path) -> Result<Option<CleanClose>, LogError> {
    let path = dir.join(CLEAN_CLOSE);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let clean = super::meta::read::<CleanClose>(storage, &path)
        .ok()
        .flatten();
    storage
        .remove_file(&path)
        .map_err(|e| LogError::io(&path, e))?;
    storage.sync_dir(dir).map_err(|e| LogError::io(dir, e))?;
    Ok(clean)
}

/// The length of the segment file at `base`.
fn segment_len(storage: &dyn Storage, dir: &Path, base: u64) -> Result<u64, LogError> {
    let (log_path, _) = segment::paths(dir, base);
    storage
        .open(&log_path, false)
        .and_then(|f| f.len())
        .map_err(|e| LogError::io(&log_path, e))
}

/// Opens the active segment as a clean close left it: `None` (and nothing changed) unless it is
/// the segment the close recorded (a torn last sealed segment that became the active one is
/// not), as long as it was, its batches from the last trusted index entry on are valid and
/// in sequence to the end, and they end at the offset the close recorded.
fn open_active_closed(
    storage: &dyn Storage,
    dir: &Path,
    base: u64,
    config: &TopicConfig,
    clean: CleanClose,
) -> Result<Option<Active>, LogError> {
    let (log_path, idx_path) = segment::paths(dir, base);
    let err = |e| LogError::io(&log_path, e);
    let file = storage.open(&log_path, false).map_err(err)?;
    let len = file.len().map_err(err)?;
    // The `.idx` is not fsynced: it counts only if it is byte for byte what the close wrote.
    let idx_bytes = storage::read_all(storage, &idx_path).unwrap_or_default();
    if base != clean.active_base
        || len != clean.active_len
        || super::crc32c(&idx_bytes) != clean.index_crc
    {
        return Ok(None);
    }
    // The first batch's header gives the segment's first timestamp (as the walk's first
    // batch does); its body is not checked here.
    let first_timestamp = if len == 0 {
        None
    } else {
        let mut head = vec![0u8; record::HEADER_LEN.min(len as usize)];
        storage::read_exact_at(file.as_ref(), &mut head, 0).map_err(err)?;
        match record::decode_header(&head) {
            Ok(h) if h.base_offset == base => Some(h.first_timestamp),
            _ => return Ok(None),
        }
    };
    let (mut entries, from, mut builder) =
        trusted_index(file.as_ref(), &idx_bytes, base, len, config).map_err(err)?;
    let had = entries.len();
    let mut max_ts = entries.last().map_or(0, |e| e.max_timestamp);
    let mut next = entries.last().map_or(base, |e| e.offset);
    let mut in_sequence = true;
    let end = segment::scan(file.as_ref(), from, len, |pos, h, _| {
        if h.base_offset != next {
            in_sequence = false;
            return ControlFlow::Break(());
        }
        next = h.next_offset();
        max_ts = max_ts.max(h.max_timestamp);
        extend_index(&mut builder, &mut entries, pos, h);
        ControlFlow::Continue(())
    })
    .map_err(err)?;
    if !in_sequence || end.bad.is_some() || end.valid_end != len || next != clean.next_offset {
        return Ok(None);
    }
    drop(file);
    let segment = Segment::open(storage, dir, base, len, next, max_ts, entries).map_err(err)?;
    if segment.index.read().len() != had {
        let _ = segment.rewrite_index();
    }
    Ok(Some(Active {
        segment,
        next_offset: next,
        first_timestamp,
        builder,
        producers: clean.producers,
    }))
}

/// Records a clean close of the partition whose state is `st` (everything in it fsynced).
/// Errors only cost the next open a walk of its segments.
pub(crate) fn record_clean_close(
    storage: &dyn Storage,
    dir: &Path,
    st: &partition::State,
) -> Result<(), LogError> {
    let segs = &st.segments;
    let active = st.active();
    let sealed = segs
        .len()
        .checked_sub(2)
        .map(|i| (segs[i].base_offset, segs[i].written()));
    // The index whole, as in memory: what was appended to the file may have gaps (its errors
    // are ignored) or follow the bytes of an older file of the same name.
    let index = active
        .rewrite_index()
        .map_err(|e| LogError::io(&active.log_path, e))?;
    let clean = CleanClose {
        active_base: active.base_offset,
        active_len: active.written(),
        next_offset: st.next_offset,
        sealed,
        index_crc: super::crc32c(&index),
        producers: st.producers.clone(),
    };
    super::meta::write(storage, &dir.join(CLEAN_CLOSE), &clean)
}

/// Whether the segment at `base` holds only valid batches, their offsets rising (compaction
/// leaves gaps) and below `next_base`; then it is fsynced (what a crashed process wrote may sit
/// in the page cache only). A crash that cut it exactly between two batches is not told apart
/// from a compacted segment: the records cut, never durable, are then a gap in the offsets.
fn sealed_whole(
    storage: &dyn Storage,
    dir: &Path,
    base: u64,
    next_base: u64,
) -> Result<bool, LogError> {
    let (log_path, _) = segment::paths(dir, base);
    let err = |e| LogError::io(&log_path, e);
    let file = storage.open(&log_path, false).map_err(err)?;
    let len = file.len().map_err(err)?;
    let mut next = Some(base);
    let end = segment::scan(file.as_ref(), 0, len, |_, h, _| {
        if next.is_none_or(|n| h.base_offset < n) {
            next = None;
            return ControlFlow::Break(());
        }
        next = Some(h.next_offset());
        ControlFlow::Continue(())
    })
    .map_err(err)?;
    let whole = end.bad.is_none() && end.valid_end == len && next.is_some_and(|n| n <= next_base);
    if whole {
        file.sync_data().map_err(err)?;
    }
    Ok(whole)
}

/// Deletes the segment at `base` with its index and producer snapshot, durably; returns the
/// bytes of records it held.
fn remove_segment(storage: &dyn Storage, dir: &Path, base: u64) -> Result<u64, LogError> {
    let (log_path, _) = segment::paths(dir, base);
    let len = storage
        .open(&log_path, false)
        .and_then(|f| f.len())
        .map_err(|e| LogError::io(&log_path, e))?;
    partition::remove_segment_files(storage, dir, base)?;
    storage.sync_dir(dir).map_err(|e| LogError::io(dir, e))?;
    Ok(len)
}

struct Active {
    segment: Segment,
    next_offset: u64,
    first_timestamp: Option<u64>,
    builder: IndexBuilder,
    producers: ProducerTable,
}

/// Walks the whole active segment, verifying every batch, and cuts what a crash left half
/// written.
fn recover_active(
    dir: &Path,
    base: u64,
    config: &TopicConfig,
    ctx: &Context,
    mut producers: ProducerTable,
) -> Result<Active, LogError> {
    let storage = ctx.storage.as_ref();
    let (log_path, _) = segment::paths(dir, base);
    let err = |e| LogError::io(&log_path, e);
    let file = storage.open(&log_path, false).map_err(err)?;
    let len = file.len().map_err(err)?;
    let mut builder = IndexBuilder::new(config.index_interval_bytes, 0);
    let mut entries: Vec<IndexEntry> = Vec::new();
    let mut next = base;
    let mut first_timestamp = None;
    let mut max_ts = 0;
    let mut gap = None;
    let preallocated = config.durability == Durability::Always;
    let end = segment::scan(file.as_ref(), 0, len, |pos, h, _| {
        if h.base_offset != next {
            gap = Some(pos);
            return ControlFlow::Break(());
        }
        next = h.next_offset();
        first_timestamp.get_or_insert(h.first_timestamp);
        max_ts = max_ts.max(h.max_timestamp);
        if let Some(e) = builder.observe(pos, h) {
            entries.push(e);
        }
        if h.producer_id != NO_PRODUCER {
            let stamp = ProducerStamp {
                id: h.producer_id,
                sequence: h.base_sequence,
            };
            producers.record(stamp, h.count, h.base_offset);
        }
        ControlFlow::Continue(())
    })
    .map_err(err)?;
    let bad = match (gap, end.bad) {
        (Some(pos), _) => {
            // The batch at `pos` is whole and valid but out of sequence: treat it as damage.
            Some((pos, DecodeError::Invalid("offset out of sequence")))
        }
        (None, Some((pos, _)))
            if preallocated && segment::zero_tail(file.as_ref(), pos, len).map_err(err)? =>
        {
            // The rest of the space preallocated for appends: not written, not damage.
            cut(file.as_ref(), pos).map_err(err)?;
            None
        }
        (None, bad) => bad,
    };
    let mut valid_end = gap.unwrap_or(end.valid_end);
    if let Some((pos, e)) = bad {
        let damage = match (&e, ctx.config.recovery) {
            (DecodeError::NewerVersion(_), _) | (_, RecoveryMode::Strict) => true,
            (_, RecoveryMode::TruncateAtFirstCorruption) => false,
            (_, RecoveryMode::TolerateCorruptTail) => {
                match segment::valid_batch_after(file.as_ref(), pos, len, next).map_err(err)? {
                    None => false,
                    // A write into preallocated space whose pages reached the disk out of
                    // order (a power loss before its fsync): a page of it is still all zeros.
                    // Everything from the hole on was never acknowledged (the fsync that
                    // would have covered it did not finish), so it is a torn tail.
                    Some(later) => {
                        !(preallocated
                            && segment::zero_page(file.as_ref(), pos, later).map_err(err)?)
                    }
                }
            }
        };
        if damage {
            return Err(segment::decode_failure(&log_path, pos, &e));
        }
        valid_end = pos;
        file.truncate(valid_end).map_err(err)?;
        file.sync_data().map_err(err)?;
        ctx.metrics.truncated_bytes(len - valid_end);
    }
    // What survived a process crash may still sit unsynced in the page cache; it becomes
    // visible now, so it must be durable first.
    file.sync_data().map_err(err)?;
    drop(file);
    let segment =
        Segment::open(storage, dir, base, valid_end, next, max_ts, entries).map_err(err)?;
    let _ = segment.rewrite_index();
    Ok(Active {
        segment,
        next_offset: next,
        first_timestamp,
        builder,
        producers,
    })
}

/// Cuts a segment file to `len` bytes, durably.
fn cut(file: &dyn storage::StorageFile, len: u64) -> std::io::Result<()> {
    file.truncate(len)?;
    file.sync_data()
}

/// Producer state from the batch headers of sealed segments, oldest first.
fn rebuild_producers(sealed: &[Arc<Segment>]) -> Result<ProducerTable, LogError> {
    let mut table = ProducerTable::default();
    for seg in sealed {
        let end = segment::scan(seg.file.as_ref(), 0, seg.written(), |_, h, _| {
            if h.producer_id != NO_PRODUCER {
                let stamp = ProducerStamp {
                    id: h.producer_id,
                    sequence: h.base_sequence,
                };
                table.record(stamp, h.count, h.base_offset);
            }
            ControlFlow::Continue(())
        })
        .map_err(|e| LogError::io(&seg.log_path, e))?;
        if let Some((pos, e)) = end.bad {
            return Err(segment::decode_failure(&seg.log_path, pos, &e));
        }
    }
    Ok(table)
}
