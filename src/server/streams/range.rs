//! `XRANGE` and `XREVRANGE`.

use bytes::Bytes;

use super::ids::{INVALID_ID, StreamId, after, at_or_after};
use super::{Shared, stream, write_entry, wrong_args};
use crate::log::Partition;
use crate::server::reply::Out;

/// The offset a range bound stands for: the first offset in range for a start, the first
/// offset past the range for an end. `-`, `+`, `(id` (exclusive) and `ms` alone as in Redis.
fn bound(p: &Partition, arg: &[u8], end: bool) -> Option<u64> {
    match arg {
        b"-" => return Some(p.start_offset()),
        b"+" => return Some(p.end_offset()),
        _ => {}
    }
    let (exclusive, text) = match arg.strip_prefix(b"(") {
        Some(rest) => (true, rest),
        None => (false, arg),
    };
    let id = StreamId::parse(text, if end { u64::MAX } else { 0 })?;
    Some(match (end, exclusive) {
        (false, false) => at_or_after(p, id),
        (false, true) => after(p, id),
        (true, false) => after(p, id),
        (true, true) => at_or_after(p, id),
    })
}

/// `XRANGE key start end [COUNT n]`, and `XREVRANGE key end start [COUNT n]`. As in Redis,
/// the IDs are checked first, then the options (`COUNT` may repeat: the last wins), then the
/// key's type.
pub(crate) fn xrange(shared: &Shared, args: &[Bytes], rev: bool, out: &mut Out) {
    let name = if rev { "xrevrange" } else { "xrange" };
    if args.len() < 4 {
        return out.error(&wrong_args(name));
    }
    let (lo, hi) = if rev {
        (&args[3], &args[2])
    } else {
        (&args[2], &args[3])
    };
    let parsed = |a: &[u8], end: bool| match a {
        b"-" | b"+" => Some((false, None)),
        _ => {
            let (exclusive, text) = a.strip_prefix(b"(").map_or((false, a), |t| (true, t));
            let id = StreamId::parse(text, if end { u64::MAX } else { 0 })?;
            Some((exclusive, Some(id)))
        }
    };
    let Some((lo_ex, lo_id)) = parsed(lo, false) else {
        return out.error(INVALID_ID);
    };
    if lo_ex && lo_id.is_some_and(|id| id.next().is_none()) {
        return out.error("ERR invalid start ID for the interval");
    }
    let Some((hi_ex, hi_id)) = parsed(hi, true) else {
        return out.error(INVALID_ID);
    };
    if hi_ex && hi_id == Some(StreamId::default()) {
        return out.error("ERR invalid end ID for the interval");
    }
    let mut count = usize::MAX;
    let mut j = 4;
    while j < args.len() {
        if !args[j].eq_ignore_ascii_case(b"count") || j + 1 >= args.len() {
            return out.error("ERR syntax error");
        }
        match super::super::cmd::parse_i64(&args[j + 1]) {
            Some(n) => count = usize::try_from(n).unwrap_or(0),
            None => return out.error("ERR value is not an integer or out of range"),
        }
        j += 2;
    }
    if super::refuse_other_type(shared, &args[1], out) {
        return;
    }
    let Ok(Some(t)) = stream(shared, &args[1], false) else {
        return out.array(0);
    };
    let Ok(p) = t.partition(0) else {
        return out.array(0);
    };
    if count == 0 {
        // Redis's reply to `COUNT 0` (or less) on a stream that exists.
        return out.null_array();
    }
    let (Some(from), Some(to)) = (bound(p, lo, false), bound(p, hi, true)) else {
        return out.error(INVALID_ID);
    };
    let from = from.max(p.start_offset());
    let span = to.saturating_sub(from);
    let want = usize::try_from(span).unwrap_or(usize::MAX).min(count);
    // XREVRANGE with COUNT reads only the last `count` entries of the range.
    let first = if rev { to - want as u64 } else { from };
    let mut records = if want == 0 {
        Vec::new()
    } else {
        p.read(first, want).unwrap_or_default()
    };
    records.retain(|r| r.offset < to);
    if rev {
        records.reverse();
    }
    out.array(records.len());
    for r in &records {
        write_entry(out, r);
    }
}
