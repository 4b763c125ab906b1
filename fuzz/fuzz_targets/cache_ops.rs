//! Random operation sequences against a cache namespace and a plain `HashMap` model, with the
//! manual clock: every value the cache returns is the model's, the byte budget holds after every
//! operation, and with a budget nothing fills the cache equals the model exactly.
#![no_main]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use quipu::{
    Cache, CacheConfig, Clock, ENTRY_OVERHEAD, EntryOptions, EvictionPolicy, ManualClock,
    NamespaceConfig,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, ops)) = data.split_first() else {
        return;
    };
    // Mode bit 0: small budget (evicting) or not; bit 1: LRU or S3-FIFO.
    let small = mode & 1 == 1;
    let max_bytes = if small { 600 + u64::from(mode) * 8 } else { 1 << 30 };
    let policy = if mode & 2 == 2 { EvictionPolicy::Lru } else { EvictionPolicy::S3Fifo };
    let clock = ManualClock::new(1_000);
    let cache = Cache::builder()
        .config(CacheConfig::default().with_maintenance_interval(None))
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("cache");
    let ns = cache
        .create_namespace(
            "f",
            NamespaceConfig::default()
                .with_max_bytes(max_bytes)
                .with_policy(policy)
                .with_shards(2),
        )
        .expect("namespace");
    // key -> (value, deadline, tti)
    let mut model: HashMap<Vec<u8>, (Vec<u8>, Option<u64>, Option<u64>)> = HashMap::new();
    for (step, chunk) in ops.chunks(3).enumerate() {
        let [op, k, arg] = *chunk else { break };
        // Lengths 2..=33 cross the 16-byte inline/heap boundary of keys.
        let key = vec![b'k' + (k % 16); 2 + usize::from(k / 16) % 32];
        let now = clock.now_millis();
        if model.get(&key).is_some_and(|e| e.1.is_some_and(|d| d <= now)) {
            model.remove(&key);
        }
        let value = vec![arg; usize::from(arg) % 64];
        let fits = (key.len() + value.len()) as u64 + ENTRY_OVERHEAD <= max_bytes;
        match op % 7 {
            0 | 1 if fits => {
                let ttl = (op % 7 == 1).then(|| u64::from(arg) * 10 + 1);
                let opts = match ttl {
                    Some(t) => EntryOptions::default().ttl(Duration::from_millis(t)),
                    None => EntryOptions::default(),
                };
                ns.insert_with(&key, value.clone(), &opts).expect("insert");
                model.insert(key, (value, ttl.map(|t| now + t), None));
            }
            2 if fits => {
                let tti = u64::from(arg) * 10 + 1;
                let opts = EntryOptions::default().tti(Duration::from_millis(tti));
                ns.insert_with(&key, value.clone(), &opts).expect("insert");
                model.insert(key, (value, Some(now + tti), Some(tti)));
            }
            3 => {
                let got = ns.get(&key);
                let want = model.get_mut(&key).map(|e| {
                    if let Some(tti) = e.2 {
                        e.1 = Some(now + tti);
                    }
                    e.0.clone()
                });
                match got {
                    Some(g) => assert_eq!(Some(g.to_vec()), want, "step {step}"),
                    None if !small => assert_eq!(want, None, "step {step}: lost"),
                    None => {
                        model.remove(&key);
                    }
                }
            }
            4 => {
                let got = ns.remove(&key).expect("remove");
                let want = model.remove(&key).map(|e| e.0);
                if !small || got.is_some() {
                    assert_eq!(got.map(|b| b.to_vec()), want, "step {step}");
                }
            }
            5 => clock.advance(Duration::from_millis(u64::from(arg) * 7)),
            6 => cache.run_pending_tasks(),
            _ => {}
        }
        assert!(ns.bytes_used() <= max_bytes, "step {step}: over budget");
    }
    if !small {
        let now = clock.now_millis();
        for (k, (v, deadline, _)) in &model {
            let live = deadline.is_none_or(|d| d > now);
            assert_eq!(ns.contains(k), live);
            if live {
                assert_eq!(ns.get(k).map(|b| b.to_vec()).as_ref(), Some(v));
            }
        }
    }
});
