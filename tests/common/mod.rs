//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod server;

use quipu::{FsStorage, LogConfig, ManualClock, Quipu, Storage, StorageFile};

/// A temporary data directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Log config for tests: no background maintenance (tests call it), small write buffer.
pub fn test_config() -> LogConfig {
    LogConfig::default().with_maintenance_interval(None)
}

/// Opens a data dir with the test config and the system clock.
pub fn open(dir: &Path) -> Quipu {
    Quipu::builder(dir)
        .log_config(test_config())
        .open()
        .expect("open")
}

/// Opens a data dir with a manual clock at `now`.
pub fn open_manual(dir: &Path, clock: &ManualClock) -> Quipu {
    Quipu::builder(dir)
        .log_config(test_config())
        .clock(Arc::new(clock.clone()))
        .open()
        .expect("open")
}

/// Switches that make [`FaultyStorage`] fail. Faults apply to segment files (`.log`) only.
#[derive(Debug)]
pub struct Faults {
    /// Every fsync fails while set.
    pub fail_sync: AtomicBool,
    /// Each fsync first sleeps this long, so appenders pile up behind it.
    pub sync_delay_ms: AtomicU64,
    /// Fsyncs wait while set.
    pub hold_sync: AtomicBool,
    /// Bytes that may still be appended before "no space left on device"; negative: no limit.
    pub write_budget: AtomicI64,
    /// fsyncs performed.
    pub syncs: AtomicU64,
    /// Every write to a segment file, as (position, length), one per `write_at` or
    /// `write_vectored_at` call, in order.
    pub writes: Mutex<Vec<(u64, u64)>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            fail_sync: AtomicBool::new(false),
            sync_delay_ms: AtomicU64::new(0),
            hold_sync: AtomicBool::new(false),
            write_budget: AtomicI64::new(-1),
            syncs: AtomicU64::new(0),
            writes: Mutex::new(Vec::new()),
        }
    }
}

/// The real file system with injectable failures.
#[derive(Debug, Default, Clone)]
pub struct FaultyStorage {
    pub faults: Arc<Faults>,
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn StorageFile>,
    faults: Arc<Faults>,
}

impl FaultyFile {
    /// How much of `data` the disk takes: all of it, or (a torn write) the part that fits the
    /// write budget, after which the disk is full.
    fn admit<'d>(&self, data: &'d [u8]) -> Result<&'d [u8], &'d [u8]> {
        let budget = self.faults.write_budget.load(Ordering::SeqCst);
        if budget >= 0 {
            let allowed = usize::try_from(budget).unwrap_or(0);
            if data.len() > allowed {
                self.faults.write_budget.store(0, Ordering::SeqCst);
                return Err(&data[..allowed]);
            }
            self.faults
                .write_budget
                .fetch_sub(data.len() as i64, Ordering::SeqCst);
        }
        Ok(data)
    }
}

fn disk_full() -> io::Error {
    io::Error::from(io::ErrorKind::StorageFull)
}

impl StorageFile for FaultyFile {
    fn append(&self, data: &[u8]) -> io::Result<()> {
        match self.admit(data) {
            Ok(all) => self.inner.append(all),
            Err(part) => {
                self.inner.append(part)?;
                Err(disk_full())
            }
        }
    }
    fn write_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        self.faults
            .writes
            .lock()
            .expect("writes")
            .push((pos, data.len() as u64));
        match self.admit(data) {
            Ok(all) => self.inner.write_at(all, pos),
            Err(part) => {
                self.inner.write_at(part, pos)?;
                Err(disk_full())
            }
        }
    }
    fn write_vectored_at(&self, parts: &[&[u8]], pos: u64) -> io::Result<()> {
        // One write of the concatenation, recorded and admitted as such.
        self.write_at(&parts.concat(), pos)
    }
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        let delay = self.faults.sync_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        while self.faults.hold_sync.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
}

impl Storage for FaultyStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let inner = FsStorage.open(path, create)?;
        if path.extension().is_some_and(|e| e == "log") {
            Ok(Arc::new(FaultyFile {
                inner,
                faults: Arc::clone(&self.faults),
            }))
        } else {
            Ok(inner)
        }
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        FsStorage.create_dir_all(path)
    }
    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        FsStorage.list(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FsStorage.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        FsStorage.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        FsStorage.exists(path)
    }
}

/// Opens a data dir whose segment files go through `storage`.
pub fn open_faulty(dir: &Path, storage: &FaultyStorage) -> Quipu {
    Quipu::builder(dir)
        .log_config(test_config())
        .storage(Arc::new(storage.clone()))
        .open()
        .expect("open")
}

/// The active (last) segment file of a partition.
pub fn last_segment(data: &Path, topic: &str, partition: u32) -> PathBuf {
    segments(data, topic, partition).pop().expect("a segment")
}

/// All segment files of a partition, oldest first.
pub fn segments(data: &Path, topic: &str, partition: u32) -> Vec<PathBuf> {
    let dir = data.join("log").join(topic).join(partition.to_string());
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("partition dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// Removes the records a clean close leaves in every partition directory, so that the next
/// open recovers the files as after a crash (which leaves none): for tests that tamper with
/// segment files to stand for what a crash left.
pub fn as_after_a_crash(data: &Path) {
    let Ok(topics) = std::fs::read_dir(data.join("log")) else {
        return;
    };
    for topic in topics.flatten() {
        let Ok(partitions) = std::fs::read_dir(topic.path()) else {
            continue;
        };
        for partition in partitions.flatten() {
            let record = partition.path().join("clean-close");
            if record.exists() {
                std::fs::remove_file(record).expect("remove the clean-close record");
            }
        }
    }
}

/// The base offset a segment file is named after.
pub fn segment_base(seg: &Path) -> u64 {
    seg.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("segment name")
}
