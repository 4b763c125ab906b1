//! Key commands.

use bytes::Bytes;

use super::{not_int, parse_cursor, parse_i64, strings, syntax, wrong_args};
use crate::cache::{Modify, Namespace, TtlChange};
use crate::glob::glob_match;
use crate::server::Shared;
use crate::server::db::{Db, stored_type};
use crate::server::notify::KeyEvent;
use crate::server::reply::Out;
use crate::server::streams;

pub(crate) fn del(shared: &Shared, args: &[Bytes], out: &mut Out) {
    let db = &shared.db;
    if args.len() < 2 {
        return wrong_args(out, &args[0]);
    }
    let mut n = 0;
    for key in &args[1..] {
        let stream = match streams::delete(shared, key) {
            Ok(existed) => existed,
            Err(e) => return out.error(&e),
        };
        match db.ns(key).remove(key) {
            Ok(Some(_)) => {
                db.notifier.notify(KeyEvent::Del, key);
                n += 1;
            }
            Ok(None) if stream => {
                db.notifier.notify(KeyEvent::Del, key);
                n += 1;
            }
            Ok(None) => {}
            Err(e) => return out.error(&format!("ERR {e}")),
        }
    }
    out.int(n);
}

/// `EXISTS` and `TOUCH` (which Redis answers alike: the keys that exist, a key named twice
/// counted twice).
pub(crate) fn exists(shared: &Shared, args: &[Bytes], out: &mut Out) {
    let db = &shared.db;
    if args.len() < 2 {
        return wrong_args(out, &args[0]);
    }
    let n = args[1..]
        .iter()
        .filter(|k| db.ns(k).contains(k) || streams::exists(shared, k))
        .count();
    out.int(n as i64);
}

pub(crate) fn expire(shared: &Shared, cmd: &str, args: &[Bytes], out: &mut Out) {
    let db = &shared.db;
    if args.len() < 3 {
        return wrong_args(out, &args[0]);
    }
    // NX / XX / GT / LT conditions, combined and refused as Redis does: before the time.
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &args[3..] {
        match String::from_utf8_lossy(opt).to_lowercase().as_str() {
            "nx" => nx = true,
            "xx" => xx = true,
            "gt" => gt = true,
            "lt" => lt = true,
            _ => {
                return out.error(&format!("ERR Unsupported option {}", super::shown(opt)));
            }
        }
    }
    if nx && (xx || gt || lt) {
        return out.error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return out.error("ERR GT and LT options at the same time are not compatible");
    }
    let Some(n) = parse_i64(&args[2]) else {
        return not_int(out);
    };
    let now = db.cache.clock().now_millis() as i64;
    let seconds = matches!(cmd, "expire" | "expireat");
    let absolute = matches!(cmd, "expireat" | "pexpireat");
    let ms = super::deadline_ms(n, seconds, absolute, now);
    let Some(ms) = ms else {
        return out.error(&format!("ERR invalid expire time in '{cmd}' command"));
    };
    let key = &args[1];
    let ns = db.ns(key);
    let Some(current) = ns.ttl(key) else {
        if streams::exists(shared, key) {
            // A stream is a log topic and never expires; 0 would say the key is missing.
            return out.error(&format!(
                "ERR {} of a stream is not supported: trim it with XTRIM or XADD MAXLEN",
                cmd.to_uppercase()
            ));
        }
        return out.int(0);
    };
    // A key without a TTL counts as one that never expires for GT and LT.
    let ok = !(nx && current.is_some()
        || xx && current.is_none()
        || gt && current.is_none_or(|c| ms <= super::shown_ttl(c).as_millis() as i64)
        || lt && current.is_some_and(|c| ms >= super::shown_ttl(c).as_millis() as i64));
    if !ok {
        return out.int(0);
    }
    if ms <= 0 {
        // A deadline already passed deletes the key, as in Redis.
        let _ = ns.remove(key);
        db.notifier.notify(KeyEvent::Del, key);
        return out.int(1);
    }
    let set = ns.expire(key, Some(super::stored_ttl(ms as u64)));
    if set {
        db.notifier.notify(KeyEvent::Expire, key);
    }
    out.int(i64::from(set));
}

pub(crate) fn ttl(shared: &Shared, cmd: &str, args: &[Bytes], out: &mut Out) {
    if args.len() != 2 {
        return wrong_args(out, &args[0]);
    }
    let ns = shared.db.ns(&args[1]);
    // TTL and PTTL: time left; EXPIRETIME and PEXPIRETIME: the Unix time of the expiry.
    let when = match cmd {
        "ttl" => ns
            .ttl(&args[1])
            .map(|t| t.map(|d| (super::shown_ttl(d).as_millis() as i64 + 500) / 1000)),
        "pttl" => ns
            .ttl(&args[1])
            .map(|t| t.map(|d| super::shown_ttl(d).as_millis() as i64)),
        "expiretime" => ns
            .expires_at(&args[1])
            .map(|t| t.map(|ms| (super::shown_deadline(ms) / 1000) as i64)),
        _ => ns
            .expires_at(&args[1])
            .map(|t| t.map(|ms| super::shown_deadline(ms) as i64)),
    };
    match when {
        // A stream never expires.
        None if streams::exists(shared, &args[1]) => out.int(-1),
        None => out.int(-2),
        Some(None) => out.int(-1),
        Some(Some(n)) => out.int(n),
    }
}

pub(crate) fn persist(db: &Db, args: &[Bytes], out: &mut Out) {
    if args.len() != 2 {
        return wrong_args(out, &args[0]);
    }
    let ns = db.ns(&args[1]);
    match ns.ttl(&args[1]) {
        Some(Some(_)) => {
            let removed = ns.expire(&args[1], None);
            if removed {
                db.notifier.notify(KeyEvent::Persist, &args[1]);
            }
            out.int(i64::from(removed));
        }
        _ => out.int(0),
    }
}

pub(crate) fn type_of(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if args.len() != 2 {
        return wrong_args(out, &args[0]);
    }
    out.simple(type_name(shared, &args[1]));
}

/// Every live key matching `pattern`, streams included, sorted, each once (a stream and a
/// string or hash may share a key: `SET` does not check for a stream).
fn all_keys(shared: &Shared, pattern: &[u8]) -> Vec<Bytes> {
    let db = &shared.db;
    let mut keys = Vec::new();
    for ns in db.namespaces() {
        for k in ns.keys("*") {
            if db.owns(&ns, &k) && glob_match(pattern, &k) {
                keys.push(k);
            }
        }
    }
    keys.extend(
        streams::keys(shared)
            .into_iter()
            .filter(|k| glob_match(pattern, k)),
    );
    keys.sort();
    keys.dedup();
    keys
}

/// What `TYPE` answers for `key`.
fn type_name(shared: &Shared, key: &[u8]) -> &'static str {
    match shared.db.ns(key).get_with(key, stored_type).flatten() {
        Some(name) => name,
        None if streams::exists(shared, key) => "stream",
        None => "none",
    }
}

pub(crate) fn keys(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if args.len() != 2 {
        return wrong_args(out, &args[0]);
    }
    let keys = all_keys(shared, &args[1]);
    out.array(keys.len());
    for k in keys {
        out.bulk(&k);
    }
}

/// SCAN in slot order. The cursor is where to resume: a bucket (the namespaces' shards one
/// after another, then one bucket for the streams) in its upper 32 bits and a slot of that
/// shard's slab in its lower 32; 0 starts and ends. A key keeps its slot from insert to
/// removal, so a key present for the whole scan is returned exactly once however others come
/// and go (Redis guarantees at least once), and each call looks at about `COUNT` keys
/// whatever the keyspace's size. `MATCH` and `TYPE` filter what was looked at, so a page can
/// be empty before the end, as in Redis.
pub(crate) fn scan(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if args.len() < 2 {
        return wrong_args(out, &args[0]);
    }
    let Some(cursor) = parse_cursor(&args[1]) else {
        return out.error("ERR invalid cursor");
    };
    let (mut pattern, mut count, mut kind) = (Bytes::from_static(b"*"), 10usize, None);
    // Options in pairs; one without its value is a syntax error, as in Redis.
    let mut i = 2;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return syntax(out);
        };
        match String::from_utf8_lossy(&args[i]).to_lowercase().as_str() {
            "match" => pattern = value.clone(),
            "count" => match parse_i64(value) {
                Some(n) if n > 0 => count = n as usize,
                Some(_) => return syntax(out),
                None => return not_int(out),
            },
            "type" => kind = Some(String::from_utf8_lossy(value).to_lowercase()),
            _ => return syntax(out),
        }
        i += 2;
    }
    let (next, found) = scan_page(shared, cursor, count, &pattern);
    let page: Vec<Bytes> = found
        .into_iter()
        .filter(|k| kind.as_deref().is_none_or(|t| type_name(shared, k) == t))
        .collect();
    out.array(2);
    out.bulk(next.to_string().as_bytes());
    out.array(page.len());
    for k in page {
        out.bulk(&k);
    }
}

/// One page of `SCAN` from `cursor`: about `count` keys looked at, the ones matching
/// `pattern`, and the cursor to resume from (0 at the end; also for a cursor past the end).
fn scan_page(shared: &Shared, cursor: u64, count: usize, pattern: &[u8]) -> (u64, Vec<Bytes>) {
    let db = &shared.db;
    let spaces = db.namespaces();
    let shards: Vec<(&Namespace, usize)> = spaces
        .iter()
        .flat_map(|ns| (0..ns.inner.shard_count()).map(move |s| (ns, s)))
        .collect();
    let (mut bucket, mut slot) = ((cursor >> 32) as usize, cursor as u32);
    let mut found = Vec::new();
    let mut budget = count;
    while let Some(&(ns, shard)) = shards.get(bucket) {
        let mut looked = 0;
        let resume = ns.inner.scan_shard(shard, slot, budget, |k| {
            looked += 1;
            // A key routed to another namespace is invisible (see `Db::owns`).
            if glob_match(pattern, k) && db.owns(ns, k) {
                found.push(Bytes::copy_from_slice(k));
            }
        });
        budget = budget.saturating_sub(looked);
        match resume {
            Some(at) => return ((bucket as u64) << 32 | u64::from(at), found),
            None if budget == 0 => return (((bucket + 1) as u64) << 32, found),
            None => (bucket, slot) = (bucket + 1, 0),
        }
    }
    if bucket == shards.len() {
        // The streams, few (a log topic each), in one page. One that shares its key with a
        // string or a hash was listed with them.
        found.extend(
            streams::keys(shared)
                .into_iter()
                .filter(|k| glob_match(pattern, k) && !db.ns(k).contains(k)),
        );
    }
    (0, found)
}

/// `RANDOMKEY`: a key picked from a namespace (or the streams) in proportion to how many
/// keys each holds, then at random within it; nil when there is none.
pub(crate) fn randomkey(shared: &Shared, out: &mut Out) {
    let db = &shared.db;
    let spaces = db.namespaces();
    let streams = streams::keys(shared);
    let sizes: Vec<usize> = spaces.iter().map(Namespace::len).collect();
    let total = sizes.iter().sum::<usize>() + streams.len();
    let mut rng = super::Rng::new();
    // A few tries: the namespace picked may turn out empty (its entries expired) or the key
    // routed elsewhere (invisible).
    for _ in 0..8 {
        if total == 0 {
            break;
        }
        let mut at = rng.below(total);
        let Some(i) = sizes.iter().position(|&n| {
            let here = at < n;
            at = at.saturating_sub(n);
            here
        }) else {
            return out.bulk(&streams[at]);
        };
        let ns = &spaces[i];
        if let Some(key) = ns.inner.random_key(|n| rng.below(n))
            && db.owns(ns, &key)
        {
            return out.bulk(&key);
        }
    }
    match streams.first() {
        Some(key) => out.bulk(key),
        None => out.null(),
    }
}

/// `RENAME` and `RENAMENX` (`nx`: only onto a key that does not exist, answering 1 or 0).
pub(crate) fn rename(shared: &Shared, args: &[Bytes], out: &mut Out, nx: bool) {
    let db = &shared.db;
    if args.len() != 3 {
        return wrong_args(out, &args[0]);
    }
    let (from, to) = (&args[1], &args[2]);
    let src = db.ns(from);
    let Some((value, ttl)) = value_and_ttl(db, from) else {
        if streams::exists(shared, from) {
            // A stream is a log topic: its entries' ids are its offsets and its groups are
            // named after it, so it is not moved.
            return out.error("ERR RENAME of a stream is not supported");
        }
        return out.error("ERR no such key");
    };
    let done = |out: &mut Out, moved: bool| {
        if nx {
            out.int(i64::from(moved));
        } else {
            out.ok();
        }
    };
    if from == to {
        // As Redis: the key stays; RENAMENX answers 0 (the destination exists).
        return done(out, false);
    }
    if nx && streams::exists(shared, to) {
        return done(out, false);
    }
    // A stream at the destination is replaced, as Redis replaces a value of any type there:
    // deleted first (unless the value does not fit there), so a failed delete moves nothing.
    if !strings::replace_stream(shared, to, &value, out) {
        return;
    }
    match write_unless(db, to, value.clone(), ttl, nx) {
        Ok(true) => {}
        Ok(false) => return done(out, false),
        Err(e) => return out.error(&e),
    }
    // The source goes only as it was read: a write to it in the meantime stays.
    let _ = src.modify(from, |cur| {
        Ok(if cur == Some(&value) {
            Modify::Remove
        } else {
            Modify::Keep
        })
    });
    db.notifier.notify(KeyEvent::RenameFrom, from);
    db.notifier.notify(KeyEvent::RenameTo, to);
    done(out, true);
}

/// The value at `key` and its time to live, read one after the other; `None` if the key is
/// gone by the second read (its TTL passed), rather than a value without its deadline.
fn value_and_ttl(db: &Db, key: &[u8]) -> Option<(Bytes, Option<std::time::Duration>)> {
    let ns = db.ns(key);
    let value = ns.get(key)?;
    let ttl = ns.ttl(key)?;
    Some((value, ttl))
}

/// Writes `value` with `ttl` at `key`, unless `nx` and the key holds a value: checked and
/// written under the key's lock, so two `RENAMENX`/`COPY` onto one free key cannot both
/// write. `Ok(false)` when it was not written; `Err` is the error reply.
fn write_unless(
    db: &Db,
    key: &[u8],
    value: Bytes,
    ttl: Option<std::time::Duration>,
    nx: bool,
) -> Result<bool, String> {
    let change = ttl.map_or(TtlChange::Clear, TtlChange::Set);
    let mut written = false;
    db.ns(key)
        .modify(key, |cur| {
            if nx && cur.is_some() {
                return Ok(Modify::Keep);
            }
            written = true;
            Ok(Modify::Set(value, change))
        })
        .map_err(|e| strings::error_text(&e))?;
    Ok(written)
}

/// `COPY source destination [DB 0] [REPLACE]`: a string or a hash, with its time to live.
/// There is one database, so `DB` takes only 0 (any other index is out of range, as for
/// `SELECT`).
pub(crate) fn copy(shared: &Shared, args: &[Bytes], out: &mut Out) {
    let db = &shared.db;
    if args.len() < 3 {
        return wrong_args(out, &args[0]);
    }
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        let opt = &args[i];
        if opt.eq_ignore_ascii_case(b"replace") {
            replace = true;
        } else if opt.eq_ignore_ascii_case(b"db") && i + 1 < args.len() {
            if !super::database_zero(&args[i + 1], out) {
                return;
            }
            i += 1;
        } else {
            return syntax(out);
        }
        i += 1;
    }
    let (from, to) = (&args[1], &args[2]);
    if from == to {
        return out.error("ERR source and destination objects are the same");
    }
    let Some((value, ttl)) = value_and_ttl(db, from) else {
        if streams::exists(shared, from) {
            return out.error("ERR COPY of a stream is not supported");
        }
        return out.int(0);
    };
    if !replace && streams::exists(shared, to) {
        return out.int(0);
    }
    if !strings::replace_stream(shared, to, &value, out) {
        return;
    }
    match write_unless(db, to, value, ttl, !replace) {
        Ok(true) => {}
        Ok(false) => return out.int(0),
        Err(e) => return out.error(&e),
    }
    db.notifier.notify(KeyEvent::CopyTo, to);
    out.int(1);
}

/// `DBSIZE`: the entries of every namespace (a sum of counters, as Redis's is O(1)), and the
/// streams. As in Redis, a key whose deadline has passed counts until a command touches it or
/// the sweep removes it (within a few seconds: docs/COMPATIBILITY.md); a stream is counted
/// unless a string or hash has its key.
pub(crate) fn dbsize(shared: &Shared, out: &mut Out) {
    let db = &shared.db;
    let cached: usize = db.namespaces().iter().map(Namespace::len).sum();
    let streams = streams::keys(shared)
        .iter()
        .filter(|k| db.ns(k).ttl(k).is_none())
        .count();
    out.int((cached + streams) as i64);
}

/// `FLUSHDB` / `FLUSHALL`: every key goes, streams (their topics and groups) included.
/// `FLUSHDB` and `FLUSHALL` (one database: the same), with Redis's optional `ASYNC` or `SYNC`
/// (both flush at once).
pub(crate) fn flush(shared: &Shared, args: &[Bytes], out: &mut Out) {
    match args {
        [_] => {}
        [_, mode] if mode.eq_ignore_ascii_case(b"async") || mode.eq_ignore_ascii_case(b"sync") => {}
        _ => return syntax(out),
    }
    // A watched key that exists is written by the flush, as Redis counts it (a watched key
    // that does not exist is not): its `EXEC` aborts.
    let touches = &shared.db.notifier.touches;
    if touches.watching() {
        for key in all_keys(shared, b"*") {
            touches.touch(&key);
        }
    }
    for ns in shared.db.namespaces() {
        ns.invalidate_all();
    }
    for key in streams::keys(shared) {
        if let Err(e) = streams::delete(shared, &key) {
            return out.error(&e);
        }
    }
    out.ok();
}
