//! Log benchmarks: quipu against the floor of plain file I/O, in the same group and run.
//! See ../shared/BENCHMARKS.md; `scripts/bench-log.sh` runs this and prints the ratios.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use quipu::{Durability, LogConfig, Message, Partition, Quipu, TopicConfig};

/// Benchmark data lives on the real disk (not tmpfs) so fsync costs what it costs.
fn bench_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-data")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

fn open(dir: &Path) -> Quipu {
    Quipu::builder(dir)
        .log_config(LogConfig::default().with_maintenance_interval(None))
        .open()
        .expect("open")
}

/// A new data directory with topic `b` of one partition; keep the `Quipu` alive while using it.
fn fresh_partition(name: &str, durability: Durability) -> (Quipu, Arc<Partition>) {
    let db = open(&bench_dir(name));
    let t = db
        .log()
        .create_topic("b", topic_config(durability))
        .expect("topic");
    let p = Arc::clone(t.partition(0).expect("p"));
    (db, p)
}

fn topic_config(durability: Durability) -> TopicConfig {
    TopicConfig::default()
        .with_durability(durability)
        .with_segment_bytes(256 * 1024 * 1024)
}

fn append_buffered(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_never");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    // Each bench deletes what it wrote before the next one starts: gigabytes of dirty page cache
    // left behind would be written back during the next bench and slow it down, which made the
    // order of the benches part of the result.
    for size in [100usize, 1024] {
        g.throughput(Throughput::Elements(1));
        let payload = vec![0x5au8; size];
        g.bench_function(BenchmarkId::new("file_bufwriter", size), |b| {
            let dir = bench_dir("floor-buffered");
            let mut w =
                BufWriter::with_capacity(64 * 1024, File::create(dir.join("f")).expect("file"));
            b.iter(|| w.write_all(&payload).expect("write"));
            drop(w);
            discard(&dir);
        });
        // A stricter floor than `BufWriter`: the same bytes written in whole 64 KiB chunks at
        // multiples of 64 KiB, which the page cache takes faster (docs/BENCHMARKS.md), as
        // quipu's buffered writes are.
        g.bench_function(BenchmarkId::new("file_aligned_64k", size), |b| {
            let dir = bench_dir("floor-aligned");
            let mut w = AlignedWriter::new(File::create(dir.join("f")).expect("file"));
            b.iter(|| w.write_all(&payload).expect("write"));
            drop(w);
            discard(&dir);
        });
        g.bench_function(BenchmarkId::new("file_write_all_unbuffered", size), |b| {
            let dir = bench_dir("floor-unbuffered");
            let mut f = File::create(dir.join("f")).expect("file");
            b.iter(|| f.write_all(&payload).expect("write"));
            drop(f);
            discard(&dir);
        });
        g.bench_function(BenchmarkId::new("quipu", size), |b| {
            let (db, p) = fresh_partition("quipu-never", Durability::Never);
            let msg = [Message::new(payload.clone())];
            b.iter(|| p.append(&msg).expect("append"));
            let dir = data_dir(&db);
            drop((p, db));
            discard(&dir);
        });
        // One writer's batching handle: records are encoded into its own batch, no lock each.
        g.bench_function(BenchmarkId::new("quipu_appender", size), |b| {
            let (db, p) = fresh_partition("quipu-never-appender", Durability::Never);
            let msg = Message::new(payload.clone());
            let mut appender = p.appender();
            b.iter(|| appender.append(&msg).expect("append"));
            appender.flush().expect("flush");
            drop(appender);
            let dir = data_dir(&db);
            drop((p, db));
            discard(&dir);
        });
        // The same records appended 100 per call: one header, CRC, lock and clock read each.
        g.bench_function(BenchmarkId::new("quipu_batch_of_100", size), |b| {
            let (db, p) = fresh_partition("quipu-never-batch", Durability::Never);
            let batch: Vec<Message> = (0..100).map(|_| Message::new(payload.clone())).collect();
            b.iter_custom(|iters| {
                let calls = iters.div_ceil(100);
                let start = Instant::now();
                for _ in 0..calls {
                    p.append(&batch).expect("append");
                }
                start.elapsed().mul_f64(iters as f64 / (calls * 100) as f64)
            });
            let dir = data_dir(&db);
            drop((p, db));
            discard(&dir);
        });
    }
    g.finish();
}

/// A write buffer that writes exactly 64 KiB at a time: every write ends on a multiple of
/// 64 KiB, a record that does not fit is split across two writes.
struct AlignedWriter {
    file: File,
    buf: Vec<u8>,
}

impl AlignedWriter {
    const CHUNK: usize = 64 * 1024;

    fn new(file: File) -> Self {
        AlignedWriter {
            file,
            buf: Vec::with_capacity(Self::CHUNK),
        }
    }

    fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let take = data.len().min(Self::CHUNK - self.buf.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == Self::CHUNK {
                self.file.write_all(&self.buf)?;
                self.buf.clear();
            }
        }
        Ok(())
    }
}

/// The data directory of `db` (its log lives in `<data>/log`).
fn data_dir(db: &Quipu) -> PathBuf {
    let log = db.log().dir();
    log.parent().unwrap_or(log).to_owned()
}

/// Deletes a bench's data (and with it its dirty pages, which are then never written back).
fn discard(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

fn append_durable(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_always");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));
    let payload = vec![0x5au8; 100];
    g.bench_function("file_write_fsync_per_record", |b| {
        let dir = bench_dir("floor-fsync");
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("f"))
            .expect("file");
        b.iter(|| {
            f.write_all(&payload).expect("write");
            f.sync_data().expect("fsync");
        });
    });
    for appenders in [1usize, 4, 16] {
        g.bench_function(BenchmarkId::new("quipu_threads", appenders), |b| {
            let (_db, p) = fresh_partition("quipu-always", Durability::Always);
            // Appender threads live across rounds: thread start-up is not part of an append.
            let per = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let barrier = Arc::new(Barrier::new(appenders + 1));
            let workers: Vec<_> = (0..appenders)
                .map(|_| {
                    let (p, per, stop, barrier) = (
                        Arc::clone(&p),
                        Arc::clone(&per),
                        Arc::clone(&stop),
                        Arc::clone(&barrier),
                    );
                    let msg = [Message::new(payload.clone())];
                    std::thread::spawn(move || {
                        loop {
                            barrier.wait();
                            if stop.load(Ordering::SeqCst) {
                                return;
                            }
                            for _ in 0..per.load(Ordering::SeqCst) {
                                p.append(&msg).expect("append");
                            }
                            barrier.wait();
                        }
                    })
                })
                .collect();
            b.iter_custom(|iters| {
                let n = iters.div_ceil(appenders as u64);
                per.store(n, Ordering::SeqCst);
                let start = Instant::now();
                barrier.wait();
                barrier.wait();
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (n * appenders as u64) as f64)
            });
            stop.store(true, Ordering::SeqCst);
            barrier.wait();
            for w in workers {
                w.join().expect("worker");
            }
        });
    }
    for tasks in [16usize, 256] {
        g.bench_function(BenchmarkId::new("quipu_async_tasks", tasks), |b| {
            let (_db, p) = fresh_partition("quipu-always-async", Durability::Always);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .expect("runtime");
            b.iter_custom(|iters| {
                let per = iters.div_ceil(tasks as u64);
                let start = Instant::now();
                rt.block_on(async {
                    let handles: Vec<_> = (0..tasks)
                        .map(|_| {
                            let p = Arc::clone(&p);
                            let msg = [Message::new(payload.clone())];
                            tokio::spawn(async move {
                                for _ in 0..per {
                                    p.append_async(&msg).await.expect("append");
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.expect("task");
                    }
                });
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per * tasks as u64) as f64)
            });
        });
    }
    g.finish();
}

fn sequential_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("read_sequential");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    // About 37 MB of log either way.
    for (size, records) in [(100usize, 300_000u64), (1024, 36_000)] {
        let dir = bench_dir(&format!("quipu-read-{size}"));
        {
            let db = open(&dir);
            let cfg = topic_config(Durability::Never).with_segment_bytes(16 * 1024 * 1024);
            let t = db.log().create_topic("b", cfg).expect("topic");
            let p = t.partition(0).expect("p");
            let batch: Vec<Message> = (0..100).map(|_| Message::new(vec![7u8; size])).collect();
            // Half single-record batches, half batches of 99: both shapes appear in real logs.
            for _ in 0..records / 100 {
                p.append(&batch[..1]).expect("append");
                p.append(&batch[1..]).expect("append");
            }
        }
        let pdir = dir.join("log/b/0");
        let mut segments: Vec<PathBuf> = std::fs::read_dir(&pdir)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        segments.sort();
        let bytes: u64 = segments
            .iter()
            .map(|s| std::fs::metadata(s).expect("meta").len())
            .sum();
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function(BenchmarkId::new("file_read_raw", size), |b| {
            // The buffer starts on a page, as quipu's do: the kernel's copy is a third slower
            // into one that is not cache-line aligned (where a large allocation usually lands),
            // and the floor should not depend on where the allocator put it.
            let mut space = vec![0u8; 1024 * 1024 + 4096];
            let skip = space.as_ptr().align_offset(4096).min(4096);
            let buf = &mut space[skip..skip + 1024 * 1024];
            b.iter(|| {
                let mut n = 0;
                for s in &segments {
                    let mut f = File::open(s).expect("open");
                    loop {
                        let k = f.read(buf).expect("read");
                        if k == 0 {
                            break;
                        }
                        n += k;
                    }
                }
                n
            });
        });
        g.bench_function(BenchmarkId::new("quipu_records", size), |b| {
            b.iter_custom(|iters| cold_passes(&dir, iters, records, read_records));
        });
        g.bench_function(BenchmarkId::new("quipu_record_views", size), |b| {
            b.iter_custom(|iters| cold_passes(&dir, iters, records, visit_records));
        });
        g.bench_function(BenchmarkId::new("quipu_visit_batches", size), |b| {
            b.iter_custom(|iters| cold_passes(&dir, iters, records, visit_batches));
        });
        g.bench_function(BenchmarkId::new("quipu_batches", size), |b| {
            b.iter_custom(|iters| cold_passes(&dir, iters, records, read_batches));
        });
    }
    g.finish();
}

/// Times `iters` full reads of partition 0 of topic `b`, each after reopening the log (recovery
/// is set-up, not timed); `read_all` returns how many records it saw.
fn cold_passes(dir: &Path, iters: u64, records: u64, read_all: fn(&Partition) -> u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let db = open(dir);
        let t = db.log().topic("b").expect("topic");
        let p = t.partition(0).expect("p");
        let start = Instant::now();
        let n = read_all(p);
        total += start.elapsed();
        assert_eq!(n, records);
    }
    total
}

fn read_records(p: &Partition) -> u64 {
    let (mut next, mut n) = (0, 0);
    loop {
        let rs = p.read(next, 1_000).expect("read");
        let Some(last) = rs.last() else { return n };
        next = last.offset + 1;
        n += rs.len() as u64;
    }
}

fn read_batches(p: &Partition) -> u64 {
    let (mut next, mut n) = (0, 0);
    loop {
        let bs = p.read_batches(next, 1024 * 1024).expect("read");
        let Some(last) = bs.last() else { return n };
        next = last.next_offset();
        n += bs.iter().map(|b| u64::from(b.record_count())).sum::<u64>();
    }
}

fn visit_batches(p: &Partition) -> u64 {
    let mut n = 0;
    p.visit_batches(0, |b| {
        n += u64::from(b.record_count());
        std::ops::ControlFlow::Continue(())
    })
    .expect("visit");
    n
}

/// Every record, borrowed: offset, timestamp and value looked at, nothing copied.
fn visit_records(p: &Partition) -> u64 {
    let (mut n, mut check) = (0, 0u64);
    p.visit_batches(0, |b| {
        for r in b.record_views() {
            let r = r.expect("record");
            check ^= r.offset() ^ r.timestamp() ^ r.value().map_or(0, |v| v.len() as u64);
            n += 1;
        }
        std::ops::ControlFlow::Continue(())
    })
    .expect("visit");
    std::hint::black_box(check);
    n
}

criterion_group!(benches, append_buffered, append_durable, sequential_read);
criterion_main!(benches);
