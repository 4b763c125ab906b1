//! Redis streams on the log: each stream key is a single-partition log topic
//! (`stream.<escaped key>`) appended with `Durability::Always`, so an acknowledged `XADD` is on
//! disk. Entry IDs are `<record timestamp ms>-<log offset>`; quipu assigns them (`*` only).

use std::sync::Arc;

use bytes::Bytes;

use super::Shared;
use super::cmd::parse_i64;
use super::reply::Out;
use crate::config::TopicConfig;
use crate::log::{Message, Record, Topic};

/// The topic of a stream key: `stream.` then the key with bytes outside `[A-Za-z0-9.-]`
/// written as `_xx` (hex).
pub(crate) fn topic_name(key: &[u8]) -> String {
    let mut s = String::from("stream.");
    for &b in key {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            s.push(b as char);
        } else {
            s.push_str(&format!("_{b:02x}"));
        }
    }
    s
}

pub(crate) fn stream(
    shared: &Shared,
    key: &[u8],
    create: bool,
) -> Result<Option<Arc<Topic>>, String> {
    let name = topic_name(key);
    if let Ok(t) = shared.log.topic(&name) {
        return Ok(Some(t));
    }
    if !create {
        return Ok(None);
    }
    match shared.log.create_topic(
        &name,
        TopicConfig::default()
            .with_partitions(1)
            .with_durability(shared.stream_durability),
    ) {
        Ok(t) => Ok(Some(t)),
        // Created by another connection in between.
        Err(_) => shared.log.topic(&name).map(Some).map_err(|e| e.to_string()),
    }
}

fn entry_id(r: &Record) -> String {
    format!("{}-{}", r.timestamp, r.offset)
}

/// Parses the arguments of XADD; `Err` is the error reply.
pub(crate) fn prepare_xadd(
    shared: &Shared,
    args: &[Bytes],
) -> Result<(Arc<Topic>, Message, Option<u64>), String> {
    let wrong = || "ERR wrong number of arguments for 'xadd' command".to_owned();
    if args.len() < 5 {
        return Err(wrong());
    }
    let mut i = 2;
    let mut maxlen = None;
    loop {
        let opt = String::from_utf8_lossy(args.get(i).ok_or_else(wrong)?).to_lowercase();
        match opt.as_str() {
            "nomkstream" => i += 1,
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
    let pairs: Vec<(&[u8], &[u8])> = fields
        .chunks(2)
        .map(|kv| (&kv[0][..], &kv[1][..]))
        .collect();
    let value = postcard::to_allocvec(&pairs).map_err(|e| format!("ERR {e}"))?;
    let topic = stream(shared, &args[1], true)?.ok_or("ERR no such stream")?;
    Ok((topic, Message::new(value), maxlen))
}

/// Appends (durably) and returns the new ID.
pub(crate) fn xadd(
    topic: Arc<Topic>,
    msg: Message,
    maxlen: Option<u64>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>> {
    Box::pin(async move {
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
        let ts = topic
            .read(0, r.offset, 1)
            .ok()
            .and_then(|v| v.first().map(|rec| rec.timestamp))
            .unwrap_or(0);
        Ok(format!("{ts}-{}", r.offset))
    })
}

fn write_entry(out: &mut Out, r: &Record) {
    out.array(2);
    out.bulk(entry_id(r).as_bytes());
    let pairs: Vec<(&[u8], &[u8])> = r
        .value
        .as_deref()
        .and_then(|v| postcard::from_bytes(v).ok())
        .unwrap_or_default();
    out.array(pairs.len() * 2);
    for (f, v) in pairs {
        out.bulk(f);
        out.bulk(v);
    }
}

/// An ID bound to an offset: `ms-seq` is the entry at offset `seq`; `ms` alone the first
/// entry at or after that time.
fn offset_of(topic: &Topic, id: &[u8], end: bool) -> Option<u64> {
    let p = topic.partition(0).ok()?;
    match id {
        b"-" => Some(p.start_offset()),
        b"+" => Some(p.end_offset().saturating_sub(1)),
        _ => {
            let s = std::str::from_utf8(id).ok()?;
            match s.split_once('-') {
                Some((_, seq)) => seq.parse().ok(),
                None => {
                    let ms: u64 = s.parse().ok()?;
                    let at = p.offset_for_timestamp(ms + u64::from(end)).ok().flatten();
                    Some(match at {
                        Some(o) if end => o.saturating_sub(1),
                        Some(o) => o,
                        None => p.end_offset().saturating_sub(u64::from(end)),
                    })
                }
            }
        }
    }
}

pub(crate) fn xlen(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if args.len() != 2 {
        return out.error("ERR wrong number of arguments for 'xlen' command");
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

pub(crate) fn xrange(shared: &Shared, args: &[Bytes], rev: bool, out: &mut Out) {
    if args.len() != 4 && args.len() != 6 {
        return out.error("ERR wrong number of arguments for 'xrange' command");
    }
    let count = if args.len() == 6 {
        match parse_i64(&args[5]) {
            Some(n) if n >= 0 => n as usize,
            _ => return out.error("ERR value is not an integer or out of range"),
        }
    } else {
        usize::MAX
    };
    let Ok(Some(t)) = stream(shared, &args[1], false) else {
        return out.array(0);
    };
    let (lo, hi) = if rev {
        (&args[3], &args[2])
    } else {
        (&args[2], &args[3])
    };
    let (Some(from), Some(to)) = (offset_of(&t, lo, false), offset_of(&t, hi, true)) else {
        return out.error("ERR Invalid stream ID specified as stream command argument");
    };
    let start = t.partition(0).map_or(0, |p| p.start_offset()).max(from);
    let mut records = Vec::new();
    if to >= start && t.partition(0).is_ok_and(|p| p.end_offset() > start) {
        let want = (to - start + 1).min(1 << 20) as usize;
        records = t.read(0, start, want).unwrap_or_default();
        records.retain(|r| r.offset <= to);
    }
    if rev {
        records.reverse();
    }
    records.truncate(count);
    out.array(records.len());
    for r in &records {
        write_entry(out, r);
    }
}

/// XREAD without BLOCK: entries after each given ID.
pub(crate) fn xread(shared: &Shared, args: &[Bytes], out: &mut Out) {
    let mut count = usize::MAX;
    let mut i = 1;
    while i < args.len() {
        match String::from_utf8_lossy(&args[i]).to_lowercase().as_str() {
            "count" => {
                count = args
                    .get(i + 1)
                    .and_then(|a| parse_i64(a))
                    .unwrap_or(0)
                    .max(0) as usize;
                i += 2;
            }
            "block" => i += 2,
            "streams" => {
                i += 1;
                break;
            }
            _ => return out.error("ERR syntax error"),
        }
    }
    let rest = &args[i.min(args.len())..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return out.error("ERR Unbalanced 'xread' list of streams: for each stream key an ID or '$' must be specified.");
    }
    let (keys, ids) = rest.split_at(rest.len() / 2);
    let mut found = Vec::new();
    for (k, id) in keys.iter().zip(ids) {
        let Ok(Some(t)) = stream(shared, k, false) else {
            continue;
        };
        let Ok(p) = t.partition(0) else { continue };
        let from = match &id[..] {
            b"$" => p.end_offset(),
            _ => match offset_of(&t, id, false) {
                Some(o) if id.contains(&b'-') => o + 1,
                Some(o) => o,
                None => {
                    return out.error("ERR Invalid stream ID specified as stream command argument");
                }
            },
        }
        .max(p.start_offset());
        if from >= p.end_offset() {
            continue;
        }
        let records = t.read(0, from, count.min(1 << 20)).unwrap_or_default();
        if !records.is_empty() {
            found.push((k.clone(), records));
        }
    }
    if found.is_empty() {
        return out.null();
    }
    if out.resp3 {
        out.map(found.len());
    } else {
        out.array(found.len());
    }
    for (k, records) in found {
        if !out.resp3 {
            out.array(2);
        }
        out.bulk(&k);
        out.array(records.len());
        for r in &records {
            write_entry(out, r);
        }
    }
}
