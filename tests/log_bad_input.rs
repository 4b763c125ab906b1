//! Bad input gets a typed error, never a panic, and loses nothing.

mod common;

use quipu::{ConfigError, Durability, LogError, Message, Quipu, TopicConfig};

fn open(dir: &std::path::Path) -> Quipu {
    common::open(dir)
}

#[test]
fn oversized_record_is_refused_and_nothing_is_written() {
    let dir = common::tempdir();
    let db = open(dir.path());
    let t = db
        .log()
        .create_topic("t", TopicConfig::default().with_max_record_bytes(1000))
        .expect("create");
    t.append(Message::new("small")).expect("append");
    let err = t
        .append(Message::new(vec![0u8; 5000]))
        .expect_err("too large");
    assert!(
        matches!(err, LogError::RecordTooLarge { max: 1000, .. }),
        "{err}"
    );
    let err = t.append_batch(0, &[]).expect_err("empty");
    assert!(matches!(err, LogError::EmptyBatch));
    assert_eq!(t.partition(0).expect("p").end_offset(), 1);
    assert_eq!(t.append(Message::new("next")).expect("append").offset, 1);
}

#[test]
fn invalid_topic_names_are_refused() {
    let dir = common::tempdir();
    let db = open(dir.path());
    for name in [
        "",
        ".",
        "..",
        "a/b",
        "__internal",
        "spaces here",
        "ñandú",
        &"x".repeat(201),
    ] {
        let err = db
            .log()
            .create_topic(name, TopicConfig::default())
            .expect_err(name);
        assert!(
            matches!(err, quipu::Error::Log(LogError::InvalidTopicName { .. })),
            "{name:?}: {err}"
        );
    }
    assert!(db.log().topics().is_empty());
    assert!(matches!(
        db.log().topic("nope"),
        Err(LogError::TopicNotFound(_))
    ));
    db.log()
        .create_topic("ok.name_1-2", TopicConfig::default())
        .expect("valid name");
    assert!(matches!(
        db.log().create_topic("ok.name_1-2", TopicConfig::default()),
        Err(quipu::Error::Log(LogError::TopicExists(_)))
    ));
}

#[test]
fn invalid_config_is_refused() {
    let dir = common::tempdir();
    let db = open(dir.path());
    for cfg in [
        TopicConfig::default().with_partitions(0),
        TopicConfig::default().with_segment_bytes(10),
        TopicConfig::default().with_durability(Durability::Interval(std::time::Duration::ZERO)),
    ] {
        let err = db.log().create_topic("t", cfg).expect_err("bad config");
        assert!(
            matches!(err, quipu::Error::Config(ConfigError::Invalid { .. })),
            "{err}"
        );
    }
}

#[test]
fn invalid_log_config_is_refused_at_open() {
    let dir = common::tempdir();
    for (cfg, field) in [
        (
            common::test_config().with_write_buffer_bytes(10),
            "write_buffer_bytes",
        ),
        (
            common::test_config().with_sync_thread_idle(std::time::Duration::ZERO),
            "sync_thread_idle",
        ),
    ] {
        let err = quipu::Quipu::builder(dir.path())
            .log_config(cfg)
            .open()
            .expect_err("bad log config");
        assert!(
            matches!(err, quipu::Error::Config(ConfigError::Invalid { field: f, .. }) if f == field),
            "{err}"
        );
    }
}

#[test]
fn reads_out_of_range_and_missing_partitions_are_errors() {
    let dir = common::tempdir();
    let db = open(dir.path());
    let t = db
        .log()
        .create_topic("t", TopicConfig::default().with_partitions(2))
        .expect("create");
    t.append_batch(0, &[Message::new("a"), Message::new("b")])
        .expect("append");
    assert!(t.read(0, 2, 10).expect("at end").is_empty());
    let err = t.read(0, 3, 10).expect_err("past end");
    assert!(
        matches!(
            err,
            LogError::OffsetOutOfRange {
                requested: 3,
                start: 0,
                end: 2
            }
        ),
        "{err}"
    );
    assert!(matches!(
        t.read(7, 0, 10),
        Err(LogError::PartitionNotFound { partition: 7, .. })
    ));
    assert!(matches!(
        t.follow(2, 0, 10),
        Err(LogError::PartitionNotFound { .. })
    ));
}

#[test]
fn a_directory_from_a_newer_format_is_refused() {
    let dir = common::tempdir();
    drop(open(dir.path()));
    // Rewrite the FORMAT marker as version 99 (same envelope, valid CRC).
    let marker = dir.path().join("log").join("__format");
    let bytes = std::fs::read(&marker).expect("marker");
    let payload = [99u8]; // postcard varint of log_format = 99
    let mut out = bytes[..4].to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    std::fs::write(&marker, out).expect("write");
    let err = Quipu::open(dir.path()).expect_err("newer format");
    assert!(
        matches!(
            err,
            quipu::Error::Log(LogError::UnsupportedFormat {
                found: 99,
                supported: 1,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn a_batch_from_a_newer_format_is_refused_not_truncated() {
    let dir = common::tempdir();
    {
        let db = open(dir.path());
        let t = db
            .log()
            .create_topic("t", TopicConfig::default())
            .expect("create");
        t.append(Message::new("v1")).expect("append");
    }
    let seg = common::last_segment(dir.path(), "t", 0);
    let mut bytes = std::fs::read(&seg).expect("seg");
    bytes[4] = 2; // batch format version 2
    std::fs::write(&seg, &bytes).expect("write");
    let err = Quipu::open(dir.path()).expect_err("newer batch");
    assert!(
        matches!(
            err,
            quipu::Error::Log(LogError::UnsupportedFormat { found: 2, .. })
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&seg).expect("seg").len(),
        bytes.len(),
        "nothing was cut"
    );
}

#[test]
fn a_second_instance_on_the_same_directory_is_refused() {
    let dir = common::tempdir();
    let _db = open(dir.path());
    assert!(matches!(
        Quipu::open(dir.path()),
        Err(quipu::Error::Locked { .. })
    ));
}
