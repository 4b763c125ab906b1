//! A segment: one `.log` file of record batches and its sparse `.idx`, plus the scanner that
//! walks batches for reads, recovery and compaction.

use std::cell::RefCell;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;

use super::index::{self, IndexEntry};
use super::record::{self, BatchHeader, DecodeError, HEADER_LEN, MAGIC};
use super::storage::{self, Storage, StorageFile};
use crate::error::LogError;

/// Bytes read from a segment at a time: the first read of a scan is small (a reader that wants
/// a few records should not copy a megabyte), later ones double up to the maximum.
const FIRST_CHUNK: usize = 32 * 1024;
/// The smallest read, whatever the caller expects to need.
const MIN_CHUNK: usize = 4 * 1024;
const CHUNK: usize = 1024 * 1024;
/// Reads start at a multiple of this (the page size).
const PAGE: u64 = 4096;

/// One segment file and what is known of it.
#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: u64,
    pub log_path: PathBuf,
    pub file: Arc<dyn StorageFile>,
    pub idx_file: Arc<dyn StorageFile>,
    /// Bytes of `file` that hold whole batches and may be read.
    written: AtomicU64,
    /// The offset after the segment's last record.
    next_offset: AtomicU64,
    max_timestamp: AtomicU64,
    pub index: RwLock<Vec<IndexEntry>>,
}

/// File names of a segment: the base offset, zero-padded to 20 digits.
pub(crate) fn paths(dir: &Path, base_offset: u64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{base_offset:020}.log")),
        dir.join(format!("{base_offset:020}.idx")),
    )
}

impl Segment {
    /// Opens (or creates) the files of a segment whose contents were already checked.
    pub fn open(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: u64,
        written: u64,
        next_offset: u64,
        max_timestamp: u64,
        index: Vec<IndexEntry>,
    ) -> io::Result<Self> {
        let (log_path, idx_path) = paths(dir, base_offset);
        let file = storage.open(&log_path, true)?;
        let idx_file = storage.open(&idx_path, true)?;
        Ok(Self {
            base_offset,
            log_path,
            file,
            idx_file,
            written: AtomicU64::new(written),
            next_offset: AtomicU64::new(next_offset),
            max_timestamp: AtomicU64::new(max_timestamp),
            index: RwLock::new(index),
        })
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    pub fn add_written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Release);
    }

    pub fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub fn set_next_offset(&self, offset: u64) {
        self.next_offset.store(offset, Ordering::Release);
    }

    pub fn max_timestamp(&self) -> u64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    pub fn observe_timestamp(&self, ts: u64) {
        // Timestamps mostly grow: a load is cheaper than an atomic read-modify-write.
        if ts > self.max_timestamp.load(Ordering::Acquire) {
            self.max_timestamp.fetch_max(ts, Ordering::AcqRel);
        }
    }

    /// [`scan`] for readers: the lent batches can become [`Bytes`] without a copy. The first
    /// read is of about `wanted` bytes (what the caller expects to need), later ones double up
    /// to 1 MiB.
    pub fn read_scan(
        &self,
        pos: u64,
        end: u64,
        wanted: usize,
        visit: impl FnMut(u64, &BatchHeader, Lent<'_>) -> ControlFlow<()>,
    ) -> io::Result<ScanEnd> {
        scan_chunks(self.file.as_ref(), pos, end, wanted, |_| true, visit)
    }

    /// [`read_scan`](Self::read_scan) that asks `admit` before reading more of the file for a
    /// batch whose header it has but whose bytes it does not: `false` ends the scan before
    /// that batch (a reader with a byte budget then reads no batch it will not return).
    pub fn read_scan_admitting(
        &self,
        pos: u64,
        end: u64,
        wanted: usize,
        admit: impl FnMut(&BatchHeader) -> bool,
        visit: impl FnMut(u64, &BatchHeader, Lent<'_>) -> ControlFlow<()>,
    ) -> io::Result<ScanEnd> {
        scan_chunks(self.file.as_ref(), pos, end, wanted, admit, visit)
    }

    /// Average bytes per offset so far, to size reads of a number of records.
    pub fn bytes_per_offset(&self) -> usize {
        let offsets = self.next_offset().saturating_sub(self.base_offset).max(1);
        usize::try_from(self.written() / offsets).unwrap_or(usize::MAX)
    }

    /// Replaces the `.idx` file with the in-memory index (not fsynced: the index is derived).
    /// Returns the bytes written.
    pub fn rewrite_index(&self) -> io::Result<Vec<u8>> {
        let index = self.index.read();
        let mut bytes = Vec::with_capacity(index.len() * index::ENTRY_LEN);
        for e in index.iter() {
            e.encode(&mut bytes);
        }
        drop(index);
        self.idx_file.truncate(0)?;
        self.idx_file.append(&bytes)?;
        Ok(bytes)
    }
}

/// Adds index entries while batches are appended or scanned.
#[derive(Debug, Clone)]
pub(crate) struct IndexBuilder {
    interval: u64,
    since_last: u64,
    max_timestamp: u64,
}

impl IndexBuilder {
    pub fn new(interval: u32, max_timestamp: u64) -> Self {
        Self {
            interval: u64::from(interval),
            since_last: u64::MAX,
            max_timestamp,
        }
    }

    /// Continues after an existing entry, whose batch is the next one observed.
    pub fn resume(interval: u32, max_timestamp: u64) -> Self {
        Self {
            interval: u64::from(interval),
            since_last: 0,
            max_timestamp,
        }
    }

    /// Accounts for the batch at `position`; returns the entry to add, if one is due.
    pub fn observe(&mut self, position: u64, header: &BatchHeader) -> Option<IndexEntry> {
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        let due = self.since_last >= self.interval;
        self.since_last = if due { 0 } else { self.since_last };
        self.since_last += u64::from(header.len);
        due.then_some(IndexEntry {
            offset: header.base_offset,
            max_timestamp: self.max_timestamp,
            position,
        })
    }
}

/// The error for bytes that fail to decode at `position` of `path`: a batch from a newer
/// format is [`LogError::UnsupportedFormat`], anything else [`LogError::Corrupt`].
pub(crate) fn decode_failure(path: &Path, position: u64, e: &DecodeError) -> LogError {
    match e {
        DecodeError::NewerVersion(v) => LogError::UnsupportedFormat {
            path: path.to_owned(),
            found: u32::from(*v),
            supported: u32::from(record::FORMAT_VERSION),
        },
        other => LogError::Corrupt {
            path: path.to_owned(),
            position,
            reason: format!("{other:?}"),
        },
    }
}

/// Where a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanEnd {
    /// Position after the last whole, valid batch visited.
    pub valid_end: u64,
    /// The first bad batch: its position and what is wrong. `Incomplete` is a torn tail.
    pub bad: Option<(u64, DecodeError)>,
}

thread_local! {
    /// Read buffers this thread reuses: a fresh buffer per chunk costs more in page faults than
    /// the read itself. A buffer is reused once nothing slices it any more.
    static POOL: RefCell<Vec<Bytes>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept per thread (each larger than `POOL_MIN`), and their most bytes together.
const POOL_BUFFERS: usize = 4;
const POOL_MIN: usize = 32 * 1024;
const POOL_BYTES: usize = 4 * CHUNK;

/// A buffer of at least `len` bytes (contents unspecified).
fn take_buffer(len: usize) -> BytesMut {
    let reused = POOL.with(|pool| {
        let mut pool = pool.try_borrow_mut().ok()?;
        // The most recently returned buffer first: it is the one still in the CPU's cache.
        // Taking the oldest made a scan rotate through every pooled buffer (4 MiB, twice the
        // L2), so the kernel's copy into it missed the cache on every line.
        let i = pool.iter().rposition(|b| b.len() >= len && b.is_unique())?;
        pool.remove(i).try_into_mut().ok()
    });
    // A small read gets a buffer of its own size: zeroing (and faulting in) a whole `CHUNK`
    // for the last few KiB of a batch cost more than the read. Larger ones get a power of two
    // (up to `CHUNK`), which the pool keeps: a fresh buffer per call made repeated reads of
    // 1,000 records of 100 B (110 KB each) spend more on page faults than on the copy.
    reused.unwrap_or_else(|| {
        line_aligned(if len <= POOL_MIN {
            len
        } else {
            len.next_power_of_two().min(CHUNK).max(len)
        })
    })
}

/// A zeroed buffer of `len` bytes that starts on a cache line. The kernel's copy from the
/// page cache (`rep movsb`) is much slower into a destination that is not cache-line aligned:
/// a 1 MiB read buffer at 16 bytes past a page (where the allocator puts a large block) made a
/// sequential read of a 37 MB file take 5.5 ms instead of 3.8; at a page or at 64 bytes past
/// one it made no difference (see docs/BENCHMARKS.md).
fn line_aligned(len: usize) -> BytesMut {
    let mut buf = BytesMut::zeroed(len + CACHE_LINE);
    let skip = buf.as_ptr().align_offset(CACHE_LINE).min(CACHE_LINE);
    bytes::Buf::advance(&mut buf, skip);
    buf.truncate(len);
    buf
}

/// The alignment of read buffers.
const CACHE_LINE: usize = 64;

/// Returns a buffer to the pool; one still sliced by records or batches a caller holds comes
/// back into use when they are dropped.
fn give_back(buf: Bytes) {
    if buf.len() <= POOL_MIN || buf.len() > POOL_BYTES {
        return;
    }
    POOL.with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            // Make room, dropping buffers still sliced elsewhere first (they free themselves
            // when their slices go).
            while pool.len() >= POOL_BUFFERS
                || pool.iter().map(Bytes::len).sum::<usize>() + buf.len() > POOL_BYTES
            {
                let i = pool.iter().position(|b| !b.is_unique()).unwrap_or(0);
                pool.remove(i);
            }
            pool.push(buf);
        }
    });
}

/// Walks the batches of `file` in `[pos, end)`, verifying each one's CRC, and hands each to
/// `visit` with its position and bytes (valid only during the call: copy what you keep).
/// Stops at the first bad batch, or when `visit` breaks.
pub(crate) fn scan(
    file: &dyn StorageFile,
    pos: u64,
    end: u64,
    mut visit: impl FnMut(u64, &BatchHeader, &[u8]) -> ControlFlow<()>,
) -> io::Result<ScanEnd> {
    scan_chunks(
        file,
        pos,
        end,
        FIRST_CHUNK,
        |_| true,
        |at, h, lent| visit(at, h, lent.bytes),
    )
}

/// [`scan`], lending each batch together with the read buffer it lies in.
fn scan_chunks(
    file: &dyn StorageFile,
    mut pos: u64,
    end: u64,
    wanted: usize,
    mut admit: impl FnMut(&BatchHeader) -> bool,
    mut visit: impl FnMut(u64, &BatchHeader, Lent<'_>) -> ControlFlow<()>,
) -> io::Result<ScanEnd> {
    // `chunk[..filled]` holds the file's bytes from `chunk_pos`.
    let mut chunk = Bytes::new();
    let mut chunk_pos = pos;
    let mut filled = 0usize;
    // Past what the caller said it needs, reads start at a quarter of that and double up to
    // `CHUNK`: a reader whose estimate fell a few records short reads a little more, not a
    // read that had doubled at every refill (a read of 1,000 records of 100 B read 540 KB for
    // its 110, measured).
    let mut beyond = (wanted / 4).clamp(MIN_CHUNK, CHUNK);
    let scan_start = pos;
    let result = loop {
        if pos >= end {
            break ScanEnd {
                valid_end: pos,
                bad: None,
            };
        }
        let at = usize::try_from(pos - chunk_pos).unwrap_or(usize::MAX);
        let avail = chunk.get(at..filled).unwrap_or(&[]);
        let header = match record::decode_header(avail) {
            Ok(h) if avail.len() >= h.len as usize => h,
            Ok(h) if pos + u64::from(h.len) > end => break torn(pos, DecodeError::Incomplete),
            Err(DecodeError::Incomplete) if pos + HEADER_LEN as u64 > end => {
                break torn(pos, DecodeError::Incomplete);
            }
            Ok(h) if !admit(&h) => {
                break ScanEnd {
                    valid_end: pos,
                    bad: None,
                };
            }
            Ok(_) | Err(DecodeError::Incomplete) => {
                // Refill from `pos`, large enough for the whole batch if its length is known.
                // The read starts at the page boundary below `pos`: the kernel then copies
                // whole pages from the page cache to the same offsets in the buffer. Starting
                // at a batch's own position made every page copy misaligned, and the copy is
                // most of a sequential read (measured: see docs/BENCHMARKS.md).
                let skew = (pos % PAGE) as usize;
                let start = pos - skew as u64;
                // What the caller said it needs and has not had yet, while that lasts (a read
                // of N records then refills only the end of its last batch, instead of twice
                // the first read); past it, `beyond`.
                let consumed = usize::try_from(pos - scan_start).unwrap_or(usize::MAX);
                let size = if consumed < wanted {
                    (wanted - consumed).clamp(MIN_CHUNK, CHUNK)
                } else {
                    let size = beyond;
                    beyond = (beyond * 2).min(CHUNK);
                    size
                };
                // `size` and the batch length count from `pos`; the read also covers the
                // `skew` bytes before it, so it always reaches past `pos` by at least
                // `MIN_CHUNK` (more than a header) and every refill makes progress.
                let need = record::decode_header(avail)
                    .map_or(size, |h| (h.len as usize).max(size))
                    + skew;
                let len = usize::try_from((end - start).min(need as u64)).unwrap_or(need);
                give_back(std::mem::take(&mut chunk));
                let mut buf = take_buffer(len);
                storage::read_exact_at(file, &mut buf[..len], start)?;
                chunk = buf.freeze();
                chunk_pos = start;
                filled = len;
                continue;
            }
            Err(e) => break torn(pos, e),
        };
        let bytes = &chunk[at..at + header.len as usize];
        if let Err(e) = record::verify(bytes, &header) {
            break torn(pos, e);
        }
        let next = pos + u64::from(header.len);
        let lent = Lent {
            bytes,
            chunk: &chunk,
        };
        if visit(pos, &header, lent).is_break() {
            break ScanEnd {
                valid_end: next,
                bad: None,
            };
        }
        pos = next;
    };
    give_back(chunk);
    Ok(result)
}

/// A verified batch lent by [`Segment::read_scan`], and the read buffer it lies in.
#[derive(Clone, Copy)]
pub(crate) struct Lent<'a> {
    pub bytes: &'a [u8],
    chunk: &'a Bytes,
}

impl Lent<'_> {
    /// The batch as [`Bytes`] that outlive the scan: a slice of the read buffer, not a copy
    /// (the buffer, up to 1 MiB, lives as long as any slice of it).
    pub fn to_bytes(self) -> Bytes {
        self.chunk.slice_ref(self.bytes)
    }
}

fn torn(pos: u64, e: DecodeError) -> ScanEnd {
    ScanEnd {
        valid_end: pos,
        bad: Some((pos, e)),
    }
}

/// Whether `file` holds nothing but zero bytes in `[from, end)`: space preallocated past the
/// last batch (docs/FORMAT.md §1), which a crash leaves behind. It is not damage: a batch
/// never starts with a zero magic number, and the zeros run to the end of the file.
pub(crate) fn zero_tail(file: &dyn StorageFile, from: u64, end: u64) -> io::Result<bool> {
    zeros(file, from, end, &mut vec![0; FIRST_CHUNK])
}

/// Whether a whole, page-aligned page in `[from, end)` holds only zero bytes: a page of a
/// write into preallocated space that never reached the disk.
pub(crate) fn zero_page(file: &dyn StorageFile, from: u64, end: u64) -> io::Result<bool> {
    let mut buf = [0u8; PAGE as usize];
    let mut at = from.div_ceil(PAGE) * PAGE;
    while at + PAGE <= end {
        if zeros(file, at, at + PAGE, &mut buf)? {
            return Ok(true);
        }
        at += PAGE;
    }
    Ok(false)
}

/// Whether `[from, end)` of `file` is all zero bytes, read through `buf`.
fn zeros(file: &dyn StorageFile, mut from: u64, end: u64, buf: &mut [u8]) -> io::Result<bool> {
    while from < end {
        let n = usize::try_from(end - from).map_or(buf.len(), |n| n.min(buf.len()));
        storage::read_exact_at(file, &mut buf[..n], from)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        from += n as u64;
    }
    Ok(true)
}

/// Looks for a whole, valid batch starting anywhere in `(from, end)` whose base offset is at
/// least `min_offset`: proof that damage at `from` is not a torn tail.
pub(crate) fn valid_batch_after(
    file: &dyn StorageFile,
    from: u64,
    end: u64,
    min_offset: u64,
) -> io::Result<Option<u64>> {
    let len = usize::try_from(end.saturating_sub(from)).map_err(io::Error::other)?;
    let mut buf = vec![0; len];
    storage::read_exact_at(file, &mut buf, from)?;
    let magic = MAGIC.to_le_bytes();
    for i in 1..buf.len().saturating_sub(HEADER_LEN - 1) {
        if buf[i..i + 4] != magic {
            continue;
        }
        if let Ok(h) = record::decode_header(&buf[i..])
            && h.base_offset >= min_offset
            && record::verify(&buf[i..], &h).is_ok()
        {
            return Ok(Some(from + i as u64));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Message;
    use crate::log::storage::{FsStorage, Storage};

    /// One batch of a single record whose whole batch is exactly `len` bytes.
    fn batch_of_len(len: usize, base: u64) -> Vec<u8> {
        for v in (0..len).rev() {
            let mut buf = Vec::new();
            record::encode_batch(&mut buf, base, &[Message::new(vec![1u8; v])], 1, None);
            if buf.len() == len {
                return buf;
            }
        }
        panic!("no batch of {len} bytes");
    }

    /// A scan whose first read ends a few bytes into a batch header, right where the caller's
    /// estimate runs out, must still read that batch (it once refilled the same 4 KiB page
    /// forever: a refill did not count the bytes before the batch on its page).
    #[test]
    fn a_header_split_at_the_end_of_the_first_read_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage;
        for split in [1usize, 2, 30, 58, 59] {
            let first = FIRST_CHUNK - split;
            let mut bytes = batch_of_len(first, 0);
            let mut n = 1;
            while bytes.len() < 3 * FIRST_CHUNK {
                let mut b = Vec::new();
                record::encode_batch(&mut b, n, &[Message::new(vec![2u8; 300])], 1, None);
                bytes.extend_from_slice(&b);
                n += 1;
            }
            let path = dir.path().join(format!("{split}.log"));
            let file = storage.open(&path, true).unwrap();
            file.append(&bytes).unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let len = bytes.len() as u64;
            std::thread::spawn(move || {
                let mut seen = 0u64;
                let end = scan(file.as_ref(), 0, len, |_, _, _| {
                    seen += 1;
                    ControlFlow::Continue(())
                });
                let _ = tx.send((seen, end.map(|e| (e.valid_end, e.bad.is_none()))));
            });
            let (seen, end) = rx
                .recv_timeout(std::time::Duration::from_secs(20))
                .expect("the scan finishes");
            assert_eq!(seen, n, "split {split}");
            assert_eq!(end.unwrap(), (len, true), "split {split}");
        }
    }

    /// Read buffers start on a cache line, fresh or reused from the pool, small or large (a
    /// buffer 16 bytes past a page made the kernel's copy into it a third slower).
    #[test]
    fn read_buffers_start_on_a_cache_line_and_keep_it_when_reused() {
        for len in [100, POOL_MIN + 1, 110_000, CHUNK, CHUNK + 4095] {
            let buf = take_buffer(len);
            assert!(buf.len() >= len, "len {len}");
            assert_eq!(buf.as_ptr() as usize % CACHE_LINE, 0, "len {len}");
            let at = buf.as_ptr();
            give_back(buf.freeze());
            let again = take_buffer(len.min(CHUNK));
            assert_eq!(again.as_ptr() as usize % CACHE_LINE, 0, "len {len}, reused");
            if len > POOL_MIN {
                assert_eq!(
                    again.as_ptr(),
                    at,
                    "a large buffer comes back from the pool"
                );
            }
            give_back(again.freeze());
        }
    }
}
