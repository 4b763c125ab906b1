//! `quipu serve` on a full disk: an XADD that cannot be written gets an error reply, the
//! server stays up (the cache, pub/sub and reads of the log go on), and every entry
//! acknowledged before is there after a restart; the refused one is not.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::FaultyStorage;
use common::server::Running;
use quipu::server::ServerConfig;

fn xadd(con: &mut redis::Connection, key: &str, value: &str) -> redis::RedisResult<String> {
    redis::cmd("XADD")
        .arg(key)
        .arg("*")
        .arg("v")
        .arg(value)
        .query(con)
}

fn values(con: &mut redis::Connection, key: &str) -> Vec<String> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(con)
        .expect("XRANGE");
    entries
        .into_iter()
        .map(|(_, fields)| fields[0].1.clone())
        .collect()
}

#[test]
fn a_full_disk_refuses_the_write_and_keeps_what_was_acknowledged() {
    let dir = common::tempdir();
    let storage = FaultyStorage::default();
    let server = Running::start_with_storage(
        dir.path(),
        ServerConfig::default(),
        Arc::new(storage.clone()),
    );
    let mut con = server.con();
    let acked: Vec<String> = (0..20).map(|i| format!("payment-{i}")).collect();
    for v in &acked {
        xadd(&mut con, "payments", v).expect("XADD before the disk fills");
    }
    storage.faults.write_budget.store(0, Ordering::SeqCst);
    let err = xadd(&mut con, "payments", "refused").expect_err("the disk is full");
    let text = err.to_string().to_lowercase();
    assert!(
        text.contains("space") || text.contains("full"),
        "the error says why: {err}"
    );
    // Still refused, with the same reason, while the disk stays full.
    assert!(xadd(&mut con, "payments", "refused again").is_err());
    // Everything else keeps working on the same connection and on new ones.
    let pong: String = redis::cmd("PING").query(&mut con).expect("PING");
    assert_eq!(pong, "PONG");
    let _: () = redis::cmd("SET")
        .arg("session")
        .arg("alive")
        .query(&mut con)
        .expect("SET");
    let mut other = server.con();
    let got: String = redis::cmd("GET")
        .arg("session")
        .query(&mut other)
        .expect("GET");
    assert_eq!(got, "alive");
    assert_eq!(values(&mut other, "payments"), acked);
    let len: u64 = redis::cmd("XLEN")
        .arg("payments")
        .query(&mut other)
        .expect("XLEN");
    assert_eq!(len, acked.len() as u64);
    drop((con, other));
    drop(server);

    // Space again, a restart: the acknowledged entries and nothing else, and appends go on.
    let server = Running::start_in(dir.path(), ServerConfig::default());
    let mut con = server.con();
    assert_eq!(values(&mut con, "payments"), acked);
    xadd(&mut con, "payments", "after restart").expect("XADD after the restart");
    let mut expected = acked;
    expected.push("after restart".to_owned());
    assert_eq!(values(&mut con, "payments"), expected);
}
