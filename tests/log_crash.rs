//! Crash test: a child process appends with `Durability::Always` from 4 threads and prints each
//! acknowledged offset; the parent SIGKILLs it at random moments, reopens, and checks that every
//! acknowledged record is there, byte-identical, in order, and that nothing appears that was
//! never written; one more writer batches through an `Appender` and is checked the same way, and
//! a buffered topic whose segments roll (fsynced behind the writer) keeps all it was flushed to.
//! `QUIPU_CRASH_ROUNDS` sets the number of rounds (default 20).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use quipu::{Durability, Message, Quipu, TopicConfig};
use rand::Rng;

const TOPIC: &str = "payments";
const PARTITIONS: u32 = 2;
const THREADS: u32 = 4;
/// A buffered topic written at the same time: it may lose its unsynced tail, but what survives
/// must be an intact, dense prefix.
const BUFFERED: &str = "clicks";
/// Thread number the child uses for the buffered topic.
const BUFFERED_THREAD: u32 = 99;
/// Thread number of the child's writer that batches through an `Appender`.
const APPENDER_THREAD: u32 = 98;

/// The value the child writes for (round, thread, seq): parseable and self-checking.
fn value(round: u32, thread: u32, seq: u64) -> Vec<u8> {
    let len = (seq as usize * 37 + thread as usize * 11) % 700;
    let fill = b'a' + ((seq + u64::from(thread)) % 26) as u8;
    let mut v = format!("r{round}-t{thread}-s{seq}-").into_bytes();
    v.extend(std::iter::repeat_n(fill, len));
    v
}

fn parse(v: &[u8]) -> Option<(u32, u32, u64)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut parts = s.splitn(4, '-');
    let r = parts.next()?.strip_prefix('r')?.parse().ok()?;
    let t = parts.next()?.strip_prefix('t')?.parse().ok()?;
    let q = parts.next()?.strip_prefix('s')?.parse().ok()?;
    Some((r, t, q))
}

/// Runs only as the child process (when `QUIPU_CRASH_CHILD` is set): appends until killed.
#[test]
fn crash_child_main() {
    let Ok(dir) = std::env::var("QUIPU_CRASH_CHILD") else {
        return;
    };
    let round: u32 = std::env::var("QUIPU_CRASH_ROUND")
        .expect("round")
        .parse()
        .expect("number");
    let db = Quipu::open(&dir).expect("child open");
    let topic = db.log().topic(TOPIC).expect("topic");
    let clicks = db.log().topic(BUFFERED).expect("buffered topic");
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let flushed_out = std::sync::Arc::clone(&out);
    std::thread::spawn(move || {
        for seq in 0.. {
            let r = clicks
                .append(Message::new(value(round, BUFFERED_THREAD, seq)))
                .expect("buffered append");
            if seq % 50 == 0 {
                // What `flush` returns for is durable, though segments roll behind it.
                clicks.flush().expect("flush buffered");
                let mut o = flushed_out.lock().expect("stdout");
                writeln!(o, "FLUSHED {}", r.offset).expect("write");
                o.flush().expect("flush");
                drop(o);
                // Leave the CPU to the durable appenders; this writer only needs to be mid-write.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let topic = std::sync::Arc::clone(&topic);
            let out = std::sync::Arc::clone(&out);
            std::thread::spawn(move || {
                for seq in 0.. {
                    let key = format!("acct-{}", (seq + u64::from(t)) % 13);
                    let r = topic
                        .append(Message::new(value(round, t, seq)).with_key(key))
                        .expect("append");
                    assert!(r.synced);
                    let mut o = out.lock().expect("stdout");
                    writeln!(o, "ACK {} {} {round} {t} {seq}", r.partition, r.offset)
                        .expect("write");
                    o.flush().expect("flush");
                }
            })
        })
        .collect();
    // One more writer batches through an `Appender` and acknowledges each record of a batch
    // once the batch's receipt (fsynced) is back.
    let appender_out = std::sync::Arc::clone(&out);
    let partition = std::sync::Arc::clone(topic.partition(0).expect("partition 0"));
    let batcher = std::thread::spawn(move || {
        let mut appender = partition.appender();
        let ack = |r: quipu::AppendReceipt, first_seq: u64| {
            let mut o = appender_out.lock().expect("stdout");
            for (i, offset) in (r.offset..=r.last_offset).enumerate() {
                let seq = first_seq + i as u64;
                writeln!(
                    o,
                    "ACK {} {offset} {round} {APPENDER_THREAD} {seq}",
                    r.partition
                )
                .expect("write");
            }
            o.flush().expect("flush");
        };
        let mut unacked = 0;
        for seq in 0.. {
            let msg = Message::new(value(round, APPENDER_THREAD, seq));
            if let Some(r) = appender.append(&msg).expect("appender append") {
                assert!(r.synced);
                ack(r, unacked);
                unacked = seq;
            }
            if seq % 7 == 6 {
                let r = appender.flush().expect("flush").expect("a batch");
                assert!(r.synced);
                ack(r, unacked);
                unacked = seq + 1;
            }
        }
    });
    for h in handles {
        h.join().expect("thread");
    }
    batcher.join().expect("appender thread");
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let rounds: u32 = std::env::var("QUIPU_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = common::tempdir();
    {
        let db = Quipu::open(dir.path()).expect("open");
        db.log()
            .create_topic(
                TOPIC,
                TopicConfig::default()
                    .with_partitions(PARTITIONS)
                    .with_durability(Durability::Always)
                    .with_segment_bytes(64 * 1024),
            )
            .expect("create");
        let every = Duration::from_millis(5);
        let buffered = TopicConfig::default()
            .with_durability(Durability::Interval(every))
            .with_segment_bytes(256 * 1024);
        db.log()
            .create_topic(BUFFERED, buffered)
            .expect("create buffered");
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = rand::thread_rng();
    // (partition, offset) -> (round, thread, seq) for every acknowledged append.
    let mut acked: BTreeMap<(u32, u64), (u32, u32, u64)> = BTreeMap::new();
    let mut total_acks = 0;
    // The highest offset of the buffered topic that a `flush` returned for.
    let mut flushed: Option<u64> = None;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_main",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("QUIPU_CRASH_CHILD", dir.path())
            .env("QUIPU_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            while lines.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                // A line cut by the kill has no newline: it was not fully reported, skip it.
                if line.ends_with('\n') {
                    let _ = tx.send(line.clone());
                }
                line.clear();
            }
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..400)));
        let early_exit = child.try_wait().expect("try_wait");
        assert!(
            early_exit.is_none(),
            "child exited on its own in round {round}: {early_exit:?}"
        );
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        reader.join().expect("reader");
        for line in rx.try_iter() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.first() == Some(&"FLUSHED") {
                let offset: u64 = f[1].parse().expect("number");
                flushed = flushed.max(Some(offset));
                continue;
            }
            if f.first() != Some(&"ACK") {
                continue;
            }
            let n = |i: usize| f[i].parse::<u64>().expect("number");
            let key = (n(1) as u32, n(2));
            let id = (n(3) as u32, n(4) as u32, n(5));
            assert!(
                acked.insert(key, id).is_none(),
                "offset {key:?} acknowledged twice"
            );
            total_acks += 1;
        }
        verify(dir.path(), &acked, flushed, round);
    }
    assert!(
        total_acks > u64::from(rounds),
        "the child acknowledged too little to test anything"
    );
    assert!(
        acked.values().any(|id| id.1 == APPENDER_THREAD),
        "the appender's batches were never acknowledged"
    );
    assert!(flushed.is_some(), "the buffered topic was never flushed");
}

fn verify(
    dir: &std::path::Path,
    acked: &BTreeMap<(u32, u64), (u32, u32, u64)>,
    flushed: Option<u64>,
    round: u32,
) {
    let db = Quipu::open(dir).expect("reopen after kill");
    let clicks = db.log().topic(BUFFERED).expect("buffered topic");
    let records = clicks.read(0, 0, usize::MAX).expect("read buffered");
    if let Some(offset) = flushed {
        assert!(
            (records.len() as u64) > offset,
            "round {round}: flushed buffered offset {offset} lost (end {})",
            records.len()
        );
    }
    let mut last: HashMap<u32, u64> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r.offset, i as u64,
            "round {round}: gap in the buffered topic"
        );
        let v = r.value.as_deref().expect("value");
        let id = parse(v).unwrap_or_else(|| panic!("round {round}: buffered record never written"));
        assert_eq!(
            v,
            value(id.0, id.1, id.2).as_slice(),
            "round {round}: buffered bytes differ"
        );
        if let Some(prev) = last.insert(id.0, id.2) {
            assert_eq!(
                prev + 1,
                id.2,
                "round {round}: buffered records skipped or reordered"
            );
        }
    }
    let topic = db.log().topic(TOPIC).expect("topic");
    for p in 0..PARTITIONS {
        let records = topic.read(p, 0, usize::MAX).expect("read all");
        // Dense offsets from 0: nothing lost in the middle.
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, i as u64, "round {round}: gap in partition {p}");
        }
        let mut last_seq: HashMap<(u32, u32), u64> = HashMap::new();
        for r in &records {
            let v = r.value.as_deref().expect("no tombstones written");
            let id =
                parse(v).unwrap_or_else(|| panic!("round {round}: record never written: {v:?}"));
            assert_eq!(
                v,
                value(id.0, id.1, id.2).as_slice(),
                "round {round}: bytes differ"
            );
            // Each writer thread's records keep their order.
            if let Some(prev) = last_seq.insert((id.0, id.1), id.2) {
                assert!(
                    prev < id.2,
                    "round {round}: thread order broken in partition {p}"
                );
            }
            if let Some(expected) = acked.get(&(p, r.offset)) {
                assert_eq!(*expected, id, "round {round}: acknowledged record changed");
            }
        }
        let end = records.len() as u64;
        for (&(ap, off), id) in acked.range((p, 0)..(p + 1, 0)) {
            assert!(
                off < end,
                "round {round}: acknowledged {ap}/{off} {id:?} lost (end {end})"
            );
        }
    }
}
