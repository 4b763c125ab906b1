//! `XINFO STREAM|GROUPS|CONSUMERS|HELP`.

use bytes::Bytes;

use super::group::{no_group, state};
use super::ids::{id_at, id_before};
use super::{Shared, lower, now_ms, stream, write_entry, wrong_args};
use crate::log::Partition;
use crate::server::reply::Out;

/// `XINFO STREAM key`, `XINFO GROUPS key`, `XINFO CONSUMERS key group`.
pub(crate) fn xinfo(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if args.len() < 2 {
        return out.error(&wrong_args("xinfo"));
    }
    if !crate::server::cmd::subcommand_fits(out, args) {
        return;
    }
    let sub = lower(&args[1]);
    if sub == "help" {
        return help(out);
    }
    let key = &args[2];
    // After the subcommand's arity, as Redis checks them.
    if super::refuse_other_type(shared, key, out) {
        return;
    }
    let Some(topic) = stream(shared, key, false).ok().flatten() else {
        return out.error("ERR no such key");
    };
    let Ok(p) = topic.partition(0) else {
        return out.error("ERR no such key");
    };
    if sub == "stream" && args.len() > 3 {
        return full_refused(args, out);
    }
    let st = match state(shared, key, &topic) {
        Ok(s) => s,
        Err(e) => return out.error(&e),
    };
    let groups = st.groups.lock();
    let now = now_ms(shared);
    match sub.as_str() {
        "stream" => {
            let n = groups.len();
            drop(groups);
            stream_info(p, n, out);
        }
        "groups" => {
            out.array(groups.len());
            for (name, g) in groups.iter() {
                out.map(6);
                out.bulk(b"name");
                out.bulk(name);
                out.bulk(b"consumers");
                out.int(g.consumers.len() as i64);
                out.bulk(b"pending");
                out.int(g.pel.len() as i64);
                out.bulk(b"last-delivered-id");
                out.bulk(id_before(p, g.next).to_string().as_bytes());
                // Offsets are dense from 0, so the entries the group has read is its offset.
                out.bulk(b"entries-read");
                out.int(g.next as i64);
                out.bulk(b"lag");
                out.int(p.end_offset().saturating_sub(g.next) as i64);
            }
        }
        _ => {
            let Some(g) = groups.get(&args[3]) else {
                return out.error(&no_group(key, &args[3]));
            };
            out.array(g.consumers.len());
            for (name, c) in &g.consumers {
                out.map(4);
                out.bulk(b"name");
                out.bulk(name);
                out.bulk(b"pending");
                out.int(c.pending.len() as i64);
                out.bulk(b"idle");
                out.int(now.saturating_sub(c.seen) as i64);
                out.bulk(b"inactive");
                out.int(c.active.map_or(-1, |a| now.saturating_sub(a) as i64));
            }
        }
    }
}

fn stream_info(p: &Partition, groups: usize, out: &mut Out) {
    let (start, end) = (p.start_offset(), p.end_offset());
    out.map(10);
    out.bulk(b"length");
    out.int((end - start) as i64);
    // No radix tree: the log's segments play its part.
    out.bulk(b"radix-tree-keys");
    out.int(p.segment_count() as i64);
    out.bulk(b"radix-tree-nodes");
    out.int(p.segment_count() as i64);
    out.bulk(b"last-generated-id");
    out.bulk(id_before(p, end).to_string().as_bytes());
    out.bulk(b"max-deleted-entry-id");
    out.bulk(b"0-0");
    out.bulk(b"entries-added");
    out.int(end as i64);
    out.bulk(b"recorded-first-entry-id");
    let first = id_at(p, start).unwrap_or_default();
    out.bulk(first.to_string().as_bytes());
    out.bulk(b"groups");
    out.int(groups as i64);
    for (name, offset) in [
        ("first-entry", start),
        ("last-entry", end.saturating_sub(1)),
    ] {
        out.bulk(name.as_bytes());
        match p.read(offset, 1).ok().and_then(|v| v.into_iter().next()) {
            Some(r) if end > start => write_entry(out, &r),
            _ => out.null(),
        }
    }
}

fn help(out: &mut Out) {
    let lines = [
        "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CONSUMERS <key> <groupname>",
        "    Show consumers of <groupname>.",
        "GROUPS <key>",
        "    Show the stream consumer groups.",
        "STREAM <key>",
        "    Show information about the stream.",
    ];
    out.simple_lines(&lines);
}

/// `XINFO STREAM key FULL [COUNT n]`, which quipu does not run: Redis's errors for a
/// malformed call, then the refusal.
fn full_refused(args: &[Bytes], out: &mut Out) {
    let count_ok = match args.len() {
        4 => true,
        6 => args[4].eq_ignore_ascii_case(b"count"),
        _ => false,
    };
    if !args[3].eq_ignore_ascii_case(b"full") || !count_ok {
        return crate::server::cmd::subcommand_syntax_error(out, args);
    }
    if args.len() == 6 && crate::server::cmd::parse_i64(&args[5]).is_none() {
        return out.error("ERR value is not an integer or out of range");
    }
    out.error("ERR XINFO STREAM FULL is not supported by quipu");
}
