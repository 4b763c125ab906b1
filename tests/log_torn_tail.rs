//! Torn and corrupt tails: reopen truncates to the last whole batch and appends continue at the
//! right offset; damage before the tail is reported, never silently dropped.

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};

use std::sync::Arc;

use quipu::{Durability, LogError, Message, Quipu, RecoveryMode, Topic, TopicConfig};

/// A fresh directory with topic `t` created with `config`.
fn open_topic(config: TopicConfig) -> (tempfile::TempDir, Quipu, Arc<Topic>) {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let t = db.log().create_topic("t", config).expect("create");
    (dir, db, t)
}

fn always() -> TopicConfig {
    TopicConfig::default().with_durability(Durability::Always)
}

/// Topic `t` with `n` records, `value(i)` each, closed; the data's length after each append
/// (not the file's: the file runs on with preallocated zeros while it is open).
fn write_topic(
    n: u64,
    config: TopicConfig,
    value: impl Fn(u64) -> Vec<u8>,
) -> (tempfile::TempDir, Vec<u64>) {
    let (dir, db, t) = open_topic(config);
    let mut sizes = Vec::new();
    for i in 0..n {
        t.append(Message::new(value(i))).expect("append");
        sizes.push(t.partition(0).expect("partition").size_bytes());
    }
    drop(t);
    drop(db);
    (dir, sizes)
}

fn setup(n: u64) -> (tempfile::TempDir, Vec<u64>) {
    let (dir, sizes) = write_topic(n, always(), |i| format!("record-{i}").into_bytes());
    assert_eq!(
        std::fs::metadata(common::last_segment(dir.path(), "t", 0))
            .expect("meta")
            .len(),
        sizes[sizes.len() - 1],
        "close cuts the preallocated zeros"
    );
    (dir, sizes)
}

/// A torn tail: `Strict` refuses to open with `Corrupt`, `TolerateCorruptTail` opens (cutting
/// it); returns the tolerant open.
fn strict_refuses_tolerant_cuts(dir: &std::path::Path) -> Quipu {
    assert!(matches!(
        reopen(dir, RecoveryMode::Strict),
        Err(quipu::Error::Log(LogError::Corrupt { .. }))
    ));
    reopen(dir, RecoveryMode::TolerateCorruptTail).expect("tolerant reopen")
}

/// Opens the data directory as after a crash (these tests tamper with the files to stand for
/// what a crash left, and a crash leaves no clean-close record).
fn reopen(dir: &std::path::Path, mode: RecoveryMode) -> Result<Quipu, quipu::Error> {
    common::as_after_a_crash(dir);
    Quipu::builder(dir)
        .log_config(common::test_config().with_recovery(mode))
        .open()
}

fn values(db: &Quipu) -> Vec<String> {
    let t = db.log().topic("t").expect("topic");
    t.read(0, 0, usize::MAX)
        .expect("read")
        .iter()
        .map(|r| String::from_utf8(r.value.clone().expect("value").to_vec()).expect("utf8"))
        .collect()
}

#[test]
fn cut_tail_is_truncated_and_appends_continue() {
    let (dir, sizes) = setup(10);
    let seg = common::last_segment(dir.path(), "t", 0);
    // Cut in the middle of the last batch.
    let cut = sizes[8] + (sizes[9] - sizes[8]) / 2;
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open")
        .set_len(cut)
        .expect("cut");
    let db = reopen(dir.path(), RecoveryMode::TolerateCorruptTail).expect("reopen");
    assert_eq!(values(&db).len(), 9);
    assert_eq!(std::fs::metadata(&seg).expect("meta").len(), sizes[8]);
    let t = db.log().topic("t").expect("topic");
    let r = t.append(Message::new("after")).expect("append");
    assert_eq!(r.offset, 9);
    assert_eq!(db.log().stats().truncated_bytes, cut - sizes[8]);
    drop(t);
    drop(db);
    let db = reopen(dir.path(), RecoveryMode::TolerateCorruptTail).expect("reopen twice");
    let v = values(&db);
    assert_eq!(v.len(), 10);
    assert_eq!(v[9], "after");
}

#[test]
fn garbled_tail_is_truncated() {
    let (dir, sizes) = setup(5);
    let seg = common::last_segment(dir.path(), "t", 0);
    let mut f = OpenOptions::new().write(true).open(&seg).expect("open");
    f.seek(SeekFrom::Start(sizes[4] - 3)).expect("seek");
    f.write_all(b"\xff\xff\xff").expect("garble");
    drop(f);
    let db = reopen(dir.path(), RecoveryMode::TolerateCorruptTail).expect("reopen");
    assert_eq!(
        values(&db),
        vec!["record-0", "record-1", "record-2", "record-3"]
    );
    let r = db
        .log()
        .topic("t")
        .expect("t")
        .append(Message::new("x"))
        .expect("append");
    assert_eq!(r.offset, 4);
}

#[test]
fn trailing_garbage_after_whole_batches_is_truncated() {
    let (dir, sizes) = setup(3);
    let seg = common::last_segment(dir.path(), "t", 0);
    let mut f = OpenOptions::new().append(true).open(&seg).expect("open");
    f.write_all(&[0u8; 100]).expect("zeros");
    drop(f);
    let db = reopen(dir.path(), RecoveryMode::TolerateCorruptTail).expect("reopen");
    assert_eq!(values(&db).len(), 3);
    assert_eq!(std::fs::metadata(&seg).expect("meta").len(), sizes[2]);
}

#[test]
fn corruption_in_the_middle_is_reported_not_truncated() {
    let (dir, sizes) = setup(10);
    let seg = common::last_segment(dir.path(), "t", 0);
    let before = std::fs::read(&seg).expect("read");
    let mut f = OpenOptions::new().write(true).open(&seg).expect("open");
    f.seek(SeekFrom::Start(sizes[3] + 70)).expect("seek"); // inside batch 4's records
    f.write_all(b"XX").expect("garble");
    drop(f);
    match reopen(dir.path(), RecoveryMode::TolerateCorruptTail) {
        Err(quipu::Error::Log(LogError::Corrupt { position, .. })) => {
            assert_eq!(position, sizes[3])
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Nothing was cut: the operator still has every byte.
    assert_eq!(
        std::fs::metadata(&seg).expect("meta").len(),
        before.len() as u64
    );
    // The operator may choose to truncate at the damage.
    let db = reopen(dir.path(), RecoveryMode::TruncateAtFirstCorruption).expect("truncating open");
    assert_eq!(values(&db).len(), 4);
}

#[test]
fn strict_mode_refuses_even_a_torn_tail() {
    let (dir, sizes) = setup(3);
    let seg = common::last_segment(dir.path(), "t", 0);
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open")
        .set_len(sizes[2] - 1)
        .expect("cut");
    assert_eq!(values(&strict_refuses_tolerant_cuts(dir.path())).len(), 2);
}

#[test]
fn lost_or_garbled_index_is_rebuilt_from_the_log() {
    let dir = common::tempdir();
    {
        // A small write buffer keeps coalesced batches small: several per segment.
        let db = Quipu::builder(dir.path())
            .log_config(common::test_config().with_write_buffer_bytes(1024))
            .open()
            .expect("open");
        let cfg = TopicConfig::default()
            .with_durability(Durability::Never)
            .with_segment_bytes(8192)
            .with_index_interval_bytes(256);
        let t = db.log().create_topic("t", cfg).expect("create");
        for i in 0..1500 {
            t.append(Message::new(format!("record-{i:04}")))
                .expect("append");
        }
    }
    let segs = common::segments(dir.path(), "t", 0);
    assert!(segs.len() > 2, "expected several segments");
    // Remove one index and fill another with garbage.
    std::fs::remove_file(segs[0].with_extension("idx")).expect("rm idx");
    std::fs::write(segs[1].with_extension("idx"), vec![0xAB; 100]).expect("garble idx");
    let db = reopen(dir.path(), RecoveryMode::TolerateCorruptTail).expect("reopen");
    let t = db.log().topic("t").expect("t");
    for probe in [0u64, 1, 57, 150, 399, 1024, 1499] {
        let r = t.read(0, probe, 1).expect("read");
        assert_eq!(r[0].offset, probe);
        assert_eq!(
            r[0].value.as_deref(),
            Some(format!("record-{probe:04}").as_bytes())
        );
    }
    assert!(
        std::fs::metadata(segs[0].with_extension("idx"))
            .expect("idx rebuilt")
            .len()
            > 0
    );
}

/// A crash leaves the zeros preallocated past an `Always` segment's data: every recovery mode,
/// even `Strict`, cuts them as unwritten space, loses nothing, and appends go on at the next
/// offset.
#[test]
fn preallocated_zeros_left_by_a_crash_are_cut_in_every_mode() {
    for mode in [
        RecoveryMode::Strict,
        RecoveryMode::TolerateCorruptTail,
        RecoveryMode::TruncateAtFirstCorruption,
    ] {
        let (dir, sizes) = setup(5);
        let seg = common::last_segment(dir.path(), "t", 0);
        let data = sizes[4];
        // What the file looks like after a crash: the zeros are still there.
        let file = OpenOptions::new().write(true).open(&seg).expect("open");
        file.set_len(data + 1024 * 1024).expect("zeros");
        drop(file);
        let db = reopen(dir.path(), mode).expect("reopen");
        assert_eq!(values(&db).len(), 5, "{mode:?}");
        assert_eq!(
            std::fs::metadata(&seg).expect("meta").len(),
            data,
            "{mode:?}"
        );
        assert_eq!(db.log().stats().truncated_bytes, 0, "not damage: {mode:?}");
        let t = db.log().topic("t").expect("topic");
        assert_eq!(t.append(Message::new("after")).expect("append").offset, 5);
        assert!(
            std::fs::metadata(&seg).expect("meta").len() >= data + 4096,
            "the next append preallocates again"
        );
    }
}

/// Zeros followed by anything else are a torn write into preallocated space, not unwritten
/// space: `Strict` refuses it, the default mode truncates it.
#[test]
fn a_torn_write_into_preallocated_space_is_a_torn_tail() {
    let (dir, sizes) = setup(3);
    let seg = common::last_segment(dir.path(), "t", 0);
    let mut file = OpenOptions::new().write(true).open(&seg).expect("open");
    file.set_len(sizes[2] + 64 * 1024).expect("zeros");
    file.seek(SeekFrom::Start(sizes[2] + 8192)).expect("seek");
    file.write_all(b"a page of a batch that reached the disk alone")
        .expect("garbage");
    drop(file);
    let db = strict_refuses_tolerant_cuts(dir.path());
    assert_eq!(values(&db).len(), 3);
    assert_eq!(std::fs::metadata(&seg).expect("meta").len(), sizes[2]);
    assert_eq!(db.log().stats().truncated_bytes, 64 * 1024);
}

/// Preallocation is in proportion to the segment: a topic of a few records carries a page of
/// zeros, a busy one at least 512 KiB ahead; close cuts them either way.
#[test]
fn preallocation_grows_with_the_segment() {
    let (dir, db, t) = open_topic(always());
    let seg = common::last_segment(dir.path(), "t", 0);
    let p = t.partition(0).expect("partition");
    let file_len = || std::fs::metadata(&seg).expect("meta").len();
    for i in 0..5 {
        t.append(Message::new(format!("small-{i}")))
            .expect("append");
    }
    let data = p.size_bytes();
    assert!(
        file_len() > data && file_len() <= data + 8192,
        "{} for {data}",
        file_len()
    );
    let batch: Vec<Message> = (0..64).map(|_| Message::new(vec![7u8; 1024])).collect();
    while p.size_bytes() < 3 << 20 {
        p.append(&batch).expect("append");
    }
    let data = p.size_bytes();
    assert!(file_len() >= data + 512 * 1024, "{} for {data}", file_len());
    assert!(file_len() <= data + 1024 * 1024);
    drop(t);
    drop(db);
    assert_eq!(file_len(), data, "close cuts the zeros");
}

/// Topic `t` with `n` records of `len` bytes each (their index first), closed; the data
/// length after each.
fn setup_with(n: u64, len: usize, config: TopicConfig) -> (tempfile::TempDir, Vec<u64>) {
    write_topic(n, config, |i| {
        let mut v = vec![b'v'; len];
        v[..8].copy_from_slice(&i.to_le_bytes());
        v
    })
}

fn zero_range(path: &std::path::Path, from: u64, len: usize) {
    let mut f = OpenOptions::new().write(true).open(path).expect("open");
    f.seek(SeekFrom::Start(from)).expect("seek");
    f.write_all(&vec![0u8; len]).expect("zeros");
}

/// A power loss before an fsync can leave a page of a write into preallocated space unwritten
/// (zeros) while later pages reached the disk: whole, valid batches after a hole. Nothing from
/// the hole on was acknowledged, so the default mode cuts it as a torn tail; `Strict` refuses.
#[test]
fn a_zeroed_page_before_later_batches_is_a_torn_write() {
    let (dir, sizes) = setup_with(10, 10_000, always());
    let seg = common::last_segment(dir.path(), "t", 0);
    // A page wholly inside batch 7, with batches 8 and 9 intact after it.
    let page = sizes[6].div_ceil(4096) * 4096;
    assert!(page + 4096 <= sizes[7]);
    zero_range(&seg, page, 4096);
    let db = strict_refuses_tolerant_cuts(dir.path());
    let t = db.log().topic("t").expect("topic");
    assert_eq!(t.read(0, 0, 100).expect("read").len(), 7);
    assert_eq!(std::fs::metadata(&seg).expect("meta").len(), sizes[6]);
    assert_eq!(t.append(Message::new("after")).expect("append").offset, 7);
}

/// The same damage without a zeroed page (a flipped byte) is not a torn write: batches after
/// it are acknowledged data, so the default mode reports it.
#[test]
fn damage_without_a_zeroed_page_before_later_batches_is_reported() {
    let (dir, sizes) = setup_with(10, 10_000, always());
    let seg = common::last_segment(dir.path(), "t", 0);
    let mut f = OpenOptions::new().write(true).open(&seg).expect("open");
    f.seek(SeekFrom::Start(sizes[6] + 5000)).expect("seek");
    f.write_all(b"X").expect("flip");
    drop(f);
    assert!(matches!(
        reopen(dir.path(), RecoveryMode::TolerateCorruptTail),
        Err(quipu::Error::Log(LogError::Corrupt { .. }))
    ));
}

/// Only `Always` topics preallocate: on any other topic a zero tail is a torn tail like any
/// other (`Strict` refuses it, the default mode cuts and counts it).
#[test]
fn a_zero_tail_on_a_topic_that_does_not_preallocate_is_a_torn_tail() {
    let (dir, sizes) = setup_with(
        3,
        100,
        TopicConfig::default().with_durability(Durability::Never),
    );
    let seg = common::last_segment(dir.path(), "t", 0);
    let file = OpenOptions::new().write(true).open(&seg).expect("open");
    file.set_len(sizes[2] + 4096).expect("zeros");
    drop(file);
    let db = strict_refuses_tolerant_cuts(dir.path());
    assert_eq!(values(&db).len(), 3);
    assert_eq!(db.log().stats().truncated_bytes, 4096);
}

/// A sealed segment of an `Always` topic with zeros after its last record (a roll whose cut did
/// not reach the disk) opens in every mode; zeros over its last records are damage.
#[test]
fn sealed_segments_accept_a_zero_tail_only_after_their_last_record() {
    let config = always().with_segment_bytes(4096);
    let (dir, sizes) = setup_with(12, 1000, config);
    // Every batch holds one record of the same size.
    let batch = sizes[0];
    let sealed = common::segments(dir.path(), "t", 0)[0].clone();
    let len = std::fs::metadata(&sealed).expect("meta").len();
    let file = OpenOptions::new().write(true).open(&sealed).expect("open");
    file.set_len(len + 4096).expect("zeros");
    drop(file);
    let db = reopen(dir.path(), RecoveryMode::Strict).expect("strict reopen");
    assert_eq!(values(&db).len(), 12);
    assert_eq!(std::fs::metadata(&sealed).expect("meta").len(), len);
    drop(db);
    // Its whole last batch zeroed: zeros to the end, but a record short of the next segment.
    zero_range(&sealed, len - batch, usize::try_from(batch).expect("small"));
    assert!(matches!(
        reopen(dir.path(), RecoveryMode::TolerateCorruptTail),
        Err(quipu::Error::Log(LogError::Corrupt { .. }))
    ));
}

/// Topic `t` of `Never` with 4 KiB segments and `n` records `record-{i}`: several segments,
/// the last sealed one fsynced behind the writer. Returns the segment files.
fn setup_rolled(n: u64, config: TopicConfig) -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
    let (dir, _) = write_topic(n, config.with_segment_bytes(4096), |i| {
        format!("record-{i}").into_bytes()
    });
    let segs = common::segments(dir.path(), "t", 0);
    assert!(segs.len() >= 3, "expected several segments: {segs:?}");
    (dir, segs)
}

/// Cuts the last 7 bytes off the last sealed segment, as a crash before its fsync could;
/// returns it.
fn tear_last_sealed(segs: &[std::path::PathBuf]) -> &std::path::Path {
    let sealed = &segs[segs.len() - 2];
    let len = std::fs::metadata(sealed).expect("meta").len();
    let file = OpenOptions::new().write(true).open(sealed).expect("open");
    file.set_len(len - 7).expect("tear");
    sealed
}

/// The last sealed segment of a topic that is not `Always` is fsynced after the roll, so a
/// crash can tear it: it is cut like an active segment and becomes the active one again; the
/// segment after it (written later, no more durable) goes; appends continue at the cut.
/// `Strict` refuses and changes nothing.
#[test]
fn a_torn_last_sealed_segment_of_a_buffered_topic_is_cut_and_the_later_one_dropped() {
    let (dir, segs) = setup_rolled(
        1000,
        TopicConfig::default().with_durability(Durability::Never),
    );
    let active = &segs[segs.len() - 1];
    let active_len = std::fs::metadata(active).expect("meta").len();
    let sealed = tear_last_sealed(&segs);

    let db = strict_refuses_tolerant_cuts(dir.path());
    let survived = values(&db);
    let kept = survived.len() as u64;
    assert!(
        (common::segment_base(sealed)..common::segment_base(active)).contains(&kept),
        "cut inside the torn segment: {kept} records"
    );
    for (i, v) in survived.iter().enumerate() {
        assert_eq!(v, &format!("record-{i}"), "a prefix, in order");
    }
    assert!(!active.exists(), "the segment after the tear is dropped");
    assert!(db.log().stats().truncated_bytes >= active_len);
    let t = db.log().topic("t").expect("t");
    let r = t.append(Message::new("after")).expect("append");
    assert_eq!(r.offset, kept);
    drop(t);
    drop(db);
    let db = reopen(dir.path(), RecoveryMode::Strict).expect("reopen");
    let again = values(&db);
    assert_eq!(again.len() as u64, kept + 1);
    assert_eq!(again[again.len() - 1], "after");
}

/// `Strict` refuses the torn last sealed segment without touching a file.
#[test]
fn strict_mode_keeps_every_file_of_a_torn_last_sealed_segment() {
    let (dir, segs) = setup_rolled(
        1000,
        TopicConfig::default().with_durability(Durability::Never),
    );
    tear_last_sealed(&segs);
    let sizes = |segs: &[std::path::PathBuf]| -> Vec<u64> {
        segs.iter()
            .map(|s| std::fs::metadata(s).expect("meta").len())
            .collect()
    };
    let before = sizes(&segs);
    assert!(matches!(
        reopen(dir.path(), RecoveryMode::Strict),
        Err(quipu::Error::Log(LogError::Corrupt { .. }))
    ));
    assert_eq!(common::segments(dir.path(), "t", 0), segs);
    assert_eq!(sizes(&segs), before);
}

/// An `Always` topic's sealed segments were fsynced at the roll: the same tear is damage, and
/// the default mode reports it.
#[test]
fn a_torn_sealed_segment_of_an_always_topic_is_damage() {
    let (dir, segs) = setup_rolled(300, always());
    tear_last_sealed(&segs);
    assert!(matches!(
        reopen(dir.path(), RecoveryMode::TolerateCorruptTail),
        Err(quipu::Error::Log(LogError::Corrupt { .. }))
    ));
    assert!(segs[segs.len() - 1].exists());
}
