//! A partition's sync thread starts with the first append that needs it and exits when idle,
//! so many idle topics hold no threads; appends after that start it again and lose nothing.

mod common;

use std::time::Duration;

use common::server::eventually;
use quipu::{Durability, Message, Quipu, TopicConfig};

/// Threads of this process whose name starts like a sync thread's.
fn sync_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("task list")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("quipu-sync"))
        .count()
}

fn open(dir: &std::path::Path) -> Quipu {
    Quipu::builder(dir)
        .log_config(common::test_config().with_sync_thread_idle(Duration::from_millis(200)))
        .open()
        .expect("open")
}

#[test]
fn sync_threads_exist_only_while_there_is_work() {
    let dir = common::tempdir();
    let db = open(dir.path());
    let always = TopicConfig::default().with_durability(Durability::Always);
    let topics: Vec<_> = (0..30)
        .map(|i| {
            db.log()
                .create_topic(&format!("delivery-{i}"), always.clone())
                .expect("create")
        })
        .collect();
    let never = db
        .log()
        .create_topic(
            "clicks",
            TopicConfig::default().with_durability(Durability::Never),
        )
        .expect("create");
    assert_eq!(sync_threads(), 0, "no thread before the first append");
    for t in &topics {
        assert!(t.append(Message::new("first")).expect("append").synced);
    }
    never.append(Message::new("click 1")).expect("append");
    assert!(
        sync_threads() >= 1,
        "the Never topic's timed flush needs one"
    );
    eventually(10, || (sync_threads() == 0).then_some(()));

    // Idle threads gone: appends start them again, fsyncs and timed flushes still happen.
    std::thread::scope(|s| {
        for t in &topics {
            s.spawn(move || {
                for i in 0..20 {
                    let r = t
                        .append(Message::new(format!("again-{i}")))
                        .expect("append");
                    assert!(r.synced);
                }
            });
        }
    });
    never.append(Message::new("click 2")).expect("append");
    let segment = common::last_segment(dir.path(), "clicks", 0);
    // Flushed by the restarted thread within its 10 ms delay, with nobody asking.
    eventually(10, || has_both_clicks(&segment).then_some(()));
    eventually(10, || (sync_threads() == 0).then_some(()));
    drop((topics, never, db));

    let db = open(dir.path());
    for i in 0..30 {
        let t = db.log().topic(&format!("delivery-{i}")).expect("topic");
        assert_eq!(t.read(0, 0, 100).expect("read").len(), 21);
    }
    let clicks = db.log().topic("clicks").expect("topic");
    assert_eq!(clicks.read(0, 0, 10).expect("read").len(), 2);
}

/// Both clicks are in the segment file (the second one written by the restarted thread).
fn has_both_clicks(segment: &std::path::Path) -> bool {
    let bytes = std::fs::read(segment).expect("read segment");
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    has(b"click 1") && has(b"click 2")
}
