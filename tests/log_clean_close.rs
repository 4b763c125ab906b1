//! After a clean close a partition reopens without walking its segments (as Kafka after a
//! clean shutdown): the close leaves a record of what it fsynced, the next open removes it
//! first and trusts the files only where they still match it. Anything else is recovered as
//! after a crash.

mod common;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use quipu::{Durability, LogError, Message, Quipu, RecoveryMode, TopicConfig};

fn partition_dir(data: &Path) -> PathBuf {
    data.join("log").join("t").join("0")
}

fn record_path(data: &Path) -> PathBuf {
    partition_dir(data).join("clean-close")
}

fn open(dir: &Path, mode: RecoveryMode) -> Result<Quipu, quipu::Error> {
    Quipu::builder(dir)
        .log_config(common::test_config().with_recovery(mode))
        .open()
}

/// A topic of small segments with keys, given timestamps and an idempotent producer, closed
/// cleanly: several sealed segments and an active one of a few KiB, with index entries past
/// its first batch. Returns the directory and the records written.
fn written(durability: Durability) -> (tempfile::TempDir, u64) {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let config = TopicConfig::default()
        .with_durability(durability)
        .with_segment_bytes(16 * 1024)
        .with_index_interval_bytes(512);
    let t = db.log().create_topic("t", config).expect("topic");
    let p = t.partition(0).expect("p");
    let mut i = 0u64;
    loop {
        for _ in 0..30 {
            let msg = Message::new(format!("value-{i}-{}", "x".repeat(40)))
                .with_key(format!("k{}", i % 13))
                .with_timestamp(1_000 + i * 10);
            if i.is_multiple_of(3) {
                p.append_idempotent(7, (i / 3) as u32, &[msg])
                    .expect("append");
            } else {
                p.append(&[msg]).expect("append");
            }
            i += 1;
        }
        p.flush().expect("flush");
        let active = common::last_segment(dir.path(), "t", 0);
        let len = std::fs::metadata(active).expect("meta").len();
        if p.segment_count() >= 3 && len >= 4 * 1024 {
            break;
        }
    }
    drop(t);
    db.close();
    (dir, i)
}

/// What a reader or writer sees of partition 0: every record (offset, timestamp, key, value),
/// offsets found by timestamp, whether a retry of the producer's last batch is a duplicate, and
/// the offset the next append gets.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    records: Vec<(u64, u64, Vec<u8>, Vec<u8>)>,
    by_time: Vec<Option<u64>>,
    retry_is_duplicate: bool,
    next: u64,
}

fn observe(db: &Quipu, written: u64) -> Seen {
    let t = db.log().topic("t").expect("t");
    let p = t.partition(0).expect("p");
    let records = p
        .read(0, usize::MAX)
        .expect("read")
        .into_iter()
        .map(|r| {
            let key = r.key.expect("key").to_vec();
            (r.offset, r.timestamp, key, r.value.expect("value").to_vec())
        })
        .collect();
    let by_time = [0, 1_000, 2_345, 5_005, 7_990, 1_000 + written * 10 - 5]
        .into_iter()
        .map(|ts| p.offset_for_timestamp(ts).expect("lookup"))
        .collect();
    // The producer's last batch again: a retry that must not be appended twice.
    let retry = p
        .append_idempotent(7, ((written - 1) / 3) as u32, &[Message::new("retry")])
        .expect("retry");
    let next = p
        .append(&[Message::new("next").with_timestamp(1_000 + written * 10)])
        .expect("append")
        .offset;
    Seen {
        records,
        by_time,
        retry_is_duplicate: retry.duplicate,
        next,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn a_cleanly_closed_partition_reopens_as_a_walk_would_recover_it() {
    for durability in [Durability::Never, Durability::Always] {
        let (dir, n) = written(durability);
        assert!(
            record_path(dir.path()).exists(),
            "the close leaves its record"
        );
        // The same files without the record: opened as after a crash, every segment walked.
        let walked = common::tempdir();
        copy_dir(dir.path(), walked.path());
        std::fs::remove_file(record_path(walked.path())).expect("remove");

        let db = open(dir.path(), RecoveryMode::Strict).expect("open");
        assert!(
            !record_path(dir.path()).exists(),
            "removed as the partition opens"
        );
        let fast = observe(&db, n);
        let db2 = open(walked.path(), RecoveryMode::Strict).expect("open");
        let slow = observe(&db2, n);
        assert_eq!(fast, slow, "{durability:?}");
        assert_eq!(fast.records.len() as u64, n);
        assert!(
            fast.retry_is_duplicate,
            "the producer's retry is a duplicate"
        );
        assert_eq!(fast.next, n);
    }
}

/// Flips one byte of a file.
fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at] ^= 0xff;
    std::fs::write(path, &bytes).expect("write");
}

/// The record is what lets the open skip the walks: a byte flipped after the close in the
/// body of the active segment's first batch (before its last index entry), and for a topic
/// that is not `Always` in the body of the last sealed segment, is not looked at when it
/// opens, as for any sealed segment; reading that batch finds it by its CRC. Without the
/// record, or with an `.idx` that is not the one the close wrote, the segments are walked,
/// the damage is found and `Strict` refuses to open.
#[test]
fn after_a_clean_close_the_segments_are_checked_from_their_last_index_entries() {
    for durability in [Durability::Never, Durability::Always] {
        let (dir, n) = written(durability);
        let segs = common::segments(dir.path(), "t", 0);
        let active = &segs[segs.len() - 1];
        flip(active, 100);
        if durability != Durability::Always {
            flip(&segs[segs.len() - 2], 100);
        }
        let crashed = common::tempdir();
        copy_dir(dir.path(), crashed.path());
        std::fs::remove_file(record_path(crashed.path())).expect("remove");
        let reindexed = common::tempdir();
        copy_dir(dir.path(), reindexed.path());
        // Its last entry lost (an `.idx` is not fsynced): what is left is consistent and would
        // be trusted from its new last entry on, past the flipped byte.
        let idx = common::last_segment(reindexed.path(), "t", 0).with_extension("idx");
        let entries = std::fs::read(&idx).expect("idx");
        assert!(entries.len() >= 3 * 24, "several index entries");
        std::fs::write(&idx, &entries[..entries.len() - 24]).expect("cut");

        let db = open(dir.path(), RecoveryMode::Strict).expect("trusted as closed");
        let t = db.log().topic("t").expect("t");
        assert_eq!(t.partition(0).expect("p").end_offset(), n);
        assert!(matches!(
            t.read(0, common::segment_base(active), 1),
            Err(LogError::Corrupt { .. })
        ));
        for other in [crashed.path(), reindexed.path()] {
            assert!(
                matches!(
                    open(other, RecoveryMode::Strict),
                    Err(quipu::Error::Log(LogError::Corrupt { .. }))
                ),
                "{durability:?}"
            );
        }
    }
}

/// Open removes the record before anything is appended: a crash later finds none, and its
/// torn tail is cut as always.
#[test]
fn the_record_does_not_outlive_the_open() {
    let (dir, n) = written(Durability::Never);
    let db = open(dir.path(), RecoveryMode::TruncateAtFirstCorruption).expect("open");
    let t = db.log().topic("t").expect("t");
    // Buffered appends share a batch: 49 in one, then the one the tear cuts.
    for i in 0..49 {
        t.append(Message::new(format!("later-{i}")))
            .expect("append");
    }
    t.flush().expect("flush");
    t.append(Message::new("later-49")).expect("append");
    t.flush().expect("flush");
    // What a crash now would leave on disk: the files as they are, the process gone.
    let crashed = common::tempdir();
    copy_dir(dir.path(), crashed.path());
    assert!(!record_path(crashed.path()).exists());
    let active = common::last_segment(crashed.path(), "t", 0);
    let len = std::fs::metadata(&active).expect("meta").len();
    let file = OpenOptions::new().write(true).open(&active).expect("open");
    file.set_len(len - 5).expect("tear");
    drop(file);
    let db2 = open(crashed.path(), RecoveryMode::TruncateAtFirstCorruption).expect("open");
    let t2 = db2.log().topic("t").expect("t");
    let end = t2.partition(0).expect("p").end_offset();
    assert_eq!(end, n + 49, "the torn last batch is cut");
    assert!(db2.log().stats().truncated_bytes > 0);
    assert_eq!(
        t2.append(Message::new("after")).expect("append").offset,
        n + 49
    );
}

/// Files that no longer match the record are recovered as after a crash; a damaged record is
/// as good as none.
#[test]
fn a_record_that_no_longer_matches_is_ignored() {
    // Bytes after the active segment's end (what a later, crashed writer could leave).
    let (dir, n) = written(Durability::Never);
    let active = common::last_segment(dir.path(), "t", 0);
    let mut file = OpenOptions::new().append(true).open(&active).expect("open");
    std::io::Write::write_all(&mut file, &[0xAB; 300]).expect("junk");
    drop(file);
    let db = open(dir.path(), RecoveryMode::TruncateAtFirstCorruption).expect("open");
    assert_eq!(db.log().stats().truncated_bytes, 300);
    let t = db.log().topic("t").expect("t");
    assert_eq!(t.partition(0).expect("p").end_offset(), n);
    assert!(!record_path(dir.path()).exists());
    drop(t);
    drop(db);

    // Segment files gone (a partial restore): the record goes too, not to be matched later.
    let (dir, _) = written(Durability::Never);
    for seg in common::segments(dir.path(), "t", 0) {
        std::fs::remove_file(seg).expect("remove");
    }
    let db = open(dir.path(), RecoveryMode::Strict).expect("open");
    assert!(!record_path(dir.path()).exists());
    let t = db.log().topic("t").expect("t");
    assert_eq!(t.partition(0).expect("p").end_offset(), 0);
    drop(t);
    drop(db);

    // A garbled record.
    let (dir, n) = written(Durability::Never);
    std::fs::write(record_path(dir.path()), b"not a record").expect("garble");
    let db = open(dir.path(), RecoveryMode::Strict).expect("open");
    let t = db.log().topic("t").expect("t");
    assert_eq!(t.partition(0).expect("p").end_offset(), n);
    assert!(!record_path(dir.path()).exists());
    assert_eq!(t.append(Message::new("x")).expect("append").offset, n);
}
