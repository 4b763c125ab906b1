//! `Appender`: one writer's batches, their receipts, visibility, timestamps, bad input and
//! failures.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::FaultyStorage;
use quipu::{Durability, LogConfig, LogError, ManualClock, Message, Quipu, TopicConfig};

fn never() -> TopicConfig {
    TopicConfig::default().with_durability(Durability::Never)
}

fn value(i: usize) -> Vec<u8> {
    format!("record-{i}-{}", "x".repeat(i % 300)).into_bytes()
}

/// Opens `dir` with a 4 KiB write buffer, so that batches fill and go out on their own.
fn open_small_buffer(dir: &std::path::Path) -> Quipu {
    Quipu::builder(dir)
        .log_config(LogConfig::default().with_write_buffer_bytes(4096))
        .open()
        .expect("open")
}

/// Every record of topic `t`, partition 0, after reopening `dir`.
fn reopened(dir: &std::path::Path) -> Vec<quipu::Record> {
    let db = common::open(dir);
    let t = db.log().topic("t").expect("topic");
    t.read(0, 0, usize::MAX).expect("read")
}

#[test]
fn receipts_cover_every_record_once_in_order() {
    let dir = common::tempdir();
    // A 4 KiB write buffer: the appender's batches fill and go out on their own.
    let db = open_small_buffer(dir.path());
    let t = db.log().create_topic("t", never()).expect("create");
    let mut appender = t.partition(0).expect("partition").appender();
    let mut covered = Vec::new();
    for i in 0..2_000 {
        if let Some(r) = appender.append(&Message::new(value(i))).expect("append") {
            covered.push((r.offset, r.last_offset));
        }
    }
    let automatic = covered.len();
    let buffered = appender.buffered();
    let r = appender
        .flush()
        .expect("flush")
        .expect("records were buffered");
    covered.push((r.offset, r.last_offset));
    assert!(automatic > 10, "batches should fill: {automatic}");
    assert_eq!(r.last_offset - r.offset + 1, buffered as u64);
    assert_eq!(appender.buffered(), 0);
    assert_eq!(appender.flush().expect("empty flush"), None);
    // Contiguous, from 0 to the last record.
    let mut next = 0;
    for (first, last) in covered {
        assert_eq!(first, next);
        next = last + 1;
    }
    assert_eq!(next, 2_000);
    let back = t.read(0, 0, usize::MAX).expect("read");
    assert_eq!(back.len(), 2_000);
    for (i, rec) in back.iter().enumerate() {
        assert_eq!(rec.offset, i as u64);
        assert_eq!(rec.value.as_deref(), Some(value(i).as_slice()));
    }
    drop((appender, t, db));
    assert_eq!(reopened(dir.path()).len(), 2_000, "and after a reopen");
}

#[test]
fn records_are_visible_once_their_batch_is_out_and_drop_sends_the_rest() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let t = db.log().create_topic("t", never()).expect("create");
    let p = Arc::clone(t.partition(0).expect("partition"));
    let mut appender = p.appender();
    appender.append(&Message::new("a")).expect("append");
    appender.append(&Message::new("b")).expect("append");
    assert_eq!(appender.buffered(), 2);
    assert_eq!(
        p.end_offset(),
        0,
        "not in the log before the batch goes out"
    );
    let r = appender.flush().expect("flush").expect("a batch");
    assert_eq!((r.offset, r.last_offset), (0, 1));
    assert!(!r.synced, "a Never topic does not fsync");
    assert_eq!(p.end_offset(), 2);
    appender.append(&Message::new("c")).expect("append");
    drop(appender);
    let values: Vec<_> = p
        .read(0, 10)
        .expect("read")
        .into_iter()
        .map(|r| r.value.expect("value"))
        .collect();
    assert_eq!(values, ["a", "b", "c"]);
}

#[test]
fn batches_interleave_with_other_writers_whole() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let t = db.log().create_topic("t", never()).expect("create");
    let p = Arc::clone(t.partition(0).expect("partition"));
    let mut appender = p.appender();
    appender.append(&Message::new("batch-1")).expect("append");
    p.append(&[Message::new("other-1")]).expect("plain append");
    appender.append(&Message::new("batch-2")).expect("append");
    let r = appender.flush().expect("flush").expect("a batch");
    p.append(&[Message::new("other-2")]).expect("plain append");
    assert_eq!((r.offset, r.last_offset), (1, 2));
    let values: Vec<_> = p
        .read(0, 10)
        .expect("read")
        .into_iter()
        .map(|r| r.value.expect("value"))
        .collect();
    assert_eq!(values, ["other-1", "batch-1", "batch-2", "other-2"]);
}

#[test]
fn assigned_timestamps_never_go_below_an_earlier_write_and_given_ones_are_kept() {
    let dir = common::tempdir();
    let clock = ManualClock::new(1_000);
    let db = common::open_manual(dir.path(), &clock);
    let t = db.log().create_topic("t", never()).expect("create");
    let p = Arc::clone(t.partition(0).expect("partition"));
    let mut appender = p.appender();
    appender
        .append(&Message::new("stamped at 1000"))
        .expect("append");
    clock.advance(std::time::Duration::from_millis(5));
    appender
        .append(&Message::new("stamped at 1005"))
        .expect("append");
    // Another writer gets in first, later.
    clock.advance(std::time::Duration::from_millis(495));
    p.append(&[Message::new("at 1500")]).expect("plain append");
    clock.set(1_200);
    let r = appender.flush().expect("flush").expect("a batch");
    // Moved up together: the first to 1500, the second 5 ms after it.
    assert_eq!(r.timestamp, 1_500);
    // A given timestamp is kept as it is, even below the others; given and assigned
    // timestamps are not batched together.
    let given = appender
        .append(&Message::new("given").with_timestamp(7))
        .expect("append");
    assert_eq!(given, None, "nothing was buffered before it");
    let sent = appender
        .append(&Message::new("assigned"))
        .expect("append")
        .expect("the given one goes out before an assigned one joins");
    assert_eq!((sent.offset, sent.timestamp), (3, 7));
    appender.flush().expect("flush");
    let stamps: Vec<_> = p
        .read(0, 10)
        .expect("read")
        .into_iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(stamps, [1_500, 1_500, 1_505, 7, 1_505]);
}

#[test]
fn an_oversized_record_is_refused_and_the_batch_is_kept() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let t = db
        .log()
        .create_topic("t", never().with_max_record_bytes(1024))
        .expect("create");
    let mut appender = t.partition(0).expect("partition").appender();
    appender.append(&Message::new("kept")).expect("append");
    let err = appender
        .append(&Message::new(vec![0u8; 4096]))
        .expect_err("too large");
    assert!(
        matches!(err, LogError::RecordTooLarge { max: 1024, .. }),
        "{err}"
    );
    assert_eq!(appender.buffered(), 1);
    appender.flush().expect("flush");
    assert_eq!(t.read(0, 0, 10).expect("read").len(), 1);
}

#[test]
fn an_always_batch_is_fsynced_once_and_a_failed_fsync_is_reported() {
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
    let mut appender = t.partition(0).expect("partition").appender();
    let before = storage.faults.syncs.load(Ordering::SeqCst);
    for i in 0..100 {
        assert_eq!(
            appender.append(&Message::new(value(i))).expect("append"),
            None
        );
    }
    let r = appender.flush().expect("flush").expect("a batch");
    assert!(r.synced);
    assert_eq!((r.offset, r.last_offset), (0, 99));
    assert_eq!(storage.faults.syncs.load(Ordering::SeqCst) - before, 1);
    storage.faults.fail_sync.store(true, Ordering::SeqCst);
    appender.append(&Message::new("doomed")).expect("append");
    let err = appender.flush().expect_err("fsync fails");
    assert!(
        matches!(err, LogError::Io { .. } | LogError::Poisoned { .. }),
        "{err}"
    );
    assert_eq!(appender.buffered(), 0, "the failed batch is dropped");
    // The partition is poisoned: the next batch is refused too, with the same kind of error.
    appender
        .append(&Message::new("after"))
        .expect("append buffers");
    assert!(matches!(
        appender.flush(),
        Err(LogError::Poisoned { .. } | LogError::Io { .. })
    ));
    drop((appender, t, db));
    let back = reopened(dir.path());
    assert!(back.len() >= 100, "the acknowledged batch survives");
    for (i, rec) in back.iter().take(100).enumerate() {
        assert_eq!(rec.value.as_deref(), Some(value(i).as_slice()));
    }
}

#[test]
fn the_async_side_appends_and_flushes() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default().with_durability(Durability::Always),
        )
        .expect("create");
    let mut appender = t.partition(0).expect("partition").appender();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let r = rt.block_on(async {
        for i in 0..10 {
            appender
                .append_async(&Message::new(value(i)))
                .await
                .expect("append");
        }
        appender
            .flush_async()
            .await
            .expect("flush")
            .expect("a batch")
    });
    assert!(r.synced);
    assert_eq!((r.offset, r.last_offset), (0, 9));
}

#[test]
fn batches_that_roll_the_segment_land_whole_in_the_next_one() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    // Segments of 16 KiB and batches of 64 KiB: every batch rolls the segment it would
    // overfill, and a batch is never split between two segments.
    let t = db
        .log()
        .create_topic("t", never().with_segment_bytes(16 * 1024))
        .expect("create");
    let mut appender = t.partition(0).expect("partition").appender();
    let mut receipts = Vec::new();
    for i in 0..3_000 {
        receipts.extend(appender.append(&Message::new(value(i))).expect("append"));
    }
    receipts.extend(appender.flush().expect("flush"));
    assert!(receipts.len() > 3, "{} batches", receipts.len());
    let segments = common::segments(dir.path(), "t", 0);
    assert!(segments.len() > 3, "{} segments", segments.len());
    // Every segment starts where a batch starts.
    for seg in &segments {
        let stem = seg.file_stem().and_then(|s| s.to_str()).expect("name");
        let base: u64 = stem.parse().expect("base offset");
        assert!(
            receipts.iter().any(|r| r.offset == base),
            "segment {base} starts inside a batch"
        );
    }
    drop((appender, t, db));
    let back = reopened(dir.path());
    assert_eq!(back.len(), 3_000);
    for (i, rec) in back.iter().enumerate() {
        assert_eq!(rec.offset, i as u64);
        assert_eq!(rec.value.as_deref(), Some(value(i).as_slice()));
    }
}

#[test]
fn a_topic_appender_routes_by_key_and_keeps_each_key_in_order() {
    let dir = common::tempdir();
    // A 4 KiB write buffer: keyless records fill a batch and move on to the next partition.
    let db = open_small_buffer(dir.path());
    let t = db
        .log()
        .create_topic("t", never().with_partitions(4))
        .expect("create");
    let mut appender = t.appender();
    let mut receipts = Vec::new();
    for i in 0..2_000 {
        let msg = if i % 2 == 0 {
            Message::new(format!("keyed-{i}")).with_key(format!("shop-{}", i % 14))
        } else {
            Message::new(format!("keyless-{i}"))
        };
        receipts.extend(appender.append(&msg).expect("append"));
    }
    assert!(appender.buffered() > 0);
    receipts.extend(appender.flush().expect("flush"));
    assert_eq!(appender.buffered(), 0);
    let appended: u64 = receipts.iter().map(|r| r.last_offset - r.offset + 1).sum();
    assert_eq!(appended, 2_000);
    let mut keyless_partitions = std::collections::HashSet::new();
    let mut seen = 0;
    for p in 0..4 {
        let mut last_per_key = std::collections::HashMap::new();
        for r in t.read(p, 0, usize::MAX).expect("read") {
            seen += 1;
            let v = String::from_utf8(r.value.expect("value").to_vec()).expect("utf-8");
            let i: u32 = v
                .rsplit('-')
                .next()
                .expect("number")
                .parse()
                .expect("number");
            match r.key {
                Some(k) => {
                    assert_eq!(t.partition_for_key(&k), p, "{v} in the wrong partition");
                    if let Some(prev) = last_per_key.insert(k, i) {
                        assert!(prev < i, "{v} after {prev}: order of a key broken");
                    }
                }
                None => {
                    keyless_partitions.insert(p);
                }
            }
        }
    }
    assert_eq!(seen, 2_000);
    assert!(
        keyless_partitions.len() > 1,
        "keyless records move on when a batch goes out: {keyless_partitions:?}"
    );
}
