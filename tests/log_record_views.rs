//! Records borrowed from batches (`BatchView::record_views`) and records read while earlier
//! reads are still held: what they return does not depend on how the read buffers are reused.

mod common;

use std::ops::ControlFlow;

use quipu::{Durability, ManualClock, Message, Quipu, Record, TopicConfig};

/// Keys, headers, tombstones, explicit timestamps and values long enough for multi-byte
/// lengths, in batches of 1 to 7 records.
fn fill(db: &Quipu, durability: Durability) -> std::sync::Arc<quipu::Partition> {
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default()
                .with_durability(durability)
                .with_segment_bytes(64 * 1024),
        )
        .expect("create");
    let p = std::sync::Arc::clone(t.partition(0).expect("p"));
    for i in 0..400u64 {
        let batch: Vec<Message> = (0..(i % 7 + 1))
            .map(|j| {
                let value = vec![b'a' + (j as u8); ((i * 37 + j * 11) % 700) as usize];
                match (i + j) % 4 {
                    0 => Message::new(value),
                    1 => Message::new(value).with_key(format!("key-{i}")),
                    2 => Message::new(value)
                        .with_key("k")
                        .with_header("trace", format!("{i}/{j}"))
                        .with_header("empty", "")
                        .with_timestamp(1_000 + i),
                    _ => Message::tombstone(format!("gone-{j}")),
                }
            })
            .collect();
        p.append(&batch).expect("append");
    }
    p
}

fn views(p: &quipu::Partition, from: u64) -> Vec<Record> {
    let mut out = Vec::new();
    p.visit_batches(from, |b| {
        for r in b.record_views() {
            let r = r.expect("record");
            assert_eq!(r.is_tombstone(), r.value().is_none());
            out.push(r.to_record());
        }
        ControlFlow::Continue(())
    })
    .expect("visit");
    out
}

#[test]
fn record_views_match_read_for_every_kind_of_record() {
    for durability in [Durability::Never, Durability::Always] {
        let dir = common::tempdir();
        let db = common::open(dir.path());
        let p = fill(&db, durability);
        let all = p.read(0, usize::MAX).expect("read");
        assert_eq!(all.len() as u64, p.end_offset());
        assert_eq!(views(&p, 0), all);
        // From the middle of a batch, views start at the batch: the records agree from there.
        let from = 1001;
        let tail = views(&p, from);
        let first = tail
            .iter()
            .position(|r| r.offset == from)
            .expect("offset present");
        assert_eq!(&tail[first..], &all[from as usize..]);
        // And after a reopen, from the files alone.
        drop(p);
        drop(db);
        let db = common::open(dir.path());
        let t = db.log().topic("t").expect("topic");
        let p = t.partition(0).expect("p");
        assert_eq!(views(p, 0), all);
    }
}

#[test]
fn records_and_batches_held_across_reads_keep_their_bytes() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let p = fill(&db, Durability::Never);
    let expected = p.read(0, usize::MAX).expect("read");
    // Many small reads while all earlier results are kept: a reused read buffer would
    // overwrite what they point to.
    let mut held = Vec::new();
    let mut held_batches = Vec::new();
    let mut next = 0;
    while next < p.end_offset() {
        let rs = p.read(next, 13).expect("read");
        next = rs.last().expect("some").offset + 1;
        held.push(rs);
        held_batches.push(
            p.read_batches(next.saturating_sub(5), 3000)
                .expect("batches"),
        );
    }
    let flat: Vec<Record> = held.into_iter().flatten().collect();
    assert_eq!(flat, expected);
    for batches in &held_batches {
        for b in batches {
            for r in b.records().expect("decode") {
                assert_eq!(r, expected[r.offset as usize]);
            }
        }
    }
}

#[test]
fn log_assigned_timestamps_never_go_backwards() {
    let dir = common::tempdir();
    let clock = ManualClock::new(50_000);
    let db = common::open_manual(dir.path(), &clock);
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default().with_durability(Durability::Never),
        )
        .expect("create");
    let p = t.partition(0).expect("p");
    p.append(&[Message::new("a")]).expect("append");
    // The clock steps back (NTP, a coarse read behind a precise one).
    clock.set(20_000);
    p.append(&[Message::new("b")]).expect("append");
    // An explicit timestamp is the caller's and is kept as given.
    p.append(&[Message::new("c").with_timestamp(10)])
        .expect("append");
    clock.set(60_000);
    p.append(&[Message::new("d")]).expect("append");
    let ts: Vec<u64> = p
        .read(0, 10)
        .expect("read")
        .iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(ts, vec![50_000, 50_000, 10, 60_000]);
}
