//! Model-based property test: random appends, reads, reopens, retention and compaction, checked
//! against a plain in-memory model of every partition.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use quipu::{Cleanup, Clock, Durability, ManualClock, Message, Quipu, Record, TopicConfig};

const PARTITIONS: u32 = 2;
const GRACE_SECS: u64 = 100;

#[derive(Debug, Clone)]
enum Op {
    Append {
        partition: u32,
        key: Option<u8>,
        len: usize,
        tombstone: bool,
        batch: usize,
    },
    Read {
        partition: u32,
        from: u64,
        max: usize,
    },
    Reopen,
    Retention,
    Compact,
    Advance(u64),
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..PARTITIONS, proptest::option::of(0u8..6), 0usize..400, proptest::bool::weighted(0.1), 1usize..4)
            .prop_map(|(partition, key, len, tombstone, batch)| Op::Append { partition, key, len, tombstone, batch }),
        3 => (0..PARTITIONS, 0u64..200, 1usize..50).prop_map(|(partition, from, max)| Op::Read { partition, from, max }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Retention),
        1 => Just(Op::Compact),
        1 => (1u64..200).prop_map(Op::Advance),
        1 => Just(Op::Flush),
    ]
}

/// Key, value (None for a tombstone) and timestamp of a record in the model.
type Entry = (Option<Vec<u8>>, Option<Vec<u8>>, u64);

/// What a partition must hold: offset → record, plus the first offset still held.
#[derive(Debug, Default)]
struct ModelPartition {
    records: BTreeMap<u64, Entry>,
    start: u64,
    end: u64,
}

fn value(offset_hint: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (offset_hint as usize * 31 + i) as u8)
        .collect()
}

fn open(dir: &std::path::Path, clock: &ManualClock) -> Quipu {
    common::open_manual(dir, clock)
}

fn check_read(model: &ModelPartition, from: u64, max: usize, got: &[Record]) {
    let expected: Vec<_> = model.records.range(from..).take(max).collect();
    assert_eq!(got.len(), expected.len(), "read({from}, {max}) length");
    for (r, (off, (k, v, ts))) in got.iter().zip(expected) {
        assert_eq!(r.offset, *off);
        assert_eq!(r.key.as_deref(), k.as_deref());
        assert_eq!(r.value.as_deref(), v.as_deref());
        assert_eq!(r.timestamp, *ts);
    }
}

fn run(ops: Vec<Op>, cleanup: Cleanup) {
    let dir = common::tempdir();
    let clock = ManualClock::new(1_000_000);
    let config = TopicConfig::default()
        .with_partitions(PARTITIONS)
        .with_durability(Durability::Never)
        .with_segment_bytes(4096)
        .with_index_interval_bytes(512)
        .with_retention_bytes(12 * 1024)
        .with_cleanup(cleanup)
        .with_tombstone_grace(Duration::from_secs(GRACE_SECS));
    let mut db = open(dir.path(), &clock);
    db.log().create_topic("m", config).expect("create");
    let mut model: HashMap<u32, ModelPartition> = (0..PARTITIONS)
        .map(|p| (p, ModelPartition::default()))
        .collect();
    for op in ops {
        let topic = db.log().topic("m").expect("topic");
        match op {
            Op::Append {
                partition,
                key,
                len,
                tombstone,
                batch,
            } => {
                let m = model.get_mut(&partition).expect("p");
                let msgs: Vec<Message> = (0..batch)
                    .map(|i| {
                        let k = key.map(|k| vec![b'k', k]);
                        let mut msg = if tombstone && k.is_some() {
                            Message::tombstone(k.clone().unwrap_or_default())
                        } else {
                            Message::new(value(m.end + i as u64, len))
                        };
                        if let Some(k) = k {
                            msg = msg.with_key(k);
                        }
                        msg
                    })
                    .collect();
                let r = topic.append_batch(partition, &msgs).expect("append");
                assert_eq!(r.offset, m.end);
                let now = clock.now_millis();
                for (i, msg) in msgs.iter().enumerate() {
                    let v = msg.value.as_ref().map(|b| b.to_vec());
                    let k = msg.key.as_ref().map(|b| b.to_vec());
                    m.records.insert(m.end + i as u64, (k, v, now));
                }
                m.end += msgs.len() as u64;
            }
            Op::Read {
                partition,
                from,
                max,
            } => {
                let m = &model[&partition];
                let got = topic.read(partition, from, max);
                if from < m.start || from > m.end {
                    assert!(
                        got.is_err(),
                        "read({from}) outside [{}, {}] succeeded",
                        m.start,
                        m.end
                    );
                } else {
                    check_read(m, from, max, &got.expect("read"));
                }
            }
            Op::Reopen => {
                drop(topic);
                drop(db);
                db = open(dir.path(), &clock);
            }
            Op::Retention => {
                topic.enforce_retention().expect("retention");
                for p in 0..PARTITIONS {
                    let part = topic.partition(p).expect("p");
                    let m = model.get_mut(&p).expect("p");
                    let start = part.start_offset();
                    assert!(
                        start >= m.start && start <= m.end,
                        "start moved outside the log"
                    );
                    m.records = m.records.split_off(&start);
                    m.start = start;
                    assert!(
                        part.size_bytes() <= 12 * 1024 + 4096 + 1024,
                        "retention left {}",
                        part.size_bytes()
                    );
                }
            }
            Op::Compact => {
                let now = clock.now_millis();
                topic.compact().expect("compact");
                for p in 0..PARTITIONS {
                    let m = model.get_mut(&p).expect("p");
                    let got = topic.read(p, m.start, usize::MAX).expect("read");
                    // Whatever survived is unchanged; nothing that must stay was removed.
                    let mut latest: HashMap<Vec<u8>, u64> = HashMap::new();
                    for (off, (k, _, _)) in &m.records {
                        if let Some(k) = k {
                            latest.insert(k.clone(), *off);
                        }
                    }
                    let kept: BTreeMap<u64, &Record> = got.iter().map(|r| (r.offset, r)).collect();
                    for (off, (k, v, ts)) in &m.records {
                        let must_stay = match k {
                            None => true,
                            Some(k) => {
                                latest[k] == *off && !(v.is_none() && now - ts >= GRACE_SECS * 1000)
                            }
                        };
                        if must_stay {
                            assert!(
                                kept.contains_key(off),
                                "compaction removed needed offset {off}"
                            );
                        }
                    }
                    for r in &got {
                        let (k, v, ts) = m.records.get(&r.offset).expect("record the model has");
                        assert_eq!(r.key.as_deref(), k.as_deref());
                        assert_eq!(r.value.as_deref(), v.as_deref());
                        assert_eq!(r.timestamp, *ts);
                    }
                    m.records.retain(|off, _| kept.contains_key(off));
                    assert_eq!(topic.partition(p).expect("p").end_offset(), m.end);
                }
            }
            Op::Advance(secs) => clock.advance(Duration::from_secs(secs)),
            Op::Flush => topic.flush().expect("flush"),
        }
    }
    // Final full comparison after a last reopen.
    drop(db);
    let db = open(dir.path(), &clock);
    let topic = db.log().topic("m").expect("topic");
    for p in 0..PARTITIONS {
        let m = &model[&p];
        assert_eq!(topic.partition(p).expect("p").end_offset(), m.end);
        check_read(
            m,
            m.start,
            usize::MAX,
            &topic.read(p, m.start, usize::MAX).expect("read"),
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn delete_topics_match_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, Cleanup::Delete);
    }

    #[test]
    fn compacted_topics_match_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, Cleanup::Compact);
    }
}
