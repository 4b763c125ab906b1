//! Hash commands (sessions live in them). A hash is stored whole; each write rewrites it
//! atomically under the key's shard lock. Reads borrow the fields from the stored bytes under
//! the shard's lock (a large hash's index finds one field by binary search) and a write of one
//! field copies the bytes around the change: no allocation per field. A multi-field `HSET`
//! rebuilds the hash from the list of its fields.

use std::borrow::Cow;

use bytes::Bytes;

use super::strings::reply_err;
use super::{float, not_int, parse_cursor, parse_i64, syntax, wrong_args};
use crate::cache::{Modify, TtlChange};
use crate::glob::glob_match;
use crate::server::db::{
    Db, WRONGTYPE, encode_hash, hash_fields, hash_get, hash_len, hash_remove, hash_set,
};
use crate::server::notify::KeyEvent;
use crate::server::reply::Out;

/// A hash being changed: fields and values borrowed from the stored bytes, or owned when a
/// command gives new ones.
type Fields<'a> = Vec<(Cow<'a, [u8]>, Cow<'a, [u8]>)>;

/// Runs `f` on the stored bytes at `key` (`None` when absent) under its shard's lock and
/// applies the change it returns; `f` answers `None` for bytes that are not a hash. `Err(())`
/// for another type (a string or a stream).
fn modify_stored(
    db: &Db,
    key: &[u8],
    f: impl FnOnce(Option<&[u8]>) -> Option<Modify>,
) -> Result<Result<(), ()>, crate::Error> {
    if db.streams.contains(key) {
        return Ok(Err(()));
    }
    let mut wrong = false;
    db.ns(key).modify(key, |cur| {
        Ok(f(cur.map(|c| &c[..])).unwrap_or_else(|| {
            wrong = true;
            Modify::Keep
        }))
    })?;
    Ok(if wrong { Err(()) } else { Ok(()) })
}

/// Runs `f` on the list of the fields of the hash at `key` (empty when absent) and stores the
/// hash rebuilt from it when `f` says it changed; `Err(())` for another type.
fn modify_hash(
    db: &Db,
    key: &[u8],
    f: impl FnOnce(&mut Fields<'_>) -> bool,
) -> Result<Result<(), ()>, crate::Error> {
    modify_stored(db, key, |cur| {
        let mut fields: Fields<'_> = match cur {
            None => Vec::new(),
            Some(raw) => hash_fields(raw)?
                .into_iter()
                .map(|(f, v)| (Cow::Borrowed(f), Cow::Borrowed(v)))
                .collect(),
        };
        if !f(&mut fields) {
            return Some(Modify::Keep);
        }
        if fields.is_empty() {
            return Some(Modify::Remove);
        }
        let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|(f, v)| (&**f, &**v)).collect();
        Some(Modify::Set(encode_hash(&pairs), TtlChange::Keep))
    })
}

/// Runs `f` on the value of `field` in the hash at `key` (`None` when either is absent) and
/// stores the value it returns, if any, with one copy of the stored hash around the change;
/// `Err(())` for another type (a string or a stream).
fn modify_field(
    db: &Db,
    key: &[u8],
    field: &[u8],
    f: impl FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
) -> Result<Result<(), ()>, crate::Error> {
    modify_stored(db, key, |cur| {
        let Some(cur) = cur else {
            return Some(f(None).map_or(Modify::Keep, |v| {
                Modify::Set(encode_hash(&[(field, &v[..])]), TtlChange::Keep)
            }));
        };
        Some(match f(hash_get(cur, field)?) {
            Some(v) => Modify::Set(hash_set(cur, field, &v)?.0, TtlChange::Keep),
            None => Modify::Keep,
        })
    })
}

/// Runs `f` on the fields of the hash at `key`, borrowed under its shard's lock (none when
/// the key is absent); `Err(())` for a string or a stream.
fn with_hash<T>(db: &Db, key: &[u8], mut f: impl FnMut(&[(&[u8], &[u8])]) -> T) -> Result<T, ()> {
    match db
        .ns(key)
        .get_with(key, |raw| hash_fields(raw).map(|fields| f(&fields)))
    {
        Some(Some(t)) => Ok(t),
        Some(None) => Err(()),
        None if db.streams.contains(key) => Err(()),
        None => Ok(f(&[])),
    }
}

/// The most pairs an `HSET` sets one at a time, each copying the stored hash around its
/// change; more are set on the list of fields, and the hash rebuilt once.
const PAIRS_SET_IN_PLACE: usize = 16;

pub(crate) fn hset(db: &Db, cmd: &str, args: &[Bytes], out: &mut Out) {
    if args.len() < 4 || !args.len().is_multiple_of(2) || (cmd == "hsetnx" && args.len() != 4) {
        return wrong_args(out, &args[0]);
    }
    let key = &args[1];
    let pairs = &args[2..];
    let (mut added, mut set) = (0, true);
    let r = if cmd == "hsetnx" {
        modify_field(db, key, &pairs[0], |old| {
            set = old.is_none();
            added = i64::from(set);
            set.then(|| pairs[1].to_vec())
        })
    } else if pairs.len() / 2 <= PAIRS_SET_IN_PLACE {
        set_in_place(db, key, pairs, &mut added)
    } else {
        modify_hash(db, key, |fields| {
            for fv in pairs.chunks(2) {
                match fields.iter_mut().find(|(f, _)| **f == fv[0][..]) {
                    Some(slot) => slot.1 = Cow::Owned(fv[1].to_vec()),
                    None => {
                        fields.push((Cow::Owned(fv[0].to_vec()), Cow::Owned(fv[1].to_vec())));
                        added += 1;
                    }
                }
            }
            true
        })
    };
    match r {
        Err(e) => reply_err(out, &e),
        Ok(Err(())) => out.error(WRONGTYPE),
        Ok(Ok(())) => {
            if set {
                db.notifier.notify(KeyEvent::HSet, key);
            }
            if cmd == "hmset" {
                out.ok();
            } else {
                out.int(added);
            }
        }
    }
}

/// Sets `pairs` (field, value, …) in the hash at `key` one at a time, each a copy of the stored
/// bytes around its change (a later value of a repeated field wins, as in Redis), counting the
/// new fields in `added`; `Err(())` for another type.
fn set_in_place(
    db: &Db,
    key: &[u8],
    pairs: &[Bytes],
    added: &mut i64,
) -> Result<Result<(), ()>, crate::Error> {
    modify_stored(db, key, |cur| {
        let empty;
        let mut base: &[u8] = match cur {
            Some(cur) => cur,
            None => {
                empty = encode_hash(&[]);
                &empty
            }
        };
        let mut raw = Bytes::new();
        for fv in pairs.chunks(2) {
            let (next, new) = hash_set(base, &fv[0], &fv[1])?;
            *added += i64::from(new);
            raw = next;
            base = &raw;
        }
        Some(Modify::Set(raw, TtlChange::Keep))
    })
}

/// Runs `f` on the stored bytes of the hash at `key` under its shard's lock (`None` when the
/// key is absent); `Err(())` for a string or a stream.
fn with_hash_bytes<T>(db: &Db, key: &[u8], mut f: impl FnMut(Option<&[u8]>) -> T) -> Result<T, ()> {
    match db
        .ns(key)
        .get_with(key, |raw| hash_len(raw).is_some().then(|| f(Some(raw))))
    {
        Some(Some(t)) => Ok(t),
        Some(None) => Err(()),
        None if db.streams.contains(key) => Err(()),
        None => Ok(f(None)),
    }
}

pub(crate) fn read(db: &Db, cmd: &str, args: &[Bytes], out: &mut Out) {
    let arity_ok = match cmd {
        "hget" | "hexists" | "hstrlen" => args.len() == 3,
        "hmget" => args.len() >= 3,
        _ => args.len() == 2,
    };
    if !arity_ok {
        return wrong_args(out, &args[0]);
    }
    // The commands that look at a few fields scan the stored bytes for them.
    if matches!(cmd, "hget" | "hexists" | "hstrlen" | "hmget" | "hlen") {
        let done = with_hash_bytes(db, &args[1], |raw| {
            let find = |name: &[u8]| raw.and_then(|r| hash_get(r, name).flatten());
            match cmd {
                "hget" => out.opt_bulk(find(&args[2])),
                "hexists" => out.int(i64::from(find(&args[2]).is_some())),
                "hstrlen" => out.int(find(&args[2]).map_or(0, |v| v.len() as i64)),
                "hlen" => out.int(raw.and_then(hash_len).map_or(0, |n| n as i64)),
                _ => {
                    out.array(args.len() - 2);
                    for name in &args[2..] {
                        out.opt_bulk(find(name));
                    }
                }
            }
        });
        if done.is_err() {
            out.error(WRONGTYPE);
        }
        return;
    }
    let done = with_hash(db, &args[1], |fields| match cmd {
        "hkeys" | "hvals" => {
            out.array(fields.len());
            for (f, v) in fields {
                out.bulk(if cmd == "hkeys" { f } else { v });
            }
        }
        _ => {
            out.map(fields.len());
            for (f, v) in fields {
                out.bulk(f);
                out.bulk(v);
            }
        }
    });
    if done.is_err() {
        out.error(WRONGTYPE);
    }
}

pub(crate) fn hdel(db: &Db, args: &[Bytes], out: &mut Out) {
    if args.len() < 3 {
        return wrong_args(out, &args[0]);
    }
    let key = &args[1];
    let (mut removed, mut emptied) = (0, false);
    let r = modify_stored(db, key, |cur| {
        let Some(cur) = cur else {
            return Some(Modify::Keep);
        };
        let (n, left) = hash_remove(cur, &args[2..])?;
        removed = n;
        emptied = n > 0 && left.is_none();
        Some(match left {
            Some(raw) => Modify::Set(raw, TtlChange::Keep),
            None if emptied => Modify::Remove,
            None => Modify::Keep,
        })
    });
    match r {
        Err(e) => reply_err(out, &e),
        Ok(Err(())) => out.error(WRONGTYPE),
        Ok(Ok(())) => {
            if removed > 0 {
                db.notifier.notify(KeyEvent::HDel, key);
                if emptied {
                    // The last field gone takes the key with it.
                    db.notifier.notify(KeyEvent::Del, key);
                }
            }
            out.int(removed as i64);
        }
    }
}

pub(crate) fn hincrby(db: &Db, args: &[Bytes], out: &mut Out) {
    if args.len() != 4 {
        return wrong_args(out, &args[0]);
    }
    let Some(by) = parse_i64(&args[3]) else {
        return not_int(out);
    };
    // The sum, or Redis's error for a value that is not an integer or a sum that overflows.
    let mut result = Err("ERR hash value is not an integer");
    // A new field starts at 0.
    let r = modify_field(db, &args[1], &args[2], |old| {
        result = parse_i64(old.unwrap_or(b"0")).map_or(result, |n| {
            n.checked_add(by)
                .ok_or("ERR increment or decrement would overflow")
        });
        result.ok().map(|n| n.to_string().into_bytes())
    });
    match (r, result) {
        (Err(e), _) => reply_err(out, &e),
        (Ok(Err(())), _) => out.error(WRONGTYPE),
        (Ok(Ok(())), Ok(n)) => {
            db.notifier.notify(KeyEvent::HIncrBy, &args[1]);
            out.int(n);
        }
        (Ok(Ok(())), Err(e)) => out.error(e),
    }
}

pub(crate) fn hincrbyfloat(db: &Db, args: &[Bytes], out: &mut Out) {
    if args.len() != 4 {
        return wrong_args(out, &args[0]);
    }
    // The increment is checked before the key is looked at, as Redis does.
    match float::check(&args[3]) {
        float::Float::Invalid => return out.error("ERR value is not a valid float"),
        float::Float::Infinite => return out.error("ERR value is NaN or Infinity"),
        float::Float::Finite => {}
    }
    let mut result = Err("ERR hash value is not a float");
    let r = modify_field(db, &args[1], &args[2], |old| {
        match float::add(Some(old.unwrap_or(b"0")), &args[3]) {
            Ok(sum) => {
                let bytes = sum.clone().into_bytes();
                result = Ok(sum);
                Some(bytes)
            }
            Err(float::AddError::NotFinite) => {
                result = Err("ERR increment would produce NaN or Infinity");
                None
            }
            Err(_) => None,
        }
    });
    match (r, result) {
        (Err(e), _) => reply_err(out, &e),
        (Ok(Err(())), _) => out.error(WRONGTYPE),
        (Ok(Ok(())), Ok(s)) => {
            db.notifier.notify(KeyEvent::HIncrByFloat, &args[1]);
            out.bulk(s.as_bytes());
        }
        (Ok(Ok(())), Err(e)) => out.error(e),
    }
}

/// `HSCAN key cursor [MATCH pattern] [COUNT n] [NOVALUES]`. A hash is stored whole, so the
/// first call returns every matching field and cursor 0, as Redis does for a small hash
/// (COUNT is checked and otherwise a hint). Any cursor gets the whole hash, as Redis answers
/// for a small hash: this never hands out a non-zero one.
pub(crate) fn hscan(db: &Db, args: &[Bytes], out: &mut Out) {
    if args.len() < 3 {
        return wrong_args(out, &args[0]);
    }
    if parse_cursor(&args[2]).is_none() {
        return out.error("ERR invalid cursor");
    }
    // A missing key answers an empty page and a wrong type WRONGTYPE before the options are
    // read, as in Redis.
    let done = with_hash(db, &args[1], |fields| {
        if fields.is_empty() {
            out.array(2);
            out.bulk(b"0");
            return out.array(0);
        }
        let (mut pattern, mut values) = (None, true);
        let mut i = 3;
        while i < args.len() {
            match String::from_utf8_lossy(&args[i]).to_lowercase().as_str() {
                "match" if i + 1 < args.len() => pattern = Some(&args[i + 1]),
                "count" if i + 1 < args.len() => match parse_i64(&args[i + 1]) {
                    Some(n) if n > 0 => {}
                    Some(_) => return syntax(out),
                    None => return not_int(out),
                },
                "novalues" => {
                    values = false;
                    i += 1;
                    continue;
                }
                _ => return syntax(out),
            }
            i += 2;
        }
        let page: Vec<&(&[u8], &[u8])> = fields
            .iter()
            .filter(|(f, _)| pattern.is_none_or(|p| glob_match(p, f)))
            .collect();
        out.array(2);
        out.bulk(b"0");
        out.array(page.len() * if values { 2 } else { 1 });
        for (f, v) in page {
            out.bulk(f);
            if values {
                out.bulk(v);
            }
        }
    });
    if done.is_err() {
        out.error(WRONGTYPE);
    }
}

/// The most fields a negative `HRANDFIELD` count may ask for (they may repeat, so a hash of
/// one field could otherwise fill any reply).
const MAX_REPEATED_PICKS: i64 = 1 << 20;

/// `HRANDFIELD key [count [WITHVALUES]]`, as Redis 7 answers it: one field (nil for no hash)
/// without a count; with one, up to `count` distinct fields (all of them once `count` reaches
/// the hash's size), or exactly `-count` fields that may repeat for a negative count. The
/// count is checked before the key's type, as Redis checks it.
pub(crate) fn hrandfield(db: &Db, args: &[Bytes], out: &mut Out) {
    if args.len() < 2 {
        return wrong_args(out, &args[0]);
    }
    let mut count = None;
    let mut with_values = false;
    if let Some(c) = args.get(2) {
        let Some(n) = parse_i64(c) else {
            return not_int(out);
        };
        if n == i64::MIN {
            return out.error(
                "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
            );
        }
        match &args[3..] {
            [] => {}
            [w] if w.eq_ignore_ascii_case(b"withvalues") => with_values = true,
            _ => return syntax(out),
        }
        if with_values && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&n) {
            return out.error("ERR value is out of range");
        }
        if n < -MAX_REPEATED_PICKS {
            // Redis would start a reply of that many fields and never end it.
            return out.error(&format!(
                "ERR a negative count asks for at most {MAX_REPEATED_PICKS} fields"
            ));
        }
        count = Some(n);
    }
    let mut rng = super::Rng::new();
    let done = with_hash(db, &args[1], |fields| {
        let Some(count) = count else {
            if fields.is_empty() {
                return out.null();
            }
            return out.bulk(fields[rng.below(fields.len())].0);
        };
        let picks: Vec<usize> = if count >= 0 {
            let n = usize::try_from(count).unwrap_or(usize::MAX);
            if n >= fields.len() {
                (0..fields.len()).collect()
            } else {
                // The first `n` of a partial Fisher–Yates shuffle: distinct fields.
                let mut order: Vec<usize> = (0..fields.len()).collect();
                for i in 0..n {
                    let j = i + rng.below(fields.len() - i);
                    order.swap(i, j);
                }
                order.truncate(n);
                order
            }
        } else if fields.is_empty() {
            Vec::new()
        } else {
            let n = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
            (0..n).map(|_| rng.below(fields.len())).collect()
        };
        if with_values && out.resp3 {
            out.array(picks.len());
            for i in picks {
                out.array(2);
                out.bulk(fields[i].0);
                out.bulk(fields[i].1);
            }
        } else {
            out.array(picks.len() * if with_values { 2 } else { 1 });
            for i in picks {
                out.bulk(fields[i].0);
                if with_values {
                    out.bulk(fields[i].1);
                }
            }
        }
    });
    if done.is_err() {
        out.error(WRONGTYPE);
    }
}
