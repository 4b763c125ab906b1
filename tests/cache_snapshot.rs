//! Snapshots of critical namespaces: a round trip through close and reopen keeps values,
//! deadlines and tags; a corrupt snapshot is reported and skipped whole, never half-loaded.

mod common;

use std::sync::Arc;
use std::time::Duration;

use quipu::{
    Cache, CacheConfig, EntryOptions, ManualClock, NamespaceConfig, Persistence, Quipu,
    SnapshotReport,
};

fn critical() -> NamespaceConfig {
    NamespaceConfig::default().with_persistence(Persistence::Snapshot)
}

fn cache_in(dir: &std::path::Path, clock: &ManualClock) -> Cache {
    Cache::builder()
        .config(CacheConfig::default().with_maintenance_interval(None))
        .clock(Arc::new(clock.clone()))
        .snapshot_dir(dir)
        .build()
        .unwrap()
}

#[test]
fn round_trip_keeps_values_deadlines_and_tags() {
    let dir = common::tempdir();
    let clock = ManualClock::new(1_000_000);
    {
        let cache = cache_in(dir.path(), &clock);
        let rules = cache.create_namespace("rules", critical()).unwrap();
        let scratch = cache
            .create_namespace("scratch", NamespaceConfig::default())
            .unwrap();
        for i in 0..500 {
            rules
                .insert(format!("rule:{i}"), format!("limit={i}"))
                .unwrap();
        }
        rules
            .insert_with(
                "fx:usd",
                "1.00",
                &EntryOptions::default()
                    .ttl(Duration::from_secs(60))
                    .tag("fx"),
            )
            .unwrap();
        rules
            .insert_with_ttl("short", "x", Duration::from_secs(1))
            .unwrap();
        scratch.insert("tmp", "gone after restart").unwrap();
        cache.close().unwrap();
    }
    clock.advance(Duration::from_secs(10));
    let cache = cache_in(dir.path(), &clock);
    let rules = cache.create_namespace("rules", critical()).unwrap();
    let scratch = cache
        .create_namespace("scratch", NamespaceConfig::default())
        .unwrap();
    assert_eq!(
        cache.snapshot_reports(),
        vec![SnapshotReport::Restored {
            namespace: "rules".into(),
            entries: 501
        }]
    );
    assert_eq!(rules.len(), 501, "the expired entry is not restored");
    assert_eq!(rules.get("rule:42").as_deref(), Some(&b"limit=42"[..]));
    assert_eq!(rules.ttl("fx:usd"), Some(Some(Duration::from_secs(50))));
    assert_eq!(rules.tags("fx:usd"), vec!["fx".to_owned()]);
    assert!(rules.get("short").is_none());
    assert!(scratch.is_empty());
}

/// Snapshots taken from several threads at once, while the namespace changes, take turns:
/// none fails, and the file the last one left restores with every entry.
#[test]
fn concurrent_snapshots_take_turns() {
    let dir = common::tempdir();
    let clock = ManualClock::new(0);
    {
        let cache = cache_in(dir.path(), &clock);
        let rules = cache.create_namespace("rules", critical()).unwrap();
        std::thread::scope(|s| {
            for t in 0..3 {
                let (cache, rules) = (&cache, &rules);
                s.spawn(move || {
                    for i in 0..40 {
                        // Sizes differ from one write to the next, so an interleaving of two
                        // writers' bytes could not pass the file's checks.
                        let v = vec![b'v'; 10 + (i * 37 + t * 11) % 400];
                        rules.insert(format!("k{t}-{i}"), v).unwrap();
                        cache.snapshot().unwrap();
                    }
                });
            }
        });
        // Read back before this cache closes (closing would write the file again).
        let (reports, len) = reopen_reports(dir.path());
        assert_eq!(
            reports,
            vec![SnapshotReport::Restored {
                namespace: "rules".into(),
                entries: 120
            }]
        );
        assert_eq!(len, 120);
    }
}

fn write_snapshot(dir: &std::path::Path) -> std::path::PathBuf {
    let clock = ManualClock::new(0);
    let cache = cache_in(dir, &clock);
    let rules = cache.create_namespace("rules", critical()).unwrap();
    for i in 0..100 {
        rules.insert(format!("k{i}"), vec![b'v'; 100]).unwrap();
    }
    cache.snapshot().unwrap();
    dir.join("rules.snapshot")
}

fn reopen_reports(dir: &std::path::Path) -> (Vec<SnapshotReport>, usize) {
    let cache = cache_in(dir, &ManualClock::new(0));
    let rules = cache.create_namespace("rules", critical()).unwrap();
    (cache.snapshot_reports(), rules.len())
}

/// A way to damage a snapshot file's bytes.
type Corruption = Box<dyn Fn(&mut Vec<u8>)>;

#[test]
fn corrupt_snapshots_are_reported_and_skipped_whole() {
    let cases: Vec<(&str, Corruption)> = vec![
        (
            "flipped payload byte",
            Box::new(|b: &mut Vec<u8>| {
                let n = b.len();
                b[n / 2] ^= 0x40;
            }),
        ),
        (
            "truncated",
            Box::new(|b: &mut Vec<u8>| {
                let n = b.len();
                b.truncate(n - 7);
            }),
        ),
        ("bad magic", Box::new(|b: &mut Vec<u8>| b[0] = b'X')),
        ("newer version", Box::new(|b: &mut Vec<u8>| b[4] = 9)),
        ("empty file", Box::new(|b: &mut Vec<u8>| b.clear())),
        (
            "trailing garbage",
            Box::new(|b: &mut Vec<u8>| b.extend_from_slice(b"junk")),
        ),
    ];
    for (what, corrupt) in cases {
        let dir = common::tempdir();
        let path = write_snapshot(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        corrupt(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let (reports, len) = reopen_reports(dir.path());
        assert_eq!(len, 0, "{what}: nothing may be half-loaded");
        match &reports[..] {
            [
                SnapshotReport::Corrupt {
                    namespace,
                    path: p,
                    reason,
                },
            ] => {
                assert_eq!(namespace, "rules");
                assert_eq!(p, &path);
                assert!(!reason.is_empty());
            }
            other => panic!("{what}: expected one corrupt report, got {other:?}"),
        }
    }
}

#[test]
fn quipu_snapshots_critical_namespaces_on_close() {
    let dir = common::tempdir();
    {
        let db = Quipu::open(dir.path()).unwrap();
        let ns = db.cache().create_namespace("config", critical()).unwrap();
        ns.insert("feature:checkout-v2", "on").unwrap();
    }
    let db = Quipu::open(dir.path()).unwrap();
    let ns = db.cache().create_namespace("config", critical()).unwrap();
    assert_eq!(ns.get("feature:checkout-v2").as_deref(), Some(&b"on"[..]));
}
