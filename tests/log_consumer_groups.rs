//! Consumer groups: committed offsets survive restarts; lag per partition.

mod common;

use quipu::{Durability, LogError, Message, Quipu, TopicConfig};

fn open(dir: &std::path::Path) -> Quipu {
    common::open(dir)
}

#[test]
fn commits_are_durable_and_lag_is_reported() {
    let dir = common::tempdir();
    {
        let db = open(dir.path());
        let t = db
            .log()
            .create_topic(
                "orders",
                TopicConfig::default()
                    .with_partitions(3)
                    .with_durability(Durability::Never),
            )
            .expect("create");
        for i in 0..30 {
            t.append(Message::new(format!("order-{i}")).with_key(format!("buyer-{i}")))
                .expect("append");
        }
        let g = db.log().consumer_group("billing").expect("group");
        let lag: u64 = g.lag("orders").expect("lag").iter().map(|l| l.lag).sum();
        assert_eq!(lag, 30);
        let batch = g.poll("orders", 4).expect("poll");
        assert!(!batch.is_empty() && batch.len() <= 12);
        g.commit_positions().expect("commit");
        let lag: u64 = g.lag("orders").expect("lag").iter().map(|l| l.lag).sum();
        assert_eq!(lag, 30 - batch.len() as u64);
        // Same name, same handle.
        assert!(std::sync::Arc::ptr_eq(
            &g,
            &db.log().consumer_group("billing").expect("again")
        ));
    }
    let db = open(dir.path());
    let g = db.log().consumer_group("billing").expect("group");
    let lags = g.lag("orders").expect("lag");
    let committed: u64 = lags.iter().map(|l| l.committed.unwrap_or(0)).sum();
    assert!(committed > 0 && committed <= 12);
    // Resuming reads from the committed offsets: nothing is skipped, nothing repeated.
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let batch = g.poll("orders", 5).expect("poll");
        if batch.is_empty() {
            break;
        }
        for (p, r) in batch {
            assert!(seen.insert((p, r.offset)));
            assert!(r.offset >= g.committed("orders", p).unwrap_or(0));
        }
    }
    assert_eq!(seen.len() as u64 + committed, 30);
    g.commit_positions().expect("commit");
    assert!(g.lag("orders").expect("lag").iter().all(|l| l.lag == 0));
}

#[test]
fn invalid_commits_are_refused_and_change_nothing() {
    let dir = common::tempdir();
    let db = open(dir.path());
    let t = db
        .log()
        .create_topic("t", TopicConfig::default())
        .expect("create");
    t.append(Message::new("a")).expect("append");
    let g = db.log().consumer_group("g").expect("group");
    g.commit("t", 0, 1).expect("commit");
    assert!(matches!(
        g.commit("t", 0, 5),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        g.commit("nope", 0, 0),
        Err(LogError::TopicNotFound(_))
    ));
    assert!(matches!(
        g.commit("t", 3, 0),
        Err(LogError::PartitionNotFound { .. })
    ));
    assert_eq!(g.committed("t", 0), Some(1));
    assert!(matches!(
        db.log().consumer_group("bad/name"),
        Err(LogError::InvalidTopicName { .. })
    ));
}

#[test]
fn a_commit_never_points_past_what_is_on_disk() {
    use std::sync::atomic::Ordering;
    let dir = common::tempdir();
    let storage = common::FaultyStorage::default();
    let db = common::open_faulty(dir.path(), &storage);
    let cfg = TopicConfig::default().with_durability(Durability::Never);
    let t = db.log().create_topic("t", cfg).expect("create");
    for i in 0..10 {
        t.append(Message::new(format!("r{i}"))).expect("append");
    }
    let g = db.log().consumer_group("g").expect("group");
    let before = storage.faults.syncs.load(Ordering::SeqCst);
    g.commit("t", 0, 10).expect("commit");
    // The buffered records were fsynced first: a crash cannot leave the commit past the log,
    // which would make the group skip the records appended after it.
    assert!(storage.faults.syncs.load(Ordering::SeqCst) > before);
    let before = storage.faults.syncs.load(Ordering::SeqCst);
    g.commit("t", 0, 10).expect("commit again");
    assert_eq!(
        storage.faults.syncs.load(Ordering::SeqCst),
        before,
        "no fsync when already durable"
    );
}

#[test]
fn groups_are_listed_and_deleted_durably() {
    let dir = common::tempdir();
    {
        let db = open(dir.path());
        let t = db.log().topic_or_create("orders").expect("topic");
        t.append(Message::new("order 1")).expect("append");
        assert!(db.log().consumer_groups().expect("list").is_empty());
        db.log()
            .consumer_group("billing")
            .expect("group")
            .commit("orders", 0, 1)
            .expect("commit");
        db.log()
            .consumer_group("shipping")
            .expect("group")
            .commit("orders", 0, 0)
            .expect("commit");
        // A group that never committed leaves no trace.
        db.log().consumer_group("idle").expect("group");
        assert_eq!(
            db.log().consumer_groups().expect("list"),
            ["billing", "shipping"]
        );
        assert!(db.log().delete_consumer_group("shipping").expect("delete"));
        assert!(!db.log().delete_consumer_group("shipping").expect("again"));
        assert!(matches!(
            db.log().delete_consumer_group("../x"),
            Err(LogError::InvalidTopicName { .. })
        ));
    }
    let db = open(dir.path());
    assert_eq!(db.log().consumer_groups().expect("list"), ["billing"]);
    assert_eq!(
        db.log()
            .consumer_group("billing")
            .expect("group")
            .committed("orders", 0),
        Some(1)
    );
    // A group of the deleted name starts over.
    let shipping = db.log().consumer_group("shipping").expect("group");
    assert_eq!(shipping.committed("orders", 0), None);
}
