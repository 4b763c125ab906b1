//! Looking at one key without touching it: `OBJECT` and `MEMORY USAGE`, with the replies and
//! errors of Redis 7.0.15 (`OBJECT ENCODING` named after how Redis would store the value now).

use bytes::Bytes;

use super::{not_int, parse_i64, syntax};
use crate::cache::ENTRY_OVERHEAD;
use crate::server::Shared;
use crate::server::db::{hash_fields, str_bytes};
use crate::server::reply::Out;
use crate::server::streams;

/// The longest string Redis stores `embstr` (in the object's own allocation).
const EMBSTR_MAX: usize = 44;
/// Redis's `hash-max-listpack-entries` and `hash-max-listpack-value` (the peer's defaults).
const LISTPACK_ENTRIES: usize = 512;
const LISTPACK_VALUE: usize = 64;

/// What a key holds, read without counting a hit or a miss.
enum Held {
    /// The stored bytes (type tag first).
    Cached(Bytes),
    Stream,
}

fn held(shared: &Shared, key: &[u8]) -> Option<Held> {
    match shared.db.ns(key).inner.peek(key) {
        Some(raw) => Some(Held::Cached(raw)),
        None if streams::exists(shared, key) => Some(Held::Stream),
        None => None,
    }
}

/// `OBJECT ENCODING | REFCOUNT | FREQ | IDLETIME key`, `OBJECT HELP` (the subcommand and its
/// arity checked against the command table first).
pub(crate) fn object(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if !super::subcommand_fits(out, args) {
        return;
    }
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    if sub == "help" {
        return out.simple_lines(&[
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
            "HELP",
            "    Prints this help.",
        ]);
    }
    let Some(value) = held(shared, &args[2]) else {
        return out.null();
    };
    match sub.as_str() {
        "encoding" => out.bulk(encoding(&value).as_bytes()),
        // Redis shares small integers only without an LRU/LFU `maxmemory-policy`; quipu
        // reports `allkeys-lru` or `allkeys-lfu`, so every value has one reference.
        "refcount" => out.int(1),
        "freq" if shared.lfu_named.load(std::sync::atomic::Ordering::Relaxed) => out.error(
            "ERR OBJECT FREQ is not supported: quipu's eviction (S3-FIFO) keeps no LFU counter",
        ),
        "freq" => out.error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
        _ => out.error("ERR OBJECT IDLETIME is not supported: quipu does not track access times"),
    }
}

/// The encoding Redis would give the value: `int` for a string that reads back as the same
/// 64-bit integer, `embstr` up to 44 bytes, `raw` above; `listpack` for a hash of at most 512
/// fields with fields and values of at most 64 bytes, `hashtable` otherwise; `stream`.
fn encoding(value: &Held) -> &'static str {
    let Held::Cached(raw) = value else {
        return "stream";
    };
    if let Some(s) = str_bytes(raw) {
        return if is_canonical_int(s) {
            "int"
        } else if s.len() <= EMBSTR_MAX {
            "embstr"
        } else {
            "raw"
        };
    }
    match hash_fields(raw) {
        Some(fields)
            if fields.len() <= LISTPACK_ENTRIES
                && fields
                    .iter()
                    .all(|(f, v)| f.len() <= LISTPACK_VALUE && v.len() <= LISTPACK_VALUE) =>
        {
            "listpack"
        }
        _ => "hashtable",
    }
}

/// Whether `s` is an `i64` written as Redis's `string2ll` accepts it: no sign but `-`, no
/// leading zero or space, not `-0`.
fn is_canonical_int(s: &[u8]) -> bool {
    s.len() <= 20
        && std::str::from_utf8(s)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
            .is_some_and(|n| n.to_string().as_bytes() == s)
}

/// `MEMORY USAGE key [SAMPLES count]` (and `MEMORY HELP`): the bytes the key's namespace
/// counts against its budget for it (key, stored value and the per-entry overhead); for a
/// stream, which lives in the log, the bytes of its log segments.
pub(crate) fn memory(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if !super::subcommand_fits(out, args) {
        return;
    }
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    if sub == "help" {
        return out.simple_lines(&[
            "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
            "HELP",
            "    Prints this help.",
        ]);
    }
    // SAMPLES pairs (the last one counts in Redis; quipu's answer is exact, so it reads none).
    let mut i = 3;
    while i < args.len() {
        if !args[i].eq_ignore_ascii_case(b"samples") || i + 1 >= args.len() {
            return syntax(out);
        }
        match parse_i64(&args[i + 1]) {
            Some(n) if n >= 0 => {}
            Some(_) => return syntax(out),
            None => return not_int(out),
        }
        i += 2;
    }
    let key = &args[2];
    let bytes = match held(shared, key) {
        None => return out.null(),
        Some(Held::Cached(raw)) => key.len() as u64 + raw.len() as u64 + ENTRY_OVERHEAD,
        Some(Held::Stream) => {
            let log_bytes = streams::stream(shared, key, false)
                .ok()
                .flatten()
                .and_then(|t| t.partition(0).ok().map(|p| p.size_bytes()))
                .unwrap_or(0);
            key.len() as u64 + log_bytes
        }
    };
    out.int(i64::try_from(bytes).unwrap_or(i64::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_canonical_as_redis_reads_them() {
        for s in [
            "0",
            "123",
            "-5",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert!(is_canonical_int(s.as_bytes()), "{s}");
        }
        for s in [
            "",
            "-0",
            "007",
            "+1",
            " 12",
            "12 ",
            "1e3",
            "9223372036854775808",
            "abc",
        ] {
            assert!(!is_canonical_int(s.as_bytes()), "{s}");
        }
    }
}
