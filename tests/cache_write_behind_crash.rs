//! Write-behind crash test: a child process writes through a write-behind namespace from two
//! threads and reports each acknowledged write; the parent SIGKILLs it at random moments. After
//! reopening, every acknowledged write has reached the store: for every key the store holds
//! the last acknowledged value or a later one from the same writer, never an older one, and a
//! key whose last acknowledged write was a delete is absent or rewritten later.
//! `QUIPU_CRASH_ROUNDS` sets the number of rounds (default 8).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use quipu::{NamespaceConfig, Persistence, Quipu};
use rand::Rng;

const NS: &str = "orders";
const THREADS: u32 = 2;
const KEYS: u64 = 40;

fn config() -> NamespaceConfig {
    NamespaceConfig::default()
        .with_persistence(Persistence::WriteBehind)
        .with_write_behind_interval(Duration::from_millis(50))
}

fn key(thread: u32, seq: u64) -> String {
    format!("t{thread}-k{}", seq % KEYS)
}

/// `None` for a delete (every 9th write), else the value naming the write.
fn write_of(round: u32, thread: u32, seq: u64) -> Option<String> {
    (seq % 9 != 8).then(|| format!("r{round}-t{thread}-s{seq}"))
}

/// (round, seq) of a stored value, to order writes of one thread.
fn order_of(v: &[u8]) -> (u32, u64) {
    let s = std::str::from_utf8(v).expect("utf8");
    let f: Vec<&str> = s.split('-').collect();
    (
        f[0][1..].parse().expect("round"),
        f[2][1..].parse().expect("seq"),
    )
}

#[test]
fn write_behind_child_main() {
    let Ok(dir) = std::env::var("QUIPU_WB_CHILD") else {
        return;
    };
    let round: u32 = std::env::var("QUIPU_WB_ROUND").unwrap().parse().unwrap();
    let db = Quipu::open(&dir).expect("child open");
    let ns = db
        .cache()
        .create_namespace(NS, config())
        .expect("namespace");
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let ns = ns.clone();
            let out = std::sync::Arc::clone(&out);
            std::thread::spawn(move || {
                for seq in 0.. {
                    match write_of(round, t, seq) {
                        Some(v) => ns.insert(key(t, seq), v).expect("insert"),
                        None => {
                            ns.remove(key(t, seq)).expect("remove");
                        }
                    }
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {t} {seq}").unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn acknowledged_writes_reach_the_store_after_sigkill() {
    let rounds: u32 = std::env::var("QUIPU_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let dir = common::tempdir();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    // (thread, key) -> (round, seq) of the last acknowledged write.
    let mut last_acked: HashMap<(u32, String), (u32, u64)> = HashMap::new();
    let mut total = 0u64;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "write_behind_child_main",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("QUIPU_WB_CHILD", dir.path())
            .env("QUIPU_WB_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            while lines.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if line.ends_with('\n') {
                    let _ = tx.send(line.clone());
                }
                line.clear();
            }
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..600)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "child exited early in round {round}"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        for line in rx.try_iter() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.first() != Some(&"ACK") {
                continue;
            }
            let t: u32 = f[1].parse().unwrap();
            let seq: u64 = f[2].parse().unwrap();
            last_acked.insert((t, key(t, seq)), (round, seq));
            total += 1;
        }
        verify(dir.path(), &last_acked, round);
    }
    assert!(
        total > u64::from(rounds) * 10,
        "too few acknowledged writes ({total}) to test anything"
    );
}

fn verify(dir: &std::path::Path, last_acked: &HashMap<(u32, String), (u32, u64)>, round: u32) {
    let db = Quipu::open(dir).expect("reopen");
    // Creating the namespace replays the journal's pending writes into the store.
    let ns = db
        .cache()
        .create_namespace(NS, config())
        .expect("namespace");
    ns.flush_write_behind().expect("flush");
    // Every write the child made, acknowledged or not, is in the journal in order; after the
    // flush the store must equal the journal folded key by key.
    let journal = db.log().topic("_cache.orders").expect("journal topic");
    // Segments the store had fully applied may have been deleted: start where the journal does.
    let start = journal.partition(0).expect("partition").start_offset();
    let records = journal.read(0, start, usize::MAX).expect("read journal");
    let mut last: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    let mut puts = HashSet::new();
    let mut deletes = HashSet::new();
    for r in &records {
        let k = r.key.clone().expect("journal key").to_vec();
        match &r.value {
            Some(v) => {
                puts.insert(v.to_vec());
            }
            None => {
                deletes.insert(k.clone());
            }
        }
        last.insert(k, r.value.as_ref().map(|v| v.to_vec()));
    }
    for (k, state) in &last {
        let stored = db
            .store()
            .get(NS, k)
            .expect("store get")
            .map(|b| b.to_vec());
        assert_eq!(
            &stored,
            state,
            "round {round}: store differs from the journal for {}",
            String::from_utf8_lossy(k)
        );
    }
    for ((t, k), &(r, seq)) in last_acked {
        let state = last.get(k.as_bytes()).cloned().flatten();
        match write_of(r, *t, seq) {
            Some(want) => {
                assert!(
                    puts.contains(want.as_bytes()),
                    "round {round}: acknowledged {want} lost"
                );
                if let Some(v) = state {
                    assert!(
                        order_of(&v) >= (r, seq),
                        "round {round}: {k} went back in time"
                    );
                }
                // Absent: a later (unacknowledged) delete of the same key, last in the journal.
            }
            None => {
                assert!(
                    deletes.contains(k.as_bytes()),
                    "round {round}: acknowledged delete of {k} lost"
                );
                if let Some(v) = state {
                    assert!(
                        order_of(&v) > (r, seq),
                        "round {round}: deleted {k} came back older"
                    );
                }
            }
        }
    }
}
