//! Shared by the server stream tests: an in-process server on port 0 and reply helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use quipu::server::ServerConfig;
use redis::{RedisResult, Value};

pub use crate::common::server::Running;

/// A server on `dir` (restart tests reopen the same one).
pub fn serve_in(dir: &Path) -> Running {
    Running::start_in(dir, ServerConfig::default())
}

pub type Entry = (String, Vec<String>);
pub type ReadReply = Option<Vec<(String, Vec<Entry>)>>;

pub fn xadd(c: &mut redis::Connection, key: &str, field: &str, value: &str) -> String {
    redis::cmd("XADD")
        .arg(key)
        .arg("*")
        .arg(field)
        .arg(value)
        .query(c)
        .unwrap()
}

pub fn cmd(c: &mut redis::Connection, args: &[&str]) -> RedisResult<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

pub fn query<T: redis::FromRedisValue>(c: &mut redis::Connection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

pub fn err(c: &mut redis::Connection, args: &[&str]) -> String {
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
pub fn ids(reply: &ReadReply) -> Vec<String> {
    reply
        .iter()
        .flatten()
        .flat_map(|(_, es)| es.iter().map(|(id, _)| id.clone()))
        .collect()
}

/// A map reply (RESP2 flat array) as (name, value) pairs.
pub fn fields(v: &Value) -> Vec<(String, Value)> {
    let Value::Array(items) = v else {
        panic!("not an array: {v:?}")
    };
    items
        .chunks(2)
        .map(|kv| (redis::from_redis_value_ref(&kv[0]).unwrap(), kv[1].clone()))
        .collect()
}

pub fn field(v: &Value, name: &str) -> Value {
    fields(v)
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no field {name} in {v:?}"))
        .1
}

pub fn int(v: &Value) -> i64 {
    redis::from_redis_value_ref(v).unwrap()
}

pub fn text(v: &Value) -> String {
    redis::from_redis_value_ref(v).unwrap()
}

/// Runs `read` on another connection, then XADDs until it returns (the read may start after
/// an XADD, which `$` does not see); returns its reply and the IDs added.
pub fn wake_with_xadd(
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

pub fn connected_clients(c: &mut redis::Connection) -> u64 {
    let info: String = query(c, &["INFO", "clients"]);
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("connected_clients")
}

pub fn wait_for_clients(c: &mut redis::Connection, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while connected_clients(c) != n {
        assert!(Instant::now() < deadline, "never {n} clients");
        std::thread::sleep(Duration::from_millis(5));
    }
}
