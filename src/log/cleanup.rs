//! Retention (whole sealed segments by size and age) and key compaction (sealed segments keep
//! the latest record per key; tombstones go after their grace period).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;

use super::partition::{self, Core};
use super::record::{self, Record};
use super::segment::{self, IndexBuilder, Segment};
use crate::clock::millis;
use crate::config::Cleanup;
use crate::error::LogError;

/// Deletes the oldest sealed segments while the partition is over its size budget or they are
/// older than the retention age. Returns how many segments went.
pub(crate) fn enforce_retention(core: &Core) -> Result<usize, LogError> {
    let cfg = &core.config;
    if cfg.retention_bytes.is_none() && cfg.retention_age.is_none() {
        return Ok(0);
    }
    delete_oldest(core, None)
}

/// Deletes the sealed segments that hold only offsets below `offset` (whole segments: the
/// partition's start moves to the first kept segment's base). Returns how many went.
pub(crate) fn delete_before(core: &Core, offset: u64) -> Result<usize, LogError> {
    delete_oldest(core, Some(offset))
}

/// Deletes oldest sealed segments by retention, or, with `before`, those wholly below it.
fn delete_oldest(core: &Core, before: Option<u64>) -> Result<usize, LogError> {
    let cfg = &core.config;
    let _maintenance = core.maintenance.lock();
    let now = core.ctx.clock.now_millis();
    let mut st = core.state.lock();
    if st.closed {
        return Ok(0);
    }
    let aged = st
        .active_since
        .is_some_and(|t| now.saturating_sub(t) >= millis(cfg.segment_age));
    if aged && st.active_len() > 0 && st.poisoned.is_none() {
        // An idle active segment past its age is sealed so that age retention can reach it.
        partition::roll(core, &mut st)?;
    }
    let mut total: u64 = st.segments.iter().map(|s| s.written()).sum::<u64>() + st.buf.len() as u64;
    let mut deleted = Vec::new();
    while st.segments.len() > 1 {
        let oldest = &st.segments[0];
        let go = match before {
            Some(offset) => st.segments[1].base_offset <= offset,
            None => {
                let over_size = cfg.retention_bytes.is_some_and(|max| total > max);
                let too_old = cfg
                    .retention_age
                    .is_some_and(|age| now.saturating_sub(oldest.max_timestamp()) > millis(age));
                over_size || too_old
            }
        };
        if !go {
            break;
        }
        total -= oldest.written();
        deleted.push(st.segments.remove(0));
    }
    if deleted.is_empty() {
        return Ok(0);
    }
    st.start_offset = st.start_offset.max(st.segments[0].base_offset);
    drop(st);
    let storage = core.ctx.storage.as_ref();
    for seg in &deleted {
        partition::remove_segment_files(storage, &core.dir, seg.base_offset)?;
    }
    storage
        .sync_dir(&core.dir)
        .map_err(|e| LogError::io(&core.dir, e))?;
    core.ctx.metrics.segments_deleted(deleted.len() as u64);
    Ok(deleted.len())
}

/// Rewrites sealed segments keeping only the newest record of each key (and every unkeyed
/// record), and dropping tombstones older than the grace period. Offsets do not change.
/// Returns how many records were removed.
pub(crate) fn compact(core: &Core) -> Result<u64, LogError> {
    if core.config.cleanup != Cleanup::Compact {
        return Ok(0);
    }
    let _maintenance = core.maintenance.lock();
    let now = core.ctx.clock.now_millis();
    let grace = millis(core.config.tombstone_grace);
    if core.state.lock().closed {
        return Ok(0);
    }
    // Only durable records may make older ones obsolete: if compaction dropped a value for a
    // newer one that a crash then took away, the key would be gone. So make everything durable
    // first and ignore what comes after.
    let bound = partition::flush_and_sync(core)?;
    let segments = core.state.lock().segments.clone();
    if segments.len() < 2 {
        return Ok(0);
    }
    // Newest offset of every key, over the whole partition. Records appended after this point
    // can only make more records obsolete, never fewer, so keeping by this map is safe.
    let mut latest: HashMap<Bytes, u64> = HashMap::new();
    for seg in &segments {
        for_each_batch(seg, |_, records| {
            for r in records.iter().filter(|r| r.offset < bound) {
                if let Some(k) = &r.key {
                    latest.insert(Bytes::copy_from_slice(k), r.offset);
                }
            }
        })?;
    }
    let keep = |r: &Record| match &r.key {
        None => true,
        Some(k) => {
            latest.get(k) == Some(&r.offset)
                && !(r.is_tombstone() && now.saturating_sub(r.timestamp) >= grace)
        }
    };
    let mut removed = 0;
    for seg in &segments[..segments.len() - 1] {
        removed += rewrite(core, seg, &keep)?;
    }
    core.ctx.metrics.records_compacted(removed);
    Ok(removed)
}

/// Calls `f` with each batch's header and decoded records.
fn for_each_batch(
    seg: &Segment,
    mut f: impl FnMut(&record::BatchHeader, &[Record]),
) -> Result<(), LogError> {
    let mut records = Vec::new();
    let mut failure = None;
    let end = segment::scan(seg.file.as_ref(), 0, seg.written(), |pos, h, batch| {
        records.clear();
        if let Err(e) = record::decode_records(&Bytes::copy_from_slice(batch), h, &mut records) {
            failure = Some((pos, e));
            return ControlFlow::Break(());
        }
        f(h, &records);
        ControlFlow::Continue(())
    })
    .map_err(|e| LogError::io(&seg.log_path, e))?;
    if let Some((position, e)) = failure.or(end.bad) {
        return Err(segment::decode_failure(&seg.log_path, position, &e));
    }
    Ok(())
}

/// Rewrites one sealed segment with the records `keep` accepts; swaps it in atomically.
fn rewrite(
    core: &Core,
    seg: &Arc<Segment>,
    keep: &dyn Fn(&Record) -> bool,
) -> Result<u64, LogError> {
    let mut out = Vec::new();
    let mut removed = 0;
    let mut entries = Vec::new();
    let mut builder = IndexBuilder::new(core.config.index_interval_bytes, 0);
    for_each_batch(seg, |h, records| {
        let kept: Vec<Record> = records.iter().filter(|r| keep(r)).cloned().collect();
        removed += (records.len() - kept.len()) as u64;
        if kept.is_empty() {
            return;
        }
        let pos = out.len() as u64;
        record::encode_kept(&mut out, h, &kept);
        if let Ok(new_header) = record::decode_header(&out[pos as usize..])
            && let Some(e) = builder.observe(pos, &new_header)
        {
            entries.push(e);
        }
    })?;
    if removed == 0 {
        return Ok(0);
    }
    let storage = core.ctx.storage.as_ref();
    let mut cleaned = seg.log_path.as_os_str().to_owned();
    cleaned.push(".cleaned");
    let cleaned = std::path::PathBuf::from(cleaned);
    let io = |e| LogError::io(&cleaned, e);
    let file = storage.open(&cleaned, true).map_err(io)?;
    file.truncate(0).map_err(io)?;
    file.append(&out).map_err(io)?;
    file.sync_data().map_err(io)?;
    drop(file);
    let mut st = core.state.lock();
    let Some(slot) = st.segments.iter().position(|s| Arc::ptr_eq(s, seg)) else {
        // Retention removed it meanwhile.
        drop(st);
        return storage.remove_file(&cleaned).map(|()| 0).map_err(io);
    };
    storage.rename(&cleaned, &seg.log_path).map_err(io)?;
    storage
        .sync_dir(&core.dir)
        .map_err(|e| LogError::io(&core.dir, e))?;
    let fresh = Segment::open(
        storage,
        &core.dir,
        seg.base_offset,
        out.len() as u64,
        seg.next_offset(),
        seg.max_timestamp(),
        entries,
    )
    .map_err(|e| LogError::io(&seg.log_path, e))?;
    let _ = fresh.rewrite_index();
    st.segments[slot] = Arc::new(fresh);
    Ok(removed)
}
