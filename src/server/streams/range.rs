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

/// `XRANGE key start end [COUNT n]`, and `XREVRANGE key end start [COUNT n]`.
pub(crate) fn xrange(shared: &Shared, args: &[Bytes], rev: bool, out: &mut Out) {
    let name = if rev { "xrevrange" } else { "xrange" };
    if args.len() != 4 && args.len() != 6 {
        return out.error(&wrong_args(name));
    }
    let mut count = usize::MAX;
    if args.len() == 6 {
        if !args[4].eq_ignore_ascii_case(b"count") {
            return out.error("ERR syntax error");
        }
        match super::super::cmd::parse_i64(&args[5]) {
            Some(n) if n < 0 => count = 0,
            Some(n) => count = n as usize,
            None => return out.error("ERR value is not an integer or out of range"),
        }
    }
    let (lo, hi) = if rev {
        (&args[3], &args[2])
    } else {
        (&args[2], &args[3])
    };
    let valid = |a: &[u8]| {
        matches!(a, b"-" | b"+") || StreamId::parse(a.strip_prefix(b"(").unwrap_or(a), 0).is_some()
    };
    if !valid(lo) || !valid(hi) {
        return out.error(INVALID_ID);
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
