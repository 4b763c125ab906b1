//! Pending entries: `XACK`, `XPENDING`, `XCLAIM`, `XAUTOCLAIM`.

use std::sync::Arc;

use bytes::Bytes;

use super::group::{Group, StreamState, state};
use super::ids::{INVALID_ID, StreamId};
use super::{Shared, lower, now_ms, stream, write_entry, wrong_args};
use crate::log::{Partition, Record, Topic};
use crate::server::cmd::parse_i64;
use crate::server::reply::Out;

/// A stream's topic and groups.
type Found = (Arc<Topic>, Arc<StreamState>);

/// The stream's topic and groups, if the stream exists.
///
/// # Errors
/// The error reply if its groups cannot be loaded.
pub(crate) fn find(shared: &Shared, key: &[u8]) -> Result<Option<Found>, String> {
    let Some(topic) = stream(shared, key, false)? else {
        return Ok(None);
    };
    let st = state(shared, key, &topic)?;
    Ok(Some((topic, st)))
}

/// `NOGROUP` as XPENDING and XCLAIM word it.
fn no_key_or_group(key: &[u8], group: &[u8]) -> String {
    format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    )
}

/// The entry at `id` if it is still in the stream under that ID.
fn entry(p: &Partition, id: StreamId) -> Option<Record> {
    let r = p.read(id.seq, 1).ok()?.into_iter().next()?;
    (r.offset == id.seq && r.timestamp == id.ms).then_some(r)
}

/// Whether `id` is pending in `g` (same offset and same milliseconds).
fn pending_id(g: &Group, id: StreamId) -> bool {
    g.pel.get(&id.seq).is_some_and(|p| p.ms == id.ms)
}

/// The pending entries with an ID of at least `start`, in ID order. Skips to the offset of
/// `start` in the stream rather than walking the whole list; from the list's beginning when
/// `start` lies at or before the stream's first entry (entries trimmed away stay pending).
fn pending_from<'g>(
    g: &'g Group,
    p: &Partition,
    start: StreamId,
) -> impl Iterator<Item = (StreamId, &'g super::group::Pending)> {
    let from = super::ids::at_or_after(p, start);
    let from = if from <= p.start_offset() { 0 } else { from };
    g.pel
        .range(from..)
        .map(|(&seq, pe)| (StreamId { ms: pe.ms, seq }, pe))
        .filter(move |(id, _)| *id >= start)
}

/// `XACK key group id [id …]`: the number of entries that were pending.
pub(crate) fn xack(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if args.len() < 4 {
        return out.error(&wrong_args("xack"));
    }
    // No stream or no group answers 0 before the IDs are read, as in Redis.
    let (_, st) = match find(shared, &args[1]) {
        Ok(Some(found)) => found,
        Ok(None) => return out.int(0),
        Err(e) => return out.error(&e),
    };
    let mut groups = st.groups.lock();
    let Some(g) = groups.get_mut(&args[2]) else {
        return out.int(0);
    };
    let mut ids = Vec::with_capacity(args.len() - 3);
    for a in &args[3..] {
        match StreamId::parse(a, 0) {
            Some(id) => ids.push(id),
            None => return out.error(INVALID_ID),
        }
    }
    let mut n = 0;
    for id in ids {
        if pending_id(g, id) && g.remove(id.seq) {
            n += 1;
        }
    }
    if n > 0 {
        g.progress();
    }
    out.int(n);
}

/// A range bound of XPENDING: `-`, `+`, `(id` (exclusive) or an ID.
fn bound(b: &[u8], end: bool) -> Option<StreamId> {
    match b {
        b"-" => Some(StreamId::default()),
        b"+" => Some(StreamId {
            ms: u64::MAX,
            seq: u64::MAX,
        }),
        _ => match b.strip_prefix(b"(") {
            Some(rest) => {
                let id = StreamId::parse(rest, if end { u64::MAX } else { 0 })?;
                if end {
                    // The largest ID below `id`.
                    match id.seq.checked_sub(1) {
                        Some(seq) => Some(StreamId { ms: id.ms, seq }),
                        None => id
                            .ms
                            .checked_sub(1)
                            .map(|ms| StreamId { ms, seq: u64::MAX }),
                    }
                } else {
                    id.next()
                }
            }
            None => StreamId::parse(b, if end { u64::MAX } else { 0 }),
        },
    }
}

/// `XPENDING key group` (summary) or `XPENDING key group [IDLE ms] start end count [consumer]`.
pub(crate) fn xpending(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if args.len() < 3 {
        return out.error(&wrong_args("xpending"));
    }
    let (key, group) = (&args[1], &args[2]);
    let mut i = 3;
    let mut min_idle = 0;
    if args.len() > 3 && lower(&args[3]) == "idle" {
        // Negative is accepted, as by Redis: every entry is idle that long.
        let Some(ms) = args.get(4).and_then(|a| parse_i64(a)) else {
            return out.error("ERR value is not an integer or out of range");
        };
        min_idle = u64::try_from(ms).unwrap_or(0);
        i = 5;
    }
    let extended = args.len() > 3;
    if extended && !matches!(args.len() - i.min(args.len()), 3 | 4) {
        return out.error("ERR syntax error");
    }
    let mut range = None;
    if extended {
        let (Some(start), Some(end)) = (bound(&args[i], false), bound(&args[i + 1], true)) else {
            return out.error(INVALID_ID);
        };
        let Some(count) = parse_i64(&args[i + 2]) else {
            return out.error("ERR value is not an integer or out of range");
        };
        range = Some((start, end, count.max(0) as usize, args.get(i + 3).cloned()));
    }
    if super::refuse_other_type(shared, key, out) {
        return;
    }
    let (topic, st) = match find(shared, key) {
        Ok(Some(found)) => found,
        Ok(None) => return out.error(&no_key_or_group(key, group)),
        Err(e) => return out.error(&e),
    };
    let Ok(part) = topic.partition(0) else {
        return out.error(&no_key_or_group(key, group));
    };
    let groups = st.groups.lock();
    let Some(g) = groups.get(group) else {
        return out.error(&no_key_or_group(key, group));
    };
    let now = now_ms(shared);
    let Some((start, end, count, consumer)) = range else {
        return summary(g, out);
    };
    let mut rows = Vec::new();
    for (id, p) in pending_from(g, part, start) {
        if rows.len() >= count || id > end {
            break;
        }
        let idle = now.saturating_sub(p.delivered);
        if id < start || idle < min_idle || consumer.as_ref().is_some_and(|c| *c != p.consumer) {
            continue;
        }
        rows.push((id, p.consumer.clone(), idle, p.count));
    }
    out.array(rows.len());
    for (id, consumer, idle, n) in rows {
        out.array(4);
        out.bulk(id.to_string().as_bytes());
        out.bulk(&consumer);
        out.int(idle as i64);
        out.int(n as i64);
    }
}

fn summary(g: &Group, out: &mut Out) {
    out.array(4);
    out.int(g.pel.len() as i64);
    let (Some((lo, lp)), Some((hi, hp))) = (g.pel.iter().next(), g.pel.iter().next_back()) else {
        out.null();
        out.null();
        return out.null_array();
    };
    out.bulk(
        StreamId {
            ms: lp.ms,
            seq: *lo,
        }
        .to_string()
        .as_bytes(),
    );
    out.bulk(
        StreamId {
            ms: hp.ms,
            seq: *hi,
        }
        .to_string()
        .as_bytes(),
    );
    let busy: Vec<_> = g
        .consumers
        .iter()
        .filter(|(_, c)| !c.pending.is_empty())
        .collect();
    out.array(busy.len());
    for (name, c) in busy {
        out.array(2);
        out.bulk(name);
        out.bulk(c.pending.len().to_string().as_bytes());
    }
}

/// How a claim changes delivery time and count.
#[derive(Debug, Clone, Copy)]
struct Claim {
    /// The new delivery time.
    delivered: u64,
    /// `RETRYCOUNT`, else the old count plus one (unchanged with `JUSTID`).
    retry: Option<u64>,
    justid: bool,
}

/// Claims the pending `id` for `consumer` if idle long enough; `Err(())` if its entry is gone
/// from the stream (it then leaves the pending list).
fn claim(
    g: &mut Group,
    p: &Partition,
    id: StreamId,
    consumer: &Bytes,
    min_idle: u64,
    now: u64,
    how: Claim,
) -> Result<Option<Record>, ()> {
    let Some(pending) = g.pel.get(&id.seq).filter(|e| e.ms == id.ms).cloned() else {
        return Ok(None);
    };
    let Some(record) = entry(p, id) else {
        g.remove(id.seq);
        return Err(());
    };
    if now.saturating_sub(pending.delivered) < min_idle {
        return Ok(None);
    }
    let count = how.retry.unwrap_or(if how.justid {
        pending.count
    } else {
        pending.count + 1
    });
    g.deliver(id.seq, id.ms, consumer, how.delivered, count);
    Ok(Some(record))
}

fn write_claimed(out: &mut Out, records: &[Record], justid: bool) {
    out.array(records.len());
    for r in records {
        if justid {
            out.bulk(super::entry_id(r).to_string().as_bytes());
        } else {
            write_entry(out, r);
        }
    }
}

/// `XCLAIM key group consumer min-idle id … [IDLE ms] [TIME ms] [RETRYCOUNT n] [FORCE]
/// [JUSTID] [LASTID id]`.
pub(crate) fn xclaim(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if args.len() < 6 {
        return out.error(&wrong_args("xclaim"));
    }
    let (key, group, consumer) = (&args[1], &args[2], &args[3]);
    // The group first, then the arguments, as Redis checks them.
    let (topic, st) = match find(shared, key) {
        Ok(Some((topic, st))) if st.groups.lock().contains_key(group) => (topic, st),
        Ok(_) => return out.error(&no_key_or_group(key, group)),
        Err(e) => return out.error(&e),
    };
    let Some(min_idle) = parse_i64(&args[4]) else {
        return out.error("ERR Invalid min-idle-time argument for XCLAIM");
    };
    let min_idle = min_idle.max(0) as u64;
    let mut ids = Vec::new();
    let mut i = 5;
    while let Some(id) = args.get(i).and_then(|a| StreamId::parse(a, 0)) {
        ids.push(id);
        i += 1;
    }
    let now = now_ms(shared);
    let mut how = Claim {
        delivered: now,
        retry: None,
        justid: false,
    };
    let (mut force, mut last_id) = (false, None);
    while i < args.len() {
        let opt = lower(&args[i]);
        let value = args.get(i + 1);
        let int = || value.and_then(|v| parse_i64(v));
        match opt.as_str() {
            "force" => force = true,
            "justid" => how.justid = true,
            "idle" => match int() {
                Some(ms) => how.delivered = now.saturating_sub(ms.max(0) as u64),
                None => return out.error("ERR Invalid IDLE option argument for XCLAIM"),
            },
            "time" => match int() {
                Some(ms) => how.delivered = ms.max(0) as u64,
                None => return out.error("ERR Invalid TIME option argument for XCLAIM"),
            },
            "retrycount" => match int() {
                Some(n) => how.retry = Some(n.max(0) as u64),
                None => return out.error("ERR Invalid RETRYCOUNT option argument for XCLAIM"),
            },
            "lastid" => match value.and_then(|v| StreamId::parse(v, 0)) {
                Some(id) => last_id = Some(id),
                None => return out.error(INVALID_ID),
            },
            _ => {
                return out.error(&format!(
                    "ERR Unrecognized XCLAIM option '{}'",
                    crate::server::cmd::shown(&args[i])
                ));
            }
        }
        i += if matches!(opt.as_str(), "force" | "justid") {
            1
        } else {
            2
        };
    }
    let Ok(p) = topic.partition(0) else {
        return out.error(&no_key_or_group(key, group));
    };
    let mut groups = st.groups.lock();
    let Some(g) = groups.get_mut(group) else {
        return out.error(&no_key_or_group(key, group));
    };
    if let Some(last) = last_id {
        let next = super::ids::after(p, last);
        g.next = g.next.max(next);
    }
    // The consumer is created by its first claim (`Group::deliver`), as in Redis: a call
    // that claims nothing leaves none behind.
    let mut claimed = Vec::new();
    for id in ids {
        if force && !pending_id(g, id) && entry(p, id).is_some() {
            // FORCE: an entry nobody was delivered joins the pending list first, as if
            // delivered long ago so that the min-idle test passes, as in Redis.
            g.deliver(id.seq, id.ms, consumer, 0, 0);
        }
        if let Ok(Some(r)) = claim(g, p, id, consumer, min_idle, now, how) {
            claimed.push(r);
        }
    }
    g.progress();
    write_claimed(out, &claimed, how.justid);
}

/// `XAUTOCLAIM key group consumer min-idle start [COUNT n] [JUSTID]`:
/// `[next start, [claimed …], [deleted IDs …]]`.
pub(crate) fn xautoclaim(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if !(6..=9).contains(&args.len()) {
        return out.error(&wrong_args("xautoclaim"));
    }
    let (key, group, consumer) = (&args[1], &args[2], &args[3]);
    let Some(min_idle) = parse_i64(&args[4]) else {
        return out.error("ERR Invalid min-idle-time argument for XAUTOCLAIM");
    };
    let min_idle = min_idle.max(0) as u64;
    let Some(start) = bound(&args[5], false) else {
        return out.error(INVALID_ID);
    };
    let now = now_ms(shared);
    let (mut count, mut justid) = (100usize, false);
    let mut i = 6;
    while i < args.len() {
        match lower(&args[i]).as_str() {
            "count" => {
                match args.get(i + 1).and_then(|a| parse_i64(a)) {
                    Some(n) if n > 0 && n <= (i64::MAX / 10) => count = n as usize,
                    Some(_) => return out.error("ERR COUNT must be > 0"),
                    None => return out.error("ERR value is not an integer or out of range"),
                }
                i += 2;
            }
            "justid" => {
                justid = true;
                i += 1;
            }
            _ => return out.error("ERR syntax error"),
        }
    }
    // Its arguments first, then the key's type, as Redis checks them.
    if super::refuse_other_type(shared, key, out) {
        return;
    }
    let (topic, st) = match find(shared, key) {
        Ok(Some(found)) => found,
        Ok(None) => return out.error(&no_key_or_group(key, group)),
        Err(e) => return out.error(&e),
    };
    let Ok(p) = topic.partition(0) else {
        return out.error(&no_key_or_group(key, group));
    };
    let mut groups = st.groups.lock();
    let Some(g) = groups.get_mut(group) else {
        return out.error(&no_key_or_group(key, group));
    };
    // Created by its first claim, as in XCLAIM.
    let how = Claim {
        delivered: now,
        retry: None,
        justid,
    };
    // As Redis: look at most ten times COUNT entries per call.
    let mut attempts = count.saturating_mul(10);
    let candidates: Vec<StreamId> = pending_from(g, p, start)
        .map(|(id, _)| id)
        .take(attempts.saturating_add(1))
        .collect();
    let (mut claimed, mut deleted) = (Vec::new(), Vec::new());
    let mut cursor = StreamId::default();
    for (n, id) in candidates.iter().enumerate() {
        if claimed.len() >= count || attempts == 0 {
            cursor = *id;
            break;
        }
        attempts -= 1;
        match claim(g, p, *id, consumer, min_idle, now, how) {
            Ok(Some(r)) => claimed.push(r),
            Ok(None) => {}
            Err(()) => deleted.push(*id),
        }
        if n + 1 == candidates.len() {
            cursor = StreamId::default();
        }
    }
    g.progress();
    out.array(3);
    out.bulk(cursor.to_string().as_bytes());
    write_claimed(out, &claimed, justid);
    out.array(deleted.len());
    for id in deleted {
        out.bulk(id.to_string().as_bytes());
    }
}
