//! Batch-level reads return whole, verified batches that decode to what `read` returns.

mod common;

use quipu::{Durability, LogError, Message, Quipu, TopicConfig};

#[test]
fn batches_decode_to_the_same_records_as_read() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default()
                .with_durability(Durability::Always)
                .with_segment_bytes(8192),
        )
        .expect("create");
    let p = t.partition(0).expect("p");
    for i in 0..200u64 {
        let batch: Vec<Message> = (0..(i % 5 + 1))
            .map(|j| Message::new(format!("{i}-{j}")).with_key("k"))
            .collect();
        p.append(&batch).expect("append");
    }
    let end = p.end_offset();
    let all = p.read(0, usize::MAX).expect("read");
    // From an offset in the middle of a batch: the first batch starts at or before it.
    let from = 37;
    let mut next = from;
    let mut decoded = Vec::new();
    while next < end {
        let batches = p.read_batches(next, 1500).expect("batches");
        assert!(!batches.is_empty());
        // At most max_bytes together, unless it is a single batch.
        let total: usize = batches.iter().map(|b| b.as_bytes().len()).sum();
        assert!(
            total <= 1500 || batches.len() == 1,
            "read past max_bytes: {total} in {} batches",
            batches.len()
        );
        // And it stopped only because the next batch would not fit (or at the end).
        let last = batches.last().expect("one");
        if last.next_offset() < end {
            let next_len = p.read_batches(last.next_offset(), 1).expect("next")[0]
                .as_bytes()
                .len();
            assert!(
                total + next_len > 1500,
                "stopped early: {total} + {next_len}"
            );
        }
        assert!(batches[0].base_offset() <= next && next < batches[0].next_offset());
        for b in &batches {
            let records = b.records().expect("decode");
            assert_eq!(records.len() as u32, b.record_count());
            decoded.extend(records.into_iter().filter(|r| r.offset >= from));
            next = b.next_offset();
        }
    }
    assert_eq!(decoded, all[from as usize..].to_vec());
    assert!(p.read_batches(end, 100).expect("at end").is_empty());
    assert!(matches!(
        p.read_batches(end + 1, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn buffered_appends_share_batches_and_read_back_across_reopen() {
    let dir = common::tempdir();
    {
        let db = common::open(dir.path());
        let t = db
            .log()
            .create_topic(
                "t",
                TopicConfig::default().with_durability(Durability::Never),
            )
            .expect("create");
        for i in 0..1000 {
            let r = t
                .append(Message::new(format!("v{i}")).with_timestamp(i))
                .expect("append");
            assert_eq!(r.offset, i);
        }
        let p = t.partition(0).expect("p");
        let batches = p.read_batches(0, usize::MAX).expect("batches");
        assert!(
            batches.len() < 100,
            "{} batches for 1000 appends",
            batches.len()
        );
        // An idempotent append closes the open batch and keeps its own.
        p.append_idempotent(3, 0, &[Message::new("idem").with_timestamp(1000)])
            .expect("idem");
        t.append(Message::new("after").with_timestamp(1001))
            .expect("append");
    }
    let db = Quipu::open(dir.path()).expect("reopen");
    let p = db
        .log()
        .topic("t")
        .expect("t")
        .partition(0)
        .expect("p")
        .clone();
    let records = p.read(0, usize::MAX).expect("read");
    assert_eq!(records.len(), 1002);
    for (i, r) in records.iter().enumerate().take(1000) {
        assert_eq!(r.value.as_deref(), Some(format!("v{i}").as_bytes()));
        assert_eq!(r.timestamp, i as u64);
    }
    assert_eq!(p.offset_for_timestamp(500).expect("ts"), Some(500));
    assert!(
        p.append_idempotent(3, 0, &[Message::new("idem")])
            .expect("retry")
            .duplicate
    );
}

#[test]
fn visiting_batches_lends_the_same_bytes_and_stops_when_asked() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let cfg = TopicConfig::default()
        .with_durability(Durability::Always)
        .with_segment_bytes(4096);
    let t = db.log().create_topic("t", cfg).expect("create");
    let p = t.partition(0).expect("p");
    for i in 0..120 {
        p.append(&[Message::new(format!("value-{i:03}")), Message::new("x")])
            .expect("append");
    }
    assert!(p.segment_count() > 1);
    let owned = p.read_batches(10, usize::MAX).expect("batches");
    let mut lent = Vec::new();
    let next = p
        .visit_batches(10, |b| {
            lent.push((
                b.base_offset(),
                b.as_bytes().to_vec(),
                b.records().expect("decode"),
            ));
            std::ops::ControlFlow::Continue(())
        })
        .expect("visit");
    assert_eq!(next, p.end_offset());
    assert_eq!(lent.len(), owned.len());
    for ((base, bytes, records), o) in lent.iter().zip(&owned) {
        assert_eq!(*base, o.base_offset());
        assert_eq!(bytes.as_slice(), &o.as_bytes()[..]);
        assert_eq!(records, &o.records().expect("decode"));
    }
    // Breaking stops the walk; the returned offset is where to resume.
    let mut seen = 0;
    let resume = p
        .visit_batches(0, |_| {
            seen += 1;
            if seen == 3 {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .expect("visit");
    assert_eq!(seen, 3);
    assert_eq!(resume, 6);
}
