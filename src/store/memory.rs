//! An in-memory [`Store`] for tests and examples, with a switch that makes it fail like a
//! database that is down.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use super::{Store, StoreOp, check_table};
use crate::error::StoreError;

/// A [`Store`] held in memory (nothing survives the process).
///
/// ```
/// use quipu::{MemoryStore, Store};
///
/// let store = MemoryStore::new();
/// store.put("products", b"sku-1", b"arroz")?;
/// assert_eq!(store.get("products", b"sku-1")?.as_deref(), Some(&b"arroz"[..]));
/// # Ok::<(), quipu::StoreError>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<BTreeMap<String, BTreeMap<Bytes, Bytes>>>,
    down: AtomicBool,
    applies: AtomicU64,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail with [`StoreError::Backend`] (`true`) or succeed again (`false`),
    /// as a database that went down and came back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Number of successful `apply` calls (batches), to see how writes were grouped.
    #[must_use]
    pub fn applies(&self) -> u64 {
        self.applies.load(Ordering::SeqCst)
    }

    /// Every entry of `table`, in key order.
    #[must_use]
    pub fn dump(&self, table: &str) -> Vec<(Bytes, Bytes)> {
        self.tables.lock().get(table).map_or_else(Vec::new, |t| {
            t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        })
    }

    fn check_up(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("memory store is down".to_owned()));
        }
        Ok(())
    }
}

impl Store for MemoryStore {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        self.check_up()?;
        Ok(self
            .tables
            .lock()
            .get(table)
            .and_then(|t| t.get(key).cloned()))
    }

    fn range(
        &self,
        table: &str,
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        self.check_up()?;
        let tables = self.tables.lock();
        let Some(t) = tables.get(table) else {
            return Ok(Vec::new());
        };
        Ok(t.range(Bytes::copy_from_slice(start)..)
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        self.check_up()?;
        for op in ops {
            check_table(op.table())?;
        }
        let mut tables = self.tables.lock();
        for op in ops {
            match op {
                StoreOp::Put { table, key, value } => {
                    tables
                        .entry(table.clone())
                        .or_default()
                        .insert(key.clone(), value.clone());
                }
                StoreOp::Delete { table, key } => {
                    if let Some(t) = tables.get_mut(table) {
                        t.remove(key);
                    }
                }
            }
        }
        self.applies.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
