//! The durable key-value store: a small [`Store`] trait with redb as the embedded default
//! ([`RedbStore`]) and an in-memory implementation for tests ([`MemoryStore`]).
//!
//! Keys live in named tables (one per cache namespace, one for event-sourcing snapshots …).
//! `apply` is atomic: all its operations land or none do.

mod memory;
mod redb;

pub use self::memory::MemoryStore;
pub use self::redb::RedbStore;

use std::fmt::Debug;

use bytes::Bytes;

use crate::error::StoreError;

/// One write of an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOp {
    /// Sets `key` in `table` to `value`.
    Put {
        /// The table.
        table: String,
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// Removes `key` from `table` (absent keys are fine).
    Delete {
        /// The table.
        table: String,
        /// The key.
        key: Bytes,
    },
}

impl StoreOp {
    /// The table this operation writes.
    #[must_use]
    pub fn table(&self) -> &str {
        match self {
            Self::Put { table, .. } | Self::Delete { table, .. } => table,
        }
    }
}

/// A durable key-value store. Applications plug in their own database by implementing it.
///
/// Implementations must make [`apply`](Store::apply) atomic and durable when it returns `Ok`.
pub trait Store: Send + Sync + Debug + 'static {
    /// Reads one key.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Bytes>, StoreError>;

    /// Reads up to `limit` entries of `table` with `start <= key`, in key order.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    fn range(
        &self,
        table: &str,
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError>;

    /// Applies every operation atomically and durably.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails; then none of the operations took effect.
    fn apply(&self, ops: &[StoreOp]) -> Result<(), StoreError>;

    /// Sets one key.
    ///
    /// # Errors
    /// As [`apply`](Store::apply).
    fn put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.apply(&[StoreOp::Put {
            table: table.to_owned(),
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        }])
    }

    /// Removes one key.
    ///
    /// # Errors
    /// As [`apply`](Store::apply).
    fn delete(&self, table: &str, key: &[u8]) -> Result<(), StoreError> {
        self.apply(&[StoreOp::Delete {
            table: table.to_owned(),
            key: Bytes::copy_from_slice(key),
        }])
    }
}

pub(crate) fn check_table(table: &str) -> Result<(), StoreError> {
    if table.is_empty() || table.len() > 255 {
        return Err(StoreError::InvalidTable(table.to_owned()));
    }
    Ok(())
}
