//! Fault injection through the storage trait: a failed fsync poisons the partition and every
//! waiting appender gets the error; a full disk is a typed error that loses nothing acknowledged.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::FaultyStorage;
use quipu::{Durability, LogError, Message, Quipu, TopicConfig};

#[test]
fn failed_fsync_poisons_and_fails_every_waiter() {
    let dir = common::tempdir();
    let storage = FaultyStorage::default();
    let db = common::open_faulty(dir.path(), &storage);
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default().with_durability(Durability::Always),
        )
        .expect("create");
    for i in 0..5 {
        t.append(Message::new(format!("ok-{i}")))
            .expect("healthy append");
    }
    storage.faults.sync_delay_ms.store(50, Ordering::SeqCst);
    storage.faults.fail_sync.store(true, Ordering::SeqCst);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let t = &t;
                s.spawn(move || t.append(Message::new(format!("doomed-{i}"))))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for r in &results {
        assert!(
            matches!(r, Err(LogError::Poisoned { .. })),
            "waiter got {r:?}"
        );
    }
    // Later writes are refused too, with the cause.
    match t.append(Message::new("later")) {
        Err(LogError::Poisoned { cause, .. }) => assert!(cause.contains("injected fsync failure")),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    assert!(db.log().stats().fsync_failures >= 1);
    // A follower waiting for more learns that none will come, instead of waiting forever.
    let mut tail = t.follow(0, 5, 10).expect("follow");
    assert!(matches!(
        tail.next_blocking(std::time::Duration::MAX),
        Err(LogError::Poisoned { .. })
    ));
    // Reads of what was acknowledged still work.
    assert_eq!(t.read(0, 0, 100).expect("read").len(), 5);
    drop(t);
    drop(db);
    // After reopening on a healthy disk everything acknowledged is there.
    storage.faults.fail_sync.store(false, Ordering::SeqCst);
    storage.faults.sync_delay_ms.store(0, Ordering::SeqCst);
    let db = common::open_faulty(dir.path(), &storage);
    let t = db.log().topic("t").expect("t");
    let values: Vec<_> = t
        .read(0, 0, 100)
        .expect("read")
        .into_iter()
        .map(|r| r.value)
        .collect();
    for (i, v) in values.iter().take(5).enumerate() {
        assert_eq!(v.as_deref(), Some(format!("ok-{i}").as_bytes()));
    }
    t.append(Message::new("healthy again"))
        .expect("append after reopen");
}

#[test]
fn async_waiters_get_the_fsync_error_too() {
    let dir = common::tempdir();
    let storage = FaultyStorage::default();
    let db = common::open_faulty(dir.path(), &storage);
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default().with_durability(Durability::Always),
        )
        .expect("create");
    storage.faults.sync_delay_ms.store(30, Ordering::SeqCst);
    storage.faults.fail_sync.store(true, Ordering::SeqCst);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..32 {
            let t = Arc::clone(&t);
            tasks.push(tokio::spawn(async move {
                t.append_async(Message::new(format!("a{i}"))).await
            }));
        }
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.expect("join"));
        }
        out
    });
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(LogError::Poisoned { .. })))
    );
}

#[test]
fn full_disk_is_a_typed_error_and_loses_nothing_acknowledged() {
    let dir = common::tempdir();
    let storage = FaultyStorage::default();
    let db = common::open_faulty(dir.path(), &storage);
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default().with_durability(Durability::Always),
        )
        .expect("create");
    storage.faults.write_budget.store(2000, Ordering::SeqCst);
    let mut acked = Vec::new();
    let err = loop {
        match t.append(Message::new(vec![b'x'; 150])) {
            Ok(r) => acked.push(r.offset),
            Err(e) => break e,
        }
        assert!(acked.len() < 100, "the disk never filled");
    };
    assert!(matches!(err, LogError::StorageFull { .. }), "got {err:?}");
    assert!(matches!(
        t.append(Message::new("more")),
        Err(LogError::StorageFull { .. })
    ));
    assert!(!acked.is_empty());
    drop(t);
    drop(db);
    // Space is freed; reopen: every acknowledged record is intact, the torn bytes are gone.
    storage.faults.write_budget.store(-1, Ordering::SeqCst);
    let db = common::open_faulty(dir.path(), &storage);
    let t = db.log().topic("t").expect("t");
    let records = t.read(0, 0, 1000).expect("read");
    assert_eq!(records.len(), acked.len());
    assert!(
        records
            .iter()
            .all(|r| r.value.as_deref() == Some(&[b'x'; 150][..]))
    );
    let r = t
        .append(Message::new("after"))
        .expect("append after space is freed");
    assert_eq!(r.offset, acked.len() as u64);
}

#[test]
fn full_disk_with_buffered_durability_fails_the_append_that_hits_it() {
    let dir = common::tempdir();
    let storage = FaultyStorage::default();
    let db = Quipu::builder(dir.path())
        .log_config(common::test_config().with_write_buffer_bytes(1024))
        .storage(Arc::new(storage.clone()))
        .open()
        .expect("open");
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default().with_durability(Durability::Never),
        )
        .expect("create");
    storage.faults.write_budget.store(3000, Ordering::SeqCst);
    let mut failed = None;
    for i in 0..200 {
        if let Err(e) = t.append(Message::new(vec![b'y'; 200])) {
            failed = Some((i, e));
            break;
        }
    }
    let (_, err) = failed.expect("disk filled");
    assert!(matches!(err, LogError::StorageFull { .. }), "got {err:?}");
}

/// Appends to `t` (one partition) until its segment rolls; returns the offset below which the
/// sealed segments end. Fails instead of hanging if an append does not return.
fn append_until_roll(t: &Arc<quipu::Topic>) -> u64 {
    let p = Arc::clone(t.partition(0).expect("partition"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let segments = p.segment_count();
        let mut i = 0u64;
        while p.segment_count() == segments {
            p.append(&[Message::new(format!("record-{i:05}"))])
                .expect("append");
            i += 1;
        }
        let _ = tx.send(p.end_offset() - 1);
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("the append that rolled returned")
}

/// A data dir behind a `FaultyStorage` with topic `t` of `Never`, 4 KiB segments and one
/// record appended while the storage was healthy.
fn rolling_never_topic() -> (tempfile::TempDir, FaultyStorage, Quipu, Arc<quipu::Topic>) {
    let (dir, storage, db, t) = faulty_topic(
        TopicConfig::default()
            .with_durability(Durability::Never)
            .with_segment_bytes(4096),
    );
    t.append(Message::new("first")).expect("append");
    (dir, storage, db, t)
}

/// A data dir behind a `FaultyStorage`, with topic `t` of `config`.
fn faulty_topic(
    config: TopicConfig,
) -> (tempfile::TempDir, FaultyStorage, Quipu, Arc<quipu::Topic>) {
    let dir = common::tempdir();
    let storage = FaultyStorage::default();
    let db = common::open_faulty(dir.path(), &storage);
    let t = db.log().create_topic("t", config).expect("create");
    (dir, storage, db, t)
}

/// A `Never` topic's rolled segment is fsynced by the sync thread, not by the append that
/// rolled: with fsyncs held, the roll returns and the sealed records are not yet reported
/// durable; a `flush` covers them (it fsyncs the sealed segment before the active one).
#[test]
fn a_rolled_segment_is_fsynced_behind_the_writer() {
    let (dir, storage, db, t) = rolling_never_topic();
    storage.faults.hold_sync.store(true, Ordering::SeqCst);
    let last = append_until_roll(&t);
    let p = Arc::clone(t.partition(0).expect("partition"));
    assert!(
        p.durable_offset() < last,
        "durable {} before the sealed segment's fsync",
        p.durable_offset()
    );
    let syncs = storage.faults.syncs.load(Ordering::SeqCst);
    storage.faults.hold_sync.store(false, Ordering::SeqCst);
    p.flush().expect("flush");
    assert_eq!(p.durable_offset(), p.end_offset());
    assert!(storage.faults.syncs.load(Ordering::SeqCst) > syncs);
    drop((p, t, db));
    let db = common::open_faulty(dir.path(), &storage);
    let t = db.log().topic("t").expect("t");
    assert_eq!(
        t.read(0, 0, usize::MAX).expect("read").len() as u64,
        last + 1
    );
}

/// A failed fsync of a rolled segment poisons the partition as any failed fsync does: later
/// appends and flushes get the error; what was written out is there after a reopen.
#[test]
fn a_failed_fsync_of_a_rolled_segment_poisons_the_partition() {
    let (dir, storage, db, t) = rolling_never_topic();
    storage.faults.fail_sync.store(true, Ordering::SeqCst);
    let last = append_until_roll(&t);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let err = loop {
        match t.append(Message::new("later")) {
            Err(e) => break e,
            Ok(_) => {
                assert!(std::time::Instant::now() < deadline, "never poisoned");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    };
    match err {
        LogError::Poisoned { cause, .. } => assert!(cause.contains("injected fsync failure")),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    assert!(matches!(t.flush(), Err(LogError::Poisoned { .. })));
    assert!(db.log().stats().fsync_failures >= 1);
    drop(t);
    drop(db);
    storage.faults.fail_sync.store(false, Ordering::SeqCst);
    let db = common::open_faulty(dir.path(), &storage);
    let t = db.log().topic("t").expect("t");
    // The sealed segment ends below the record whose append rolled it; records still in the
    // write buffer when the partition was poisoned were never written.
    let records = t.read(0, 0, usize::MAX).expect("read");
    assert!(records.len() as u64 >= last, "the sealed records are there");
    t.append(Message::new("healthy again"))
        .expect("append after reopen");
}

/// The value of record `i` in the write-alignment test: its offset, and a length that varies
/// so that batches end anywhere.
fn numbered(i: u64) -> Vec<u8> {
    let mut v = format!("{i:08}-").into_bytes();
    v.resize(60 + (i as usize * 7) % 90, b'a' + (i % 26) as u8);
    v
}

fn check_all(p: &quipu::Partition, end: u64) {
    let mut next = 0;
    while next < end {
        let records = p.read(next, 10_000).expect("read");
        assert!(!records.is_empty(), "nothing read at {next} of {end}");
        for r in records {
            assert_eq!(r.offset, next);
            assert_eq!(
                r.value.as_deref(),
                Some(&numbered(next)[..]),
                "record {next}"
            );
            next += 1;
        }
    }
}

/// A buffered topic writes its buffer out in pieces that end on 64 KiB boundaries (the page
/// cache takes those faster), so a batch's head can be in the file before its tail: the
/// writes stay contiguous, a read in between gets every record whole, and so does a reader
/// running alongside the writer and the next open.
#[test]
fn buffered_writes_end_on_64k_boundaries_and_reads_get_whole_batches() {
    const ALIGN: u64 = 64 * 1024;
    // An interval no test reaches: nothing but this test's reads writes the buffer out whole.
    let (dir, storage, db, t) = faulty_topic(
        TopicConfig::default()
            .with_partitions(1)
            .with_durability(Durability::Interval(std::time::Duration::from_secs(3600))),
    );
    let p = Arc::clone(t.partition(0).expect("partition"));
    let writes = || storage.faults.writes.lock().expect("writes").clone();
    let mut appender = p.appender();
    let mut next = 0u64;
    let mut append = |n: u64| {
        for _ in 0..n {
            appender
                .append(&Message::new(numbered(next)))
                .expect("append");
            next += 1;
        }
        appender.flush().expect("flush");
        next
    };

    let end = append(20_000);
    let before_read = writes();
    assert!(before_read.len() >= 15, "{} writes", before_read.len());
    let mut at = 0;
    for &(pos, len) in &before_read {
        assert_eq!(pos, at, "writes are contiguous: {before_read:?}");
        at = pos + len;
        assert_eq!(at % ALIGN, 0, "a write ends on 64 KiB: {before_read:?}");
    }
    // The read writes out the rest of the buffer, from the head of a cut batch on.
    check_all(&p, end);
    let after_read = writes();
    let &(pos, _) = after_read.last().expect("the read wrote");
    assert_eq!(
        pos, at,
        "the read wrote on from where the last write stopped"
    );

    // A reader alongside the writer: every record it gets is whole and in order.
    let reader = {
        let p = Arc::clone(&p);
        std::thread::spawn(move || {
            let mut next = 0;
            while next < 60_000 {
                for r in p.read(next, 5_000).expect("read") {
                    assert_eq!(r.value.as_deref(), Some(&numbered(next)[..]), "{next}");
                    next += 1;
                }
            }
        })
    };
    let end = append(40_000);
    reader.join().expect("the reader found every record whole");
    let all = writes();
    let mut at = 0;
    for &(pos, len) in &all {
        assert_eq!(pos, at, "writes are contiguous");
        at = pos + len;
    }
    drop(appender);
    drop((p, t, db));

    let db = common::open(dir.path());
    let t = db.log().topic("t").expect("topic");
    let p = t.partition(0).expect("partition");
    assert_eq!(p.end_offset(), end);
    check_all(p, end);
}
