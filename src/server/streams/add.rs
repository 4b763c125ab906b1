//! `XADD`, `XLEN`, `XTRIM`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use super::ids::{INVALID_ID, StreamId, at_or_after};
use super::{Shared, lower, stream, wrong_args};
use crate::log::{Message, Topic};
use crate::server::cmd::parse_i64;
use crate::server::db::WRONGTYPE;
use crate::server::reply::Out;

/// A parsed XADD: topic, message, MAXLEN.
pub(crate) type Planned = (Option<Arc<Topic>>, Message, Option<u64>);

/// Parses the arguments of XADD: the topic (`None` for NOMKSTREAM on a missing stream), the
/// message, and MAXLEN; `Err` is the error reply.
pub(crate) fn prepare_xadd(shared: &Shared, args: &[Bytes]) -> Result<Planned, String> {
    let wrong = || wrong_args("xadd");
    if args.len() < 5 {
        return Err(wrong());
    }
    let mut i = 2;
    let mut maxlen = None;
    let mut create = true;
    loop {
        let opt = lower(args.get(i).ok_or_else(wrong)?);
        match opt.as_str() {
            "nomkstream" => {
                create = false;
                i += 1;
            }
            "maxlen" => {
                i += 1;
                if matches!(args.get(i).map(|a| &a[..]), Some(b"~" | b"=")) {
                    i += 1;
                }
                let n = args.get(i).and_then(|a| parse_i64(a)).filter(|n| *n >= 0);
                maxlen = Some(n.ok_or("ERR The MAXLEN argument must be >= 0.")? as u64);
                i += 1;
            }
            _ => break,
        }
    }
    if args.get(i).map(|a| &a[..]) != Some(b"*") {
        return Err("ERR quipu assigns stream IDs: use * as the ID".to_owned());
    }
    let fields = &args[i + 1..];
    if fields.is_empty() || !fields.len().is_multiple_of(2) {
        return Err(wrong());
    }
    // A key is one type: a string or hash of that name makes XADD a type error.
    if super::other_type(shared, &args[1]) {
        return Err(WRONGTYPE.to_owned());
    }
    let pairs: Vec<(&[u8], &[u8])> = fields
        .chunks(2)
        .map(|kv| (&kv[0][..], &kv[1][..]))
        .collect();
    let value = postcard::to_allocvec(&pairs).map_err(|e| format!("ERR {e}"))?;
    let topic = stream(shared, &args[1], create)?;
    Ok((topic, Message::new(value), maxlen))
}

/// Appends (durably) and returns the new ID; `None` without a topic (NOMKSTREAM).
pub(crate) fn xadd(
    topic: Option<Arc<Topic>>,
    msg: Message,
    maxlen: Option<u64>,
) -> Pin<Box<dyn Future<Output = Result<Option<String>, String>> + Send>> {
    Box::pin(async move {
        let Some(topic) = topic else {
            return Ok(None);
        };
        let r = topic
            .append_async(msg)
            .await
            .map_err(|e| format!("ERR {e}"))?;
        if let Some(max) = maxlen
            && let Ok(p) = topic.partition(0)
        {
            // Whole segments only: `MAXLEN ~` semantics.
            let _ = topic.delete_records_before(0, p.end_offset().saturating_sub(max));
        }
        Ok(Some(format!("{}-{}", r.timestamp, r.offset)))
    })
}

/// `XLEN key`.
pub(crate) fn xlen(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if args.len() != 2 {
        return out.error(&wrong_args("xlen"));
    }
    match stream(shared, &args[1], false) {
        Ok(Some(t)) => {
            let n = t
                .partition(0)
                .map_or(0, |p| p.end_offset() - p.start_offset());
            out.int(n as i64);
        }
        _ => out.int(0),
    }
}

/// `XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT n]`: drops whole log segments below the
/// threshold, so it trims at most what was asked (as `~`) even with `=`. Replies the number
/// of entries removed.
pub(crate) fn xtrim(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if args.len() < 4 {
        return out.error(&wrong_args("xtrim"));
    }
    let strategy = lower(&args[2]);
    let mut i = 3;
    if matches!(&args[i][..], b"~" | b"=") {
        i += 1;
    }
    let Some(threshold) = args.get(i) else {
        return out.error("ERR syntax error");
    };
    match args.len() - i {
        1 => {}
        3 if args[i + 1].eq_ignore_ascii_case(b"limit") => {
            if parse_i64(&args[i + 2]).is_none_or(|n| n < 0) {
                return out.error("ERR The LIMIT argument must be >= 0.");
            }
        }
        _ => return out.error("ERR syntax error"),
    }
    let maxlen = match strategy.as_str() {
        "maxlen" => match parse_i64(threshold) {
            Some(n) if n >= 0 => Some(n as u64),
            Some(_) => return out.error("ERR The MAXLEN argument must be >= 0."),
            None => return out.error("ERR value is not an integer or out of range"),
        },
        "minid" => match StreamId::parse(threshold, 0) {
            Some(_) => None,
            None => return out.error(INVALID_ID),
        },
        _ => return out.error("ERR syntax error"),
    };
    let Ok(Some(t)) = stream(shared, &args[1], false) else {
        return out.int(0);
    };
    let Ok(p) = t.partition(0) else {
        return out.int(0);
    };
    let before = match (maxlen, StreamId::parse(threshold, 0)) {
        (Some(max), _) => p.end_offset().saturating_sub(max),
        (None, Some(id)) => at_or_after(p, id),
        (None, None) => return out.int(0),
    };
    let start = p.start_offset();
    if let Err(e) = t.delete_records_before(0, before) {
        return out.error(&format!("ERR {e}"));
    }
    out.int((p.start_offset() - start) as i64);
}
