//! Reads by timestamp and following the tail, blocking and async.

mod common;

use std::time::Duration;

use quipu::{Durability, LogError, ManualClock, Message, TopicConfig};

#[test]
fn read_by_timestamp_finds_the_first_record_at_or_after() {
    let dir = common::tempdir();
    let clock = ManualClock::new(0);
    let db = common::open_manual(dir.path(), &clock);
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default()
                .with_durability(Durability::Never)
                .with_segment_bytes(4096)
                .with_index_interval_bytes(128),
        )
        .expect("create");
    for i in 0..500u64 {
        t.append(Message::new(vec![0u8; 40]).with_timestamp(1_000 + i * 10))
            .expect("append");
    }
    let p = t.partition(0).expect("p");
    assert!(p.segment_count() > 2);
    assert_eq!(p.offset_for_timestamp(0).expect("ts"), Some(0));
    assert_eq!(p.offset_for_timestamp(1_000).expect("ts"), Some(0));
    assert_eq!(p.offset_for_timestamp(1_001).expect("ts"), Some(1));
    assert_eq!(p.offset_for_timestamp(3_455).expect("ts"), Some(246));
    assert_eq!(p.offset_for_timestamp(5_990).expect("ts"), Some(499));
    assert_eq!(p.offset_for_timestamp(6_000).expect("ts"), None);
    // Timestamps from the clock when none is given.
    clock.set(50_000);
    let r = t.append(Message::new("now")).expect("append");
    assert_eq!(p.read(r.offset, 1).expect("read")[0].timestamp, 50_000);
    assert_eq!(p.offset_for_timestamp(40_000).expect("ts"), Some(r.offset));
}

#[test]
fn blocking_follower_wakes_on_append() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default().with_durability(Durability::Always),
        )
        .expect("create");
    let mut tail = t.follow(0, 0, 10).expect("follow");
    assert!(
        tail.next_blocking(Duration::from_millis(20))
            .expect("timeout")
            .is_empty()
    );
    let writer = {
        let t = std::sync::Arc::clone(&t);
        std::thread::spawn(move || {
            for i in 0..25 {
                t.append(Message::new(format!("e{i}"))).expect("append");
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 25 {
        let batch = tail.next_blocking(Duration::from_secs(5)).expect("follow");
        assert!(!batch.is_empty(), "follower starved");
        assert!(batch.len() <= 10);
        seen.extend(batch.into_iter().map(|r| r.offset));
    }
    writer.join().expect("writer");
    assert_eq!(seen, (0..25).collect::<Vec<_>>());
    assert_eq!(tail.position(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_follower_wakes_on_append_and_on_close() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default().with_durability(Durability::Never),
        )
        .expect("create");
    let mut tail = t.follow(0, 0, 100).expect("follow");
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            match tail.next().await {
                Ok(batch) => got.extend(batch.into_iter().map(|r| r.offset)),
                Err(LogError::Closed) => return got,
                Err(e) => panic!("{e}"),
            }
        }
    });
    for i in 0..50 {
        t.append_async(Message::new(format!("e{i}")))
            .await
            .expect("append");
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while t.partition(0).expect("p").end_offset() < 50 {
        assert!(std::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    db.log().close();
    let got = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("reader ends")
        .expect("join");
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

#[test]
fn always_topics_show_readers_only_synced_records() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let t = db
        .log()
        .create_topic("t", TopicConfig::default())
        .expect("create");
    let r = t.append(Message::new("a")).expect("append");
    // By the time append returns, the record is synced and therefore visible.
    assert_eq!(t.read(0, r.offset, 10).expect("read").len(), 1);
    assert_eq!(t.partition(0).expect("p").end_offset(), 1);
}

#[test]
fn waiting_forever_is_allowed() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let t = db
        .log()
        .create_topic("t", TopicConfig::default())
        .expect("create");
    let mut tail = t.follow(0, 0, 10).expect("follow");
    let writer = {
        let t = std::sync::Arc::clone(&t);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            t.append(Message::new("late")).expect("append");
        })
    };
    assert_eq!(tail.next_blocking(Duration::MAX).expect("follow").len(), 1);
    writer.join().expect("writer");
}
