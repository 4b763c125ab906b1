//! Write-through writes the store before the cache and leaves the cache unchanged when the
//! store fails; write-behind batches to the store on its interval, and when the store is down
//! its circuit breaker backs off and nothing is dropped.

mod common;

use std::sync::Arc;
use std::time::Duration;

use quipu::{
    BreakerState, Cache, CacheConfig, CacheError, Error, ManualClock, MemoryStore, NamespaceConfig,
    Persistence, Quipu, Store,
};

#[test]
fn write_through_writes_the_store_first() {
    let store = Arc::new(MemoryStore::new());
    let cache = Cache::builder()
        .config(CacheConfig::default().with_maintenance_interval(None))
        .store(store.clone())
        .build()
        .unwrap();
    let accounts = cache
        .create_namespace(
            "accounts",
            NamespaceConfig::default().with_persistence(Persistence::WriteThrough),
        )
        .unwrap();
    accounts.insert("acct-1", "balance=10").unwrap();
    assert_eq!(
        store.get("accounts", b"acct-1").unwrap().as_deref(),
        Some(&b"balance=10"[..])
    );
    assert_eq!(accounts.increment("visits", 3).unwrap(), 3);
    assert_eq!(
        store.get("accounts", b"visits").unwrap().as_deref(),
        Some(&b"3"[..])
    );

    store.set_down(true);
    let err = accounts.insert("acct-1", "balance=99").unwrap_err();
    assert!(
        matches!(err, Error::Cache(CacheError::Persist { .. })),
        "{err}"
    );
    assert_eq!(
        accounts.get("acct-1").as_deref(),
        Some(&b"balance=10"[..]),
        "cache unchanged"
    );
    assert!(accounts.remove("acct-1").is_err());
    assert!(accounts.contains("acct-1"));
    store.set_down(false);

    accounts.remove("acct-1").unwrap();
    assert_eq!(store.get("accounts", b"acct-1").unwrap(), None);
    assert!(!accounts.contains("acct-1"));
}

#[test]
fn write_through_without_a_store_is_refused() {
    let cache = Cache::new();
    let err = cache
        .create_namespace(
            "x",
            NamespaceConfig::default().with_persistence(Persistence::WriteThrough),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Cache(CacheError::NoStore(_))), "{err}");
}

#[test]
fn write_behind_batches_and_survives_a_store_outage() {
    let dir = common::tempdir();
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(1_000_000);
    let db = Quipu::builder(dir.path())
        .log_config(common::test_config())
        .cache_config(CacheConfig::default().with_maintenance_interval(None))
        .clock(Arc::new(clock.clone()))
        .store(store.clone())
        .open()
        .unwrap();
    let cart = db
        .cache()
        .create_namespace(
            "carts",
            NamespaceConfig::default()
                .with_persistence(Persistence::WriteBehind)
                .with_write_behind_interval(Duration::from_secs(1)),
        )
        .unwrap();
    for i in 0..50 {
        cart.insert(format!("cart:{i}"), format!("items={i}"))
            .unwrap();
    }
    cart.remove("cart:7").unwrap();
    assert!(
        store.dump("carts").is_empty(),
        "nothing reaches the store before the interval"
    );
    db.cache().run_pending_tasks();
    assert!(store.dump("carts").is_empty());
    clock.advance(Duration::from_secs(1));
    let before = store.applies();
    db.cache().run_pending_tasks();
    assert_eq!(store.dump("carts").len(), 49);
    assert_eq!(store.applies() - before, 1, "51 writes in one batch");

    // The store goes down: writes keep being accepted, the breaker opens and backs off.
    store.set_down(true);
    for i in 50..60 {
        cart.insert(format!("cart:{i}"), "new").unwrap();
    }
    clock.advance(Duration::from_secs(1));
    db.cache().run_pending_tasks();
    let BreakerState::Open { retry_at, failures } = cart.breaker() else {
        panic!("breaker should be open, is {:?}", cart.breaker());
    };
    assert_eq!(failures, 1);
    assert!(cart.stats().store_failures >= 1);
    // While open, no call reaches the store even when the interval passes.
    clock.set(retry_at - 1);
    db.cache().run_pending_tasks();
    assert_eq!(cart.breaker(), BreakerState::Open { retry_at, failures });

    store.set_down(false);
    clock.set(retry_at);
    db.cache().run_pending_tasks();
    assert_eq!(cart.breaker(), BreakerState::Closed);
    assert_eq!(
        store.dump("carts").len(),
        59,
        "nothing was dropped during the outage"
    );
    assert_eq!(
        store.get("carts", b"cart:55").unwrap().as_deref(),
        Some(&b"new"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_writes_go_through_the_store() {
    let store = Arc::new(MemoryStore::new());
    let cache = Cache::builder().store(store.clone()).build().unwrap();
    let ns = cache
        .create_namespace(
            "orders",
            NamespaceConfig::default().with_persistence(Persistence::WriteThrough),
        )
        .unwrap();
    ns.insert_async("o1", "paid", quipu::EntryOptions::default())
        .await
        .unwrap();
    assert_eq!(
        store.get("orders", b"o1").unwrap().as_deref(),
        Some(&b"paid"[..])
    );
    assert_eq!(
        ns.remove_async("o1").await.unwrap().as_deref(),
        Some(&b"paid"[..])
    );
    assert_eq!(store.get("orders", b"o1").unwrap(), None);
}
