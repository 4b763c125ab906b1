//! A marketplace's cache: a product catalog read through from the store (write-through),
//! user sessions that idle out, a critical namespace of business rules that survives restarts
//! (snapshot), invalidation by tag and by a stock-change event, and warming scheduled before
//! the lunchtime peak in Ecuador's time zone. Run with
//! `cargo run --example catalog [DATA_DIR]`.

use std::time::Duration;

use bytes::Bytes;
use quipu::{
    EntryOptions, Invalidation, InvalidationTarget, Message, NamespaceConfig, Persistence, Quipu,
    Schedule,
};

fn main() -> Result<(), quipu::Error> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./quipu-data".to_owned());
    let db = Quipu::open(&dir)?;
    let cache = db.cache();

    let products = cache.create_namespace(
        "products",
        NamespaceConfig::default()
            .with_max_bytes(32 << 20)
            .with_ttl(Duration::from_secs(600))
            .with_persistence(Persistence::WriteThrough),
    )?;
    let sessions = cache.create_namespace(
        "sessions",
        NamespaceConfig::default()
            .with_max_bytes(16 << 20)
            .with_tti(Duration::from_secs(30 * 60)),
    )?;
    let rules = cache.create_namespace(
        "rules",
        NamespaceConfig::default().with_persistence(Persistence::Snapshot),
    )?;
    println!("restored: {:?}", cache.snapshot_reports());

    // Write-through: the store (redb in DATA_DIR/store.redb) has it before the call returns.
    for (sku, name, tag) in [
        ("sku-1", "arroz 1kg", "groceries"),
        ("sku-2", "cafe lojano 500g", "groceries"),
        ("sku-3", "sombrero de paja toquilla", "crafts"),
    ] {
        products.insert_with(sku, name, &EntryOptions::default().tag(tag))?;
    }
    sessions.insert("session:ana", r#"{"cart":["sku-1"]}"#)?;
    rules.insert("max-transfer-usd", "5000")?;

    // Cache-aside for what is not cached yet: one load per key however many callers miss it.
    let price = products.get_or_load_blocking("price:sku-2", || {
        Ok::<_, std::io::Error>(Bytes::from_static(b"7.25"))
    })?;
    println!("price of sku-2: {}", String::from_utf8_lossy(&price));

    // Invalidation by tag, and by a business event on a log topic.
    println!(
        "groceries dropped: {}",
        products.invalidate_tag("groceries")
    );
    let stock = db.log().topic_or_create("stock-changes")?;
    let feed = db.invalidate_on("stock-changes", |r| {
        let sku = r.key.clone().unwrap_or_default();
        vec![Invalidation::new("products", InvalidationTarget::Key(sku))]
    })?;
    stock.append(Message::new("sold out").with_key("sku-3"))?;
    feed.run_once()?;
    println!(
        "sku-3 cached after the event: {}",
        products.contains("sku-3")
    );

    // Warm the catalog from the store at 11:30 on weekdays, Guayaquil time.
    let before_lunch = Schedule::cron("30 11 * * 1-5", "America/Guayaquil")?;
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(0);
    println!(
        "next warming at {:?} (Unix ms)",
        before_lunch.next_after(now_ms)
    );
    cache.schedule_warming(before_lunch, &products, |ns| {
        let _ = ns.warm_from_store(10_000);
    });
    println!("warmed now: {}", products.warm_from_store(10_000)?);

    for _ in 0..9 {
        let _ = products.get("sku-1");
    }
    let _ = products.get("sku-404");
    let s = products.stats();
    println!(
        "products: {} entries, {} bytes, hit ratio {:.0}%, {} loads",
        s.entries,
        s.bytes,
        s.hit_ratio() * 100.0,
        s.loads
    );
    Ok(())
}
