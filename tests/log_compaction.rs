//! Key compaction keeps the newest record per key with its offset; tombstones go after grace.

mod common;

use std::time::Duration;

use quipu::{Cleanup, Durability, ManualClock, Message, TopicConfig};

fn config() -> TopicConfig {
    TopicConfig::default()
        .with_durability(Durability::Never)
        .with_segment_bytes(4096)
        .with_cleanup(Cleanup::Compact)
        .with_tombstone_grace(Duration::from_secs(3600))
}

#[test]
fn compaction_keeps_the_latest_record_per_key() {
    let dir = common::tempdir();
    let clock = ManualClock::new(1_000_000);
    let db = common::open_manual(dir.path(), &clock);
    let t = db.log().create_topic("prices", config()).expect("create");
    // 10 keys, each updated 30 times; plus unkeyed records that must all survive.
    for round in 0..30 {
        for k in 0..10 {
            t.append(
                Message::new(format!("{k}:{round}:{}", "p".repeat(60)))
                    .with_key(format!("sku-{k}")),
            )
            .expect("append");
        }
        t.append(Message::new(format!("audit {round}")))
            .expect("append");
    }
    let p = t.partition(0).expect("p");
    let end = p.end_offset();
    let before = p.read(0, usize::MAX).expect("read");
    let removed = t.compact().expect("compact");
    assert!(removed > 0);
    let after = p.read(0, usize::MAX).expect("read");
    assert_eq!(before.len() - after.len(), removed as usize);
    assert_eq!(p.end_offset(), end, "compaction never moves the end");
    // Offsets are unchanged and every surviving record is byte-identical to the original.
    for r in &after {
        let orig = before
            .iter()
            .find(|o| o.offset == r.offset)
            .expect("same offset");
        assert_eq!(orig, r);
    }
    // Newest value of every key is there; every unkeyed record is there.
    for k in 0..10 {
        let key = format!("sku-{k}");
        let newest = before
            .iter()
            .rev()
            .find(|r| r.key.as_deref() == Some(key.as_bytes()))
            .expect("key");
        assert!(after.contains(newest));
    }
    assert_eq!(after.iter().filter(|r| r.key.is_none()).count(), 30);
    // Survives reopen, and appends continue at the same end.
    drop(t);
    drop(db);
    let db = common::open_manual(dir.path(), &clock);
    let t = db.log().topic("prices").expect("t");
    assert_eq!(t.read(0, 0, usize::MAX).expect("read"), after);
    assert_eq!(
        t.append(Message::new("x").with_key("sku-1"))
            .expect("append")
            .offset,
        end
    );
}

#[test]
fn tombstones_delete_keys_and_expire_after_grace() {
    let dir = common::tempdir();
    let clock = ManualClock::new(1_000_000);
    let db = common::open_manual(dir.path(), &clock);
    let t = db.log().create_topic("people", config()).expect("create");
    t.append(Message::new("cedula 0912345678").with_key("person-1"))
        .expect("append");
    t.append(Message::new("cedula 1710034065").with_key("person-2"))
        .expect("append");
    // The right to erasure: a tombstone for person-1.
    let tomb = t
        .append(Message::tombstone("person-1"))
        .expect("tombstone")
        .offset;
    // Push everything above into sealed segments.
    for i in 0..200 {
        t.append(Message::new(vec![b'f'; 64]).with_key(format!("filler-{}", i % 3)))
            .expect("fill");
    }
    t.compact().expect("compact");
    let p = t.partition(0).expect("p");
    let records = p.read(0, usize::MAX).expect("read");
    assert!(
        !records
            .iter()
            .any(|r| r.value.as_deref() == Some(&b"cedula 0912345678"[..])),
        "erased data remains"
    );
    assert!(
        records.iter().any(|r| r.offset == tomb && r.is_tombstone()),
        "tombstone kept during grace"
    );
    assert!(
        records
            .iter()
            .any(|r| r.key.as_deref() == Some(&b"person-2"[..]))
    );
    clock.advance(Duration::from_secs(2 * 3600));
    t.compact().expect("compact");
    let records = p.read(0, usize::MAX).expect("read");
    assert!(
        !records
            .iter()
            .any(|r| r.key.as_deref() == Some(&b"person-1"[..])),
        "tombstone outlived grace"
    );
    assert!(
        records
            .iter()
            .any(|r| r.key.as_deref() == Some(&b"person-2"[..]))
    );
}

#[test]
fn delete_topics_are_not_compacted() {
    let dir = common::tempdir();
    let clock = ManualClock::new(0);
    let db = common::open_manual(dir.path(), &clock);
    let t = db
        .log()
        .create_topic("t", config().with_cleanup(Cleanup::Delete))
        .expect("create");
    for _ in 0..200 {
        t.append(Message::new(vec![1u8; 64]).with_key("same"))
            .expect("append");
    }
    assert_eq!(t.compact().expect("compact"), 0);
    assert_eq!(t.read(0, 0, usize::MAX).expect("read").len(), 200);
}
