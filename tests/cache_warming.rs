//! Warming: from a loader, from the store, and on a cron schedule in America/Guayaquil driven
//! by the manual clock.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quipu::{
    Cache, CacheConfig, CacheError, Error, ManualClock, MemoryStore, NamespaceConfig, Schedule,
    Store,
};

#[test]
fn warm_from_loader_and_store() {
    let store = Arc::new(MemoryStore::new());
    for i in 0..30 {
        store
            .put("geo", format!("canton:{i:02}").as_bytes(), b"EC")
            .unwrap();
    }
    let cache = Cache::builder().store(store.clone()).build().unwrap();
    let geo = cache
        .create_namespace("geo", NamespaceConfig::default())
        .unwrap();
    assert_eq!(geo.warm_from_store(1000).unwrap(), 30);
    assert_eq!(geo.get("canton:07").as_deref(), Some(&b"EC"[..]));

    let n = geo
        .warm_with(["prov:1", "prov:2", "prov:none"], |k| {
            Ok::<_, std::io::Error>((k != b"prov:none").then(|| Bytes::from(k.to_vec())))
        })
        .unwrap();
    assert_eq!(n, 2);
    let err = geo
        .warm_with(["x"], |_| {
            Err::<Option<Bytes>, _>(std::io::Error::other("db down"))
        })
        .unwrap_err();
    assert!(matches!(err, Error::Cache(CacheError::Load(_))));
    assert_eq!(geo.warm([("a", "1"), ("b", "2")]), 2);
    assert!(
        store.get("geo", b"a").unwrap().is_none(),
        "warming never writes the store"
    );
}

#[test]
fn schedules_fire_at_local_times() {
    // Friday 2026-11-27 10:00 in Guayaquil (UTC-5) = 15:00 UTC.
    let friday_10am = 1_795_791_600_000;
    let clock = ManualClock::new(friday_10am);
    let cache = Cache::builder()
        .config(CacheConfig::default().with_maintenance_interval(None))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let menu = cache
        .create_namespace("menu", NamespaceConfig::default())
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    let lunch = Schedule::cron("30 11 * * 1-5", "America/Guayaquil").unwrap();
    assert_eq!(
        lunch.next_after(friday_10am),
        Some(friday_10am + 90 * 60_000)
    );
    cache.schedule_warming(lunch, &menu, move |ns| {
        r.fetch_add(1, Ordering::SeqCst);
        ns.warm([("menu:today", "seco de pollo")]);
    });
    clock.advance(Duration::from_secs(89 * 60));
    cache.run_pending_tasks();
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    clock.advance(Duration::from_secs(60));
    cache.run_pending_tasks();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(menu.get("menu:today").is_some());
    // Saturday and Sunday are skipped: the next run is Monday 11:30.
    clock.advance(Duration::from_secs(2 * 86_400));
    cache.run_pending_tasks();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(86_400));
    cache.run_pending_tasks();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn bad_schedules_are_refused() {
    for (spec, tz) in [
        ("* * * *", "America/Guayaquil"),
        ("61 * * * *", "America/Guayaquil"),
        ("*/0 * * * *", "America/Guayaquil"),
        ("0 12 * * *", "Mars/Olympus_Mons"),
    ] {
        let err = Schedule::cron(spec, tz).unwrap_err();
        assert!(
            matches!(err, Error::Cache(CacheError::InvalidSchedule { .. })),
            "{spec}: {err}"
        );
    }
    let never = Schedule::cron("0 0 31 2 *", "UTC").unwrap();
    assert_eq!(never.next_after(0), None);
}
