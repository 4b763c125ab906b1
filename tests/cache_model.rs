//! Model-based property test of a cache namespace against a `HashMap` with the manual clock:
//! inserts with and without TTL/TTI, reads, removals, increments, compare-and-set, clock
//! advances and sweeps. The byte budget is checked after every operation.
//!
//! With a budget nothing fills, the cache must equal the model exactly. With a small budget the
//! cache may have evicted entries, so it must hold a subset of the model, with equal values.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use quipu::{
    Cache, CacheConfig, ENTRY_OVERHEAD, EntryOptions, EvictionPolicy, ManualClock, Namespace,
    NamespaceConfig,
};

#[derive(Debug, Clone)]
enum Op {
    Insert {
        key: u8,
        len: usize,
    },
    InsertTtl {
        key: u8,
        len: usize,
        ttl_ms: u64,
    },
    InsertTti {
        key: u8,
        len: usize,
        tti_ms: u64,
    },
    Get {
        key: u8,
    },
    Remove {
        key: u8,
    },
    Increment {
        key: u8,
        delta: i8,
    },
    Cas {
        key: u8,
        expect_current: bool,
        len: usize,
    },
    Advance {
        ms: u64,
    },
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..24;
    prop_oneof![
        4 => (key.clone(), 0usize..300).prop_map(|(key, len)| Op::Insert { key, len }),
        2 => (key.clone(), 0usize..300, 1u64..2_000).prop_map(|(key, len, ttl_ms)| Op::InsertTtl { key, len, ttl_ms }),
        2 => (key.clone(), 0usize..300, 1u64..2_000).prop_map(|(key, len, tti_ms)| Op::InsertTti { key, len, tti_ms }),
        5 => key.clone().prop_map(|key| Op::Get { key }),
        2 => key.clone().prop_map(|key| Op::Remove { key }),
        1 => (key.clone(), any::<i8>()).prop_map(|(key, delta)| Op::Increment { key, delta }),
        1 => (key.clone(), any::<bool>(), 0usize..50).prop_map(|(key, expect_current, len)| Op::Cas { key, expect_current, len }),
        2 => (0u64..1_500).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Sweep),
    ]
}

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    deadline: Option<u64>,
    tti: Option<u64>,
}

struct Model {
    map: HashMap<Vec<u8>, Entry>,
}

impl Model {
    fn live(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        if self
            .map
            .get(key)
            .is_some_and(|e| e.deadline.is_some_and(|d| d <= now))
        {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }

    fn read(&mut self, key: &[u8], now: u64) -> Option<Vec<u8>> {
        let e = self.live(key, now)?;
        if let Some(tti) = e.tti {
            e.deadline = Some(now + tti);
        }
        Some(e.value.clone())
    }
}

fn key_of(k: u8) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

fn value_of(k: u8, len: usize, salt: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i + usize::from(k) + salt) as u8)
        .collect()
}

fn run(
    ops: &[Op],
    max_bytes: u64,
    exact: bool,
    policy: EvictionPolicy,
) -> Result<(), TestCaseError> {
    let clock = ManualClock::new(1_000_000);
    let cache = Cache::builder()
        .config(CacheConfig::default().with_maintenance_interval(None))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let ns: Namespace = cache
        .create_namespace(
            "m",
            NamespaceConfig::default()
                .with_max_bytes(max_bytes)
                .with_shards(4)
                .with_policy(policy),
        )
        .unwrap();
    let mut model = Model {
        map: HashMap::new(),
    };
    for (step, op) in ops.iter().enumerate() {
        let now = clock.now();
        let too_large =
            |key: u8, len: usize| (key_of(key).len() + len) as u64 + ENTRY_OVERHEAD > max_bytes;
        match *op {
            // With a small budget, entries as large as the whole budget are refused, and the
            // read-modify-write ops are covered by the exact run.
            Op::Insert { key, len }
            | Op::InsertTtl { key, len, .. }
            | Op::InsertTti { key, len, .. }
                if too_large(key, len) =>
            {
                let err = ns
                    .insert(key_of(key), value_of(key, len, step))
                    .unwrap_err();
                let refused =
                    matches!(err, quipu::Error::Cache(quipu::CacheError::TooLarge { .. }));
                prop_assert!(refused, "step {}: {:?}", step, err);
            }
            Op::Increment { .. } | Op::Cas { .. } if !exact => {}
            Op::Insert { key, len } => {
                let v = value_of(key, len, step);
                ns.insert(key_of(key), v.clone()).unwrap();
                model.map.insert(
                    key_of(key),
                    Entry {
                        value: v,
                        deadline: None,
                        tti: None,
                    },
                );
            }
            Op::InsertTtl { key, len, ttl_ms } => {
                let v = value_of(key, len, step);
                ns.insert_with_ttl(key_of(key), v.clone(), Duration::from_millis(ttl_ms))
                    .unwrap();
                model.map.insert(
                    key_of(key),
                    Entry {
                        value: v,
                        deadline: Some(now + ttl_ms),
                        tti: None,
                    },
                );
            }
            Op::InsertTti { key, len, tti_ms } => {
                let v = value_of(key, len, step);
                ns.insert_with(
                    key_of(key),
                    v.clone(),
                    &EntryOptions::default().tti(Duration::from_millis(tti_ms)),
                )
                .unwrap();
                model.map.insert(
                    key_of(key),
                    Entry {
                        value: v,
                        deadline: Some(now + tti_ms),
                        tti: Some(tti_ms),
                    },
                );
            }
            Op::Get { key } => {
                let got = ns.get(key_of(key)).map(|b| b.to_vec());
                let want = model.read(&key_of(key), now);
                if exact {
                    prop_assert_eq!(got, want, "step {} get {}", step, key);
                } else if let Some(g) = got {
                    prop_assert_eq!(Some(g), want, "step {} get {} (evicting)", step, key);
                }
            }
            Op::Remove { key } => {
                let got = ns.remove(key_of(key)).unwrap().map(|b| b.to_vec());
                let want = model.live(&key_of(key), now).map(|e| e.value.clone());
                model.map.remove(&key_of(key));
                if exact {
                    prop_assert_eq!(got, want, "step {} remove", step);
                } else if let Some(g) = got {
                    prop_assert_eq!(Some(g), want);
                }
            }
            Op::Increment { key, delta } => {
                let got = ns.increment(key_of(key), i64::from(delta));
                let current = model.live(&key_of(key), now).map(|e| e.value.clone());
                let parsed = match &current {
                    None => Some(0i64),
                    Some(v) => std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok()),
                };
                match parsed {
                    Some(n) => {
                        let sum = n + i64::from(delta);
                        prop_assert_eq!(got.unwrap(), sum);
                        let deadline = model.map.get(&key_of(key)).and_then(|e| e.deadline);
                        // An update keeps the entry's current deadline and stops idling.
                        model.map.insert(
                            key_of(key),
                            Entry {
                                value: sum.to_string().into_bytes(),
                                deadline,
                                tti: None,
                            },
                        );
                    }
                    None => prop_assert!(got.is_err(), "step {} increment of non-integer", step),
                }
            }
            Op::Cas {
                key,
                expect_current,
                len,
            } => {
                let current = model.live(&key_of(key), now).map(|e| e.value.clone());
                let expected = if expect_current {
                    current.clone()
                } else {
                    Some(b"nope".to_vec())
                };
                let new = value_of(key, len, step);
                let swapped = ns
                    .compare_and_set(key_of(key), expected.as_deref(), Some(new.clone().into()))
                    .unwrap();
                let want = expected == current;
                let _ = exact;
                prop_assert_eq!(swapped, want, "step {} cas", step);
                if swapped {
                    let deadline = model.map.get(&key_of(key)).and_then(|e| e.deadline);
                    model.map.insert(
                        key_of(key),
                        Entry {
                            value: new,
                            deadline,
                            tti: None,
                        },
                    );
                }
            }
            Op::Advance { ms } => clock.advance(Duration::from_millis(ms)),
            Op::Sweep => {
                cache.run_pending_tasks();
                // Everything the model says is expired must be gone without being read.
                let now = clock.now();
                for (k, e) in &model.map {
                    if e.deadline.is_some_and(|d| d <= now) {
                        prop_assert!(!ns.contains(k));
                    }
                }
            }
        }
        let used = ns.bytes_used();
        prop_assert!(
            used <= max_bytes,
            "step {}: {} bytes used over budget {}",
            step,
            used,
            max_bytes
        );
        if exact {
            let now = clock.now();
            let live: u64 = model
                .map
                .iter()
                .filter(|(_, e)| e.deadline.is_none_or(|d| d > now))
                .map(|(k, e)| (k.len() + e.value.len()) as u64 + ENTRY_OVERHEAD)
                .sum();
            // Expired entries not yet swept still count; live ones must all be counted.
            prop_assert!(used >= live, "step {}: {} used, {} live", step, used, live);
        }
    }
    if exact {
        let now = clock.now();
        for (k, e) in &model.map {
            let live = e.deadline.is_none_or(|d| d > now);
            prop_assert_eq!(ns.contains(k), live);
        }
    }
    Ok(())
}

trait Now {
    fn now(&self) -> u64;
}

impl Now for ManualClock {
    fn now(&self) -> u64 {
        quipu::Clock::now_millis(self)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn equals_the_model_without_eviction(ops in prop::collection::vec(op(), 1..200)) {
        run(&ops, 1 << 30, true, EvictionPolicy::S3Fifo)?;
    }

    #[test]
    fn holds_a_subset_within_budget(ops in prop::collection::vec(op(), 1..200), budget in 400u64..4_000) {
        run(&ops, budget, false, EvictionPolicy::S3Fifo)?;
    }

    #[test]
    fn lru_holds_a_subset_within_budget(ops in prop::collection::vec(op(), 1..200), budget in 400u64..4_000) {
        run(&ops, budget, false, EvictionPolicy::Lru)?;
    }
}
