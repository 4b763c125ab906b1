//! String commands.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};

use super::{float, not_int, parse_i64, syntax, wrong_args};
use crate::cache::{Modify, TtlChange};
use crate::error::{CacheError, Error};
use crate::server::Shared;
use crate::server::db::{Db, WRONGTYPE, encode_str, str_bytes};
use crate::server::notify::KeyEvent;
use crate::server::reply::Out;

/// Runs `f` on the string at `key` atomically; a hash or a stream is `Err(())` and keeps the
/// key.
fn modify_str(
    db: &Db,
    key: &[u8],
    f: impl FnOnce(Option<&[u8]>) -> Result<Modify, CacheError>,
) -> Result<Result<Option<Bytes>, ()>, Error> {
    if db.streams.contains(key) {
        return Ok(Err(()));
    }
    let mut wrong = false;
    // `f` reads the string in place: no reference to the stored value is taken (a clone
    // writes its shared count, and the first clone of a value allocates that count).
    let prev = db
        .ns(key)
        .modify(key, |cur| match cur.map(|c| str_bytes(c)) {
            None => f(None),
            Some(Some(s)) => f(Some(s)),
            Some(None) => {
                wrong = true;
                Ok(Modify::Keep)
            }
        })?;
    if wrong {
        return Ok(Err(()));
    }
    // A string (checked above): its bytes after the type tag, without a clone.
    Ok(Ok(prev.map(|mut b| {
        b.advance(1);
        b
    })))
}

/// Before a write of the string `stored` at `key` that replaces a value of any type there,
/// as Redis's `SET` does: checks that it fits the key's namespace, then deletes the stream of
/// that name, if any. `false` when either failed (the error is written): a value too large
/// changes nothing, and a stream that could not be deleted is not written over.
pub(crate) fn replace_stream(shared: &Shared, key: &[u8], stored: &Bytes, out: &mut Out) -> bool {
    if !shared.db.streams.contains(key) {
        return true;
    }
    if let Err(e) = shared.db.ns(key).check_fits(key, stored) {
        reply_err(out, &e);
        return false;
    }
    match crate::server::streams::delete(shared, key) {
        Ok(_) => true,
        Err(e) => {
            out.error(&e);
            false
        }
    }
}

pub(crate) fn reply_err(out: &mut Out, e: &Error) {
    out.error(&error_text(e));
}

/// The error reply for a failed write: Redis's `OOM` text for a value over the namespace's
/// budget, `ERR` and the error for anything else.
pub(crate) fn error_text(e: &Error) -> String {
    match e {
        Error::Cache(CacheError::TooLarge { .. }) => {
            "OOM command not allowed when used memory > 'maxmemory'.".to_owned()
        }
        other => format!("ERR {other}"),
    }
}

pub(crate) fn get(shared: &Arc<Shared>, args: &[Bytes], out: &mut Out) {
    if args.len() != 2 {
        return wrong_args(out, &args[0]);
    }
    get_key(shared, &args[1], out);
}

/// A command the connection loop runs on borrowed slices of its input buffer, without the
/// argument list of `Bytes` the general path builds (a reference-count write per argument and
/// per drop): the most frequent ones, in their plain forms.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Short {
    /// `GET key`.
    Get,
    /// `SET key value`.
    Set,
    /// `INCR key` (1) or `DECR key` (-1).
    Incr(i64),
    /// `PUBLISH channel message` to a channel that is not durable, with a message small
    /// enough to be copied (as `PUBLISH` copies it).
    Publish,
}

impl Short {
    /// The short form of the command whose arguments are `input[ranges[i]]`, if it has one.
    pub(crate) fn of(shared: &Shared, input: &[u8], ranges: &[Range<usize>]) -> Option<Self> {
        let name = &input[ranges.first()?.clone()];
        match ranges.len() {
            2 if name.eq_ignore_ascii_case(b"get") => Some(Self::Get),
            2 if name.eq_ignore_ascii_case(b"incr") => Some(Self::Incr(1)),
            2 if name.eq_ignore_ascii_case(b"decr") => Some(Self::Incr(-1)),
            3 if name.eq_ignore_ascii_case(b"set") => Some(Self::Set),
            3 if name.eq_ignore_ascii_case(b"publish")
                && ranges[2].len() <= super::pubsub::DETACH_MAX
                && std::str::from_utf8(&input[ranges[1].clone()])
                    .is_ok_and(|c| !shared.channels.is_durable(c)) =>
            {
                // A durable channel's message is logged first (the connection loop awaits
                // that); a channel name that is not text gets `PUBLISH`'s own error.
                Some(Self::Publish)
            }
            _ => None,
        }
    }

    /// Runs it; the caller has checked what `exec` checks first (authenticated, no ACL user,
    /// not subscribed).
    pub(crate) fn run(
        self,
        shared: &Arc<Shared>,
        input: &[u8],
        ranges: &[Range<usize>],
        out: &mut Out,
    ) {
        let arg = |i: usize| &input[ranges[i].clone()];
        match self {
            Self::Get => get_key(shared, arg(1), out),
            Self::Set => set_plain(shared, arg(1), arg(2), out),
            Self::Incr(by) => incr_by(&shared.db, arg(1), by, out),
            Self::Publish => {
                // Checked as text by `of`.
                let channel = std::str::from_utf8(arg(1)).unwrap_or_default();
                let n = shared.channels.pubsub().publish_copied(channel, arg(2));
                out.int(n as i64);
            }
        }
    }
}

/// `SET key value` without options: replaces a value of any type, as in Redis, without
/// reading it.
fn set_plain(shared: &Shared, key: &[u8], value: &[u8], out: &mut Out) {
    let db = &shared.db;
    let stored = encode_str(value);
    if !replace_stream(shared, key, &stored, out) {
        return;
    }
    match db
        .ns(key)
        .modify(key, |_| Ok(Modify::Set(stored, TtlChange::Clear)))
    {
        Ok(_) => {
            db.notifier.notify(KeyEvent::Set, key);
            out.ok();
        }
        Err(e) => reply_err(out, &e),
    }
}

/// `GET key`.
fn get_key(shared: &Arc<Shared>, key: &[u8], out: &mut Out) {
    // The reply is written from the stored bytes under the shard's read lock: no reference
    // to the value is taken (a clone would write its shared count on every GET).
    let found = shared
        .db
        .ns(key)
        .get_with(key, |raw| str_bytes(raw).map(|v| out.bulk(v)).is_some());
    match found {
        None if shared.db.streams.contains(key) => out.error(WRONGTYPE),
        None => out.null(),
        Some(true) => {}
        Some(false) => out.error(WRONGTYPE),
    }
}

fn now_ms(db: &Db) -> u64 {
    db.cache.clock().now_millis()
}

/// Parses an expiry option value into a TTL; `Err` replies already written.
fn ttl_from(
    db: &Db,
    unit: &str,
    v: &[u8],
    cmd: &str,
    out: &mut Out,
) -> Result<Option<Duration>, ()> {
    ttl_value(db, unit, v, cmd).map_err(|e| out.error(&e))
}

/// The TTL an `EX`/`PX`/`EXAT`/`PXAT` argument asks for, or the error Redis gives for it.
fn ttl_value(db: &Db, unit: &str, v: &[u8], cmd: &str) -> Result<Option<Duration>, String> {
    let Some(n) = parse_i64(v) else {
        return Err("ERR value is not an integer or out of range".to_owned());
    };
    // As Redis: positive, and a deadline that fits in milliseconds since the epoch.
    let ms = if n <= 0 {
        None
    } else {
        let seconds = matches!(unit, "ex" | "exat");
        let absolute = matches!(unit, "exat" | "pxat");
        super::deadline_ms(n, seconds, absolute, now_ms(db) as i64)
    };
    match ms {
        None => Err(format!("ERR invalid expire time in '{cmd}' command")),
        // A deadline already passed: the key is written and gone at once.
        Some(ms) if ms <= 0 => Ok(Some(Duration::ZERO)),
        Some(ms) => Ok(Some(super::stored_ttl(ms as u64))),
    }
}

pub(crate) fn set(shared: &Shared, args: &[Bytes], out: &mut Out) {
    let db = &shared.db;
    if args.len() < 3 {
        return wrong_args(out, &args[0]);
    }
    if args.len() == 3 {
        return set_plain(shared, &args[1], &args[2], out);
    }
    let (key, value) = (&args[1], &args[2]);
    let (mut nx, mut xx, mut get, mut keep) = (false, false, false, false);
    // The options' syntax first, then the time, as Redis checks them.
    let mut ttl_arg: Option<(String, &Bytes)> = None;
    let mut i = 3;
    while i < args.len() {
        let opt = String::from_utf8_lossy(&args[i]).to_lowercase();
        match opt.as_str() {
            "nx" => nx = true,
            "xx" => xx = true,
            "get" => get = true,
            "keepttl" => keep = true,
            // The same unit again replaces the time (Redis reads only the last one).
            "ex" | "px" | "exat" | "pxat"
                if i + 1 < args.len() && ttl_arg.as_ref().is_none_or(|(u, _)| *u == opt) =>
            {
                ttl_arg = Some((opt, &args[i + 1]));
                i += 1;
            }
            _ => return syntax(out),
        }
        i += 1;
    }
    if (nx && xx) || (keep && ttl_arg.is_some()) {
        return syntax(out);
    }
    let ttl = match ttl_arg {
        None => None,
        Some((unit, v)) => match ttl_from(db, &unit, v, "set", out) {
            Ok(t) => t,
            Err(()) => return,
        },
    };
    let stored = encode_str(value);
    let mut written = false;
    // A stream of this name counts for NX and XX, and a write replaces it: deleted first,
    // since with a stream there the write happens unless NX (`GET` answers WRONGTYPE below).
    let stream = db.streams.contains(key);
    if stream && !nx && !get && !replace_stream(shared, key, &stored, out) {
        return;
    }
    let decide = |exists: bool, written: &mut bool| {
        let exists = exists || stream;
        if (nx && exists) || (xx && !exists) {
            return Modify::Keep;
        }
        *written = true;
        match ttl {
            Some(t) if t.is_zero() => Modify::Remove,
            Some(t) => Modify::Set(stored, TtlChange::Set(t)),
            None if keep => Modify::Set(stored, TtlChange::Keep),
            None => Modify::Set(stored, TtlChange::Clear),
        }
    };
    let r = if get {
        // Only `GET` reads the old value, and only then does its type matter (WRONGTYPE).
        modify_str(db, key, |cur| Ok(decide(cur.is_some(), &mut written)))
    } else {
        // A plain SET replaces a value of any type, as in Redis, without reading it.
        db.ns(key)
            .modify(key, |cur| Ok(decide(cur.is_some(), &mut written)))
            .map(|_| Ok(None))
    };
    if written && matches!(r, Ok(Ok(_))) {
        db.notifier.notify(KeyEvent::Set, key);
        if ttl.is_some_and(|t| !t.is_zero()) {
            db.notifier.notify(KeyEvent::Expire, key);
        }
    }
    match r {
        Err(e) => reply_err(out, &e),
        Ok(Err(())) => out.error(WRONGTYPE),
        Ok(Ok(prev)) if get => out.opt_bulk(prev.as_deref()),
        Ok(Ok(_)) if written => out.ok(),
        Ok(Ok(_)) => out.null(),
    }
}

pub(crate) fn set_variant(shared: &Shared, cmd: &str, args: &[Bytes], out: &mut Out) {
    let db = &shared.db;
    let want = if cmd == "setnx" { 3 } else { 4 };
    if args.len() != want {
        return wrong_args(out, &args[0]);
    }
    if cmd == "setnx" {
        let stored = encode_str(&args[2]);
        let mut written = false;
        match modify_str(db, &args[1], |cur| {
            if cur.is_some() {
                return Ok(Modify::Keep);
            }
            written = true;
            Ok(Modify::Set(stored, TtlChange::Clear))
        }) {
            Err(e) => reply_err(out, &e),
            Ok(Err(())) => out.int(0),
            Ok(Ok(_)) => {
                if written {
                    db.notifier.notify(KeyEvent::Set, &args[1]);
                }
                out.int(i64::from(written));
            }
        }
        return;
    }
    let unit = if cmd == "setex" { "ex" } else { "px" };
    let ttl = match ttl_from(db, unit, &args[2], cmd, out) {
        Ok(Some(t)) => t,
        _ => return,
    };
    let key = &args[1];
    let stored = encode_str(&args[3]);
    if !replace_stream(shared, key, &stored, out) {
        return;
    }
    match db
        .ns(key)
        .modify(key, |_| Ok(Modify::Set(stored, TtlChange::Set(ttl))))
    {
        Ok(_) => {
            db.notifier.notify(KeyEvent::Set, key);
            db.notifier.notify(KeyEvent::Expire, key);
            out.ok();
        }
        Err(e) => reply_err(out, &e),
    }
}

pub(crate) fn mget(shared: &Arc<Shared>, args: &[Bytes], out: &mut Out) {
    if args.len() < 2 {
        return wrong_args(out, &args[0]);
    }
    out.array(args.len() - 1);
    for key in &args[1..] {
        // Written from the stored bytes under the read lock, as GET. A key of another type
        // reads as nil, as in Redis.
        let written = shared
            .db
            .ns(key)
            .get_with(key, |raw| str_bytes(raw).map(|v| out.bulk(v)).is_some());
        if written != Some(true) {
            out.null();
        }
    }
}

pub(crate) fn mset(shared: &Shared, cmd: &str, args: &[Bytes], out: &mut Out) {
    let db = &shared.db;
    if args.len() < 3 || args.len().is_multiple_of(2) {
        return wrong_args(out, &args[0]);
    }
    if cmd == "msetnx"
        && args[1..]
            .chunks(2)
            .any(|kv| db.ns(&kv[0]).contains(&kv[0]) || db.streams.contains(&kv[0]))
    {
        return out.int(0);
    }
    let pairs: Vec<(&Bytes, Bytes)> = args[1..]
        .chunks(2)
        .map(|kv| (&kv[0], encode_str(&kv[1])))
        .collect();
    // A value too large for its namespace refuses the whole command before any key is set.
    if let Some(e) = pairs
        .iter()
        .find_map(|(k, v)| db.ns(k).check_fits(k, v).err())
    {
        return reply_err(out, &e);
    }
    for (key, stored) in pairs {
        if !replace_stream(shared, key, &stored, out) {
            return;
        }
        if let Err(e) = db
            .ns(key)
            .modify(key, |_| Ok(Modify::Set(stored, TtlChange::Clear)))
        {
            return reply_err(out, &e);
        }
        db.notifier.notify(KeyEvent::Set, key);
    }
    if cmd == "msetnx" {
        out.int(1)
    } else {
        out.ok()
    }
}

pub(crate) fn get_and(db: &Db, cmd: &str, args: &[Bytes], out: &mut Out) {
    let key = match (cmd, args.len()) {
        ("getset", 3) | ("getdel", 2) => &args[1],
        ("getex", n) if n >= 2 => &args[1],
        _ => return wrong_args(out, &args[0]),
    };
    let mut change = None;
    // GETEX's time is checked once the key is found a string, as Redis does: a missing key
    // answers nil whatever the time says.
    let mut bad_time = None;
    if cmd == "getex" {
        // One of PERSIST, EX, PX, EXAT, PXAT, which may come again (Redis reads the last
        // time given).
        let mut chosen: Option<(String, Option<&Bytes>)> = None;
        let mut i = 2;
        while i < args.len() {
            let opt = String::from_utf8_lossy(&args[i]).to_lowercase();
            if chosen.as_ref().is_some_and(|(o, _)| *o != opt) {
                return syntax(out);
            }
            match opt.as_str() {
                "persist" => chosen = Some((opt, None)),
                "ex" | "px" | "exat" | "pxat" if i + 1 < args.len() => {
                    chosen = Some((opt, Some(&args[i + 1])));
                    i += 1;
                }
                _ => return syntax(out),
            }
            i += 1;
        }
        match chosen {
            None => {}
            Some((_, None)) => change = Some(TtlChange::Clear),
            Some((unit, Some(v))) => match ttl_value(db, &unit, v, "getex") {
                Ok(Some(t)) => change = Some(TtlChange::Set(t)),
                Ok(None) => {}
                Err(e) => bad_time = Some(e),
            },
        }
    }
    // PERSIST is an event only when it removes a TTL.
    let had_ttl =
        matches!(change, Some(TtlChange::Clear)) && db.ns(key).ttl(key).flatten().is_some();
    let mut refused = None;
    let r = modify_str(db, key, |cur| {
        if cur.is_some() && bad_time.is_some() {
            refused = bad_time.take();
            return Ok(Modify::Keep);
        }
        Ok(match (cmd, cur) {
            ("getset", _) => Modify::Set(encode_str(&args[2]), TtlChange::Clear),
            ("getdel", Some(_)) => Modify::Remove,
            ("getex", Some(v)) => match change {
                Some(TtlChange::Set(t)) if t.is_zero() => Modify::Remove,
                Some(c) => Modify::Set(encode_str(v), c),
                None => Modify::Keep,
            },
            _ => Modify::Keep,
        })
    });
    if let Some(e) = refused {
        return out.error(&e);
    }
    match r {
        Err(e) => reply_err(out, &e),
        Ok(Err(())) => out.error(WRONGTYPE),
        Ok(Ok(prev)) => {
            match (cmd, &prev, change) {
                ("getset", _, _) => db.notifier.notify(KeyEvent::Set, key),
                ("getdel", Some(_), _) => db.notifier.notify(KeyEvent::Del, key),
                ("getex", Some(_), Some(TtlChange::Set(t))) if t.is_zero() => {
                    db.notifier.notify(KeyEvent::Del, key);
                }
                ("getex", Some(_), Some(TtlChange::Set(_))) => {
                    db.notifier.notify(KeyEvent::Expire, key);
                }
                ("getex", Some(_), Some(TtlChange::Clear)) if had_ttl => {
                    db.notifier.notify(KeyEvent::Persist, key);
                }
                _ => {}
            }
            out.opt_bulk(prev.as_deref());
        }
    }
}

pub(crate) fn incr(db: &Db, cmd: &str, args: &[Bytes], out: &mut Out) {
    let by = match (cmd, args.len()) {
        ("incr", 2) => 1,
        ("decr", 2) => -1,
        ("incrby" | "decrby", 3) => match parse_i64(&args[2]) {
            Some(n) if cmd == "incrby" => n,
            Some(n) => match n.checked_neg() {
                Some(n) => n,
                None => return out.error("ERR decrement would overflow"),
            },
            None => return not_int(out),
        },
        _ => return wrong_args(out, &args[0]),
    };
    incr_by(db, &args[1], by, out);
}

/// Adds `by` to the integer at `key` (0 when absent) and replies with the sum, or with Redis's
/// error for a value that is not an integer or a sum that overflows.
fn incr_by(db: &Db, key: &[u8], by: i64, out: &mut Out) {
    let mut result = Err("ERR value is not an integer or out of range");
    let r = modify_str(db, key, |cur| {
        let n = match cur {
            None => 0,
            Some(v) => match parse_i64(v) {
                Some(n) => n,
                None => return Ok(Modify::Keep),
            },
        };
        let Some(sum) = n.checked_add(by) else {
            result = Err("ERR increment or decrement would overflow");
            return Ok(Modify::Keep);
        };
        result = Ok(sum);
        let mut b = itoa::Buffer::new();
        Ok(Modify::Set(
            encode_str(b.format(sum).as_bytes()),
            TtlChange::Keep,
        ))
    });
    match (r, result) {
        (Err(e), _) => reply_err(out, &e),
        (Ok(Err(())), _) => out.error(WRONGTYPE),
        (Ok(Ok(_)), Ok(n)) => {
            db.notifier.notify(KeyEvent::IncrBy, key);
            out.int(n);
        }
        (Ok(Ok(_)), Err(e)) => out.error(e),
    }
}

pub(crate) fn incr_float(db: &Db, args: &[Bytes], out: &mut Out) {
    if args.len() != 3 {
        return wrong_args(out, &args[0]);
    }
    // Checked after the key's type and value, as Redis does (the same error for both).
    let mut result = Err("ERR value is not a valid float");
    let r = modify_str(db, &args[1], |cur| {
        let sum = match float::add(cur, &args[2]) {
            Ok(sum) => sum,
            Err(float::AddError::NotFinite) => {
                result = Err("ERR increment would produce NaN or Infinity");
                return Ok(Modify::Keep);
            }
            Err(_) => return Ok(Modify::Keep),
        };
        let stored = encode_str(sum.as_bytes());
        result = Ok(sum);
        Ok(Modify::Set(stored, TtlChange::Keep))
    });
    match (r, result) {
        (Err(e), _) => reply_err(out, &e),
        (Ok(Err(())), _) => out.error(WRONGTYPE),
        (Ok(Ok(_)), Ok(s)) => {
            db.notifier.notify(KeyEvent::IncrByFloat, &args[1]);
            out.bulk(s.as_bytes());
        }
        (Ok(Ok(_)), Err(e)) => out.error(e),
    }
}

pub(crate) fn append(db: &Db, cmd: &str, args: &[Bytes], out: &mut Out) {
    let want = if cmd == "append" { 3 } else { 4 };
    if args.len() != want {
        return wrong_args(out, &args[0]);
    }
    let piece = args.last().cloned().unwrap_or_default();
    let offset = if cmd == "setrange" {
        match parse_i64(&args[2]) {
            Some(n) if n < 0 => return out.error("ERR offset is out of range"),
            Some(n) => Some(n as u64),
            None => return not_int(out),
        }
    } else {
        None
    };
    let mut len = 0;
    let mut too_long = false;
    // The size is checked once the key is found a string (or missing), as Redis does.
    let r = modify_str(db, &args[1], |cur| {
        let end = match offset {
            None => cur.map_or(0, <[u8]>::len) as u64,
            Some(_) if piece.is_empty() => 0,
            Some(off) => off,
        };
        if end + piece.len() as u64 > STRING_MAX as u64 {
            too_long = true;
            return Ok(Modify::Keep);
        }
        let offset = offset.map(|o| o as usize);
        let mut v = cur.map(|b| b.to_vec()).unwrap_or_default();
        match offset {
            None => v.extend_from_slice(&piece),
            Some(off) => {
                if piece.is_empty() {
                    len = v.len();
                    return Ok(Modify::Keep);
                }
                if v.len() < off + piece.len() {
                    v.resize(off + piece.len(), 0);
                }
                v[off..off + piece.len()].copy_from_slice(&piece);
            }
        }
        len = v.len();
        Ok(Modify::Set(encode_str(&v), TtlChange::Keep))
    });
    match r {
        Err(e) => reply_err(out, &e),
        Ok(Err(())) => out.error(WRONGTYPE),
        Ok(Ok(_)) if too_long => out.error(TOO_LONG),
        Ok(Ok(_)) => {
            let event = if offset.is_some() {
                KeyEvent::SetRange
            } else {
                KeyEvent::Append
            };
            // An empty SETRANGE changes nothing and is no event, as in Redis.
            if !(offset.is_some() && piece.is_empty()) {
                db.notifier.notify(event, &args[1]);
            }
            out.int(len as i64);
        }
    }
}

/// The longest string `APPEND` and `SETRANGE` make: Redis's default `proto-max-bulk-len`.
const STRING_MAX: usize = 512 * 1024 * 1024;

const TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

pub(crate) fn read_part(db: &Db, cmd: &str, args: &[Bytes], out: &mut Out) {
    let want = if cmd == "strlen" { 2 } else { 4 };
    if args.len() != want {
        return wrong_args(out, &args[0]);
    }
    let key = &args[1];
    let range = if cmd == "strlen" {
        None
    } else {
        let (Some(start), Some(end)) = (parse_i64(&args[2]), parse_i64(&args[3])) else {
            return not_int(out);
        };
        Some((start, end))
    };
    // Answered from the stored bytes under the read lock: no copy or reference of the value.
    let answer = |v: &[u8], out: &mut Out| {
        let Some((start, end)) = range else {
            return out.int(v.len() as i64);
        };
        if start < 0 && end < 0 && start > end {
            // Redis answers this before it counts from the end (`GETRANGE k -1 -5`).
            return out.bulk(b"");
        }
        let len = v.len() as i64;
        let norm = |i: i64| if i < 0 { (len + i).max(0) } else { i };
        let (s, e) = (norm(start), norm(end).min(len - 1));
        if len == 0 || s > e || s >= len {
            return out.bulk(b"");
        }
        out.bulk(&v[s as usize..=e as usize]);
    };
    match db
        .ns(key)
        .get_with(key, |raw| str_bytes(raw).map(|v| answer(v, out)))
    {
        None if db.streams.contains(key) => out.error(WRONGTYPE),
        None => answer(b"", out),
        Some(Some(())) => {}
        Some(None) => out.error(WRONGTYPE),
    }
}
