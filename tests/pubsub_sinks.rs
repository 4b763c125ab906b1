//! Fallback delivery: when the primary sink fails its breaker opens, messages go to the
//! fallback and none is lost; after the open period one trial call closes it again. Durable
//! subscriptions raise their alert when lag or dead letters pass a threshold.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use quipu::{
    BreakerConfig, DurableConfig, DurableStats, DurableSubscription, FallbackSink, ManualClock,
    Message, Sink, SinkError, SinkState,
};

#[derive(Debug, Default)]
struct Recording {
    name: &'static str,
    down: AtomicBool,
    got: Mutex<Vec<Bytes>>,
}

impl Sink for Recording {
    fn name(&self) -> &str {
        self.name
    }

    fn deliver(&self, _: &str, payload: &Bytes) -> Result<(), SinkError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(SinkError {
                sink: self.name.into(),
                reason: "down".into(),
            });
        }
        self.got.lock().unwrap().push(payload.clone());
        Ok(())
    }
}

#[test]
fn the_fallback_takes_over_and_nothing_is_lost() {
    let clock = ManualClock::new(0);
    let webhook = Arc::new(Recording {
        name: "webhook",
        ..Recording::default()
    });
    let sms = Arc::new(Recording {
        name: "sms",
        ..Recording::default()
    });
    let sink = FallbackSink::new(
        webhook.clone(),
        sms.clone(),
        BreakerConfig::default()
            .with_failure_threshold(3)
            .with_open_for(Duration::from_secs(30)),
        Arc::new(clock.clone()),
    );
    sink.deliver("pay", &Bytes::from("m0")).unwrap();
    webhook.down.store(true, Ordering::SeqCst);
    for i in 1..=10 {
        sink.deliver("pay", &Bytes::from(format!("m{i}"))).unwrap();
    }
    assert!(matches!(sink.breaker_state(), SinkState::Open { .. }));
    assert_eq!(sink.primary_deliveries(), 1);
    assert_eq!(sink.fallback_deliveries(), 10);
    let mut all: Vec<Bytes> = webhook.got.lock().unwrap().clone();
    all.extend(sms.got.lock().unwrap().iter().cloned());
    assert_eq!(all.len(), 11, "every message reached one sink");

    // Both down: the caller gets the error and keeps the message.
    sms.down.store(true, Ordering::SeqCst);
    assert!(sink.deliver("pay", &Bytes::from("m11")).is_err());
    assert_eq!(sink.failures(), 1);

    // The primary recovers: after the open period one trial call closes the breaker.
    webhook.down.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(30));
    assert_eq!(sink.breaker_state(), SinkState::HalfOpen);
    sink.deliver("pay", &Bytes::from("m11")).unwrap();
    assert_eq!(sink.breaker_state(), SinkState::Closed);
}

#[test]
fn lag_and_dead_letter_alerts() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let t = db.log().topic_or_create("events").unwrap();
    for i in 0..50 {
        t.append(Message::new(format!("{i}"))).unwrap();
    }
    let sub = DurableSubscription::open(
        db.log(),
        "events",
        "slow",
        DurableConfig::default().with_max_deliveries(1),
    )
    .unwrap();
    let alerts: Arc<Mutex<Vec<DurableStats>>> = Arc::default();
    let sink = Arc::clone(&alerts);
    sub.set_alert(40, 0, move |s| sink.lock().unwrap().push(*s));
    let batch = sub.receive(5).unwrap();
    assert_eq!(alerts.lock().unwrap().len(), 1, "lag 50 > 40");
    assert_eq!(alerts.lock().unwrap()[0].lag, 50);
    for d in &batch {
        sub.ack(d).unwrap();
    }
    let more = sub.receive(10).unwrap();
    assert_eq!(
        alerts.lock().unwrap().len(),
        1,
        "still above: no new alert until it crosses again"
    );
    sub.nack(&more[0], "bad payload").unwrap();
    let got = alerts.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "the first dead letter crosses its threshold");
    assert_eq!(got[1].dead_lettered, 1);
}
