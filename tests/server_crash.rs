//! Crash test of `quipu serve`: the real binary takes XADDs from 4 client threads (two of
//! them pipelining, one of those inside MULTI … EXEC), is SIGKILLed at a random moment, and
//! is restarted on the same data directory; XRANGE must then hold every acknowledged entry,
//! byte-identical, in order, and nothing that was never sent. A consumer group reads and acks
//! meanwhile: after the restart, every entry it had not acknowledged is delivered again
//! (at-least-once). `QUIPU_CRASH_ROUNDS` sets the number of rounds (default 5).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rand::Rng;

const KEY: &str = "payments";
const GROUP: &str = "audit";
const THREADS: u32 = 4;
/// XADDs per pipeline for the pipelining threads.
const PIPELINE: u64 = 8;
/// The pipelining thread that sends its XADDs as a transaction (MULTI … EXEC).
const TRANSACTION_THREAD: u32 = 3;

/// The payload of (round, thread, seq): a parseable prefix, then bytes of every value.
fn payload(round: u32, thread: u32, seq: u64) -> Vec<u8> {
    let mut v = format!("r{round}-t{thread}-s{seq}-").into_bytes();
    let len = (seq as usize * 131 + thread as usize * 17) % 1500;
    v.extend((0..len).map(|i| (i as u64 + seq) as u8));
    v
}

fn parse(v: &[u8]) -> Option<(u32, u32, u64)> {
    let head = v.get(..v.len().min(40))?;
    let text = String::from_utf8_lossy(head);
    let mut parts = text.splitn(4, '-');
    let r = parts.next()?.strip_prefix('r')?.parse().ok()?;
    let t = parts.next()?.strip_prefix('t')?.parse().ok()?;
    let s = parts.next()?.strip_prefix('s')?.parse().ok()?;
    Some((r, t, s))
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// Starts `quipu serve` on `dir` and waits until it says it is ready; retries on another port
/// if the chosen one was taken in between.
fn start_server(dir: &Path) -> (Child, u16) {
    start_server_with(dir, &[])
}

/// As [`start_server`], with `extra` flags.
fn start_server_with(dir: &Path, extra: &[&str]) -> (Child, u16) {
    let (child, port, _) = start_server_ready(dir, &[&["--no-http"], extra].concat());
    (child, port)
}

/// As [`start_server`], with `extra` flags and HTTP on a free port: also returns that port.
fn start_server_http(dir: &Path, extra: &[&str]) -> (Child, u16, u16) {
    let (child, port, ready) = start_server_ready(dir, &[&["--http-port", "0"], extra].concat());
    // "… HTTP on http://127.0.0.1:PORT"
    let http = ready
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no HTTP port in {ready:?}"));
    (child, port, http)
}

/// Starts the server with `extra` flags; returns it, its RESP port and its "ready" line.
fn start_server_ready(dir: &Path, extra: &[&str]) -> (Child, u16, String) {
    for _ in 0..10 {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_quipu"))
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--port", &port.to_string()])
            .args(extra)
            .env_remove("QUIPU_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn quipu");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        // Keeps draining stderr so the server never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("ready") => return (child, port, line),
                Ok(_) => {}
                // Exited (port taken) or never ready: try again.
                Err(_) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("quipu serve did not start");
}

fn connect(port: u16) -> redis::Connection {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("client");
    let con = c.get_connection().expect("connect");
    con.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    con
}

/// Acknowledged entries: ID → payload.
type Acked = BTreeMap<(u64, u64), Vec<u8>>;

fn split_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').expect("ms-seq");
    (ms.parse().expect("ms"), seq.parse().expect("seq"))
}

type ReadReply = Option<Vec<(String, Vec<(String, Vec<Vec<u8>>)>)>>;

fn read_group(con: &mut redis::Connection, consumer: &str, extra: &[&str]) -> Option<Vec<String>> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP").arg(GROUP).arg(consumer).arg(extra);
    let r: ReadReply = cmd.arg("STREAMS").arg(KEY).arg(">").query(con).ok()?;
    Some(
        r.into_iter()
            .flatten()
            .flat_map(|(_, es)| es.into_iter().map(|e| e.0))
            .collect(),
    )
}

/// XACKs `ids`; returns them if the server confirmed every one.
fn ack(con: &mut redis::Connection, ids: Vec<String>) -> Option<Vec<String>> {
    if ids.is_empty() {
        return Some(ids);
    }
    let n: usize = redis::cmd("XACK")
        .arg(KEY)
        .arg(GROUP)
        .arg(&ids)
        .query(con)
        .ok()?;
    assert_eq!(n, ids.len(), "XACK of entries pending for this consumer");
    Some(ids)
}

/// Reads the group until the server dies, acking each batch only after reading the next (so
/// there are always delivered, unacknowledged entries); returns the acked IDs.
fn consume(port: u16, stop: &AtomicBool) -> Vec<String> {
    let mut con = connect(port);
    let (mut acked, mut held) = (Vec::new(), Vec::new());
    while !stop.load(Ordering::SeqCst) {
        let Some(ids) = read_group(&mut con, "worker", &["COUNT", "20", "BLOCK", "100"]) else {
            break;
        };
        let Some(done) = ack(&mut con, std::mem::replace(&mut held, ids)) else {
            break;
        };
        acked.extend(done);
    }
    acked
}

/// The crash point: waits (20 s at most) until `any_acked` says a write was acknowledged,
/// SIGKILLs `child` at a random moment of the next 400 ms while the writers are busy, stops
/// them and returns the highest seq each writer sent.
fn kill_while_writing(
    child: &mut Child,
    round: u32,
    any_acked: impl Fn() -> bool,
    stop: &AtomicBool,
    writers: Vec<std::thread::JoinHandle<(u32, Option<u64>)>>,
) -> HashMap<u32, u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !any_acked() {
        assert!(
            Instant::now() < deadline,
            "round {round}: nothing acknowledged"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..400)));
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    stop.store(true, Ordering::SeqCst);
    let mut sent = HashMap::new();
    for h in writers {
        if let (t, Some(s)) = h.join().expect("writer") {
            sent.insert(t, s);
        }
    }
    sent
}

/// What one round's clients were told: acknowledged XADDs, the highest seq each writer sent,
/// and the entries the group acknowledged.
type Round = (Acked, HashMap<u32, u64>, Vec<String>);

/// XADDs from `THREADS` connections until the server dies, while a consumer reads and acks.
fn write_until_killed(port: u16, round: u32, child: &mut Child) -> Round {
    let acked = Arc::new(Mutex::new(Acked::new()));
    let acks = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || consume(port, &stop))
    };
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (acked, acks, stop) = (Arc::clone(&acked), Arc::clone(&acks), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut con = connect(port);
                let batch = if t % 2 == 1 { PIPELINE } else { 1 };
                let mut seq = 0;
                let mut sent = None;
                while !stop.load(Ordering::SeqCst) {
                    let mut pipe = redis::pipe();
                    if t == TRANSACTION_THREAD {
                        // MULTI … EXEC: the XADDs are written inside EXEC, acknowledged after.
                        pipe.atomic();
                    }
                    for s in seq..seq + batch {
                        pipe.cmd("XADD")
                            .arg(KEY)
                            .arg("*")
                            .arg("p")
                            .arg(payload(round, t, s));
                    }
                    sent = Some(seq + batch - 1);
                    let Ok(ids) = pipe.query::<Vec<String>>(&mut con) else {
                        break;
                    };
                    let mut a = acked.lock().expect("acked");
                    for (i, id) in ids.iter().enumerate() {
                        let prev = a.insert(split_id(id), payload(round, t, seq + i as u64));
                        assert!(prev.is_none(), "ID {id} acknowledged twice");
                    }
                    acks.fetch_add(ids.len() as u64, Ordering::SeqCst);
                    seq += batch;
                }
                (t, sent)
            })
        })
        .collect();
    let sent = kill_while_writing(
        child,
        round,
        || acks.load(Ordering::SeqCst) > 0,
        &stop,
        handles,
    );
    let xacked = consumer.join().expect("consumer");
    let acked = std::mem::take(&mut *acked.lock().expect("acked"));
    (acked, sent, xacked)
}

/// Checks the stream after a restart against everything acknowledged so far.
fn verify(
    port: u16,
    acked: &Acked,
    sent: &HashMap<(u32, u32), u64>,
    xacked: &mut BTreeSet<String>,
    round: u32,
) {
    let mut con = connect(port);
    let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(KEY)
        .arg("-")
        .arg("+")
        .query(&mut con)
        .expect("XRANGE");
    let mut found: BTreeMap<(u64, u64), &[u8]> = BTreeMap::new();
    // Per (round, thread): the seqs seen, which must be 0, 1, 2, … in log order.
    let mut next_seq: HashMap<(u32, u32), u64> = HashMap::new();
    let mut last_ms = 0;
    for (i, (id, fields)) in entries.iter().enumerate() {
        let (ms, seq) = split_id(id);
        assert_eq!(seq, i as u64, "round {round}: offsets not dense at {id}");
        // IDs must grow as Redis IDs do, milliseconds included (concurrent XADDs too).
        assert!(
            ms >= last_ms,
            "round {round}: {id} has a smaller time than the entry before"
        );
        last_ms = ms;
        assert_eq!(fields.len(), 2, "round {round}: entry {id} has {fields:?}");
        assert_eq!(fields[0], b"p");
        let v = &fields[1];
        let (r, t, s) = parse(v).unwrap_or_else(|| panic!("round {round}: {id} was never written"));
        assert_eq!(*v, payload(r, t, s), "round {round}: {id} bytes differ");
        assert!(
            sent.get(&(r, t)).is_some_and(|max| s <= *max),
            "round {round}: {id} holds a seq never sent"
        );
        let want = next_seq.entry((r, t)).or_insert(0);
        assert_eq!(s, *want, "round {round}: {id} out of order for r{r} t{t}");
        *want += 1;
        found.insert((ms, seq), v);
    }
    for (id, v) in acked {
        let got = found
            .get(id)
            .unwrap_or_else(|| panic!("round {round}: acknowledged {}-{} is missing", id.0, id.1));
        assert_eq!(
            got, v,
            "round {round}: acknowledged {}-{} differs",
            id.0, id.1
        );
    }
    // At-least-once: what the group had not acknowledged comes again.
    let again: BTreeSet<String> = read_group(&mut con, "verifier", &[])
        .expect("XREADGROUP after restart")
        .into_iter()
        .collect();
    for (id, _) in &entries {
        assert!(
            xacked.contains(id) || again.contains(id),
            "round {round}: {id} was neither acknowledged by the group nor delivered again"
        );
    }
    xacked.extend(ack(&mut con, again.into_iter().collect()).expect("XACK"));
}

#[test]
fn acknowledged_xadds_survive_sigkill() {
    let rounds: u32 = std::env::var("QUIPU_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = common::tempdir();
    let mut acked = Acked::new();
    let mut sent: HashMap<(u32, u32), u64> = HashMap::new();
    let mut xacked = BTreeSet::new();
    for round in 0..=rounds {
        let (mut child, port) = start_server(dir.path());
        if round == 0 {
            let _: () = redis::cmd("XGROUP")
                .arg(&["CREATE", KEY, GROUP, "0", "MKSTREAM"][..])
                .query(&mut connect(port))
                .expect("XGROUP CREATE");
        }
        verify(port, &acked, &sent, &mut xacked, round);
        if round == rounds {
            child.kill().expect("kill");
            child.wait().expect("reap");
            break;
        }
        let (new, max_sent, group_acked) = write_until_killed(port, round, &mut child);
        xacked.extend(group_acked);
        for (id, v) in new {
            assert!(acked.insert(id, v).is_none(), "an ID was reused");
        }
        for (t, s) in max_sent {
            sent.insert((round, t), s);
        }
    }
    eprintln!(
        "{rounds} rounds, {} acknowledged XADDs checked, {} group acks",
        acked.len(),
        xacked.len()
    );
    assert!(
        acked.len() as u64 > u64::from(rounds) * 10,
        "too few acknowledged XADDs ({}) to test anything",
        acked.len()
    );
}

/// Waits up to 30 s for `child` to exit by itself.
fn exit_status(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client's `SHUTDOWN` and SIGTERM both stop the binary gracefully: it exits with success
/// and every XADD it acknowledged is there after a restart. The stream is `appendfsync no`,
/// whose last entries only the shutdown's flush writes out in time.
#[test]
fn shutdown_and_sigterm_stop_the_binary_gracefully() {
    let dir = common::tempdir();
    let flags = ["--appendfsync", "no"];
    let mut acked: Vec<String> = Vec::new();
    for how in ["SHUTDOWN", "SIGTERM"] {
        let (mut child, port) = start_server_with(dir.path(), &flags);
        let mut con = connect(port);
        let mut pipe = redis::pipe();
        for i in 0..2_000 {
            pipe.cmd("XADD").arg("orders").arg("*").arg("n").arg(i);
        }
        let ids: Vec<String> = pipe.query(&mut con).expect("xadd");
        acked.extend(ids);
        if how == "SHUTDOWN" {
            let r: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut con);
            assert!(r.is_err(), "the connection closes without a reply");
        } else {
            let sent = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(sent.success());
        }
        let status = exit_status(&mut child);
        assert!(status.success(), "{how}: exited with {status}");
    }
    let (mut child, port) = start_server_with(dir.path(), &flags);
    let mut con = connect(port);
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("orders")
        .arg("-")
        .arg("+")
        .query(&mut con)
        .expect("xrange");
    let ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, acked, "every acknowledged entry, in order");
    for (i, (_, fields)) in entries.iter().enumerate() {
        assert_eq!(fields["n"], (i % 2_000).to_string());
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The channel of the durable-PUBLISH crash test, and how many rounds it runs.
const CHANNEL: &str = "orders.crash";
const PUBLISH_ROUNDS: u32 = 3;

/// Every event of a durable channel, read back by long polling from offset 0: (offset, data).
fn poll_all(http: u16, channel: &str) -> Vec<(u64, String)> {
    use std::io::{Read, Write};
    let mut events = Vec::new();
    loop {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).expect("connect HTTP");
        write!(
            s,
            "GET /poll/{channel}?offset={}&timeout_ms=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            events.len()
        )
        .expect("send");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read");
        let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "poll: {head}");
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
        let batch = v["events"].as_array().expect("events");
        if batch.is_empty() {
            return events;
        }
        for e in batch {
            let offset = e["offset"].as_u64().expect("offset");
            assert_eq!(offset, events.len() as u64, "offsets are dense");
            events.push((offset, e["data"].as_str().expect("data").to_owned()));
        }
    }
}

/// PUBLISHes to a durable channel from `THREADS` connections (two of them pipelining) until
/// the server dies; returns the acknowledged payloads and the highest seq each thread sent.
fn publish_until_killed(
    port: u16,
    round: u32,
    child: &mut Child,
) -> (Vec<String>, HashMap<u32, u64>) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut con = connect(port);
                let batch = if t % 2 == 1 { PIPELINE } else { 1 };
                let (mut seq, mut sent) = (0, None);
                while !stop.load(Ordering::SeqCst) {
                    let mut pipe = redis::pipe();
                    if t == TRANSACTION_THREAD {
                        // MULTI … EXEC: the XADDs are written inside EXEC, acknowledged after.
                        pipe.atomic();
                    }
                    for s in seq..seq + batch {
                        pipe.cmd("PUBLISH")
                            .arg(CHANNEL)
                            .arg(format!("r{round}-t{t}-s{s}"));
                    }
                    sent = Some(seq + batch - 1);
                    let Ok(replies) = pipe.query::<Vec<i64>>(&mut con) else {
                        break;
                    };
                    assert_eq!(replies.len() as u64, batch);
                    let mut a = acked.lock().expect("acked");
                    a.extend((seq..seq + batch).map(|s| format!("r{round}-t{t}-s{s}")));
                    seq += batch;
                }
                (t, sent)
            })
        })
        .collect();
    let any_acked = || !acked.lock().expect("acked").is_empty();
    let sent = kill_while_writing(child, round, any_acked, &stop, handles);
    let acked = std::mem::take(&mut *acked.lock().expect("acked"));
    (acked, sent)
}

/// A PUBLISH on a durable channel is acknowledged only once its message is in the channel's
/// log: after a SIGKILL at a random moment and a restart, every acknowledged message is there,
/// in each publisher's order, and nothing that was never sent.
#[test]
fn acknowledged_durable_publishes_survive_sigkill() {
    let dir = common::tempdir();
    let config = dir.path().join("quipu.toml");
    std::fs::write(&config, "durable_channels = [\"orders.*\"]\n").expect("config");
    let data = dir.path().join("data");
    let config = config.to_str().expect("path");
    let mut acked: Vec<String> = Vec::new();
    let mut sent: HashMap<(u32, u32), u64> = HashMap::new();
    for round in 0..=PUBLISH_ROUNDS {
        let (mut child, port, http) = start_server_http(&data, &["--config", config]);
        let events = if round == 0 {
            Vec::new()
        } else {
            poll_all(http, CHANNEL)
        };
        let mut next_seq: HashMap<(u32, u32), u64> = HashMap::new();
        for (offset, data) in &events {
            let (r, t, s) =
                parse(data.as_bytes()).unwrap_or_else(|| panic!("{offset}: {data:?} never sent"));
            assert!(
                sent.get(&(r, t)).is_some_and(|max| s <= *max),
                "{offset}: {data} holds a seq never sent"
            );
            let want = next_seq.entry((r, t)).or_insert(0);
            assert_eq!(s, *want, "{offset}: {data} out of order");
            *want += 1;
        }
        let found: BTreeSet<&str> = events.iter().map(|(_, d)| d.as_str()).collect();
        for a in &acked {
            assert!(
                found.contains(a.as_str()),
                "round {round}: acknowledged {a} is missing"
            );
        }
        if round == PUBLISH_ROUNDS {
            child.kill().expect("kill");
            child.wait().expect("reap");
            break;
        }
        let (new, max_sent) = publish_until_killed(port, round, &mut child);
        acked.extend(new);
        for (t, s) in max_sent {
            sent.insert((round, t), s);
        }
    }
    eprintln!(
        "{PUBLISH_ROUNDS} rounds, {} acknowledged PUBLISHes checked",
        acked.len()
    );
    assert!(
        acked.len() > 100,
        "too few acknowledged PUBLISHes ({})",
        acked.len()
    );
}

/// A critical namespace keeps its keys across a graceful restart (snapshotted at shutdown,
/// restored at start, TTLs with them) and across a SIGKILL up to the last `SAVE` or
/// `BGSAVE`; other keys are a cache and go. The periodic save is off (`save_secs = 0`), so
/// what survives the kill is exactly what the explicit saves kept.
#[test]
fn critical_namespaces_survive_restarts_and_saves_survive_sigkill() {
    let dir = common::tempdir();
    let config = dir.path().join("quipu.toml");
    std::fs::write(
        &config,
        "save_secs = 0\n\
         [[namespaces]]\nprefix = \"session:\"\nname = \"sessions\"\ncritical = true\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let flags = ["--config", config.to_str().unwrap()];
    let start = || start_server_with(&data, &flags);
    let get = |con: &mut redis::Connection, key: &str| -> Option<String> {
        redis::cmd("GET").arg(key).query(con).expect("get")
    };
    let (mut child, port) = start();
    let mut con = connect(port);
    let _: () = redis::cmd("SET")
        .arg(&["session:a", "alice", "EX", "1000"])
        .query(&mut con)
        .unwrap();
    let _: i64 = redis::cmd("HSET")
        .arg(&["session:h", "user", "42"])
        .query(&mut con)
        .unwrap();
    // A hash large enough for the indexed layout comes back as it went, in order.
    let big: Vec<(String, String)> = (0..200)
        .map(|i| (format!("f{}", 199 - i), i.to_string()))
        .collect();
    let _: i64 = redis::cmd("HSET")
        .arg("session:big")
        .arg(&big)
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&["plain", "x"])
        .query(&mut con)
        .unwrap();
    let r: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut con);
    assert!(r.is_err(), "the connection closes without a reply");
    assert!(exit_status(&mut child).success());

    let (mut child, port) = start();
    let mut con = connect(port);
    assert_eq!(get(&mut con, "session:a").as_deref(), Some("alice"));
    let ttl: i64 = redis::cmd("TTL").arg("session:a").query(&mut con).unwrap();
    assert!((990..=1000).contains(&ttl), "{ttl}");
    let h: HashMap<String, String> = redis::cmd("HGETALL")
        .arg("session:h")
        .query(&mut con)
        .unwrap();
    assert_eq!(h["user"], "42");
    let back: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg("session:big")
        .query(&mut con)
        .unwrap();
    assert_eq!(back, big);
    let v: String = redis::cmd("HGET")
        .arg(&["session:big", "f7"])
        .query(&mut con)
        .unwrap();
    assert_eq!(v, "192");
    assert_eq!(get(&mut con, "plain"), None, "not critical");
    // SAVE, then a write after it: a SIGKILL keeps the first.
    let _: () = redis::cmd("SET")
        .arg(&["session:b", "bob"])
        .query(&mut con)
        .unwrap();
    let ok: String = redis::cmd("SAVE").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    let _: () = redis::cmd("SET")
        .arg(&["session:c", "carol"])
        .query(&mut con)
        .unwrap();
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    let (mut child, port) = start();
    let mut con = connect(port);
    assert_eq!(get(&mut con, "session:b").as_deref(), Some("bob"));
    assert_eq!(get(&mut con, "session:a").as_deref(), Some("alice"));
    assert_eq!(
        get(&mut con, "session:c"),
        None,
        "written after the last save"
    );
    // BGSAVE, waited for, then a SIGKILL.
    let _: () = redis::cmd("SET")
        .arg(&["session:d", "dora"])
        .query(&mut con)
        .unwrap();
    let s: String = redis::cmd("BGSAVE").query(&mut con).unwrap();
    assert_eq!(s, "Background saving started");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query(&mut con)
            .unwrap();
        if info.contains("rdb_bgsave_in_progress:0") {
            assert!(info.contains("rdb_last_bgsave_status:ok"), "{info}");
            break;
        }
        assert!(Instant::now() < deadline, "{info}");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    let (mut child, port) = start();
    let mut con = connect(port);
    assert_eq!(get(&mut con, "session:d").as_deref(), Some("dora"));
    assert_eq!(get(&mut con, "session:b").as_deref(), Some("bob"));
    let _ = child.kill();
    let _ = child.wait();
}
