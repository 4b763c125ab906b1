//! `XREAD` and `XREADGROUP`, with `BLOCK`: a blocked reader is a future the connection loop
//! awaits; it holds no lock and no thread, and wakes when a stream it reads grows or a stream
//! or group appears or goes away.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::group::state;
use super::ids::{INVALID_ID, StreamId, after};
use super::{Shared, lower, now_ms, stream, write_entry, wrong_args};
use crate::log::{Follower, Record};
use crate::server::cmd::parse_i64;
use crate::server::reply::Out;

/// A blocked XREAD/XREADGROUP: resolves to its encoded reply.
pub(crate) type Wait = Pin<Box<dyn Future<Output = BytesMut> + Send>>;

/// Where reading a stream starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// At this offset (`$` resolved when the command came).
    Offset(u64),
    /// After this ID.
    After(StreamId),
    /// XREADGROUP `>`: entries never delivered to the group.
    New,
    /// XREADGROUP with an ID: the consumer's pending entries after it.
    History(StreamId),
}

#[derive(Debug)]
struct Request {
    /// 0: no limit.
    count: usize,
    /// Milliseconds; 0 waits forever.
    block: Option<u64>,
    noack: bool,
    /// Group and consumer of XREADGROUP.
    group: Option<(Bytes, Bytes)>,
    keys: Vec<Bytes>,
    starts: Vec<Start>,
}

/// One entry of a reply: a record, or the ID of a pending entry no longer in the stream.
enum Item {
    Entry(Record),
    Gone(StreamId),
}

/// Whether the command is an XREAD/XREADGROUP with BLOCK (the connection loop runs those).
pub(crate) fn is_blocking(args: &[Bytes]) -> bool {
    let Some(name) = args.first() else {
        return false;
    };
    if !name.eq_ignore_ascii_case(b"xread") && !name.eq_ignore_ascii_case(b"xreadgroup") {
        return false;
    }
    args[1..]
        .iter()
        .take_while(|a| !a.eq_ignore_ascii_case(b"streams"))
        .any(|a| a.eq_ignore_ascii_case(b"block"))
}

fn parse(shared: &Shared, args: &[Bytes]) -> Result<Request, String> {
    let grouped = args[0].eq_ignore_ascii_case(b"xreadgroup");
    let name = if grouped { "xreadgroup" } else { "xread" };
    if args.len() < if grouped { 7 } else { 4 } {
        return Err(wrong_args(name));
    }
    let mut req = Request {
        count: 0,
        block: None,
        noack: false,
        group: None,
        keys: Vec::new(),
        starts: Vec::new(),
    };
    let syntax = || "ERR syntax error".to_owned();
    let mut i = 1;
    loop {
        let opt = lower(args.get(i).ok_or_else(syntax)?);
        let value = args.get(i + 1);
        match opt.as_str() {
            "streams" => {
                i += 1;
                break;
            }
            "count" => {
                let n = value
                    .and_then(|v| parse_i64(v))
                    .ok_or("ERR value is not an integer or out of range")?;
                req.count = usize::try_from(n).unwrap_or(0);
            }
            "block" => {
                let ms = value
                    .and_then(|v| parse_i64(v))
                    .ok_or("ERR timeout is not an integer or out of range")?;
                req.block = Some(u64::try_from(ms).map_err(|_| "ERR timeout is negative")?);
            }
            "group" if grouped => {
                let consumer = args.get(i + 2).ok_or_else(syntax)?;
                req.group = Some((value.ok_or_else(syntax)?.clone(), consumer.clone()));
                i += 1;
            }
            "group" => {
                return Err(
                    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead."
                        .to_owned(),
                );
            }
            "noack" if grouped => {
                req.noack = true;
                i += 1;
                continue;
            }
            _ => return Err(syntax()),
        }
        i += 2;
    }
    if grouped && req.group.is_none() {
        return Err("ERR Missing GROUP option for XREADGROUP".to_owned());
    }
    let rest = &args[i.min(args.len())..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        // Redis 7.0's text, XREADGROUP's too.
        return Err(
            "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."
                .to_owned(),
        );
    }
    let (keys, ids) = rest.split_at(rest.len() / 2);
    for (key, id) in keys.iter().zip(ids) {
        if super::other_type(shared, key) {
            return Err(crate::server::db::WRONGTYPE.to_owned());
        }
        if let Some((group, _)) = &req.group {
            // The key and its group before the ID, as Redis checks them.
            let exists = match stream(shared, key, false)? {
                Some(topic) => state(shared, key, &topic)?
                    .groups
                    .lock()
                    .contains_key(group),
                None => false,
            };
            if !exists {
                return Err(no_group(key, group));
            }
        }
        let start = match (&id[..], grouped) {
            (b">", true) => Start::New,
            (b">", false) => {
                return Err("ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.".to_owned());
            }
            (b"$", true) => {
                return Err("ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.".to_owned());
            }
            (b"$", false) => Start::Offset(match stream(shared, key, false) {
                Ok(Some(t)) => t.partition(0).map_or(0, |p| p.end_offset()),
                _ => 0,
            }),
            (_, grouped) => {
                let id = StreamId::parse(id, 0).ok_or(INVALID_ID)?;
                if grouped {
                    Start::History(id)
                } else {
                    Start::After(id)
                }
            }
        };
        req.keys.push(key.clone());
        req.starts.push(start);
    }
    Ok(req)
}

fn no_group(key: &[u8], group: &[u8]) -> String {
    format!(
        "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    )
}

/// Reads what is there now; `Ok(false)` if nothing (the caller may block).
fn attempt(shared: &Shared, req: &Request, out: &mut Out) -> Result<bool, String> {
    let limit = if req.count == 0 {
        usize::MAX
    } else {
        req.count
    };
    let now = now_ms(shared);
    let mut found: Vec<(&Bytes, Vec<Item>)> = Vec::new();
    for (key, start) in req.keys.iter().zip(&req.starts) {
        let topic = stream(shared, key, false)?;
        if let Some((group, consumer)) = &req.group {
            let topic = topic.ok_or_else(|| no_group(key, group))?;
            let p = topic.partition(0).map_err(|e| format!("ERR {e}"))?;
            let st = state(shared, key, &topic)?;
            let mut groups = st.groups.lock();
            let g = groups.get_mut(group).ok_or_else(|| no_group(key, group))?;
            g.consumer(consumer, now);
            if let Start::History(after_id) = *start {
                let mut items = Vec::new();
                let mine: Vec<u64> = g
                    .consumers
                    .get(consumer)
                    .map(|c| c.pending.iter().copied().collect())
                    .unwrap_or_default();
                for offset in mine {
                    let Some(pe) = g.pel.get_mut(&offset) else {
                        continue;
                    };
                    let id = StreamId {
                        ms: pe.ms,
                        seq: offset,
                    };
                    if id <= after_id {
                        continue;
                    }
                    if items.len() >= limit {
                        break;
                    }
                    pe.count += 1;
                    pe.delivered = now;
                    match p.read(offset, 1).ok().and_then(|v| v.into_iter().next()) {
                        Some(r) if r.offset == offset => items.push(Item::Entry(r)),
                        _ => items.push(Item::Gone(id)),
                    }
                }
                found.push((key, items));
                continue;
            }
            let from = g.next.max(p.start_offset());
            if from >= p.end_offset() {
                continue;
            }
            let records = p.read(from, limit).map_err(|e| format!("ERR {e}"))?;
            let Some(last) = records.last() else { continue };
            g.next = last.offset + 1;
            if !req.noack {
                for r in &records {
                    g.deliver(r.offset, r.timestamp, consumer, now, 1);
                }
            }
            g.progress();
            found.push((key, records.into_iter().map(Item::Entry).collect()));
            continue;
        }
        let Some(topic) = topic else { continue };
        let Ok(p) = topic.partition(0) else { continue };
        let from = match *start {
            Start::Offset(o) => o,
            Start::After(id) => after(p, id),
            Start::New | Start::History(_) => continue,
        }
        .max(p.start_offset());
        if from >= p.end_offset() {
            continue;
        }
        let records = p.read(from, limit).map_err(|e| format!("ERR {e}"))?;
        if !records.is_empty() {
            found.push((key, records.into_iter().map(Item::Entry).collect()));
        }
    }
    if found.is_empty() {
        return Ok(false);
    }
    if out.resp3 {
        out.map(found.len());
    } else {
        out.array(found.len());
    }
    for (key, items) in found {
        if !out.resp3 {
            out.array(2);
        }
        out.bulk(key);
        out.array(items.len());
        for item in &items {
            match item {
                Item::Entry(r) => write_entry(out, r),
                Item::Gone(id) => {
                    out.array(2);
                    out.bulk(id.to_string().as_bytes());
                    out.null();
                }
            }
        }
    }
    Ok(true)
}

/// What wakes a blocked reader: a stream it reads growing, or any stream/group change.
struct Watcher {
    changed: watch::Receiver<u64>,
    followers: Vec<Follower>,
}

impl Watcher {
    /// Taken before reading, so nothing appended after the read is missed.
    fn new(shared: &Shared, req: &Request) -> Self {
        let followers = req
            .keys
            .iter()
            .filter_map(|k| stream(shared, k, false).ok().flatten())
            .filter_map(|t| {
                let end = t.partition(0).ok()?.end_offset();
                t.follow(0, end, 1).ok()
            })
            .collect();
        Self {
            changed: shared.streams.changed.subscribe(),
            followers,
        }
    }

    async fn changed(&mut self) {
        let mut wakers: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = Vec::new();
        let changed = &mut self.changed;
        wakers.push(Box::pin(async move {
            if changed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }));
        for f in &mut self.followers {
            wakers.push(Box::pin(async move {
                // A closed or poisoned partition will not grow: only a change wakes us then.
                if f.next().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }));
        }
        futures_util::future::select_all(wakers).await;
    }
}

/// Runs XREAD/XREADGROUP: replies now into `out`, or (with BLOCK and `allow_block`, when there
/// is nothing to return) returns the wait.
pub(crate) fn start_read(
    shared: &Arc<Shared>,
    args: &[Bytes],
    out: &mut Out,
    allow_block: bool,
) -> Option<Wait> {
    let req = match parse(shared, args) {
        Ok(r) => r,
        Err(e) => {
            out.error(&e);
            return None;
        }
    };
    let watcher = Watcher::new(shared, &req);
    match attempt(shared, &req, out) {
        Err(e) => out.error(&e),
        Ok(true) => {}
        Ok(false) => match req.block {
            Some(ms) if allow_block => {
                return Some(Box::pin(wait(
                    Arc::clone(shared),
                    req,
                    watcher,
                    ms,
                    out.resp3,
                )));
            }
            _ => out.null_array(),
        },
    }
    None
}

async fn wait(
    shared: Arc<Shared>,
    req: Request,
    mut watcher: Watcher,
    ms: u64,
    resp3: bool,
) -> BytesMut {
    let deadline = (ms > 0).then(|| tokio::time::Instant::now() + Duration::from_millis(ms));
    loop {
        let timed_out = match deadline {
            Some(d) => tokio::time::timeout_at(d, watcher.changed()).await.is_err(),
            None => {
                watcher.changed().await;
                false
            }
        };
        let mut out = Out {
            buf: BytesMut::new(),
            resp3,
        };
        if timed_out {
            out.null_array();
            return out.buf;
        }
        watcher = Watcher::new(&shared, &req);
        // A read of one command's: not in the middle of a transaction's `EXEC`.
        match crate::server::gate::shared(|| attempt(&shared, &req, &mut out)) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) if req.keys.iter().any(|k| !super::exists(&shared, k)) => {
                out.error("UNBLOCKED the stream key no longer exists");
            }
            Err(_) if req.group.is_some() => {
                out.error("NOGROUP the consumer group this client was blocked on no longer exists");
            }
            Err(e) => out.error(&e),
        }
        return out.buf;
    }
}

/// XREAD/XREADGROUP from the command table: BLOCK is not honoured there (as inside MULTI).
pub(crate) fn exec(shared: &Arc<Shared>, args: &[Bytes], out: &mut Out) {
    let _ = start_read(shared, args, out, false);
}
