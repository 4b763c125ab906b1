//! Batch-level reads return whole, verified batches that decode to what `read` returns.

mod common;

use quipu::{Durability, LogError, Message, Quipu, TopicConfig};

#[test]
fn batches_decode_to_the_same_records_as_read() {
    let dir = common::tempdir();
    let db = Quipu::builder(dir.path())
        .log_config(common::test_config())
        .open()
        .expect("open");
    let t = db
        .log()
        .create_topic(
            "t",
            TopicConfig::default()
                .with_durability(Durability::Never)
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
        let bytes: usize = batches.iter().map(|b| b.as_bytes().len()).sum();
        assert!(bytes < 1500 + 1024, "read far past max_bytes: {bytes}");
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
