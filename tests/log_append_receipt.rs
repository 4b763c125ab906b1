//! An append's receipt tells the first record's timestamp as written, so a caller (the
//! server's stream IDs) need not read the record back.

mod common;

use quipu::{Clock, Durability, ManualClock, Message, TopicConfig};

#[test]
fn the_receipt_carries_the_written_timestamp() {
    let dir = common::tempdir();
    let clock = ManualClock::new(1_700_000_000_000);
    let db = common::open_manual(dir.path(), &clock);
    for durability in [Durability::Always, Durability::Never] {
        let name = format!("t-{}", matches!(durability, Durability::Always));
        let t = db
            .log()
            .create_topic(&name, TopicConfig::default().with_durability(durability))
            .unwrap();
        clock.advance(std::time::Duration::from_millis(7));
        let stamped = t.append(Message::new("a")).unwrap();
        let explicit = t.append(Message::new("b").with_timestamp(42)).unwrap();
        let records = t.read(0, 0, 10).unwrap();
        assert_eq!(stamped.timestamp, records[0].timestamp);
        assert_eq!(stamped.timestamp, clock.now_millis());
        assert_eq!(explicit.timestamp, 42);
        assert_eq!(records[1].timestamp, 42);
    }
}
