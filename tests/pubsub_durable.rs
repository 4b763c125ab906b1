//! Durable subscriptions: a consumer that dies mid-processing (its deadline passes, or its
//! process is SIGKILLed) has its unacknowledged messages redelivered and none is lost; nacks
//! back off and end in the dead-letter topic with their origin, and can be re-driven; the
//! critical lane is served before an informational backlog.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use quipu::{
    DEAD_LETTER_HEADERS, DurableConfig, DurableSubscription, ManualClock, Message, Quipu,
    TopicConfig,
};

fn header(r: &quipu::Record, name: &str) -> String {
    let v = &r.headers.iter().find(|(k, _)| k == name).expect(name).1;
    String::from_utf8(v.to_vec()).unwrap()
}

#[test]
fn a_dead_consumers_messages_are_redelivered_to_another() {
    let dir = common::tempdir();
    let clock = ManualClock::new(1_000_000);
    let db = common::open_manual(dir.path(), &clock);
    let topic = db
        .log()
        .create_topic("payments", TopicConfig::default().with_partitions(2))
        .unwrap();
    for i in 0..40 {
        topic
            .append(Message::new(format!("pay-{i}")).with_key(format!("acct-{}", i % 5)))
            .unwrap();
    }
    let config = DurableConfig::default().with_ack_deadline(Duration::from_secs(30));
    let a = DurableSubscription::open(db.log(), "payments", "notifier", config).unwrap();
    let b = a.clone(); // a competing consumer of the same group
    let taken_by_a = a.receive(15).unwrap();
    assert_eq!(taken_by_a.len(), 15);
    // `b` gets the other 25, never one of a's.
    let taken_by_b = b.receive(100).unwrap();
    assert_eq!(taken_by_b.len(), 25);
    for d in &taken_by_b {
        b.ack(d).unwrap();
    }
    // `a` dies mid-processing: no ack. Nothing moves until its deadline passes.
    drop(taken_by_a);
    assert!(b.receive(100).unwrap().is_empty());
    clock.advance(Duration::from_secs(31));
    let again = b.receive(100).unwrap();
    assert_eq!(again.len(), 15);
    assert!(again.iter().all(|d| d.delivery_count == 2));
    for d in &again {
        b.ack(d).unwrap();
    }
    b.commit().unwrap();
    let s = b.stats();
    assert_eq!((s.acked, s.redelivered, s.lag, s.in_flight), (40, 15, 0, 0));
}

#[test]
fn nacked_messages_back_off_then_land_in_the_dead_letter_topic_and_can_be_redriven() {
    let dir = common::tempdir();
    let clock = ManualClock::new(1_000_000);
    let db = common::open_manual(dir.path(), &clock);
    let topic = db.log().topic_or_create("webhooks").unwrap();
    topic
        .append(Message::new("notify merchant 9").with_header("trace", "t-1"))
        .unwrap();
    let config = DurableConfig::default()
        .with_max_deliveries(3)
        .with_backoff(vec![Duration::from_secs(1), Duration::from_secs(10)]);
    let sub = DurableSubscription::open(db.log(), "webhooks", "sender", config).unwrap();
    let d = sub.receive(1).unwrap().pop().unwrap();
    assert_eq!(d.delivery_count, 1);
    sub.nack(&d, "HTTP 503").unwrap();
    assert!(
        sub.receive(1).unwrap().is_empty(),
        "waits out the first backoff"
    );
    clock.advance(Duration::from_secs(1));
    let d = sub.receive(1).unwrap().pop().unwrap();
    assert_eq!(d.delivery_count, 2);
    sub.nack(&d, "HTTP 503").unwrap();
    clock.advance(Duration::from_secs(9));
    assert!(
        sub.receive(1).unwrap().is_empty(),
        "the second backoff is 10 s"
    );
    clock.advance(Duration::from_secs(1));
    let d = sub.receive(1).unwrap().pop().unwrap();
    assert_eq!(d.delivery_count, 3);
    sub.nack(&d, "HTTP 410 gone").unwrap();
    assert!(sub.receive(1).unwrap().is_empty());
    assert_eq!(sub.stats().dead_lettered, 1);
    assert_eq!(sub.stats().lag, 0, "a dead letter is done for the group");

    let dlq = db.log().topic("webhooks.dlq").unwrap();
    let dead = dlq.read(0, 0, 10).unwrap();
    assert_eq!(dead.len(), 1);
    let r = &dead[0];
    assert_eq!(r.value.as_deref(), Some(&b"notify merchant 9"[..]));
    assert_eq!(header(r, DEAD_LETTER_HEADERS[0]), "webhooks");
    assert_eq!(header(r, DEAD_LETTER_HEADERS[1]), "0");
    assert_eq!(header(r, DEAD_LETTER_HEADERS[2]), "0");
    assert_eq!(header(r, DEAD_LETTER_HEADERS[3]), "HTTP 410 gone");
    assert_eq!(header(r, DEAD_LETTER_HEADERS[4]), "3");
    assert_eq!(header(r, "trace"), "t-1", "application headers are kept");

    assert_eq!(sub.redrive(db.log(), 10).unwrap(), 1);
    assert_eq!(
        sub.redrive(db.log(), 10).unwrap(),
        0,
        "each dead letter is re-driven once"
    );
    let back = sub.receive(1).unwrap().pop().unwrap();
    assert_eq!(back.offset, 1, "a new record on the origin topic");
    assert_eq!(back.delivery_count, 1);
    assert!(
        back.record
            .headers
            .iter()
            .all(|(k, _)| !k.starts_with("x-origin"))
    );
    sub.ack(&back).unwrap();
}

#[test]
fn the_critical_lane_is_served_first() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let info = db.log().topic_or_create("notifications").unwrap();
    let critical = db.log().topic_or_create("notifications.critical").unwrap();
    for i in 0..500 {
        info.append(Message::new(format!("promo {i}"))).unwrap();
    }
    critical.append(Message::new("card blocked")).unwrap();
    let sub = DurableSubscription::open(
        db.log(),
        "notifications",
        "push",
        DurableConfig::default().with_critical_topic("notifications.critical"),
    )
    .unwrap();
    let first = sub.receive(10).unwrap();
    assert_eq!(&*first[0].topic, "notifications.critical");
    assert_eq!(first[0].record.value.as_deref(), Some(&b"card blocked"[..]));
    assert_eq!(first.len(), 10);
}

/// Runs only as the child process: takes every message, acks the first half (committing each
/// ack), reports them, then hangs mid-processing until killed.
#[test]
fn durable_child_main() {
    let Ok(dir) = std::env::var("QUIPU_DURABLE_CHILD") else {
        return;
    };
    let db = Quipu::open(&dir).unwrap();
    let config = DurableConfig::default().with_commit_interval(Duration::ZERO);
    let sub = DurableSubscription::open(db.log(), "orders", "billing", config).unwrap();
    let all = sub.receive(1000).unwrap();
    let mut out = std::io::stdout();
    for d in &all[..all.len() / 2] {
        sub.ack(d).unwrap();
        writeln!(out, "ACK {} {}", d.partition, d.offset).unwrap();
        out.flush().unwrap();
    }
    writeln!(out, "HANG").unwrap();
    out.flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_process_loses_no_unacknowledged_message() {
    let dir = common::tempdir();
    let mut all = BTreeSet::new();
    {
        let db = Quipu::open(dir.path()).unwrap();
        let t = db
            .log()
            .create_topic("orders", TopicConfig::default().with_partitions(3))
            .unwrap();
        for i in 0..90 {
            let r = t
                .append(Message::new(format!("order {i}")).with_key(format!("k{i}")))
                .unwrap();
            all.insert((r.partition, r.offset));
        }
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durable_child_main",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("QUIPU_DURABLE_CHILD", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = BTreeSet::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // libtest prints "test durable_child_main ... " without a newline first.
        if line.ends_with("HANG") {
            break;
        }
        if let Some(rest) = line.split("ACK ").nth(1) {
            let (p, o) = rest.split_once(' ').unwrap();
            acked.insert((p.parse::<u32>().unwrap(), o.parse::<u64>().unwrap()));
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(acked.len(), 45);

    let db = Quipu::open(dir.path()).unwrap();
    let sub =
        DurableSubscription::open(db.log(), "orders", "billing", DurableConfig::default()).unwrap();
    let redelivered: BTreeSet<(u32, u64)> = sub
        .receive(1000)
        .unwrap()
        .iter()
        .map(|d| (d.partition, d.offset))
        .collect();
    let covered: BTreeSet<_> = acked.union(&redelivered).copied().collect();
    assert_eq!(
        covered, all,
        "every message was acknowledged or comes again"
    );
    assert!(
        redelivered.len() >= 45,
        "the unacknowledged half comes again"
    );
}
