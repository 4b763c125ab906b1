//! Invalidation by key, tag, glob pattern and business events; every invalidation is published
//! on the cache's channel, and applying one from elsewhere drops the same entries.

mod common;

use quipu::{
    Cache, EntryOptions, Invalidation, InvalidationTarget, Message, NamespaceConfig, RemovalCause,
};
use std::sync::{Arc, Mutex};

#[test]
fn by_key_tag_and_pattern_with_published_events() {
    let cache = Cache::new();
    let mut events = cache.invalidations();
    let ns = cache
        .create_namespace("catalog", NamespaceConfig::default())
        .unwrap();
    let causes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&causes);
    ns.set_removal_listener(move |k, _, cause| seen.lock().unwrap().push((k.to_vec(), cause)));
    for (k, tag) in [
        ("prod:1", "shoes"),
        ("prod:2", "shoes"),
        ("prod:3", "hats"),
        ("geo:17", "geo"),
    ] {
        ns.insert_with(k, "v", &EntryOptions::default().tag(tag).tag("all"))
            .unwrap();
    }
    assert_eq!(
        ns.tags("prod:1"),
        vec!["shoes".to_owned(), "all".to_owned()]
    );

    assert!(ns.invalidate("prod:3"));
    assert!(!ns.invalidate("prod:3"), "already gone");
    assert_eq!(ns.invalidate_tag("shoes"), 2);
    assert_eq!(ns.len(), 1);
    ns.insert("prod:9", "v").unwrap();
    ns.insert("prod:10", "v").unwrap();
    assert_eq!(ns.invalidate_pattern("prod:?"), 1);
    let mut keys = ns.keys("*");
    keys.sort();
    assert_eq!(
        keys,
        vec![bytes::Bytes::from("geo:17"), bytes::Bytes::from("prod:10")]
    );
    assert_eq!(ns.invalidate_tag("all"), 1);

    let published: Vec<Invalidation> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    let targets: Vec<&InvalidationTarget> = published.iter().map(|i| &i.target).collect();
    assert_eq!(
        targets,
        vec![
            &InvalidationTarget::Key("prod:3".into()),
            &InvalidationTarget::Key("prod:3".into()),
            &InvalidationTarget::Tag("shoes".into()),
            &InvalidationTarget::Pattern("prod:?".into()),
            &InvalidationTarget::Tag("all".into()),
        ]
    );
    assert!(published.iter().all(|i| i.namespace == "catalog"));
    let causes = causes.lock().unwrap();
    assert_eq!(causes.len(), 5);
    assert!(causes.iter().all(|(_, c)| *c == RemovalCause::Invalidated));
    assert_eq!(ns.stats().invalidated, 5);
}

#[test]
fn applying_a_remote_invalidation_drops_the_same_entries() {
    let a = Cache::new();
    let b = Cache::new();
    for c in [&a, &b] {
        let ns = c.default_namespace();
        ns.insert("session:1", "x").unwrap();
        ns.insert("session:2", "y").unwrap();
        ns.insert("cart:1", "z").unwrap();
    }
    let mut feed = a.invalidations();
    a.default_namespace().invalidate_pattern("session:*");
    let inv = feed.try_recv().unwrap();
    assert_eq!(b.apply_invalidation(&inv), 2);
    assert_eq!(
        b.default_namespace().keys("*"),
        vec![bytes::Bytes::from("cart:1")]
    );
}

#[test]
fn business_events_on_a_topic_invalidate() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    let orders = db.log().topic_or_create("stock-changes").unwrap();
    let products = db
        .cache()
        .create_namespace("products", NamespaceConfig::default())
        .unwrap();
    products.insert("sku-1", "10 left").unwrap();
    products.insert("sku-2", "3 left").unwrap();
    let feed = db
        .invalidate_on("stock-changes", |r| {
            let sku = r.key.clone().unwrap_or_default();
            vec![Invalidation::new("products", InvalidationTarget::Key(sku))]
        })
        .unwrap();
    orders
        .append(Message::new("sold 1").with_key("sku-2"))
        .unwrap();
    feed.run_once().unwrap();
    assert!(products.get("sku-2").is_none());
    assert_eq!(products.get("sku-1").as_deref(), Some(&b"10 left"[..]));
}
