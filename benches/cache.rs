//! Cache benchmarks: quipu against moka, quick_cache and a sharded `RwLock<HashMap>` floor, in
//! the same group and run. See ../shared/BENCHMARKS.md.
//!
//! Groups are named `OP/VALUE/THREADS` (for example `get_hit/64B/2t`) with one function per
//! peer: `quipu`, `moka`, `quick_cache`, `rwlock_floor`. Every group reports
//! `Throughput::Elements(1)`: one element is one cache operation, and the time per iteration is
//! wall time per operation summed over all threads (so 2t figures are aggregate throughput).
//!
//! - `get_hit`: uniform random gets over a 100k-key working set that fits in every cache.
//! - `get_miss`: uniform random gets of 100k keys never inserted (cache holds the working set).
//! - `insert`: uniform random inserts over the working set (every insert replaces a value).
//! - `insert_evict`: uniform random inserts over 200k keys into caches holding 100k entries, so
//!   about half the inserts are new keys that evict one (the floor does not evict: it grows).
//! - `mix90_10`: zipf(1.0) keys over the working set, 90% gets and 10% inserts.
//!
//! Keys are `Bytes` `key:{i:08}`; values are a distinct `Bytes` per key, built before timing.
//! Each thread walks its own precomputed index sequence, so nothing allocates in the timed loop
//! beyond what each cache itself allocates.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parking_lot::RwLock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Keys in the working set (every get of it is a hit).
const WORKING_SET: usize = 100_000;
/// Keys `insert_evict` draws from; the caches hold `WORKING_SET` entries.
const EVICT_UNIVERSE: usize = 2 * WORKING_SET;
/// Length of each thread's index sequence (a power of two, walked cyclically).
const SEQ_LEN: usize = 1 << 20;
/// Set in a `mix90_10` sequence entry when the operation is an insert.
const WRITE_BIT: u32 = 1 << 31;

const GET: u8 = 0;
const INSERT: u8 = 1;
const MIX: u8 = 2;

/// What every peer offers the benchmark loop. Lookups go by `&[u8]` wherever the peer allows.
trait Peer: Sync {
    fn get(&self, key: &Bytes) -> Option<Bytes>;
    fn insert(&self, key: &Bytes, value: &Bytes);
    /// Lets asynchronous peers (moka) settle before checking or timing.
    fn settle(&self) {}
    fn len(&self) -> usize;
}

impl Peer for quipu::Namespace {
    #[inline]
    fn get(&self, key: &Bytes) -> Option<Bytes> {
        quipu::Namespace::get(self, &key[..])
    }
    #[inline]
    fn insert(&self, key: &Bytes, value: &Bytes) {
        // Cannot fail here: every entry is far below the budget and nothing is persisted.
        let _ = quipu::Namespace::insert(self, &key[..], value.clone());
    }
    fn len(&self) -> usize {
        quipu::Namespace::len(self)
    }
}

impl Peer for moka::sync::Cache<Bytes, Bytes> {
    #[inline]
    fn get(&self, key: &Bytes) -> Option<Bytes> {
        moka::sync::Cache::get(self, &key[..])
    }
    #[inline]
    fn insert(&self, key: &Bytes, value: &Bytes) {
        moka::sync::Cache::insert(self, key.clone(), value.clone());
    }
    fn settle(&self) {
        self.run_pending_tasks();
    }
    fn len(&self) -> usize {
        usize::try_from(self.entry_count()).unwrap_or(usize::MAX)
    }
}

impl Peer for quick_cache::sync::Cache<Bytes, Bytes> {
    #[inline]
    fn get(&self, key: &Bytes) -> Option<Bytes> {
        quick_cache::sync::Cache::get(self, &key[..])
    }
    #[inline]
    fn insert(&self, key: &Bytes, value: &Bytes) {
        quick_cache::sync::Cache::insert(self, key.clone(), value.clone());
    }
    fn len(&self) -> usize {
        quick_cache::sync::Cache::len(self)
    }
}

/// The floor: 16 `RwLock<HashMap>` shards, the shard chosen by the top bits of a foldhash.
struct Floor {
    hasher: foldhash::fast::RandomState,
    shards: Vec<RwLock<HashMap<Bytes, Bytes, foldhash::fast::RandomState>>>,
}

impl Floor {
    fn new() -> Self {
        let hasher = foldhash::fast::RandomState::default();
        let shards = (0..16)
            .map(|_| RwLock::new(HashMap::with_hasher(hasher.clone())))
            .collect();
        Self { hasher, shards }
    }

    #[inline]
    fn shard(&self, key: &[u8]) -> &RwLock<HashMap<Bytes, Bytes, foldhash::fast::RandomState>> {
        let h = self.hasher.hash_one(key);
        &self.shards[(h >> 60) as usize]
    }
}

impl Peer for Floor {
    #[inline]
    fn get(&self, key: &Bytes) -> Option<Bytes> {
        self.shard(key).read().get(&key[..]).cloned()
    }
    #[inline]
    fn insert(&self, key: &Bytes, value: &Bytes) {
        self.shard(key).write().insert(key.clone(), value.clone());
    }
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

/// Which peer a benchmark function builds.
#[derive(Clone, Copy)]
enum Kind {
    Quipu,
    Moka,
    QuickCache,
    Floor,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Quipu, Kind::Moka, Kind::QuickCache, Kind::Floor];

    fn name(self) -> &'static str {
        match self {
            Kind::Quipu => "quipu",
            Kind::Moka => "moka",
            Kind::QuickCache => "quick_cache",
            Kind::Floor => "rwlock_floor",
        }
    }
}

fn quipu_ns(entries: usize, value_len: usize) -> quipu::Namespace {
    let cache = quipu::Cache::builder()
        .config(quipu::CacheConfig::default().with_maintenance_interval(None))
        .build()
        .expect("quipu cache");
    let per_entry = 12 + value_len as u64 + quipu::ENTRY_OVERHEAD;
    // The namespace keeps the cache's shared state alive through its own handle.
    cache
        .create_namespace(
            "bench",
            quipu::NamespaceConfig::default()
                .with_max_bytes(entries as u64 * per_entry)
                .with_policy(quipu::EvictionPolicy::S3Fifo),
        )
        .expect("quipu namespace")
}

/// Inputs shared by every benchmark of one value size.
struct Data {
    /// `key:{i:08}` for `i < EVICT_UNIVERSE`; the first `WORKING_SET` form the working set.
    keys: Vec<Bytes>,
    /// Keys never inserted (`nok:{i:08}`), the same length as `keys`.
    miss_keys: Vec<Bytes>,
    /// One distinct value per key of `keys`.
    values: Vec<Bytes>,
    value_len: usize,
}

impl Data {
    fn new(value_len: usize) -> Self {
        let keys: Vec<Bytes> = (0..EVICT_UNIVERSE)
            .map(|i| Bytes::from(format!("key:{i:08}")))
            .collect();
        let miss_keys: Vec<Bytes> = (0..WORKING_SET)
            .map(|i| Bytes::from(format!("nok:{i:08}")))
            .collect();
        let values: Vec<Bytes> = (0..EVICT_UNIVERSE)
            .map(|i| Bytes::from(vec![(i % 251) as u8; value_len]))
            .collect();
        // A `Bytes` made from a `Vec` turns shared on its first clone: do it now, not timed.
        for b in keys.iter().chain(&values) {
            drop(black_box(b.clone()));
        }
        Self {
            keys,
            miss_keys,
            values,
            value_len,
        }
    }

    fn label(&self) -> String {
        if self.value_len >= 1024 && self.value_len.is_multiple_of(1024) {
            format!("{}KiB", self.value_len / 1024)
        } else {
            format!("{}B", self.value_len)
        }
    }
}

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

    fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.r#gen();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Per-thread index sequences (two of them: one per thread of the 2-thread runs).
struct Seqs {
    uniform_ws: [Vec<u32>; 2],
    uniform_universe: [Vec<u32>; 2],
    mix: [Vec<u32>; 2],
}

impl Seqs {
    fn new() -> Self {
        let zipf = Zipf::new(WORKING_SET, 1.0);
        let mk = |seed: u64, f: &dyn Fn(&mut StdRng) -> u32| -> Vec<u32> {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..SEQ_LEN).map(|_| f(&mut rng)).collect()
        };
        let uniform = |n: usize| move |r: &mut StdRng| r.gen_range(0..n as u32);
        let mix = |r: &mut StdRng| {
            let k = zipf.sample(r) as u32;
            if r.gen_bool(0.1) { k | WRITE_BIT } else { k }
        };
        Self {
            uniform_ws: [mk(1, &uniform(WORKING_SET)), mk(2, &uniform(WORKING_SET))],
            uniform_universe: [
                mk(3, &uniform(EVICT_UNIVERSE)),
                mk(4, &uniform(EVICT_UNIVERSE)),
            ],
            mix: [mk(5, &mix), mk(6, &mix)],
        }
    }
}

/// Runs `n` operations of kind `OP` from `seq` (walked cyclically from `offset`).
#[inline(never)]
fn drive<C: Peer, const OP: u8>(
    c: &C,
    seq: &[u32],
    offset: usize,
    n: u64,
    keys: &[Bytes],
    values: &[Bytes],
) {
    let mask = seq.len() - 1;
    for i in 0..n as usize {
        let e = seq[(offset + i) & mask];
        match OP {
            GET => {
                black_box(c.get(&keys[e as usize]));
            }
            INSERT => c.insert(&keys[e as usize], &values[e as usize]),
            _ => {
                let k = (e & !WRITE_BIT) as usize;
                if e & WRITE_BIT == 0 {
                    black_box(c.get(&keys[k]));
                } else {
                    c.insert(&keys[k], &values[k]);
                }
            }
        }
    }
}

/// Times `iters` operations split over `threads` threads (each on its own sequence); returns
/// wall time from the common start to the last thread's end.
fn timed<C: Peer, const OP: u8>(
    c: &C,
    threads: usize,
    iters: u64,
    offset: usize,
    seqs: &[Vec<u32>; 2],
    keys: &[Bytes],
    values: &[Bytes],
) -> Duration {
    if threads == 1 {
        let start = Instant::now();
        drive::<C, OP>(c, &seqs[0], offset, iters, keys, values);
        return start.elapsed();
    }
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = iters / threads as u64 + u64::from((t as u64) < iters % threads as u64);
                let (barrier, seq) = (&barrier, &seqs[t % 2]);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    drive::<C, OP>(c, seq, offset, n, keys, values);
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("a thread");
    let end = spans.iter().map(|s| s.1).max().expect("a thread");
    end - start
}

/// Fills `c` with the working set; when it must fit, checks that it holds all of it.
///
/// Every peer stores its own copy of each key, as a server stores the key it parsed from a
/// request, and the timed lookups use `data.keys`. Inserting the very `Bytes` later used for
/// lookups would let the caches that keep the caller's allocation compare a key with itself
/// (one cache line instead of two), which no real lookup does.
fn populate<C: Peer>(c: &C, data: &Data, must_fit: bool) {
    for i in 0..WORKING_SET {
        c.insert(&Bytes::copy_from_slice(&data.keys[i]), &data.values[i]);
    }
    c.settle();
    if must_fit {
        let hits = data.keys[..WORKING_SET]
            .iter()
            .filter(|k| c.get(k).is_some())
            .count();
        assert_eq!(hits, WORKING_SET, "a peer lost part of the working set");
        assert_eq!(c.len(), WORKING_SET, "a peer holds extra entries");
    }
}

#[derive(Clone, Copy)]
enum Workload {
    GetHit,
    GetMiss,
    Insert,
    InsertEvict,
    Mix,
}

impl Workload {
    const ALL: [Workload; 5] = [
        Workload::GetHit,
        Workload::GetMiss,
        Workload::Insert,
        Workload::InsertEvict,
        Workload::Mix,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::GetHit => "get_hit",
            Workload::GetMiss => "get_miss",
            Workload::Insert => "insert",
            Workload::InsertEvict => "insert_evict",
            Workload::Mix => "mix90_10",
        }
    }

    /// Entries each cache is sized for: twice the working set when it must fit, exactly the
    /// working set when inserts must evict.
    fn capacity(self) -> usize {
        match self {
            Workload::InsertEvict => WORKING_SET,
            _ => 2 * WORKING_SET,
        }
    }
}

/// Fills one peer, then times it on one workload.
fn bench_peer<C: Peer>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    c: &C,
    w: Workload,
    threads: usize,
    data: &Data,
    seqs: &Seqs,
) {
    let cap = w.capacity();
    populate(c, data, cap >= WORKING_SET * 2);
    let (keys, values) = (&data.keys[..], &data.values[..]);
    let mut offset = 0usize;
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            // Each sample starts where the last ended, so samples do not replay one prefix.
            let o = offset;
            offset = offset.wrapping_add(iters as usize);
            match w {
                Workload::GetHit => {
                    timed::<C, GET>(c, threads, iters, o, &seqs.uniform_ws, keys, values)
                }
                Workload::GetMiss => timed::<C, GET>(
                    c,
                    threads,
                    iters,
                    o,
                    &seqs.uniform_ws,
                    &data.miss_keys,
                    values,
                ),
                Workload::Insert => {
                    timed::<C, INSERT>(c, threads, iters, o, &seqs.uniform_ws, keys, values)
                }
                Workload::InsertEvict => {
                    timed::<C, INSERT>(c, threads, iters, o, &seqs.uniform_universe, keys, values)
                }
                Workload::Mix => timed::<C, MIX>(c, threads, iters, o, &seqs.mix, keys, values),
            }
        });
    });
    if matches!(w, Workload::InsertEvict) {
        c.settle();
        let len = c.len();
        if name != "rwlock_floor" && !(cap * 9 / 10..=cap * 11 / 10).contains(&len) {
            eprintln!("note: {name} holds {len} entries at a capacity of {cap} entries");
        }
    }
}

fn cache_benches(c: &mut Criterion) {
    let seqs = Seqs::new();
    for value_len in [64usize, 1024] {
        let data = Data::new(value_len);
        for w in Workload::ALL {
            for threads in [1usize, 2] {
                let mut g = c.benchmark_group(format!("{}/{}/{threads}t", w.name(), data.label()));
                g.sample_size(20)
                    .measurement_time(Duration::from_secs(2))
                    .warm_up_time(Duration::from_secs(1))
                    .throughput(Throughput::Elements(1));
                let cap = w.capacity();
                for kind in Kind::ALL {
                    let (g, name) = (&mut g, kind.name());
                    match kind {
                        Kind::Quipu => {
                            let ns = quipu_ns(cap, value_len);
                            bench_peer(g, name, &ns, w, threads, &data, &seqs);
                        }
                        Kind::Moka => {
                            let m: moka::sync::Cache<Bytes, Bytes> =
                                moka::sync::Cache::new(cap as u64);
                            bench_peer(g, name, &m, w, threads, &data, &seqs);
                        }
                        Kind::QuickCache => {
                            let q: quick_cache::sync::Cache<Bytes, Bytes> =
                                quick_cache::sync::Cache::new(cap);
                            bench_peer(g, name, &q, w, threads, &data, &seqs);
                        }
                        Kind::Floor => {
                            bench_peer(g, name, &Floor::new(), w, threads, &data, &seqs);
                        }
                    }
                }
                g.finish();
            }
        }
    }
}

criterion_group!(benches, cache_benches);
criterion_main!(benches);
