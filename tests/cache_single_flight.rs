//! Single-flight loading: concurrent `get_or_load` calls of one key share one loader call;
//! a cancelled first caller does not fail the others; loader errors are not cached unless
//! negative caching is configured.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quipu::{Cache, CacheError, Error, NamespaceConfig};
use tokio::sync::Notify;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_callers_one_load() {
    let cache = Cache::new();
    let ns = cache.default_namespace().clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let ns = ns.clone();
        let calls = Arc::clone(&calls);
        let release = Arc::clone(&release);
        tasks.push(tokio::spawn(async move {
            ns.get_or_load("catalog", move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                release.notified().await;
                Ok::<_, std::io::Error>(Bytes::from_static(b"products"))
            })
            .await
        }));
    }
    // Let every task reach the flight before the load finishes.
    while ns.stats().misses < 64 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    for t in tasks {
        assert_eq!(&t.await.unwrap().unwrap()[..], b"products");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(ns.stats().loads, 1);
    assert_eq!(ns.get("catalog").as_deref(), Some(&b"products"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_first_waiter_does_not_fail_the_others() {
    let cache = Cache::new();
    let ns = cache.default_namespace().clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let first = {
        let (ns, calls, started, release) = (
            ns.clone(),
            Arc::clone(&calls),
            Arc::clone(&started),
            Arc::clone(&release),
        );
        tokio::spawn(async move {
            ns.get_or_load("rates", move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                started.notify_one();
                release.notified().await;
                Ok::<_, std::io::Error>(Bytes::from_static(b"4.5%"))
            })
            .await
        })
    };
    started.notified().await;
    let others: Vec<_> = (0..8)
        .map(|_| {
            let ns = ns.clone();
            let calls = Arc::clone(&calls);
            tokio::spawn(async move {
                ns.get_or_load("rates", move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(Bytes::from_static(b"second loader"))
                })
                .await
            })
        })
        .collect();
    while ns.stats().misses < 9 {
        tokio::task::yield_now().await;
    }
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    release.notify_one();
    for t in others {
        assert_eq!(&t.await.unwrap().unwrap()[..], b"4.5%");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn blocking_callers_share_one_load() {
    let cache = Cache::new();
    let ns = cache.default_namespace().clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let ns = ns.clone();
            let calls = Arc::clone(&calls);
            std::thread::spawn(move || {
                ns.get_or_load_blocking("geo", move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    Ok::<_, std::io::Error>(Bytes::from_static(b"Pichincha"))
                })
            })
        })
        .collect();
    for t in threads {
        assert_eq!(&t.join().unwrap().unwrap()[..], b"Pichincha");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn errors_are_not_cached_by_default() {
    let cache = Cache::new();
    let ns = cache.default_namespace();
    let err = ns
        .get_or_load("k", || async {
            Err::<Bytes, _>(std::io::Error::other("db down"))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Cache(CacheError::Load(_))), "{err}");
    assert!(err.to_string().contains("db down"));
    let v = ns
        .get_or_load("k", || async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"up"))
        })
        .await
        .unwrap();
    assert_eq!(&v[..], b"up");
    assert_eq!(ns.stats().load_failures, 1);
}

#[tokio::test]
async fn negative_caching_keeps_the_error_for_its_ttl() {
    let clock = quipu::ManualClock::new(0);
    let cache = Cache::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let ns = cache
        .create_namespace(
            "users",
            NamespaceConfig::default().with_negative_ttl(Duration::from_secs(5)),
        )
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let load = |calls: Arc<AtomicUsize>| {
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<Bytes, _>(std::io::Error::other("no such user"))
        }
    };
    assert!(
        ns.get_or_load("u1", load(Arc::clone(&calls)))
            .await
            .is_err()
    );
    assert!(
        ns.get_or_load("u1", load(Arc::clone(&calls)))
            .await
            .is_err()
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "second call answered from the negative cache"
    );
    clock.advance(Duration::from_secs(6));
    assert!(
        ns.get_or_load("u1", load(Arc::clone(&calls)))
            .await
            .is_err()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_reloads_in_the_background() {
    let clock = quipu::ManualClock::new(0);
    let cache = Cache::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let ns = cache
        .create_namespace(
            "prices",
            NamespaceConfig::default()
                .with_ttl(Duration::from_secs(60))
                .with_refresh_ahead(Duration::from_secs(10)),
        )
        .unwrap();
    let v = ns
        .get_or_load("p", || async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"v1"))
        })
        .await
        .unwrap();
    assert_eq!(&v[..], b"v1");
    clock.advance(Duration::from_secs(55));
    // Close to expiry: the old value now, the new one loaded in the background.
    let v = ns
        .get_or_load("p", || async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"v2"))
        })
        .await
        .unwrap();
    assert_eq!(&v[..], b"v1");
    for _ in 0..200 {
        if ns.get("p").as_deref() == Some(&b"v2"[..]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(ns.get("p").as_deref(), Some(&b"v2"[..]));
    assert_eq!(ns.ttl("p").unwrap().unwrap(), Duration::from_secs(60));
}
