//! Black-box tests of Redis streams on `quipu serve` with the `redis` client crate: blocking
//! reads, consumer groups (delivery, acks, pending entries, claims), XINFO, groups across a
//! restart, error replies, and stream keys seen by TYPE/EXISTS/DEL.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use quipu::server::{Server, ServerConfig};
use redis::{RedisResult, Value};

struct Running {
    rt: tokio::runtime::Runtime,
    server: Option<Server>,
    port: u16,
}

impl Running {
    fn start(dir: &Path) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = ServerConfig {
            data_dir: dir.to_owned(),
            port: 0,
            ..ServerConfig::default()
        };
        let server = rt.block_on(Server::start(config)).unwrap();
        let port = server.local_addr().port();
        Self {
            rt,
            server: Some(server),
            port,
        }
    }

    fn con(&self) -> redis::Connection {
        let c = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).unwrap();
        c.get_connection().unwrap()
    }

    fn stop(mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown()).unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = self.rt.block_on(s.shutdown());
        }
    }
}

type Entry = (String, Vec<String>);
type ReadReply = Option<Vec<(String, Vec<Entry>)>>;

fn xadd(c: &mut redis::Connection, key: &str, field: &str, value: &str) -> String {
    redis::cmd("XADD")
        .arg(key)
        .arg("*")
        .arg(field)
        .arg(value)
        .query(c)
        .unwrap()
}

fn cmd(c: &mut redis::Connection, args: &[&str]) -> RedisResult<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

fn query<T: redis::FromRedisValue>(c: &mut redis::Connection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn err(c: &mut redis::Connection, args: &[&str]) -> String {
    match cmd(c, args) {
        // The error line as the server sent it, "ERR" aside: "NOGROUP No such …", "COUNT …".
        Err(e) => match (e.code(), e.detail()) {
            (Some("ERR") | None, Some(d)) => d.to_owned(),
            (Some(code), Some(d)) => format!("{code} {d}"),
            _ => e.to_string(),
        },
        Ok(v) => panic!("{args:?} should fail, got {v:?}"),
    }
}

/// The IDs of the entries of one stream in a read reply.
fn ids(reply: &ReadReply) -> Vec<String> {
    reply
        .iter()
        .flatten()
        .flat_map(|(_, es)| es.iter().map(|(id, _)| id.clone()))
        .collect()
}

/// A map reply (RESP2 flat array) as (name, value) pairs.
fn fields(v: &Value) -> Vec<(String, Value)> {
    let Value::Array(items) = v else {
        panic!("not an array: {v:?}")
    };
    items
        .chunks(2)
        .map(|kv| (redis::from_redis_value_ref(&kv[0]).unwrap(), kv[1].clone()))
        .collect()
}

fn field(v: &Value, name: &str) -> Value {
    fields(v)
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no field {name} in {v:?}"))
        .1
}

fn int(v: &Value) -> i64 {
    redis::from_redis_value_ref(v).unwrap()
}

fn text(v: &Value) -> String {
    redis::from_redis_value_ref(v).unwrap()
}

/// Runs `read` on another connection, then XADDs until it returns (the read may start after
/// an XADD, which `$` does not see); returns its reply and the IDs added.
fn wake_with_xadd(
    srv: &Running,
    key: &str,
    read: Vec<&'static str>,
) -> (ReadReply, BTreeSet<String>) {
    let mut reader = srv.con();
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let r: ReadReply = query(&mut reader, &read);
        tx.send(r).unwrap();
    });
    let mut writer = srv.con();
    let mut added = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let reply = loop {
        assert!(Instant::now() < deadline, "the blocked read never woke");
        added.insert(xadd(&mut writer, key, "n", &added.len().to_string()));
        if let Ok(r) = rx.recv_timeout(Duration::from_millis(50)) {
            break r;
        }
    };
    handle.join().unwrap();
    (reply, added)
}

#[test]
fn xread_block_is_woken_by_an_xadd_from_another_connection() {
    let dir = common::tempdir();
    let srv = Running::start(dir.path());
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
    let srv = Running::start(dir.path());
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
fn xreadgroup_delivers_each_entry_to_exactly_one_consumer() {
    let dir = common::tempdir();
    let srv = Running::start(dir.path());
    let mut c = srv.con();
    let _: () = query(
        &mut c,
        &["XGROUP", "CREATE", "jobs", "workers", "$", "MKSTREAM"],
    );
    let mut all = BTreeSet::new();
    for i in 0..200 {
        all.insert(xadd(&mut c, "jobs", "job", &i.to_string()));
    }
    let workers: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|name| {
            let mut con = srv.con();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let r: ReadReply = query(
                        &mut con,
                        &[
                            "XREADGROUP",
                            "GROUP",
                            "workers",
                            name,
                            "COUNT",
                            "3",
                            "BLOCK",
                            "200",
                            "STREAMS",
                            "jobs",
                            ">",
                        ],
                    );
                    if r.is_none() {
                        return mine;
                    }
                    mine.extend(ids(&r));
                }
            })
        })
        .collect();
    let got: Vec<Vec<String>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let union: BTreeSet<String> = got.iter().flatten().cloned().collect();
    assert_eq!(got[0].len() + got[1].len(), 200, "an entry went to both");
    assert_eq!(union, all);
    // A blocked XREADGROUP is woken by a new entry, which becomes pending for that consumer.
    let (reply, added) = wake_with_xadd(
        &srv,
        "jobs",
        vec![
            "XREADGROUP",
            "GROUP",
            "workers",
            "carol",
            "BLOCK",
            "0",
            "STREAMS",
            "jobs",
            ">",
        ],
    );
    let got = ids(&reply);
    assert!(got.iter().all(|id| added.contains(id)));
    let mine: Vec<Value> = query(
        &mut c,
        &["XPENDING", "jobs", "workers", "-", "+", "10", "carol"],
    );
    assert_eq!(mine.len(), got.len());
}

#[test]
fn xack_and_xpending() {
    let dir = common::tempdir();
    let srv = Running::start(dir.path());
    let mut c = srv.con();
    let ids: Vec<String> = (0..10)
        .map(|i| xadd(&mut c, "s", "i", &i.to_string()))
        .collect();
    let _: () = query(&mut c, &["XGROUP", "CREATE", "s", "g", "0"]);
    let r: ReadReply = query(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "6",
            "STREAMS",
            "s",
            ">",
        ],
    );
    assert_eq!(self::ids(&r), ids[..6]);
    let r: ReadReply = query(
        &mut c,
        &["XREADGROUP", "GROUP", "g", "c2", "STREAMS", "s", ">"],
    );
    assert_eq!(self::ids(&r), ids[6..]);
    let summary: Value = query(&mut c, &["XPENDING", "s", "g"]);
    let Value::Array(s) = &summary else { panic!() };
    assert_eq!(int(&s[0]), 10);
    assert_eq!(text(&s[1]), ids[0]);
    assert_eq!(text(&s[2]), ids[9]);
    let per: Vec<(String, String)> = redis::from_redis_value_ref(&s[3]).unwrap();
    assert_eq!(per, [("c1".into(), "6".into()), ("c2".into(), "4".into())]);
    let acked: i64 = query(
        &mut c,
        &["XACK", "s", "g", &ids[0], &ids[1], &ids[7], "0-0"],
    );
    assert_eq!(acked, 3);
    let again: i64 = query(&mut c, &["XACK", "s", "g", &ids[0]]);
    assert_eq!(again, 0);
    let rows: Vec<(String, String, i64, i64)> =
        query(&mut c, &["XPENDING", "s", "g", "-", "+", "100"]);
    let pending: Vec<&String> = rows.iter().map(|r| &r.0).collect();
    let want: Vec<&String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| ![0, 1, 7].contains(i))
        .map(|(_, id)| id)
        .collect();
    assert_eq!(pending, want);
    assert!(rows.iter().all(|r| r.3 == 1));
    assert_eq!(rows[0].1, "c1");
    let c2: Vec<(String, String, i64, i64)> =
        query(&mut c, &["XPENDING", "s", "g", "-", "+", "100", "c2"]);
    assert_eq!(c2.len(), 3);
    let exclusive: Vec<(String, String, i64, i64)> = query(
        &mut c,
        &["XPENDING", "s", "g", &format!("({}", ids[2]), "+", "2"],
    );
    assert_eq!(
        exclusive.iter().map(|r| &r.0).collect::<Vec<_>>(),
        [&ids[3], &ids[4]]
    );
    let idle: Vec<Value> = query(
        &mut c,
        &["XPENDING", "s", "g", "IDLE", "100000", "-", "+", "10"],
    );
    assert!(idle.is_empty());
    // Re-reading its history redelivers a consumer's own pending entries.
    let r: ReadReply = query(
        &mut c,
        &["XREADGROUP", "GROUP", "g", "c1", "STREAMS", "s", "0"],
    );
    assert_eq!(self::ids(&r), ids[2..6]);
    let rows: Vec<(String, String, i64, i64)> =
        query(&mut c, &["XPENDING", "s", "g", "-", "+", "1"]);
    assert_eq!(rows[0].3, 2);
    // NOACK reads leave nothing pending.
    xadd(&mut c, "s", "i", "10");
    let _: ReadReply = query(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "NOACK",
            "STREAMS",
            "s",
            ">",
        ],
    );
    let summary: Vec<Value> = query(&mut c, &["XPENDING", "s", "g"]);
    assert_eq!(int(&summary[0]), 7);
}

#[test]
fn xclaim_and_xautoclaim_move_idle_entries() {
    let dir = common::tempdir();
    let srv = Running::start(dir.path());
    let mut c = srv.con();
    let ids: Vec<String> = (0..6)
        .map(|i| xadd(&mut c, "s", "i", &i.to_string()))
        .collect();
    let _: () = query(&mut c, &["XGROUP", "CREATE", "s", "g", "0"]);
    let _: ReadReply = query(
        &mut c,
        &["XREADGROUP", "GROUP", "g", "dead", "STREAMS", "s", ">"],
    );
    // Not idle long enough: nothing moves.
    let none: Vec<Entry> = query(&mut c, &["XCLAIM", "s", "g", "live", "3600000", &ids[0]]);
    assert!(none.is_empty());
    let got: Vec<Entry> = query(&mut c, &["XCLAIM", "s", "g", "live", "0", &ids[0], &ids[1]]);
    assert_eq!(
        got.iter().map(|e| &e.0).collect::<Vec<_>>(),
        [&ids[0], &ids[1]]
    );
    assert_eq!(got[0].1, ["i", "0"]);
    let rows: Vec<(String, String, i64, i64)> =
        query(&mut c, &["XPENDING", "s", "g", "-", "+", "10", "live"]);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.1 == "live" && r.3 == 2));
    // JUSTID leaves the delivery count; IDLE backdates the delivery.
    let just: Vec<String> = query(
        &mut c,
        &[
            "XCLAIM", "s", "g", "live", "0", &ids[2], "IDLE", "500000", "JUSTID",
        ],
    );
    assert_eq!(just, [ids[2].clone()]);
    let rows: Vec<(String, String, i64, i64)> = query(
        &mut c,
        &["XPENDING", "s", "g", "IDLE", "400000", "-", "+", "10"],
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].3, 1);
    // XAUTOCLAIM takes what has been idle long enough, COUNT at a time, with a cursor.
    let r: (String, Vec<Entry>, Vec<String>) =
        query(&mut c, &["XAUTOCLAIM", "s", "g", "rescuer", "400000", "-"]);
    assert_eq!(r.0, "0-0");
    assert_eq!(r.1.iter().map(|e| &e.0).collect::<Vec<_>>(), [&ids[2]]);
    let r: (String, Vec<String>, Vec<String>) = query(
        &mut c,
        &[
            "XAUTOCLAIM",
            "s",
            "g",
            "rescuer",
            "0",
            "-",
            "COUNT",
            "2",
            "JUSTID",
        ],
    );
    assert_eq!(r.1, [ids[0].clone(), ids[1].clone()]);
    assert_eq!(r.0, ids[2]);
    assert!(r.2.is_empty());
    let r: (String, Vec<String>, Vec<String>) = query(
        &mut c,
        &[
            "XAUTOCLAIM",
            "s",
            "g",
            "rescuer",
            "0",
            &r.0,
            "COUNT",
            "10",
            "JUSTID",
        ],
    );
    assert_eq!(r.1, ids[2..].to_vec());
    assert_eq!(r.0, "0-0");
    let summary: Value = query(&mut c, &["XPENDING", "s", "g"]);
    let Value::Array(s) = summary else { panic!() };
    let per: Vec<(String, String)> = redis::from_redis_value_ref(&s[3]).unwrap();
    assert_eq!(per, [("rescuer".into(), "6".into())]);
    // FORCE claims an entry nobody was delivered.
    let extra = xadd(&mut c, "s", "i", "6");
    let got: Vec<String> = query(
        &mut c,
        &[
            "XCLAIM", "s", "g", "live", "1000", &extra, "FORCE", "JUSTID",
        ],
    );
    assert_eq!(got, [extra]);
    assert_eq!(
        err(
            &mut c,
            &["XAUTOCLAIM", "s", "g", "x", "0", "-", "COUNT", "0"]
        ),
        "COUNT must be > 0"
    );
}

#[test]
fn xinfo_reports_streams_groups_and_consumers() {
    let dir = common::tempdir();
    let srv = Running::start(dir.path());
    let mut c = srv.con();
    let ids: Vec<String> = (0..5)
        .map(|i| xadd(&mut c, "s", "i", &i.to_string()))
        .collect();
    let _: () = query(&mut c, &["XGROUP", "CREATE", "s", "g", "0"]);
    let _: () = query(&mut c, &["XGROUP", "CREATE", "s", "late", "$"]);
    let _: ReadReply = query(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "2",
            "STREAMS",
            "s",
            ">",
        ],
    );
    let info: Value = query(&mut c, &["XINFO", "STREAM", "s"]);
    assert_eq!(int(&field(&info, "length")), 5);
    assert_eq!(int(&field(&info, "entries-added")), 5);
    assert_eq!(int(&field(&info, "groups")), 2);
    assert_eq!(text(&field(&info, "last-generated-id")), ids[4]);
    assert_eq!(text(&field(&info, "recorded-first-entry-id")), ids[0]);
    let first: Entry = redis::from_redis_value_ref(&field(&info, "first-entry")).unwrap();
    assert_eq!(first, (ids[0].clone(), vec!["i".into(), "0".into()]));
    let last: Entry = redis::from_redis_value_ref(&field(&info, "last-entry")).unwrap();
    assert_eq!(last.0, ids[4]);
    let groups: Vec<Value> = query(&mut c, &["XINFO", "GROUPS", "s"]);
    assert_eq!(groups.len(), 2);
    let g = &groups[0];
    assert_eq!(text(&field(g, "name")), "g");
    assert_eq!(int(&field(g, "consumers")), 1);
    assert_eq!(int(&field(g, "pending")), 2);
    assert_eq!(text(&field(g, "last-delivered-id")), ids[1]);
    assert_eq!(int(&field(g, "entries-read")), 2);
    assert_eq!(int(&field(g, "lag")), 3);
    let late = &groups[1];
    assert_eq!(text(&field(late, "name")), "late");
    assert_eq!(int(&field(late, "lag")), 0);
    let consumers: Vec<Value> = query(&mut c, &["XINFO", "CONSUMERS", "s", "g"]);
    assert_eq!(consumers.len(), 1);
    assert_eq!(text(&field(&consumers[0], "name")), "c1");
    assert_eq!(int(&field(&consumers[0], "pending")), 2);
    assert!(int(&field(&consumers[0], "inactive")) >= 0);
    let created: i64 = query(&mut c, &["XGROUP", "CREATECONSUMER", "s", "g", "c2"]);
    assert_eq!(created, 1);
    let again: i64 = query(&mut c, &["XGROUP", "CREATECONSUMER", "s", "g", "c2"]);
    assert_eq!(again, 0);
    let consumers: Vec<Value> = query(&mut c, &["XINFO", "CONSUMERS", "s", "g"]);
    assert_eq!(int(&field(&consumers[1], "inactive")), -1);
    let dropped: i64 = query(&mut c, &["XGROUP", "DELCONSUMER", "s", "g", "c1"]);
    assert_eq!(dropped, 2);
    let _: () = query(&mut c, &["XGROUP", "SETID", "s", "g", "$"]);
    let groups: Vec<Value> = query(&mut c, &["XINFO", "GROUPS", "s"]);
    assert_eq!(int(&field(&groups[0], "pending")), 0);
    assert_eq!(int(&field(&groups[0], "lag")), 0);
    let destroyed: i64 = query(&mut c, &["XGROUP", "DESTROY", "s", "late"]);
    assert_eq!(destroyed, 1);
    let destroyed: i64 = query(&mut c, &["XGROUP", "DESTROY", "s", "late"]);
    assert_eq!(destroyed, 0);
    assert_eq!(err(&mut c, &["XINFO", "STREAM", "nope"]), "no such key");
}

#[test]
fn a_group_survives_a_restart_and_unacked_entries_come_back() {
    let dir = common::tempdir();
    let ids: Vec<String>;
    {
        let srv = Running::start(dir.path());
        let mut c = srv.con();
        ids = (0..10)
            .map(|i| xadd(&mut c, "orders", "n", &i.to_string()))
            .collect();
        let _: () = query(&mut c, &["XGROUP", "CREATE", "orders", "billing", "0"]);
        let _: () = query(&mut c, &["XGROUP", "CREATE", "orders", "gone", "0"]);
        let destroyed: i64 = query(&mut c, &["XGROUP", "DESTROY", "orders", "gone"]);
        assert_eq!(destroyed, 1);
        let r: ReadReply = query(
            &mut c,
            &[
                "XREADGROUP",
                "GROUP",
                "billing",
                "c1",
                "COUNT",
                "6",
                "STREAMS",
                "orders",
                ">",
            ],
        );
        assert_eq!(self::ids(&r).len(), 6);
        let acked: i64 = query(
            &mut c,
            &[
                "XACK", "orders", "billing", &ids[0], &ids[1], &ids[2], &ids[4],
            ],
        );
        assert_eq!(acked, 4);
        srv.stop();
    }
    let srv = Running::start(dir.path());
    let mut c = srv.con();
    let groups: Vec<Value> = query(&mut c, &["XINFO", "GROUPS", "orders"]);
    assert_eq!(groups.len(), 1, "the destroyed group must stay destroyed");
    assert_eq!(text(&field(&groups[0], "name")), "billing");
    assert!(err(&mut c, &["XGROUP", "CREATE", "orders", "billing", "0"]).contains("BUSYGROUP"));
    // The pending list is not kept: what was delivered and not acknowledged is delivered
    // again (at-least-once), from the lowest unacknowledged entry on.
    let r: ReadReply = query(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            "billing",
            "c1",
            "STREAMS",
            "orders",
            ">",
        ],
    );
    let again = self::ids(&r);
    // A clean shutdown committed the lowest unacknowledged entry: 3.
    assert_eq!(again, ids[3..]);
}

#[test]
fn error_replies() {
    let dir = common::tempdir();
    let srv = Running::start(dir.path());
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
    assert!(e.contains("Unbalanced 'xread' list of streams"), "{e}");
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

#[test]
fn type_exists_and_del_see_stream_keys() {
    let dir = common::tempdir();
    let srv = Running::start(dir.path());
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

fn connected_clients(c: &mut redis::Connection) -> u64 {
    let info: String = query(c, &["INFO", "clients"]);
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("connected_clients")
}

fn wait_for_clients(c: &mut redis::Connection, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while connected_clients(c) != n {
        assert!(Instant::now() < deadline, "never {n} clients");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_disconnect_or_a_shutdown_ends_a_blocked_read() {
    let dir = common::tempdir();
    let srv = Running::start(dir.path());
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
    let srv = Running::start(dir.path());
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
        &["XTRIM", "s", "MAXLEN", "3", "LIMIT", "10"],
        &["XTRIM", "s", "MINID", &ids[5]],
    ] {
        let n: i64 = query(&mut c, args);
        assert_eq!(n, 0, "{args:?}");
    }
    assert_eq!(range(&mut c, &["XRANGE", "s", "-", "+"]), ids);
    assert!(err(&mut c, &["XTRIM", "s", "MAXLEN", "-1"]).contains("MAXLEN argument must be >= 0"));
    assert!(err(&mut c, &["XTRIM", "s", "SIZE", "1"]).contains("syntax error"));
}
