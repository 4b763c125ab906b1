//! Group commit: concurrent `Always` appenders share fsyncs, and every receipt says it synced.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::FaultyStorage;
use quipu::{Durability, Message, TopicConfig};

#[test]
fn sixteen_threads_share_fsyncs() {
    let dir = common::tempdir();
    let storage = FaultyStorage::default();
    // A slow disk makes appenders queue behind each fsync, as on real hardware.
    storage.faults.sync_delay_ms.store(5, Ordering::SeqCst);
    let db = common::open_faulty(dir.path(), &storage);
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default().with_durability(Durability::Always),
        )
        .expect("create");
    let per_thread = 40;
    std::thread::scope(|s| {
        for i in 0..16 {
            let t = &t;
            s.spawn(move || {
                for j in 0..per_thread {
                    let r = t.append(Message::new(format!("{i}-{j}"))).expect("append");
                    assert!(r.synced);
                    assert_eq!(r.durability, Durability::Always);
                }
            });
        }
    });
    let stats = db.log().stats();
    assert_eq!(stats.records, 16 * per_thread);
    let syncs = storage.faults.syncs.load(Ordering::SeqCst);
    // One fsync per record would be 640; group commit must do far fewer.
    assert!(
        syncs * 4 < 16 * per_thread,
        "{syncs} fsyncs for {} records",
        16 * per_thread
    );
    assert_eq!(
        t.read(0, 0, 10_000).expect("read").len() as u64,
        16 * per_thread
    );
}

#[test]
fn async_appenders_share_fsyncs() {
    let dir = common::tempdir();
    let storage = FaultyStorage::default();
    storage.faults.sync_delay_ms.store(5, Ordering::SeqCst);
    let db = common::open_faulty(dir.path(), &storage);
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default().with_durability(Durability::Always),
        )
        .expect("create");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..256 {
            let t = Arc::clone(&t);
            tasks.push(tokio::spawn(async move {
                for j in 0..4 {
                    let r = t
                        .append_async(Message::new(format!("{i}-{j}")))
                        .await
                        .expect("append");
                    assert!(r.synced);
                }
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
    });
    let syncs = storage.faults.syncs.load(Ordering::SeqCst);
    assert!(syncs * 16 < 1024, "{syncs} fsyncs for 1024 records");
    assert_eq!(t.partition(0).expect("p").end_offset(), 1024);
}

#[test]
fn interval_and_never_acknowledge_without_waiting_for_fsync() {
    let dir = common::tempdir();
    let storage = FaultyStorage::default();
    let db = common::open_faulty(dir.path(), &storage);
    let every = std::time::Duration::from_millis(20);
    let t = db
        .log()
        .create_topic(
            "i",
            TopicConfig::default().with_durability(Durability::Interval(every)),
        )
        .expect("create");
    let r = t.append(Message::new("x")).expect("append");
    assert!(!r.synced);
    assert_eq!(r.durability, Durability::Interval(every));
    // Visible to readers at once.
    assert_eq!(t.read(0, 0, 10).expect("read").len(), 1);
    let n = db
        .log()
        .create_topic(
            "n",
            TopicConfig::default().with_durability(Durability::Never),
        )
        .expect("n");
    let r = n.append(Message::new("y")).expect("append");
    assert!(!r.synced);
    // The interval thread fsyncs on its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while storage.faults.syncs.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "interval fsync never happened"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
