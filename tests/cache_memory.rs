//! The per-entry overhead the budget charges ([`quipu::ENTRY_OVERHEAD`]) covers what the cache
//! really allocates per entry beyond the key and value bytes, measured with a counting
//! allocator over many entries (slab slots, hash-table index, ghost queue, key boxes).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use quipu::{Cache, ENTRY_OVERHEAD, NamespaceConfig};

struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call forwards to the system allocator with the caller's own arguments; the
// counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn entry_overhead_covers_what_is_allocated() {
    const N: usize = 200_000;
    let cache = Cache::new();
    let ns = cache
        .create_namespace("m", NamespaceConfig::default().with_max_bytes(1 << 34))
        .unwrap();
    let keys: Vec<String> = (0..N).map(|i| format!("user:{i:016}")).collect();
    let mut values: Vec<Bytes> = (0..N).map(|i| Bytes::from(vec![i as u8; 64])).collect();
    let key_bytes: usize = keys.iter().map(String::len).sum();
    let before = LIVE.load(Ordering::Relaxed);
    for (k, v) in keys.iter().zip(values.iter_mut()) {
        // Moved in: the value's buffer was allocated before `before`, by the caller.
        ns.insert(k, std::mem::take(v)).unwrap();
    }
    // What the cache allocated: key boxes, slab chunks, hash tables.
    let grown = LIVE.load(Ordering::Relaxed) - before;
    let beyond = (grown as f64 - key_bytes as f64) / N as f64;
    // The key's handle (17 B, pointing to its box: 21-byte keys are too long to be inline, the
    // costlier case) and the value's `Bytes` (32 B) are in the slot.
    println!(
        "per entry: {beyond:.1} bytes beyond the key and value bytes, {:.1} beyond the key and \
         value handles; the budget charges {ENTRY_OVERHEAD}",
        beyond - 49.0
    );
    assert!(
        beyond <= ENTRY_OVERHEAD as f64,
        "measured {beyond:.1} bytes per entry, the budget charges {ENTRY_OVERHEAD}"
    );
    assert_eq!(ns.len(), N);
}
