//! Observability: hits, misses, loads and removal causes in the stats; the hit-ratio alert
//! fires when a window's ratio drops below its threshold, and only then.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use quipu::{Cache, CacheConfig, HitRatioAlert, ManualClock, NamespaceConfig};

#[test]
fn stats_count_what_happened() {
    let cache = Cache::new();
    let ns = cache.default_namespace();
    ns.insert("a", "1").unwrap();
    ns.insert("a", "2").unwrap();
    assert!(ns.get("a").is_some());
    assert!(ns.get("b").is_none());
    ns.remove("a").unwrap();
    let s = ns.stats();
    assert_eq!(
        (s.hits, s.misses, s.inserts, s.replaced, s.removed_explicit),
        (1, 1, 2, 1, 1)
    );
    assert!((s.hit_ratio() - 0.5).abs() < 1e-9);
    assert_eq!((s.entries, s.bytes), (0, 0));
}

#[test]
fn hit_ratio_alert_fires_below_threshold() {
    let clock = ManualClock::new(0);
    let cache = Cache::builder()
        .config(CacheConfig::default().with_maintenance_interval(None))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let ns = cache
        .create_namespace("products", NamespaceConfig::default())
        .unwrap();
    let alerts: Arc<Mutex<Vec<HitRatioAlert>>> = Arc::default();
    let sink = Arc::clone(&alerts);
    ns.set_hit_ratio_alert(0.8, Duration::from_secs(60), 10, move |a| {
        sink.lock().unwrap().push(a.clone());
    });
    ns.insert("p1", "x").unwrap();
    // Window 1: 9 hits, 1 miss (90%): no alert.
    for _ in 0..9 {
        let _ = ns.get("p1");
    }
    let _ = ns.get("nope");
    clock.advance(Duration::from_secs(60));
    cache.run_pending_tasks();
    assert!(alerts.lock().unwrap().is_empty());
    // Window 2: 5 hits, 5 misses (50%): alert.
    for i in 0..10 {
        let _ = ns.get(if i % 2 == 0 { "p1" } else { "nope" });
    }
    clock.advance(Duration::from_secs(30));
    cache.run_pending_tasks();
    assert!(alerts.lock().unwrap().is_empty(), "window not over yet");
    clock.advance(Duration::from_secs(30));
    cache.run_pending_tasks();
    let got = alerts.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].namespace, "products");
    assert_eq!(got[0].reads, 10);
    assert!((got[0].hit_ratio - 0.5).abs() < 1e-9);
    // Window 3: too few reads to judge.
    let _ = ns.get("nope");
    clock.advance(Duration::from_secs(60));
    cache.run_pending_tasks();
    assert_eq!(alerts.lock().unwrap().len(), 1);
}
