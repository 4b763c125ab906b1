//! Pub/sub benchmarks, quipu against `tokio::sync::broadcast` in the same run, printed as one
//! table (custom harness: latency percentiles are the point, which criterion does not report).
//!
//! - latency: one subscriber on its own thread, one message in flight at a time (the publisher
//!   waits for each to arrive), publish→receive time per message; p50 and p99.
//! - fan-out: 10,000 subscribers (tokio tasks on a 2-worker runtime) of one channel, 100
//!   messages published back to back; deliveries/s and publish→receive p99.
//! - durable: consuming 100,000 records with a durable subscription and acking each, against
//!   reading the same records with `Topic::read`.
//!
//! Run: `cargo bench --bench pubsub`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quipu::{
    DurableConfig, DurableSubscription, PubSub, PublishOptions, Quipu, SlowConsumer,
    SubscriptionConfig,
};

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

const LAT_MESSAGES: u64 = 20_000;

fn latency_quipu() -> Vec<Duration> {
    let hub = PubSub::new();
    let sub = hub.subscribe(&["lat"], SubscriptionConfig::default());
    let received = Arc::new(AtomicU64::new(0));
    let r = Arc::clone(&received);
    let reader = std::thread::spawn(move || {
        let mut lat = Vec::with_capacity(LAT_MESSAGES as usize);
        for _ in 0..LAT_MESSAGES {
            let d = sub.recv_blocking(None).expect("recv");
            lat.push(d.message.published_at.elapsed());
            r.fetch_add(1, Ordering::Release);
        }
        lat
    });
    let payload = Bytes::from(vec![7u8; 64]);
    for i in 0..LAT_MESSAGES {
        hub.publish("lat", payload.clone());
        while received.load(Ordering::Acquire) <= i {
            std::hint::spin_loop();
        }
    }
    reader.join().expect("reader")
}

fn latency_broadcast() -> Vec<Duration> {
    let (tx, mut rx) = tokio::sync::broadcast::channel::<(Instant, Bytes)>(1024);
    let received = Arc::new(AtomicU64::new(0));
    let r = Arc::clone(&received);
    let reader = std::thread::spawn(move || {
        let mut lat = Vec::with_capacity(LAT_MESSAGES as usize);
        for _ in 0..LAT_MESSAGES {
            let (at, _) = rx.blocking_recv().expect("recv");
            lat.push(at.elapsed());
            r.fetch_add(1, Ordering::Release);
        }
        lat
    });
    let payload = Bytes::from(vec![7u8; 64]);
    for i in 0..LAT_MESSAGES {
        let _ = tx.send((Instant::now(), payload.clone()));
        while received.load(Ordering::Acquire) <= i {
            std::hint::spin_loop();
        }
    }
    reader.join().expect("reader")
}

const FAN_SUBS: usize = 10_000;
const FAN_MESSAGES: usize = 100;

/// (deliveries per second, sorted latencies)
fn fanout_quipu(rt: &tokio::runtime::Runtime) -> (f64, Vec<Duration>) {
    let hub = PubSub::new();
    let config = SubscriptionConfig::default()
        .with_capacity(FAN_MESSAGES)
        .with_policy(SlowConsumer::DropOldest);
    let subs: Vec<_> = (0..FAN_SUBS)
        .map(|_| hub.subscribe(&["fan"], config))
        .collect();
    let start = Instant::now();
    let tasks: Vec<_> = subs
        .into_iter()
        .map(|s| {
            rt.spawn(async move {
                let mut lat = Vec::with_capacity(FAN_MESSAGES);
                for _ in 0..FAN_MESSAGES {
                    let d = s.recv().await.expect("recv");
                    lat.push(d.message.published_at.elapsed());
                }
                lat
            })
        })
        .collect();
    let payload = Bytes::from(vec![1u8; 64]);
    for _ in 0..FAN_MESSAGES {
        hub.publish_with("fan", payload.clone(), &PublishOptions::default());
    }
    let mut lat = Vec::with_capacity(FAN_SUBS * FAN_MESSAGES);
    for t in tasks {
        lat.extend(rt.block_on(t).expect("task"));
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    ((FAN_SUBS * FAN_MESSAGES) as f64 / secs, lat)
}

fn fanout_broadcast(rt: &tokio::runtime::Runtime) -> (f64, Vec<Duration>) {
    let (tx, _) = tokio::sync::broadcast::channel::<(Instant, Bytes)>(FAN_MESSAGES);
    let rxs: Vec<_> = (0..FAN_SUBS).map(|_| tx.subscribe()).collect();
    let start = Instant::now();
    let tasks: Vec<_> = rxs
        .into_iter()
        .map(|mut rx| {
            rt.spawn(async move {
                let mut lat = Vec::with_capacity(FAN_MESSAGES);
                for _ in 0..FAN_MESSAGES {
                    let (at, _) = rx.recv().await.expect("recv");
                    lat.push(at.elapsed());
                }
                lat
            })
        })
        .collect();
    let payload = Bytes::from(vec![1u8; 64]);
    for _ in 0..FAN_MESSAGES {
        let _ = tx.send((Instant::now(), payload.clone()));
    }
    let mut lat = Vec::with_capacity(FAN_SUBS * FAN_MESSAGES);
    for t in tasks {
        lat.extend(rt.block_on(t).expect("task"));
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    ((FAN_SUBS * FAN_MESSAGES) as f64 / secs, lat)
}

const DURABLE_RECORDS: u64 = 100_000;

/// (durable consume records/s, plain read records/s)
fn durable() -> (f64, f64) {
    let dir = std::path::Path::new("target/bench-data/pubsub");
    let _ = std::fs::remove_dir_all(dir);
    let db = Quipu::open(dir).expect("open");
    let t = db.log().topic_or_create("orders").expect("topic");
    let payload = Bytes::from(vec![3u8; 100]);
    for _ in 0..DURABLE_RECORDS / 1000 {
        let batch: Vec<quipu::Message> = (0..1000)
            .map(|_| quipu::Message::new(payload.clone()))
            .collect();
        t.append_batch(0, &batch).expect("append");
    }
    t.flush().expect("flush");
    let start = Instant::now();
    let mut n = 0;
    let mut offset = 0;
    while n < DURABLE_RECORDS {
        let rs = t.read(0, offset, 1000).expect("read");
        offset = rs.last().map_or(offset, |r| r.offset + 1);
        n += rs.len() as u64;
        std::hint::black_box(&rs);
    }
    let plain = DURABLE_RECORDS as f64 / start.elapsed().as_secs_f64();
    let sub = DurableSubscription::open(db.log(), "orders", "bench", DurableConfig::default())
        .expect("sub");
    let start = Instant::now();
    let mut n = 0;
    while n < DURABLE_RECORDS {
        let ds = sub.receive(1000).expect("receive");
        for d in &ds {
            sub.ack(d).expect("ack");
        }
        n += ds.len() as u64;
    }
    sub.commit().expect("commit");
    let consumed = DURABLE_RECORDS as f64 / start.elapsed().as_secs_f64();
    drop(sub);
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
    (consumed, plain)
}

fn main() {
    // `cargo bench` passes `--bench`; a criterion-style filter is not supported here.
    let mut q = latency_quipu();
    let mut b = latency_broadcast();
    q.sort();
    b.sort();
    println!("publish -> receive, 1 subscriber, one message in flight ({LAT_MESSAGES} messages)");
    println!("| | quipu | tokio broadcast | quipu / broadcast |");
    println!("|---|---:|---:|---:|");
    for (name, p) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
        let (a, c) = (percentile(&q, p), percentile(&b, p));
        println!(
            "| {name} | {:.1} µs | {:.1} µs | {:.2} |",
            us(a),
            us(c),
            us(a) / us(c)
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (qd, ql) = fanout_quipu(&rt);
    let (bd, bl) = fanout_broadcast(&rt);
    println!("\nfan-out: {FAN_SUBS} subscribers, {FAN_MESSAGES} messages");
    println!("| | quipu | tokio broadcast | quipu / broadcast |");
    println!("|---|---:|---:|---:|");
    println!("| deliveries/s | {:.0} | {:.0} | {:.2} |", qd, bd, qd / bd);
    let (a, c) = (percentile(&ql, 0.99), percentile(&bl, 0.99));
    println!(
        "| p99 publish -> receive | {:.1} ms | {:.1} ms | {:.2} |",
        us(a) / 1e3,
        us(c) / 1e3,
        us(a) / us(c)
    );
    let (consumed, plain) = durable();
    println!("\ndurable consume with ack vs Topic::read, {DURABLE_RECORDS} records of 100 B");
    println!("| durable records/s | read records/s | durable / read |");
    println!("|---:|---:|---:|");
    println!("| {consumed:.0} | {plain:.0} | {:.2} |", consumed / plain);
}
