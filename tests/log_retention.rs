//! Retention by size and age deletes whole sealed segments, never the active one.

mod common;

use std::time::Duration;

use quipu::{Durability, LogError, ManualClock, Message, TopicConfig};

#[test]
fn retention_by_size_keeps_the_budget() {
    let dir = common::tempdir();
    let clock = ManualClock::new(1_000_000);
    let db = common::open_manual(dir.path(), &clock);
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default()
                .with_durability(Durability::Never)
                .with_segment_bytes(4096)
                .with_retention_bytes(16 * 1024),
        )
        .expect("create");
    for i in 0..1000 {
        t.append(Message::new(format!("{i:0100}"))).expect("append");
    }
    let p = t.partition(0).expect("p");
    let before = p.segment_count();
    let deleted = t.enforce_retention().expect("retention");
    assert!(deleted > 0);
    assert_eq!(p.segment_count(), before - deleted);
    assert!(
        p.size_bytes() <= 16 * 1024,
        "size {} over budget",
        p.size_bytes()
    );
    let start = p.start_offset();
    assert!(start > 0);
    // Everything from the new start on is intact; before it is out of range.
    let records = p.read(start, usize::MAX).expect("read");
    assert_eq!(records.len() as u64, 1000 - start);
    assert_eq!(
        records[0].value.as_deref(),
        Some(format!("{start:0100}").as_bytes())
    );
    assert!(matches!(
        p.read(0, 1),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(db.log().stats().segments_deleted, deleted as u64);
    // The deletion is durable.
    drop(t);
    drop(db);
    let db = common::open_manual(dir.path(), &clock);
    assert_eq!(
        db.log()
            .topic("t")
            .expect("t")
            .partition(0)
            .expect("p")
            .start_offset(),
        start
    );
}

#[test]
fn retention_by_age_uses_the_clock_and_seals_idle_segments() {
    let dir = common::tempdir();
    let clock = ManualClock::new(10_000_000);
    let db = common::open_manual(dir.path(), &clock);
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default()
                .with_durability(Durability::Never)
                .with_segment_age(Duration::from_secs(3600))
                .with_retention_age(Duration::from_secs(24 * 3600)),
        )
        .expect("create");
    t.append(Message::new("old")).expect("append");
    assert_eq!(t.enforce_retention().expect("nothing old yet"), 0);
    clock.advance(Duration::from_secs(2 * 3600));
    // Rolls by age on the next append.
    t.append(Message::new("newer")).expect("append");
    let p = t.partition(0).expect("p");
    assert_eq!(p.segment_count(), 2);
    clock.advance(Duration::from_secs(23 * 3600));
    assert_eq!(t.enforce_retention().expect("retention"), 1);
    assert_eq!(p.start_offset(), 1);
    // An idle active segment past its age is sealed, then expires.
    clock.advance(Duration::from_secs(30 * 3600));
    t.enforce_retention().expect("retention");
    assert_eq!(p.start_offset(), 2);
    assert_eq!(p.end_offset(), 2);
    assert_eq!(t.append(Message::new("fresh")).expect("append").offset, 2);
}

#[test]
fn background_maintenance_runs_retention() {
    let dir = common::tempdir();
    let db = quipu::Quipu::builder(dir.path())
        .log_config(
            common::test_config().with_maintenance_interval(Some(Duration::from_millis(20))),
        )
        .open()
        .expect("open");
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default()
                .with_durability(Durability::Never)
                .with_segment_bytes(4096)
                .with_retention_bytes(8192),
        )
        .expect("create");
    for _ in 0..500 {
        t.append(Message::new(vec![0u8; 100])).expect("append");
    }
    let p = t.partition(0).expect("p");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while p.start_offset() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "maintenance never ran"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn delete_records_before_drops_whole_segments_only() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let t = db
        .log()
        .create_topic(
            "journal",
            quipu::TopicConfig::default()
                .with_partitions(1)
                .with_segment_bytes(4096),
        )
        .unwrap();
    for i in 0..200u32 {
        t.append(quipu::Message::new(vec![i as u8; 100])).unwrap();
    }
    let p = t.partition(0).unwrap();
    assert_eq!(t.delete_records_before(0, 0).unwrap(), 0);
    let deleted = t.delete_records_before(0, 120).unwrap();
    assert!(deleted > 0);
    let start = p.start_offset();
    assert!(start > 0 && start <= 120, "start {start}");
    let rest = t.read(0, start, usize::MAX).unwrap();
    assert_eq!(rest.first().unwrap().offset, start);
    assert_eq!(rest.last().unwrap().offset, 199);
    assert_eq!(rest.len() as u64, 200 - start);
    // Never past the active segment, whatever the offset.
    t.delete_records_before(0, u64::MAX).unwrap();
    assert_eq!(
        t.read(0, p.start_offset(), usize::MAX)
            .unwrap()
            .last()
            .unwrap()
            .offset,
        199
    );
    drop(db);
    let db = common::open(dir.path());
    let t = db.log().topic("journal").unwrap();
    assert!(t.partition(0).unwrap().start_offset() >= start);
}
