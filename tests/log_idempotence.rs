//! Producer idempotence: a retried batch is not appended twice, even across a reopen.

mod common;

use quipu::{Durability, LogError, Message, Quipu, TopicConfig};

fn open(dir: &std::path::Path) -> Quipu {
    common::open(dir)
}

#[test]
fn retried_batches_are_not_appended_twice() {
    let dir = common::tempdir();
    let db = open(dir.path());
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default().with_durability(Durability::Always),
        )
        .expect("create");
    let p = t.partition(0).expect("p");
    let batch = [Message::new("pay 10"), Message::new("pay 20")];
    let first = p.append_idempotent(42, 0, &batch).expect("first");
    assert!(!first.duplicate);
    let retry = p.append_idempotent(42, 0, &batch).expect("retry");
    assert!(retry.duplicate);
    assert_eq!(
        (retry.offset, retry.last_offset),
        (first.offset, first.last_offset)
    );
    let next = p
        .append_idempotent(42, 2, &[Message::new("pay 30")])
        .expect("next");
    assert_eq!(next.offset, 2);
    // A gap in sequences means a lost batch: refused.
    let err = p
        .append_idempotent(42, 9, &[Message::new("x")])
        .expect_err("gap");
    assert!(
        matches!(
            err,
            LogError::OutOfOrderSequence {
                expected: 3,
                got: 9,
                ..
            }
        ),
        "{err}"
    );
    // Another producer is independent.
    assert!(
        !p.append_idempotent(7, 0, &[Message::new("other")])
            .expect("other")
            .duplicate
    );
    assert_eq!(p.end_offset(), 4);
    assert_eq!(db.log().stats().duplicates, 1);
}

#[test]
fn producer_state_survives_reopen_and_segment_rolls() {
    let dir = common::tempdir();
    {
        let db = open(dir.path());
        let t = db
            .log()
            .create_topic(
                "t",
                TopicConfig::default()
                    .with_durability(Durability::Never)
                    .with_segment_bytes(4096),
            )
            .expect("create");
        let p = t.partition(0).expect("p");
        for seq in 0..100u32 {
            p.append_idempotent(5, seq, &[Message::new(vec![b'v'; 100])])
                .expect("append");
        }
        assert!(p.segment_count() > 1);
    }
    let db = open(dir.path());
    let p = db
        .log()
        .topic("t")
        .expect("t")
        .partition(0)
        .expect("p")
        .clone();
    let retry = p
        .append_idempotent(5, 99, &[Message::new(vec![b'v'; 100])])
        .expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.offset, 99);
    assert_eq!(p.end_offset(), 100);
    assert_eq!(
        p.append_idempotent(5, 100, &[Message::new("new")])
            .expect("next")
            .offset,
        100
    );
}

#[tokio::test]
async fn async_idempotent_append() {
    let dir = common::tempdir();
    let db = open(dir.path());
    let t = db
        .log()
        .create_topic("t", TopicConfig::default())
        .expect("create");
    let p = t.partition(0).expect("p");
    let a = p
        .append_idempotent_async(1, 0, &[Message::new("a")])
        .await
        .expect("a");
    let b = p
        .append_idempotent_async(1, 0, &[Message::new("a")])
        .await
        .expect("b");
    assert!(b.duplicate && b.synced);
    assert_eq!(a.offset, b.offset);
}

#[test]
fn a_damaged_producer_snapshot_is_rebuilt_from_the_log() {
    let dir = common::tempdir();
    {
        let db = open(dir.path());
        let cfg = TopicConfig::default()
            .with_durability(Durability::Never)
            .with_segment_bytes(4096);
        let p = db
            .log()
            .create_topic("t", cfg)
            .expect("create")
            .partition(0)
            .expect("p")
            .clone();
        for seq in 0..100u32 {
            p.append_idempotent(9, seq, &[Message::new(vec![b'v'; 100])])
                .expect("append");
        }
        // Make the batch being retried sit in a sealed segment.
        for _ in 0..60 {
            p.append(&[Message::new(vec![b'w'; 100])]).expect("filler");
        }
    }
    let pdir = dir.path().join("log/t/0");
    let mut garbled = 0;
    for entry in std::fs::read_dir(&pdir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "producers") {
            std::fs::write(&path, b"garbage").expect("garble");
            garbled += 1;
        }
    }
    assert!(garbled > 0);
    // As after a crash: no clean-close record to take the producer state from, so it is
    // rebuilt from the batches.
    common::as_after_a_crash(dir.path());
    let db = open(dir.path());
    let p = db
        .log()
        .topic("t")
        .expect("t")
        .partition(0)
        .expect("p")
        .clone();
    let retry = p
        .append_idempotent(9, 99, &[Message::new(vec![b'v'; 100])])
        .expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.offset, 99);
}
