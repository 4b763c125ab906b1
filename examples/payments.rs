//! A fintech's payment events: append durably, read back, follow the tail, track a consumer
//! group. Run with `cargo run --example payments [DATA_DIR]`.

use std::time::Duration;

use quipu::{Durability, Message, Quipu, TopicConfig};

fn main() -> Result<(), quipu::Error> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./quipu-data".to_owned());
    let db = Quipu::open(&dir)?;
    let log = db.log();
    let payments = match log.topic("payments") {
        Ok(t) => t,
        Err(_) => log.create_topic(
            "payments",
            TopicConfig::default()
                .with_partitions(3)
                .with_durability(Durability::Always),
        )?,
    };

    let mut tail = payments.follow(0, payments.partition(0)?.end_offset(), 100)?;
    for (i, account) in ["0912345678", "1710034065", "0102030405", "0912345678"]
        .iter()
        .enumerate()
    {
        let body = format!(r#"{{"account":"{account}","amount_usd":"{}.50"}}"#, 10 + i);
        let r = payments.append(
            Message::new(body)
                .with_key(*account)
                .with_header("tz", "America/Guayaquil"),
        )?;
        println!(
            "appended to partition {} at offset {} (fsynced: {})",
            r.partition, r.offset, r.synced
        );
    }

    let group = log.consumer_group("notifications")?;
    for (partition, record) in group.poll("payments", 1000)? {
        let value = record
            .value
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        println!(
            "notify: partition {partition} offset {} {value}",
            record.offset
        );
    }
    group.commit_positions()?;
    for lag in group.lag("payments")? {
        println!(
            "group 'notifications' partition {} lag {}",
            lag.partition, lag.lag
        );
    }

    let live = tail.next_blocking(Duration::from_millis(100))?;
    println!("the tail of partition 0 saw {} new record(s)", live.len());
    println!("log stats: {:?}", log.stats());
    Ok(())
}
