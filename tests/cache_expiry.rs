//! Expiry through the manual clock: TTL, TTI extended by reads, TTL capping TTI, `expire` and
//! `ttl`, and the sweep freeing expired entries' memory without anyone reading them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use quipu::{Cache, CacheConfig, EntryOptions, ManualClock, NamespaceConfig, RemovalCause};

fn cache(clock: &ManualClock) -> Cache {
    Cache::builder()
        .config(CacheConfig::default().with_maintenance_interval(None))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

#[test]
fn ttl_and_tti() {
    let clock = ManualClock::new(0);
    let cache = cache(&clock);
    let sessions = cache
        .create_namespace(
            "sessions",
            NamespaceConfig::default().with_tti(Duration::from_secs(30)),
        )
        .unwrap();
    sessions.insert("s1", "user=1").unwrap();
    sessions
        .insert_with(
            "s2",
            "user=2",
            &EntryOptions::default().ttl(Duration::from_secs(45)),
        )
        .unwrap();
    for step in 1..=3 {
        clock.advance(Duration::from_secs(20));
        assert!(
            sessions.get("s1").is_some(),
            "read within the idle time keeps it alive"
        );
        // s2 is read every 20 s too, so it never idles out, but its TTL caps it at 45 s.
        assert_eq!(
            sessions.get("s2").is_some(),
            step < 3,
            "s2 at {} s",
            step * 20
        );
    }
    clock.advance(Duration::from_secs(31));
    assert!(sessions.get("s1").is_none(), "idle for longer than the TTI");
    assert_eq!(sessions.stats().expired, 2);
}

#[test]
fn expire_persist_and_ttl() {
    let clock = ManualClock::new(5_000);
    let cache = cache(&clock);
    let ns = cache.default_namespace();
    ns.insert("k", "v").unwrap();
    assert_eq!(ns.ttl("k"), Some(None));
    assert!(ns.expire("k", Some(Duration::from_millis(1500))));
    assert_eq!(ns.ttl("k"), Some(Some(Duration::from_millis(1500))));
    clock.advance(Duration::from_millis(500));
    assert_eq!(ns.ttl("k"), Some(Some(Duration::from_millis(1000))));
    assert!(ns.expire("k", None));
    clock.advance(Duration::from_secs(3600));
    assert_eq!(ns.get("k").as_deref(), Some(&b"v"[..]));
    assert!(!ns.expire("missing", None));
    assert_eq!(ns.ttl("missing"), None);
}

/// `expiring` counts the entries with a deadline and their mean time left, however far away
/// the deadlines are (their sum does not fit in 64 bits here).
#[test]
fn expiring_counts_deadlines_and_their_mean_time_left() {
    let clock = ManualClock::new(1_000);
    let cache = cache(&clock);
    let ns = cache.default_namespace();
    assert_eq!(ns.expiring(), (0, Duration::ZERO));
    ns.insert("forever", "v").unwrap();
    let far = Duration::from_millis(u64::MAX / 4);
    for i in 0..8 {
        ns.insert_with_ttl(format!("far{i}"), "v", far).unwrap();
    }
    assert_eq!(ns.expiring(), (8, far));
    ns.insert_with_ttl("near", "v", Duration::from_secs(1))
        .unwrap();
    clock.advance(Duration::from_secs(2));
    let (n, mean) = ns.expiring();
    assert_eq!(
        n, 9,
        "one past its deadline counts until it is removed, as in Redis"
    );
    // Its second past the deadline counts against the others' time left.
    let expected = (far - Duration::from_secs(2)) * 8 / 9 - Duration::from_secs(1) / 9;
    let off = mean.abs_diff(expected);
    assert!(
        off <= Duration::from_millis(1),
        "{mean:?} against {expected:?}"
    );
    cache.run_pending_tasks();
    assert_eq!(ns.expiring(), (8, far - Duration::from_secs(2)), "swept");
    // Overwrites, PERSIST-like changes and removals keep the counters right.
    ns.insert("far0", "no deadline now").unwrap();
    assert!(ns.expire("far1", Some(Duration::from_secs(10))));
    assert!(ns.expire("forever", Some(Duration::from_secs(30))));
    ns.invalidate("far2");
    let (n, _) = ns.expiring();
    assert_eq!(n, 7);
    ns.invalidate_all();
    assert_eq!(ns.expiring(), (0, Duration::ZERO));
    ns.insert_with_ttl("one", "v", Duration::from_secs(60))
        .unwrap();
    assert_eq!(ns.expiring(), (1, Duration::from_secs(60)));
    // A time to idle: counted, but left out of the mean (reads move its deadline).
    ns.insert_with(
        "idle",
        "v",
        &EntryOptions::default().tti(Duration::from_secs(5)),
    )
    .unwrap();
    clock.advance(Duration::from_secs(1));
    assert!(ns.get("idle").is_some());
    assert_eq!(ns.expiring(), (2, Duration::from_secs(59)));
    ns.invalidate("idle");
    assert_eq!(ns.expiring(), (1, Duration::from_secs(59)));
}

#[test]
fn sweep_frees_memory_without_reads() {
    let clock = ManualClock::new(0);
    let cache = cache(&clock);
    let ns = cache
        .create_namespace(
            "otp",
            NamespaceConfig::default().with_ttl(Duration::from_secs(60)),
        )
        .unwrap();
    let expired = Arc::new(Mutex::new(0));
    let count = Arc::clone(&expired);
    ns.set_removal_listener(move |_, _, cause| {
        assert_eq!(cause, RemovalCause::Expired);
        *count.lock().unwrap() += 1;
    });
    for i in 0..10_000 {
        ns.insert(format!("otp:{i}"), "123456").unwrap();
    }
    ns.insert_with_ttl("long", "x", Duration::from_secs(3600))
        .unwrap();
    let full = ns.bytes_used();
    clock.advance(Duration::from_secs(61));
    // Maintenance looks at a bounded batch per shard per run; a few runs cover everything.
    for _ in 0..8 {
        cache.run_pending_tasks();
    }
    assert_eq!(ns.len(), 1);
    assert!(
        ns.bytes_used() < full / 1000,
        "{} of {full} bytes left",
        ns.bytes_used()
    );
    assert_eq!(*expired.lock().unwrap(), 10_000);
    assert_eq!(ns.stats().hits + ns.stats().misses, 0, "nothing was read");
}

/// An entry past its deadline is counted by `len` until something removes it; `contains`
/// does, as a read does (and as Redis's `EXISTS` deletes it), and says it is gone.
#[test]
fn contains_removes_an_entry_past_its_deadline() {
    let clock = ManualClock::new(0);
    let cache = cache(&clock);
    let ns = cache.default_namespace();
    let opts = EntryOptions::default().ttl(Duration::from_secs(1));
    ns.insert_with("otp", "123456", &opts).unwrap();
    ns.insert("kept", "v").unwrap();
    assert!(ns.contains("otp"));
    clock.advance(Duration::from_secs(2));
    assert_eq!(ns.len(), 2, "no one has touched it yet");
    let before = ns.stats();
    assert!(!ns.contains("otp"));
    assert_eq!(ns.len(), 1);
    assert!(ns.contains("kept"));
    let after = ns.stats();
    assert_eq!(after.expired, before.expired + 1);
    assert_eq!((after.hits, after.misses), (before.hits, before.misses));
    assert!(after.bytes < before.bytes);
}
