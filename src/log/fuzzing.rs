//! Entry points for the fuzz targets in `fuzz/`. Not part of the public API.

use std::ops::ControlFlow;

use super::record;
use super::segment;
use super::storage::Storage;

/// Recovers a segment made of `bytes` as the active segment of a fresh partition, then reads
/// every record back. Panics only if recovery returns a record whose batch fails its CRC.
pub fn recover_segment_bytes(bytes: &[u8]) {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("quipu-fuzz-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let part = dir.join("t").join("0");
    let storage = super::FsStorage;
    if storage.create_dir_all(&part).is_err() {
        return;
    }
    let Ok(file) = storage.open(&part.join(format!("{:020}.log", 0)), true) else {
        return;
    };
    if file.append(bytes).is_err() {
        return;
    }
    drop(file);
    let ctx = super::Context {
        storage: std::sync::Arc::new(super::FsStorage),
        clock: std::sync::Arc::new(crate::clock::SystemClock),
        metrics: std::sync::Arc::default(),
        config: std::sync::Arc::default(),
    };
    if let Ok(p) =
        super::recovery::open_partition("t", 0, part.clone(), crate::TopicConfig::default(), ctx)
    {
        let end = p.end_offset();
        let records = p.read(p.start_offset(), usize::MAX).unwrap_or_default();
        assert!(
            records.iter().all(|r| r.offset < end),
            "record past the end"
        );
        // Every byte recovery kept must verify on its own.
        let f = storage
            .open(&part.join(format!("{:020}.log", 0)), false)
            .ok();
        if let Some(f) = f {
            let len = f.len().unwrap_or(0);
            let scan = segment::scan(f.as_ref(), 0, len, |_, h, b| {
                assert!(record::verify(b, h).is_ok(), "kept a batch whose CRC fails");
                ControlFlow::Continue(())
            });
            assert!(
                scan.is_ok_and(|s| s.bad.is_none()),
                "recovery left bad bytes in the log"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
