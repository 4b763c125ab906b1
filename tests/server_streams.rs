//! Black-box tests of Redis streams on `quipu serve` with the `redis` client crate: XREAD
//! with BLOCK (woken, timed out, ended by a disconnect or shutdown), ranges, error replies,
//! and stream keys seen by TYPE/EXISTS/DEL/KEYS/SCAN/DBSIZE. Consumer groups are in server_stream_groups.rs.

mod common;
mod streams_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use redis::Value;
use streams_support::*;

#[test]
fn xread_block_is_woken_by_an_xadd_from_another_connection() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    // Blocked readers occupy no runtime thread (the server has two): all of these wait while
    // other commands are served.
    let mut sleepers = Vec::new();
    for i in 0..4 {
        let mut c = srv.con();
        sleepers.push(std::thread::spawn(move || {
            let key = format!("idle{i}");
            let r: ReadReply = query(&mut c, &["XREAD", "BLOCK", "0", "STREAMS", &key, "$"]);
            r
        }));
    }
    let mut c = srv.con();
    let pong: String = query(&mut c, &["PING"]);
    assert_eq!(pong, "PONG");
    let (reply, added) = wake_with_xadd(
        &srv,
        "events",
        vec![
            "XREAD", "COUNT", "10", "BLOCK", "0", "STREAMS", "events", "$",
        ],
    );
    let got = ids(&reply);
    assert!(!got.is_empty());
    assert!(
        got.iter().all(|id| added.contains(id)),
        "{got:?} vs {added:?}"
    );
    let (key, entries) = &reply.as_ref().unwrap()[0];
    assert_eq!(key, "events");
    assert_eq!(entries[0].1[0], "n");
    // A stream that does not exist yet: XADD creates it and wakes the reader.
    let (reply, added) = wake_with_xadd(
        &srv,
        "fresh",
        vec!["XREAD", "BLOCK", "0", "STREAMS", "fresh", "0-0"],
    );
    assert_eq!(ids(&reply)[0], *added.first().unwrap());
    for i in 0..4 {
        xadd(&mut c, &format!("idle{i}"), "f", "v");
    }
    for s in sleepers {
        assert_eq!(s.join().unwrap().unwrap().len(), 1);
    }
}

#[test]
fn xread_block_times_out_with_a_null_reply() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    xadd(&mut c, "s", "a", "1");
    let started = Instant::now();
    let r: ReadReply = query(&mut c, &["XREAD", "BLOCK", "150", "STREAMS", "s", "$"]);
    assert!(r.is_none());
    assert!(started.elapsed() >= Duration::from_millis(150));
    // Without BLOCK nothing new is nil at once; the raw RESP2 reply is a null array.
    let mut raw = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    raw.write_all(b"XREAD BLOCK 10 STREAMS s $\r\nXREAD STREAMS s $\r\nPING\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"+PONG\r\n") {
        let n = raw.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"*-1\r\n*-1\r\n+PONG\r\n");
    // RESP3: a null, and a map of stream → entries.
    raw.write_all(b"HELLO 3\r\nXREAD BLOCK 10 STREAMS s $\r\nXREAD STREAMS s 0\r\nPING\r\n")
        .unwrap();
    got.clear();
    while !got.ends_with(b"+PONG\r\n") {
        let n = raw.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("_\r\n%1\r\n$1\r\ns\r\n*1\r\n*2\r\n"),
        "{text}"
    );
    // After the timeout the connection goes on; the stream was not touched.
    let n: i64 = query(&mut c, &["XLEN", "s"]);
    assert_eq!(n, 1);
}

#[test]
fn error_replies() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    let id = xadd(&mut c, "s", "f", "v");
    let e = err(
        &mut c,
        &["XREADGROUP", "GROUP", "nog", "c", "STREAMS", "s", ">"],
    );
    assert!(
        e.contains("NOGROUP") && e.contains("No such key 's' or consumer group 'nog'"),
        "{e}"
    );
    let e = err(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "BLOCK",
            "100",
            "STREAMS",
            "missing",
            ">",
        ],
    );
    assert!(e.contains("NOGROUP"), "{e}");
    let _: () = query(&mut c, &["XGROUP", "CREATE", "s", "g", "$"]);
    let e = err(&mut c, &["XGROUP", "CREATE", "s", "g", "$"]);
    assert!(
        e.contains("BUSYGROUP") && e.contains("Consumer Group name already exists"),
        "{e}"
    );
    let e = err(&mut c, &["XGROUP", "CREATE", "missing", "g", "$"]);
    assert!(e.contains("requires the key to exist"), "{e}");
    let e = err(&mut c, &["XGROUP", "SETID", "s", "nog", "$"]);
    assert!(
        e.contains("NOGROUP No such consumer group 'nog' for key name 's'"),
        "{e}"
    );
    let e = err(&mut c, &["XPENDING", "s", "nog"]);
    assert!(e.contains("NOGROUP"), "{e}");
    let e = err(&mut c, &["XCLAIM", "s", "nog", "c", "0", &id]);
    assert!(e.contains("NOGROUP"), "{e}");
    for args in [
        &["XACK", "s", "g"][..],
        &["XGROUP", "CREATE", "s"],
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s"],
        &["XREAD", "STREAMS"],
        &["XCLAIM", "s", "g", "c", "0"],
        &["XPENDING", "s"],
        &["XINFO", "GROUPS"],
    ] {
        let e = err(&mut c, args);
        assert!(e.contains("wrong number of arguments"), "{args:?}: {e}");
    }
    for args in [
        &["XRANGE", "s", "abc", "+"][..],
        &["XACK", "s", "g", "1-x"],
        &["XGROUP", "CREATE", "s", "g2", "nope"],
        &["XREAD", "STREAMS", "s", "-1"],
    ] {
        let e = err(&mut c, args);
        assert!(e.contains("Invalid stream ID"), "{args:?}: {e}");
    }
    let e = err(
        &mut c,
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "$"],
    );
    assert!(e.contains("The $ ID is meaningless"), "{e}");
    let e = err(&mut c, &["XREAD", "STREAMS", "s", ">"]);
    assert!(e.contains("The > ID can be specified only"), "{e}");
    let e = err(&mut c, &["XREAD", "STREAMS", "s", "t", "0"]);
    assert!(e.contains("Unbalanced XREAD list of streams"), "{e}");
    let e = err(&mut c, &["XREAD", "BLOCK", "-1", "STREAMS", "s", "0"]);
    assert!(e.contains("timeout is negative"), "{e}");
    let e = err(&mut c, &["XGROUP", "FROB", "s", "g"]);
    assert!(e.contains("unknown subcommand 'FROB'"), "{e}");
    let e = err(&mut c, &["XADD", "s", "1-1", "f", "v"]);
    assert!(e.contains("use * as the ID"), "{e}");
    let none: Option<String> = query(&mut c, &["XADD", "absent", "NOMKSTREAM", "*", "f", "v"]);
    assert_eq!(none, None);
    let n: i64 = query(&mut c, &["EXISTS", "absent"]);
    assert_eq!(n, 0);
    let e = err(&mut c, &["XDEL", "s", &id]);
    assert!(e.contains("not supported"), "{e}");
    // The server is still fine.
    let n: i64 = query(&mut c, &["XLEN", "s"]);
    assert_eq!(n, 1);
}

/// A stream's key lives in a topic name (`stream.` + the key, 3 bytes for each byte outside
/// `[A-Za-z0-9.-]`): one too long for it gets an `ERR` reply that says the limit, and leaves
/// no key behind; a group's name likewise.
#[test]
fn a_stream_key_or_group_too_long_for_the_log_is_refused_with_the_limit() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    let longest = "k".repeat(193);
    xadd(&mut c, &longest, "f", "v");
    let long = "k".repeat(194);
    // 65 bytes outside the plain set take 195: too long as well.
    let escaped = " ".repeat(65);
    for key in [&long, &escaped] {
        let e = err(&mut c, &["XADD", key, "*", "f", "v"]);
        assert!(
            e.starts_with("quipu keeps a stream's key in a topic name of at most 193 bytes"),
            "{e}"
        );
        let e = err(&mut c, &["XGROUP", "CREATE", key, "g", "$", "MKSTREAM"]);
        assert!(e.starts_with("quipu keeps a stream's key"), "{e}");
        let n: i64 = query(&mut c, &["EXISTS", key]);
        assert_eq!(n, 0, "no stream is left behind");
        let _: () = query(&mut c, &["SET", key, "v"]);
        let t: String = query(&mut c, &["TYPE", key]);
        assert_eq!(t, "string");
    }
    let e = err(
        &mut c,
        &["XGROUP", "CREATE", &longest, &"g".repeat(10), "$"],
    );
    assert!(
        e.starts_with("quipu keeps a group in a log group name of at most 200 bytes"),
        "{e}"
    );
    let _: () = query(
        &mut c,
        &["XGROUP", "CREATE", "s", &"g".repeat(190), "$", "MKSTREAM"],
    );
    let n: i64 = query(&mut c, &["XLEN", &longest]);
    assert_eq!(n, 1);
}

/// KEYS, SCAN (with MATCH and TYPE), DBSIZE and INFO list stream keys with the others, TTL
/// says they do not expire and FLUSHALL deletes them, as in Redis (RENAME and EXPIRE refuse them); a key with bytes a topic
/// name cannot hold comes back as it was given.
#[test]
fn keys_scan_and_dbsize_see_stream_keys() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    xadd(&mut c, "orders", "f", "v");
    xadd(&mut c, "odd key_\u{e9}", "f", "v");
    let _: () = query(&mut c, &["SET", "plain", "x"]);
    let _: () = query(&mut c, &["HSET", "session", "f", "v"]);
    let mut all: Vec<String> = query(&mut c, &["KEYS", "*"]);
    all.sort();
    assert_eq!(all, ["odd key_\u{e9}", "orders", "plain", "session"]);
    let o: Vec<String> = query(&mut c, &["KEYS", "o*"]);
    assert_eq!(o, ["odd key_\u{e9}", "orders"]);
    let n: i64 = query(&mut c, &["DBSIZE"]);
    assert_eq!(n, 4);
    let info: String = query(&mut c, &["INFO", "keyspace"]);
    assert!(info.contains("db0:keys=4,"), "{info}");
    let (cursor, mut streams): (u64, Vec<String>) =
        query(&mut c, &["SCAN", "0", "COUNT", "100", "TYPE", "stream"]);
    assert_eq!(cursor, 0);
    streams.sort();
    assert_eq!(streams, ["odd key_\u{e9}", "orders"]);
    let (_, strings): (u64, Vec<String>) =
        query(&mut c, &["SCAN", "0", "COUNT", "100", "TYPE", "string"]);
    assert_eq!(strings, ["plain"]);
    // A string SET on a stream's key replaces the stream, as in Redis.
    let _: () = query(&mut c, &["SET", "orders", "x"]);
    let n: i64 = query(&mut c, &["DBSIZE"]);
    assert_eq!(n, 4);
    let t: String = query(&mut c, &["TYPE", "orders"]);
    assert_eq!(t, "string");
    let _: i64 = query(&mut c, &["DEL", "orders"]);
    let after: Vec<String> = query(&mut c, &["KEYS", "o*"]);
    assert_eq!(after, ["odd key_\u{e9}"]);
    // RENAME does not move a stream, and says so.
    let e = err(&mut c, &["RENAME", "odd key_\u{e9}", "elsewhere"]);
    assert!(e.contains("RENAME of a stream is not supported"), "{e}");
    let e = err(&mut c, &["RENAME", "nothing", "elsewhere"]);
    assert!(e.contains("no such key"), "{e}");
    // Nor does EXPIRE set a time to live on one; a missing key is 0, as in Redis.
    let e = err(&mut c, &["EXPIRE", "odd key_\u{e9}", "10"]);
    assert!(e.contains("EXPIRE of a stream is not supported"), "{e}");
    let missing: i64 = query(&mut c, &["EXPIRE", "nothing", "10"]);
    assert_eq!(missing, 0);
    // A stream never expires; a missing key has no TTL.
    let ttl: i64 = query(&mut c, &["TTL", "odd key_\u{e9}"]);
    let pttl: i64 = query(&mut c, &["PTTL", "odd key_\u{e9}"]);
    let none: i64 = query(&mut c, &["TTL", "orders"]);
    assert_eq!((ttl, pttl, none), (-1, -1, -2));
    let at: i64 = query(&mut c, &["EXPIRETIME", "odd key_\u{e9}"]);
    let pat: i64 = query(&mut c, &["PEXPIRETIME", "odd key_\u{e9}"]);
    assert_eq!((at, pat), (-1, -1), "a stream never expires");
    // FLUSHALL takes streams too, their groups with them.
    xadd(&mut c, "orders", "f", "v");
    let _: () = query(&mut c, &["XGROUP", "CREATE", "orders", "g", "0"]);
    let _: () = query(&mut c, &["FLUSHALL"]);
    let n: i64 = query(&mut c, &["DBSIZE"]);
    assert_eq!(n, 0);
    let n: i64 = query(
        &mut c,
        &["EXISTS", "orders", "odd key_\u{e9}", "plain", "session"],
    );
    assert_eq!(n, 0);
    let id = xadd(&mut c, "orders", "f", "again");
    assert!(id.ends_with("-0"), "a new stream starts empty: {id}");
    let groups: Vec<Value> = query(&mut c, &["XINFO", "GROUPS", "orders"]);
    assert!(groups.is_empty());
}

/// String and hash commands see streams as Redis does: WRONGTYPE where the command reads or
/// changes the key's value, a key that exists for NX (RENAMENX, COPY without REPLACE), nil in
/// MGET, and SET, SETEX, MSET, RENAME and COPY … REPLACE replace the stream (its groups go with it). After a restart too.
#[test]
fn string_and_hash_commands_see_a_stream_as_another_type() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    xadd(&mut c, "s", "f", "v");
    let wrong: &[&[&str]] = &[
        &["GET", "s"],
        &["SET", "s", "v", "GET"],
        &["GETSET", "s", "v"],
        &["GETDEL", "s"],
        &["GETEX", "s", "EX", "10"],
        &["STRLEN", "s"],
        &["GETRANGE", "s", "0", "1"],
        &["APPEND", "s", "x"],
        &["SETRANGE", "s", "0", "x"],
        &["INCR", "s"],
        &["DECRBY", "s", "2"],
        &["INCRBYFLOAT", "s", "1.5"],
        &["HSET", "s", "f", "v"],
        &["HSETNX", "s", "f", "v"],
        &["HGET", "s", "f"],
        &["HMGET", "s", "f"],
        &["HGETALL", "s"],
        &["HLEN", "s"],
        &["HDEL", "s", "f"],
        &["HEXISTS", "s", "f"],
        &["HKEYS", "s"],
        &["HINCRBY", "s", "f", "1"],
        &["HINCRBYFLOAT", "s", "f", "1"],
        &["HSCAN", "s", "0"],
        &["HRANDFIELD", "s"],
        &["HRANDFIELD", "s", "2", "WITHVALUES"],
    ];
    for args in wrong {
        assert!(err(&mut c, args).contains("WRONGTYPE"), "{args:?}");
    }
    // Arguments are checked first, as Redis checks them.
    assert!(err(&mut c, &["INCRBY", "s", "x"]).contains("not an integer"));
    assert!(err(&mut c, &["HINCRBY", "s", "f", "x"]).contains("not an integer"));
    // The stream exists for NX and is nil among MGET's strings.
    let setnx: i64 = query(&mut c, &["SETNX", "s", "v"]);
    let msetnx: i64 = query(&mut c, &["MSETNX", "fresh", "v", "s", "v"]);
    let nx: Value = query(&mut c, &["SET", "s", "v", "NX"]);
    let mget: Vec<Option<String>> = query(&mut c, &["MGET", "s"]);
    assert_eq!((setnx, msetnx, nx, mget), (0, 0, Value::Nil, vec![None]));
    // It is a destination that exists for RENAMENX and COPY without REPLACE, and COPY, like
    // RENAME, does not move one.
    let _: () = query(&mut c, &["SET", "src", "v"]);
    let renamenx: i64 = query(&mut c, &["RENAMENX", "src", "s"]);
    let copy: i64 = query(&mut c, &["COPY", "src", "s"]);
    let touched: i64 = query(&mut c, &["TOUCH", "s", "src", "none"]);
    assert_eq!((renamenx, copy, touched), (0, 0, 2));
    assert!(err(&mut c, &["COPY", "s", "elsewhere"]).contains("COPY of a stream is not supported"));
    assert!(err(&mut c, &["RENAMENX", "s", "elsewhere"]).contains("not supported"));
    let _: i64 = query(&mut c, &["DEL", "src"]);
    let len: i64 = query(&mut c, &["XLEN", "s"]);
    assert_eq!(len, 1, "nothing above changed the stream");
    // Each replacing write: the stream and its groups go, the string stays.
    let _: () = query(&mut c, &["XGROUP", "CREATE", "s", "g", "0"]);
    let _: () = query(&mut c, &["SET", "s", "v", "XX"]);
    let got: String = query(&mut c, &["GET", "s"]);
    assert_eq!(got, "v");
    assert!(err(&mut c, &["XLEN", "s"]).contains("WRONGTYPE"));
    let _: i64 = query(&mut c, &["DEL", "s"]);
    let id = xadd(&mut c, "s", "f", "again");
    assert!(id.ends_with("-0"), "a new stream starts empty: {id}");
    let groups: Vec<Value> = query(&mut c, &["XINFO", "GROUPS", "s"]);
    assert!(groups.is_empty(), "{groups:?}");
    for (i, write) in [
        &["SET", "k0", "v"][..],
        &["SETEX", "k1", "100", "v"],
        &["MSET", "other", "v", "k2", "v"],
        &["RENAME", "src", "k3"],
        &["COPY", "src", "k4", "REPLACE"],
    ]
    .iter()
    .enumerate()
    {
        let key = format!("k{i}");
        xadd(&mut c, &key, "f", "v");
        let _: () = query(&mut c, &["SET", "src", "v"]);
        let _: () = query(&mut c, write);
        let t: String = query(&mut c, &["TYPE", &key]);
        assert_eq!(t, "string", "{write:?}");
        let n: i64 = query(&mut c, &["DEL", &key]);
        assert_eq!(n, 1, "{write:?}: one key, no stream left behind");
        let n: i64 = query(&mut c, &["EXISTS", &key]);
        assert_eq!(n, 0, "{write:?}");
    }
    // A restarted server knows its streams before any stream command runs.
    drop(c);
    drop(srv);
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    assert!(err(&mut c, &["GET", "s"]).contains("WRONGTYPE"));
    assert!(err(&mut c, &["HGETALL", "s"]).contains("WRONGTYPE"));
}

/// A replacing write that fails (a value over the namespace's budget) leaves the stream as it
/// was, and MSET sets none of its keys.
#[test]
fn a_replacing_write_refused_as_too_large_keeps_the_stream() {
    let dir = common::tempdir();
    let srv = common::server::Running::start_in(
        dir.path(),
        quipu::server::ServerConfig {
            namespaces: vec![quipu::server::NamespaceRule {
                prefix: "tiny:".into(),
                name: "tiny".into(),
                max_bytes: Some(1024),
                ttl_secs: None,
                critical: false,
            }],
            ..quipu::server::ServerConfig::default()
        },
    );
    let mut c = srv.con();
    xadd(&mut c, "tiny:s", "f", "v");
    let _: () = query(&mut c, &["XGROUP", "CREATE", "tiny:s", "g", "0"]);
    let big = "x".repeat(2048);
    let _: () = query(&mut c, &["SET", "src", &big]);
    for write in [
        &["SET", "tiny:s", &big][..],
        &["SET", "tiny:s", &big, "XX"],
        &["SETEX", "tiny:s", "100", &big],
        &["MSET", "other", "v", "tiny:s", &big],
        &["RENAME", "src", "tiny:s"],
        &["COPY", "src", "tiny:s", "REPLACE"],
    ] {
        let e = err(&mut c, write);
        assert!(e.contains("OOM"), "{e}");
        let len: i64 = query(&mut c, &["XLEN", "tiny:s"]);
        assert_eq!(len, 1, "{:?}", &write[..2]);
        let groups: Vec<Value> = query(&mut c, &["XINFO", "GROUPS", "tiny:s"]);
        assert_eq!(groups.len(), 1, "{:?}", &write[..2]);
    }
    let n: i64 = query(&mut c, &["EXISTS", "other", "src"]);
    assert_eq!(n, 1, "MSET set nothing; RENAME moved nothing");
}

#[test]
fn type_exists_and_del_see_stream_keys() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    xadd(&mut c, "s", "f", "v");
    let _: () = query(&mut c, &["XGROUP", "CREATE", "s", "g", "0"]);
    let _: () = query(&mut c, &["SET", "plain", "x"]);
    let t: String = query(&mut c, &["TYPE", "s"]);
    assert_eq!(t, "stream");
    let n: i64 = query(&mut c, &["EXISTS", "s", "plain", "nothing"]);
    assert_eq!(n, 2);
    for args in [
        &["XADD", "plain", "*", "f", "v"][..],
        &["XLEN", "plain"],
        &["XRANGE", "plain", "-", "+"],
        &["XREAD", "STREAMS", "s", "plain", "0", "0"],
        &["XGROUP", "CREATE", "plain", "g", "$", "MKSTREAM"],
        &["XINFO", "STREAM", "plain"],
    ] {
        assert!(err(&mut c, args).contains("WRONGTYPE"), "{args:?}");
    }
    // A reader blocked on the group learns that the stream went away.
    let _: ReadReply = query(
        &mut c,
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"],
    );
    let mut blocked = srv.con();
    let waiter = std::thread::spawn(move || {
        cmd(
            &mut blocked,
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "c",
                "BLOCK",
                "0",
                "STREAMS",
                "s",
                ">",
            ],
        )
    });
    let deleted: i64 = query(&mut c, &["DEL", "s", "plain", "nothing"]);
    assert_eq!(deleted, 2);
    let e = waiter.join().unwrap().unwrap_err().to_string();
    assert!(e.contains("UNBLOCKED") || e.contains("NOGROUP"), "{e}");
    let n: i64 = query(&mut c, &["EXISTS", "s"]);
    assert_eq!(n, 0);
    let t: String = query(&mut c, &["TYPE", "s"]);
    assert_eq!(t, "none");
    let n: i64 = query(&mut c, &["XLEN", "s"]);
    assert_eq!(n, 0);
    // A new stream of the same name starts empty, without the old groups.
    let id = xadd(&mut c, "s", "f", "again");
    assert!(id.ends_with("-0"), "{id}");
    let groups: Vec<Value> = query(&mut c, &["XINFO", "GROUPS", "s"]);
    assert!(groups.is_empty());
    let all: Vec<Entry> = query(&mut c, &["XRANGE", "s", "-", "+"]);
    assert_eq!(all, [(id, vec!["f".into(), "again".into()])]);
}

#[test]
fn a_disconnect_or_a_shutdown_ends_a_blocked_read() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    let _: () = query(&mut c, &["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]);
    let alone = connected_clients(&mut c);
    let mut raw = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    raw.write_all(b"XREADGROUP GROUP g ghost BLOCK 0 STREAMS s >\r\n")
        .unwrap();
    wait_for_clients(&mut c, alone + 1);
    drop(raw);
    wait_for_clients(&mut c, alone);
    // The wait ended with the connection: the ghost consumer takes nothing.
    let id = xadd(&mut c, "s", "f", "v");
    let r: ReadReply = query(
        &mut c,
        &["XREADGROUP", "GROUP", "g", "live", "STREAMS", "s", ">"],
    );
    assert_eq!(ids(&r), [id]);
    // Shutdown wakes a reader blocked forever: its connection closes.
    let mut blocked = srv.con();
    let waiter = std::thread::spawn(move || {
        cmd(&mut blocked, &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"])
    });
    wait_for_clients(&mut c, alone + 1);
    drop(c);
    srv.stop();
    assert!(waiter.join().unwrap().is_err());
}

#[test]
fn xrange_and_xrevrange_bounds() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    let ids: Vec<String> = (0..8)
        .map(|i| xadd(&mut c, "s", "i", &i.to_string()))
        .collect();
    let range = |c: &mut redis::Connection, args: &[&str]| -> Vec<String> {
        let es: Vec<Entry> = query(c, args);
        es.into_iter().map(|e| e.0).collect()
    };
    assert_eq!(range(&mut c, &["XRANGE", "s", "-", "+"]), ids);
    assert_eq!(
        range(&mut c, &["XRANGE", "s", &ids[2], &ids[4]]),
        ids[2..=4]
    );
    let (lo, hi) = (format!("({}", ids[2]), format!("({}", ids[5]));
    assert_eq!(range(&mut c, &["XRANGE", "s", &lo, &hi]), ids[3..5]);
    assert_eq!(
        range(&mut c, &["XRANGE", "s", "-", "+", "COUNT", "3"]),
        ids[..3]
    );
    let rev: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(range(&mut c, &["XREVRANGE", "s", "+", "-"]), rev);
    assert_eq!(
        range(&mut c, &["XREVRANGE", "s", "+", "-", "COUNT", "2"]),
        rev[..2]
    );
    assert_eq!(
        range(&mut c, &["XREVRANGE", "s", &ids[5], &ids[3]]),
        rev[2..=4]
    );
    // Milliseconds alone: every entry of that millisecond (start seq 0, end seq max).
    let ms = ids[3].split('-').next().unwrap().to_owned();
    let same: Vec<String> = ids
        .iter()
        .filter(|id| id.starts_with(&format!("{ms}-")))
        .cloned()
        .collect();
    assert_eq!(range(&mut c, &["XRANGE", "s", &ms, &ms]), same);
    assert!(range(&mut c, &["XRANGE", "s", "0", "1"]).is_empty());
    assert!(range(&mut c, &["XRANGE", "s", &ids[4], &ids[2]]).is_empty());
    assert!(range(&mut c, &["XRANGE", "nothing", "-", "+"]).is_empty());
    // XREAD after an ID, ours or made up.
    let r: ReadReply = query(&mut c, &["XREAD", "COUNT", "2", "STREAMS", "s", &ids[5]]);
    assert_eq!(self::ids(&r), ids[6..]);
    let r: ReadReply = query(&mut c, &["XREAD", "STREAMS", "s", "0-0"]);
    assert_eq!(self::ids(&r), ids);
    let r: ReadReply = query(&mut c, &["XREAD", "STREAMS", "s", &ids[7]]);
    assert!(r.is_none());
    // XTRIM drops whole log segments only: never more than asked, here nothing (one segment).
    for args in [
        &["XTRIM", "s", "MAXLEN", "~", "3"][..],
        &["XTRIM", "s", "MAXLEN", "~", "3", "LIMIT", "10"],
        &["XTRIM", "s", "MINID", &ids[5]],
    ] {
        let n: i64 = query(&mut c, args);
        assert_eq!(n, 0, "{args:?}");
    }
    assert_eq!(range(&mut c, &["XRANGE", "s", "-", "+"]), ids);
    assert!(err(&mut c, &["XTRIM", "s", "MAXLEN", "-1"]).contains("MAXLEN argument must be >= 0"));
    assert!(err(&mut c, &["XTRIM", "s", "SIZE", "1"]).contains("syntax error"));
    let _: i64 = query(&mut c, &["HSET", "h", "f", "v"]);
    // The trim options in Redis's order of checks, for XADD as for XTRIM; nothing is added.
    for (args, want) in [
        (
            &["XTRIM", "s", "MAXLEN", "3", "LIMIT", "10"][..],
            "without the special ~ option",
        ),
        (
            &["XTRIM", "s", "LIMIT", "0", "MAXLEN", "3"],
            "without the special ~ option",
        ),
        (
            &["XTRIM", "s", "LIMIT", "10"],
            "without specifying a trimming strategy",
        ),
        (
            &["XTRIM", "s", "MAXLEN", "1", "MINID", "0"],
            "at the same time are not compatible",
        ),
        (&["XTRIM", "s", "MINID", "x"], "Invalid stream ID"),
        (
            &["XADD", "s", "LIMIT", "10", "*", "f", "v"],
            "without specifying a trimming strategy",
        ),
        (
            &["XADD", "s", "MAXLEN", "3", "LIMIT", "1", "*", "f", "v"],
            "without the special ~ option",
        ),
        (
            &[
                "XADD", "s", "MAXLEN", "~", "3", "LIMIT", "-1", "*", "f", "v",
            ],
            "LIMIT argument must be >= 0",
        ),
        (
            &["XADD", "s", "MINID", "0", "MAXLEN", "1", "*", "f", "v"],
            "not compatible",
        ),
        (
            &["XADD", "s", "MINID", "x", "*", "f", "v"],
            "Invalid stream ID",
        ),
        (&["XADD", "s", "x-1", "f", "v"], "Invalid stream ID"),
        (&["XADD", "s", "0-0", "f", "v"], "must be greater than 0-0"),
        (&["XADD", "s", "0", "f", "v"], "must be greater than 0-0"),
        // The ID is read where Redis reads it; the options' and fields' checks come first.
        (
            &["XADD", "s", "MAXLEN", "5", "LIMIT", "3", "0-0", "f", "v"],
            "without the special ~ option",
        ),
        (
            &["XADD", "s", "0-0", "f", "v", "g"],
            "wrong number of arguments",
        ),
        (&["XADD", "s", "abc-*", "f", "v"], "Invalid stream ID"),
        (&["XADD", "s", "5-*", "f", "v"], "use * as the ID"),
        (&["XADD", "s", " 5-*", "f", "v"], "use * as the ID"),
        (&["XADD", "missing", "5-1", "f", "v"], "use * as the ID"),
        // The type before the explicit ID, as Redis compares it with the last one only then.
        (&["XADD", "h", "5-1", "f", "v"], "WRONGTYPE"),
        (
            &["XTRIM", "s", "LIMIT", "0"],
            "XTRIM must be called with a trimming strategy",
        ),
    ] {
        let e = err(&mut c, args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    assert_eq!(range(&mut c, &["XRANGE", "s", "-", "+"]), ids);
    let none: Option<String> = query(&mut c, &["XADD", "missing", "NOMKSTREAM", "5-1", "f", "v"]);
    assert_eq!(none, None, "no stream made, as in Redis");
    let n: i64 = query(&mut c, &["EXISTS", "missing"]);
    assert_eq!(n, 0, "a refused XADD makes no stream");
    // Accepted: `~` with LIMIT, MINID on XADD (nothing to drop in one segment).
    let _: String = query(
        &mut c,
        &[
            "XADD", "s", "MAXLEN", "~", "100", "LIMIT", "5", "*", "f", "v",
        ],
    );
    let _: String = query(&mut c, &["XADD", "s", "MINID", "=", &ids[0], "*", "f", "v"]);
    let n: i64 = query(&mut c, &["XLEN", "s"]);
    assert_eq!(n, ids.len() as i64 + 2);
}

/// MINID and MAXLEN, on XADD and XTRIM, drop the log segments wholly before the threshold:
/// every entry at or after it stays, and entries before it go once a segment holds only them.
#[test]
fn trims_drop_whole_segments_before_the_threshold() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    // About 2.2 segments of 64 MiB, in entries of 900 KiB.
    let big = "x".repeat(900 * 1024);
    let ids: Vec<String> = (0..160).map(|_| xadd(&mut c, "s", "f", &big)).collect();
    let first = |c: &mut redis::Connection| -> String {
        let r: Vec<Entry> = query(c, &["XRANGE", "s", "-", "+", "COUNT", "1"]);
        r[0].0.clone()
    };
    // A MINID in the second segment: the first goes, the threshold's entry stays.
    let _: String = query(
        &mut c,
        &["XADD", "s", "MINID", "~", &ids[100], "*", "f", "v"],
    );
    let kept = first(&mut c);
    let at = ids.iter().position(|id| *id == kept).unwrap();
    assert!(at > 0 && at <= 100, "first kept: {at}");
    let n: i64 = query(&mut c, &["XLEN", "s"]);
    assert_eq!(n, (161 - at) as i64);
    // MAXLEN 1 on XTRIM: only the last segment's entries stay; its answer counts the rest.
    let removed: i64 = query(&mut c, &["XTRIM", "s", "MAXLEN", "1"]);
    let now = first(&mut c);
    let at2 = ids.iter().position(|id| *id == now).unwrap();
    assert!(at2 > at, "{at2} after {at}");
    assert_eq!(removed, (at2 - at) as i64);
    let n: i64 = query(&mut c, &["XLEN", "s"]);
    assert_eq!(n, (161 - at2) as i64);
    assert!(n >= 1);
}

#[test]
fn pipelined_xadds_keep_their_order_and_ids_across_streams_and_errors() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    let mut raw = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(
        b"XADD a * n 1\r\nXADD a * n 2\r\nXADD b * n 3\r\nXADD a * n 4\r\nXADD a *\r\n\
          XADD missing NOMKSTREAM * n 5\r\nXADD a * n 6\r\nXADD a * n 7\r\nPING\r\n",
    )
    .unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.ends_with("+PONG\r\n") {
        let n = raw.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    // Bulk replies are a `$len` line then the id.
    let ids: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i > 0 && lines[i - 1].starts_with('$') && lines[i - 1] != "$-1")
        .map(|(_, l)| *l)
        .collect();
    assert_eq!(ids.len(), 6, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("-ERR wrong number")),
        "{lines:?}"
    );
    let nil = lines
        .iter()
        .position(|l| *l == "$-1")
        .expect("NOMKSTREAM nil");
    let err = lines.iter().position(|l| l.starts_with("-ERR")).unwrap();
    assert!(err < nil, "replies in pipeline order: {lines:?}");
    let a_ids: Vec<String> = cmd(&mut c, &["XRANGE", "a", "-", "+"])
        .map(|v| match v {
            Value::Array(entries) => entries
                .into_iter()
                .map(|e| match e {
                    Value::Array(mut parts) => match parts.remove(0) {
                        Value::BulkString(id) => String::from_utf8(id).unwrap(),
                        other => panic!("{other:?}"),
                    },
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        })
        .unwrap();
    let mut expected: Vec<&str> = ids.clone();
    expected.remove(2); // the one on stream b
    assert_eq!(a_ids, expected, "XADD replies are the ids XRANGE shows");
    assert_eq!(cmd(&mut c, &["EXISTS", "missing"]).unwrap(), Value::Int(0));
}
