//! Hit ratio of quipu (S3-FIFO and LRU), moka and quick_cache on the same synthetic traces at the
//! same capacities (in entries). See ../shared/BENCHMARKS.md.
//!
//! `cargo run --release --example hit_ratio`
//!
//! Replay model, the same for every cache: for each request `get` the key; on a miss `insert`
//! it with a 16-byte value. The hit ratio is hits / requests counted by the replay loop itself,
//! cold-start misses included. Keys are 8-byte big-endian `u64`s for every cache, so quipu's
//! byte budget `entries × (8 + 16 + ENTRY_OVERHEAD)` holds exactly `entries` entries.
//!
//! Traces (fixed seeds, so the same requests every run):
//! - `zipf-S`: zipf with exponent S over 1M keys.
//! - `scan`: alternating phases, a one-off sequential scan of 10k–100k never-repeated keys then
//!   7/3 as many zipf(1.0) requests over 1M keys (30% of requests are scan keys).
//! - `loop`: a cyclic scan over capacity × 1.1 keys (one trace per capacity).
//!
//! Results may move by a few hundredths of a percent between runs: quipu and moka seed their
//! hashers (and so their sharding) randomly.

use std::time::Instant;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Keys of the zipf traces.
const UNIVERSE: usize = 1_000_000;
/// Requests per trace.
const REQUESTS: usize = 3_000_000;
/// Length of every value.
const VALUE_LEN: usize = 16;
/// Length of every key (a big-endian `u64`).
const KEY_LEN: usize = 8;
/// Capacities, in entries: 1% and 10% of the key universe.
const CAPACITIES: [usize; 2] = [UNIVERSE / 100, UNIVERSE / 10];
/// moka applies evictions in batches: let it catch up every this many requests.
const MOKA_SETTLE_EVERY: usize = 10_000;

static VALUE: [u8; VALUE_LEN] = [0x5a; VALUE_LEN];

/// Zipf sampler over ranks `0..n` with exponent `s`: precomputed CDF, binary search.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += (k as f64).powf(-s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.r#gen();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u64
    }
}

fn zipf_trace(s: f64, seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(UNIVERSE, s);
    let mut rng = StdRng::seed_from_u64(seed);
    (0..REQUESTS).map(|_| zipf.sample(&mut rng)).collect()
}

fn scan_trace(seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(UNIVERSE, 1.0);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut next_scan_key = UNIVERSE as u64;
    let mut out = Vec::with_capacity(REQUESTS);
    while out.len() < REQUESTS {
        let scan = rng.gen_range(10_000..100_000usize);
        for _ in 0..scan {
            out.push(next_scan_key);
            next_scan_key += 1;
        }
        for _ in 0..scan * 7 / 3 {
            out.push(zipf.sample(&mut rng));
        }
    }
    out.truncate(REQUESTS);
    out
}

fn loop_trace(capacity: usize) -> Vec<u64> {
    let n = (capacity + capacity / 10) as u64;
    (0..REQUESTS as u64).map(|i| i % n).collect()
}

/// A cache under replay.
trait Replay {
    fn get(&self, key: &[u8]) -> bool;
    fn insert(&self, key: &[u8], value: &Bytes);
    fn every_so_often(&self) {}
    fn entries(&self) -> u64;
}

impl Replay for quipu::Namespace {
    fn get(&self, key: &[u8]) -> bool {
        quipu::Namespace::get(self, key).is_some()
    }
    fn insert(&self, key: &[u8], value: &Bytes) {
        if let Err(e) = quipu::Namespace::insert(self, key, value.clone()) {
            eprintln!("quipu insert failed: {e}");
        }
    }
    fn entries(&self) -> u64 {
        self.len() as u64
    }
}

impl Replay for moka::sync::Cache<Bytes, Bytes> {
    fn get(&self, key: &[u8]) -> bool {
        moka::sync::Cache::get(self, key).is_some()
    }
    fn insert(&self, key: &[u8], value: &Bytes) {
        moka::sync::Cache::insert(self, Bytes::copy_from_slice(key), value.clone());
    }
    fn every_so_often(&self) {
        self.run_pending_tasks();
    }
    fn entries(&self) -> u64 {
        self.run_pending_tasks();
        self.entry_count()
    }
}

impl Replay for quick_cache::sync::Cache<Bytes, Bytes> {
    fn get(&self, key: &[u8]) -> bool {
        quick_cache::sync::Cache::get(self, key).is_some()
    }
    fn insert(&self, key: &[u8], value: &Bytes) {
        quick_cache::sync::Cache::insert(self, Bytes::copy_from_slice(key), value.clone());
    }
    fn entries(&self) -> u64 {
        self.len() as u64
    }
}

/// Replays `trace`; returns the hit ratio and the entries held at the end.
fn replay(cache: &impl Replay, trace: &[u64]) -> (f64, u64) {
    let value = Bytes::from_static(&VALUE);
    let mut hits = 0u64;
    for (i, &k) in trace.iter().enumerate() {
        let key = k.to_be_bytes();
        if cache.get(&key) {
            hits += 1;
        } else {
            cache.insert(&key, &value);
        }
        if i % MOKA_SETTLE_EVERY == MOKA_SETTLE_EVERY - 1 {
            cache.every_so_often();
        }
    }
    (hits as f64 / trace.len() as f64, cache.entries())
}

const CACHES: [&str; 4] = ["quipu S3-FIFO", "quipu LRU", "moka", "quick_cache"];

fn quipu_ns(
    capacity: usize,
    policy: quipu::EvictionPolicy,
) -> Result<quipu::Namespace, quipu::Error> {
    let cache = quipu::Cache::builder()
        .config(quipu::CacheConfig::default().with_maintenance_interval(None))
        .build()?;
    let per_entry = (KEY_LEN + VALUE_LEN) as u64 + quipu::ENTRY_OVERHEAD;
    cache.create_namespace(
        "replay",
        quipu::NamespaceConfig::default()
            .with_max_bytes(capacity as u64 * per_entry)
            .with_policy(policy),
    )
}

/// Hit ratio and entries held at the end, per cache in `CACHES` order.
fn run_all(trace: &[u64], capacity: usize) -> Result<Vec<(f64, u64)>, quipu::Error> {
    let mut out = Vec::new();
    for name in CACHES {
        let start = Instant::now();
        let r = match name {
            "quipu S3-FIFO" => replay(&quipu_ns(capacity, quipu::EvictionPolicy::S3Fifo)?, trace),
            "quipu LRU" => replay(&quipu_ns(capacity, quipu::EvictionPolicy::Lru)?, trace),
            "moka" => {
                let m: moka::sync::Cache<Bytes, Bytes> = moka::sync::Cache::new(capacity as u64);
                replay(&m, trace)
            }
            _ => {
                let q: quick_cache::sync::Cache<Bytes, Bytes> =
                    quick_cache::sync::Cache::new(capacity);
                replay(&q, trace)
            }
        };
        eprintln!(
            "  {name:<14} {:>6.2}% held {:>7} in {:.1?}",
            r.0 * 100.0,
            r.1,
            start.elapsed()
        );
        out.push(r);
    }
    Ok(out)
}

fn main() -> Result<(), quipu::Error> {
    let started = Instant::now();
    let mut traces: Vec<(String, Option<Vec<u64>>)> = vec![
        ("zipf-0.8".into(), Some(zipf_trace(0.8, 8))),
        ("zipf-1.0".into(), Some(zipf_trace(1.0, 10))),
        ("zipf-1.2".into(), Some(zipf_trace(1.2, 12))),
        ("scan".into(), Some(scan_trace(30))),
        // Built per capacity.
        ("loop".into(), None),
    ];
    let mut rows = Vec::new();
    for (name, trace) in &mut traces {
        for capacity in CAPACITIES {
            let owned;
            let t: &[u64] = match trace {
                Some(t) => t,
                None => {
                    owned = loop_trace(capacity);
                    &owned
                }
            };
            let label = if name == "loop" {
                format!("loop-{}", capacity + capacity / 10)
            } else {
                name.clone()
            };
            eprintln!("{label} @ {capacity} entries");
            rows.push((label, capacity, run_all(t, capacity)?));
        }
    }

    println!(
        "Hit ratio (%), {REQUESTS} requests per trace, get then insert on miss, \
         cold start included; keys {KEY_LEN} B, values {VALUE_LEN} B; \
         capacity in entries ({}% and {}% of {UNIVERSE} keys)\n",
        CAPACITIES[0] * 100 / UNIVERSE,
        CAPACITIES[1] * 100 / UNIVERSE
    );
    println!("| trace | capacity | {} |", CACHES.join(" | "));
    println!("|---|---:|{}", "---:|".repeat(CACHES.len()));
    for (label, capacity, results) in &rows {
        let cells: Vec<String> = results
            .iter()
            .map(|(h, _)| format!("{:.2}", h * 100.0))
            .collect();
        println!("| {label} | {capacity} | {} |", cells.join(" | "));
    }
    println!("\nEntries held at the end of each replay (capacity in entries):\n");
    println!("| trace | capacity | {} |", CACHES.join(" | "));
    println!("|---|---:|{}", "---:|".repeat(CACHES.len()));
    for (label, capacity, results) in &rows {
        let cells: Vec<String> = results.iter().map(|(_, n)| n.to_string()).collect();
        println!("| {label} | {capacity} | {} |", cells.join(" | "));
    }
    println!("\n({:.0?} in all)", started.elapsed());
    Ok(())
}
