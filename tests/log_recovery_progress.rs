//! Opening a data directory reports each recovered topic, so a server can show progress.

mod common;

use std::sync::{Arc, Mutex};

use quipu::{Message, Quipu, TopicConfig};

#[test]
fn every_topic_is_reported_once_with_the_total() {
    let dir = common::tempdir();
    {
        let db = common::open(dir.path());
        for name in ["payments", "orders", "gps"] {
            let t = db.log().create_topic(name, TopicConfig::default()).unwrap();
            t.append(Message::new("x")).unwrap();
        }
        db.close();
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let db = Quipu::builder(dir.path())
        .log_config(common::test_config())
        .on_recovery(move |p| {
            s.lock()
                .unwrap()
                .push((p.topic.to_owned(), p.topics_done, p.topics_total));
        })
        .open()
        .unwrap();
    let mut seen = seen.lock().unwrap().clone();
    let counts: Vec<(usize, usize)> = seen.iter().map(|(_, d, t)| (*d, *t)).collect();
    assert_eq!(counts, vec![(1, 3), (2, 3), (3, 3)]);
    seen.sort();
    let names: Vec<&str> = seen.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, vec!["gps", "orders", "payments"]);
    assert_eq!(
        db.log()
            .topic("orders")
            .unwrap()
            .read(0, 0, 10)
            .unwrap()
            .len(),
        1
    );
}
