//! Ephemeral pub/sub: channels and patterns, drop-oldest reports the exact number missed, the
//! block policy loses and duplicates nothing, disconnect cuts a slow subscriber off, critical
//! messages jump an informational backlog, ids are deduplicated, dropping unsubscribes.

use std::collections::HashSet;
use std::time::Duration;

use quipu::{
    Priority, PubSub, PublishOptions, Published, RecvError, SlowConsumer, SubscriptionConfig,
};

#[test]
fn channels_and_patterns_share_one_payload() {
    let hub = PubSub::new();
    let exact = hub.subscribe(&["orders:17"], SubscriptionConfig::default());
    let all = hub.psubscribe(&["orders:*"], SubscriptionConfig::default());
    let other = hub.psubscribe(&["stock:*"], SubscriptionConfig::default());
    assert_eq!(hub.publish("orders:17", "paid"), 2);
    let a = exact.try_recv().unwrap();
    let b = all.try_recv().unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&a.message, &b.message),
        "one message shared, not copied"
    );
    assert_eq!(b.pattern.as_deref(), Some("orders:*"));
    assert_eq!(a.pattern, None);
    assert_eq!(other.try_recv().unwrap_err(), RecvError::Empty);
    assert_eq!(hub.subscribers("orders:17"), 1);
    assert_eq!(hub.pattern_count(), 2);
    assert_eq!(hub.channels("*"), vec!["orders:17".to_owned()]);
    drop(exact);
    assert_eq!(hub.subscribers("orders:17"), 0, "dropping unsubscribes");
    assert_eq!(hub.publish("orders:17", "again"), 1);
}

#[test]
fn drop_oldest_reports_exactly_how_many_were_missed() {
    let hub = PubSub::new();
    let sub = hub.subscribe(
        &["prices"],
        SubscriptionConfig::default()
            .with_capacity(10)
            .with_policy(SlowConsumer::DropOldest),
    );
    for i in 0..37 {
        hub.publish("prices", format!("{i}"));
    }
    assert_eq!(sub.try_recv().unwrap_err(), RecvError::Lagged(27));
    let rest: Vec<String> = std::iter::from_fn(|| sub.try_recv().ok())
        .map(|d| String::from_utf8(d.message.payload.to_vec()).unwrap())
        .collect();
    assert_eq!(rest, (27..37).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(hub.stats().dropped, 27);
}

#[test]
fn block_policy_loses_and_duplicates_nothing() {
    let hub = PubSub::new();
    let sub = hub.subscribe(
        &["ledger"],
        SubscriptionConfig::default()
            .with_capacity(4)
            .with_policy(SlowConsumer::Block),
    );
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    hub.publish("ledger", format!("{p}-{i}"));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut last = [-1i64; 3];
    while seen.len() < 1500 {
        let d = sub
            .recv_blocking(Some(Duration::from_secs(10)))
            .expect("no loss, no stall");
        let s = String::from_utf8(d.message.payload.to_vec()).unwrap();
        let (p, i) = s.split_once('-').unwrap();
        let (p, i): (usize, i64) = (p.parse().unwrap(), i.parse().unwrap());
        assert!(i > last[p], "per-publisher order kept");
        last[p] = i;
        assert!(seen.insert(s), "duplicate");
    }
    for p in publishers {
        p.join().unwrap();
    }
    assert_eq!(sub.try_recv().unwrap_err(), RecvError::Empty);
    assert_eq!(hub.stats().dropped, 0);
}

#[test]
fn disconnect_cuts_off_a_slow_subscriber() {
    let hub = PubSub::new();
    let slow = hub.subscribe(
        &["gps"],
        SubscriptionConfig::default()
            .with_capacity(2)
            .with_policy(SlowConsumer::Disconnect),
    );
    assert_eq!(hub.publish("gps", "1"), 1);
    assert_eq!(hub.publish("gps", "2"), 1);
    assert_eq!(
        hub.publish("gps", "3"),
        0,
        "the third overflows and cuts it off"
    );
    assert_eq!(hub.publish("gps", "4"), 0);
    assert!(slow.try_recv().is_ok());
    assert!(slow.try_recv().is_ok());
    assert_eq!(slow.try_recv().unwrap_err(), RecvError::Disconnected);
}

#[test]
fn critical_messages_jump_an_informational_backlog() {
    let hub = PubSub::new();
    let sub = hub.subscribe(&["alerts"], SubscriptionConfig::default());
    for i in 0..100 {
        hub.publish("alerts", format!("info {i}"));
    }
    hub.publish_with(
        "alerts",
        "fraud on card 4417",
        &PublishOptions::default().critical(),
    );
    let first = sub.try_recv().unwrap();
    assert_eq!(first.message.priority, Priority::Critical);
    assert_eq!(&first.message.payload[..], b"fraud on card 4417");
    assert_eq!(&sub.try_recv().unwrap().message.payload[..], b"info 0");
}

#[test]
fn message_ids_are_deduplicated_within_the_window() {
    let hub = PubSub::new();
    let sub = hub.subscribe(&["payments"], SubscriptionConfig::default());
    let opts = PublishOptions::default().id("pay-2026-0001");
    assert_eq!(
        hub.publish_with("payments", "12.50", &opts),
        Published::Delivered(1)
    );
    assert_eq!(
        hub.publish_with("payments", "12.50", &opts),
        Published::Duplicate
    );
    assert!(sub.try_recv().is_ok());
    assert_eq!(sub.try_recv().unwrap_err(), RecvError::Empty);
    assert_eq!(hub.stats().duplicates, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_receive_and_blocking_publish() {
    let hub = PubSub::new();
    let sub = hub.subscribe(
        &["chat"],
        SubscriptionConfig::default()
            .with_capacity(1)
            .with_policy(SlowConsumer::Block),
    );
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                hub.publish_async("chat", format!("{i}"), &PublishOptions::default())
                    .await;
            }
        })
    };
    for i in 0..50 {
        let d = sub.recv().await.unwrap();
        assert_eq!(d.message.payload, format!("{i}").as_bytes());
    }
    publisher.await.unwrap();
    let s = hub.stats();
    assert_eq!((s.published, s.delivered), (50, 50));
}
