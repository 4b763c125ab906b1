//! Segments roll by size and age; keyed records keep to one partition; topics reopen intact.

mod common;

use std::time::Duration;

use quipu::{Durability, ManualClock, Message, TopicConfig};

#[test]
fn segments_roll_by_size_and_reads_cross_them() {
    let dir = common::tempdir();
    let clock = ManualClock::new(0);
    let db = common::open_manual(dir.path(), &clock);
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default()
                .with_durability(Durability::Never)
                .with_segment_bytes(4096),
        )
        .expect("create");
    for i in 0..300 {
        t.append(Message::new(format!("{i:080}"))).expect("append");
    }
    let files = common::segments(dir.path(), "t", 0);
    assert!(files.len() >= 6, "{} segments", files.len());
    for f in &files[..files.len() - 1] {
        assert!(std::fs::metadata(f).expect("meta").len() <= 4096);
    }
    // File names are the base offsets.
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    assert_eq!(names[0], format!("{:020}", 0));
    let records = t.read(0, 0, usize::MAX).expect("read");
    assert_eq!(records.len(), 300);
    let second_base: u64 = names[1].parse().expect("number");
    assert_eq!(
        t.read(0, second_base, 1).expect("read")[0].offset,
        second_base
    );
    assert_eq!(t.partition(0).expect("p").segment_count(), files.len());
}

#[test]
fn segments_roll_by_age() {
    let dir = common::tempdir();
    let clock = ManualClock::new(0);
    let db = common::open_manual(dir.path(), &clock);
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default()
                .with_durability(Durability::Never)
                .with_segment_age(Duration::from_secs(60)),
        )
        .expect("create");
    t.append(Message::new("a")).expect("append");
    clock.advance(Duration::from_secs(30));
    t.append(Message::new("b")).expect("append");
    assert_eq!(t.partition(0).expect("p").segment_count(), 1);
    clock.advance(Duration::from_secs(31));
    t.append(Message::new("c")).expect("append");
    assert_eq!(t.partition(0).expect("p").segment_count(), 2);
}

#[test]
fn keys_keep_to_one_partition_and_spread_across_all() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default()
                .with_partitions(4)
                .with_durability(Durability::Never),
        )
        .expect("create");
    let mut counts = [0u32; 4];
    for i in 0..2000 {
        let key = format!("customer-{i}");
        let a = t
            .append(Message::new("x").with_key(key.clone()))
            .expect("append");
        let b = t
            .append(Message::new("y").with_key(key.clone()))
            .expect("append");
        assert_eq!(a.partition, b.partition);
        assert_eq!(a.partition, t.partition_for_key(key.as_bytes()));
        counts[a.partition as usize] += 1;
    }
    for c in counts {
        assert!((350..650).contains(&c), "skewed partitioning: {counts:?}");
    }
    // Unkeyed records go round-robin.
    let parts: Vec<u32> = (0..8)
        .map(|_| t.append(Message::new("z")).expect("append").partition)
        .collect();
    let mut seen = parts.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 4);
}

#[test]
fn topics_and_configs_survive_reopen_and_delete_removes_files() {
    let dir = common::tempdir();
    {
        let db = quipu::Quipu::open(dir.path()).expect("open");
        let cfg = TopicConfig::default()
            .with_partitions(3)
            .with_durability(Durability::Interval(Duration::from_millis(5)));
        db.log().create_topic("a", cfg).expect("a");
        db.log()
            .create_topic("b", TopicConfig::default())
            .expect("b");
        db.log()
            .topic("a")
            .expect("a")
            .append(Message::new("kept"))
            .expect("append");
    }
    let db = quipu::Quipu::open(dir.path()).expect("reopen");
    assert_eq!(db.log().topics(), vec!["a".to_owned(), "b".to_owned()]);
    let a = db.log().topic("a").expect("a");
    assert_eq!(a.partition_count(), 3);
    assert_eq!(
        a.config().durability,
        Durability::Interval(Duration::from_millis(5))
    );
    assert_eq!(a.end_offsets().iter().sum::<u64>(), 1);
    db.log().delete_topic("b").expect("delete");
    assert!(!dir.path().join("log/b").exists());
    assert!(db.log().topic("b").is_err());
}
