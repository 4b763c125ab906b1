//! Eviction: the byte budget holds after every insert (counting key + value + the documented
//! overhead), S3-FIFO keeps a re-read working set through a one-off scan that LRU loses, and
//! evictions reach the listener and the stats with `RemovalCause::Size`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quipu::{
    Cache, CacheError, ENTRY_OVERHEAD, Error, EvictionPolicy, NamespaceConfig, RemovalCause,
};

fn ns(policy: EvictionPolicy, max_bytes: u64) -> quipu::Namespace {
    Cache::new()
        .create_namespace(
            "n",
            NamespaceConfig::default()
                .with_max_bytes(max_bytes)
                .with_policy(policy)
                .with_shards(1),
        )
        .unwrap()
}

#[test]
fn budget_holds_after_every_insert() {
    let budget = 64 * 1024;
    let ns = ns(EvictionPolicy::S3Fifo, budget);
    let evicted = Arc::new(AtomicU64::new(0));
    let e = Arc::clone(&evicted);
    ns.set_removal_listener(move |_, _, cause| {
        if cause == RemovalCause::Size {
            e.fetch_add(1, Ordering::SeqCst);
        }
    });
    for i in 0..5_000u64 {
        let len = (i * 37 % 900) as usize;
        ns.insert(format!("key:{i}"), vec![b'x'; len]).unwrap();
        assert!(
            ns.bytes_used() <= budget,
            "insert {i}: {} > {budget}",
            ns.bytes_used()
        );
    }
    let stats = ns.stats();
    assert_eq!(stats.evicted_size, evicted.load(Ordering::SeqCst));
    assert!(stats.evicted_size > 4_000);
    let counted: u64 = ns
        .keys("*")
        .iter()
        .map(|k| k.len() as u64 + ns.get(k).unwrap().len() as u64 + ENTRY_OVERHEAD)
        .sum();
    assert_eq!(
        counted,
        ns.bytes_used(),
        "the budget counts exactly key + value + overhead"
    );
}

#[test]
fn an_entry_larger_than_the_budget_is_refused() {
    let ns = ns(EvictionPolicy::S3Fifo, 1024);
    ns.insert("small", "v").unwrap();
    let err = ns.insert("big", vec![0u8; 2048]).unwrap_err();
    assert!(
        matches!(err, Error::Cache(CacheError::TooLarge { .. })),
        "{err}"
    );
    assert_eq!(ns.get("small").as_deref(), Some(&b"v"[..]), "nothing lost");
}

/// Hits on the hot set after a scan of one-off keys twice the cache's size.
fn hot_hits_after_scan(policy: EvictionPolicy) -> usize {
    let per_entry = 8 + 16 + ENTRY_OVERHEAD;
    let ns = ns(policy, 1000 * per_entry);
    let hot: Vec<String> = (0..500).map(|i| format!("hot{i:05}")).collect();
    for _ in 0..3 {
        for k in &hot {
            if ns.get(k).is_none() {
                ns.insert(k, vec![0u8; 16]).unwrap();
            }
        }
    }
    for i in 0..2000 {
        let k = format!("scn{i:05}");
        if ns.get(&k).is_none() {
            ns.insert(&k, vec![0u8; 16]).unwrap();
        }
    }
    hot.iter().filter(|k| ns.get(k).is_some()).count()
}

#[test]
fn s3fifo_resists_a_scan_that_flushes_lru() {
    let s3 = hot_hits_after_scan(EvictionPolicy::S3Fifo);
    let lru = hot_hits_after_scan(EvictionPolicy::Lru);
    assert!(s3 >= 450, "S3-FIFO kept {s3} of 500 hot keys");
    assert_eq!(lru, 0, "LRU kept {lru} of 500 hot keys");
}

#[test]
fn budget_is_shared_across_shards() {
    // Many shards, small budget: an insert into an empty shard evicts from the others.
    let per_entry = 10 + 100 + ENTRY_OVERHEAD;
    let cache = Cache::new();
    let ns = cache
        .create_namespace(
            "n",
            NamespaceConfig::default()
                .with_max_bytes(20 * per_entry)
                .with_shards(64),
        )
        .unwrap();
    for i in 0..1000 {
        ns.insert(format!("k{i:09}"), vec![1u8; 100]).unwrap();
        assert!(ns.bytes_used() <= 20 * per_entry);
        assert!(
            ns.get(format!("k{i:09}")).is_some(),
            "the new entry is kept"
        );
    }
    assert_eq!(ns.len(), 20);
}

#[test]
fn an_overwrite_reports_the_old_value_and_its_key_to_the_listener() {
    let ns = ns(EvictionPolicy::S3Fifo, 1 << 20);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    ns.set_removal_listener(move |k, v, cause| {
        s.lock().unwrap().push((k.to_vec(), v.clone(), cause));
    });
    // Longer than a key kept inline in its slot, and a short one.
    for key in ["session:7f3a9c2e-long-key", "k"] {
        ns.insert(key, "v1").unwrap();
        ns.insert(key, "v2").unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for ((k, v, cause), want) in seen.iter().zip(["session:7f3a9c2e-long-key", "k"]) {
        assert_eq!(k, want.as_bytes());
        assert_eq!(&v[..], b"v1");
        assert_eq!(*cause, RemovalCause::Replaced);
    }
}
