//! The embedded default store: one redb database file, one writer thread that group-commits
//! the batches of concurrent callers into a single durable transaction.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use ::redb::{Database, ReadableDatabase, TableDefinition, TableError};
use bytes::Bytes;
use parking_lot::Mutex;

use super::{Store, StoreOp, check_table};
use crate::error::StoreError;

/// Most caller batches folded into one redb transaction.
const GROUP_MAX: usize = 256;

type Reply = SyncSender<Result<(), StoreError>>;
/// A caller's batch and where to send its outcome.
type Job = (Vec<StoreOp>, Reply);

/// A [`Store`] in one redb file (by convention `<data>/store.redb`).
///
/// ```
/// use quipu::{RedbStore, Store};
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = RedbStore::open(dir.path().join("store.redb"))?;
/// store.put("sessions", b"u1", b"{\"cart\":3}")?;
/// assert_eq!(store.get("sessions", b"u1")?.as_deref(), Some(&b"{\"cart\":3}"[..]));
/// # Ok::<(), quipu::StoreError>(())
/// ```
#[derive(Debug)]
pub struct RedbStore {
    db: Arc<Database>,
    writer: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn table(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

impl RedbStore {
    /// Opens (or creates) the database file at `path`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the file cannot be opened or is not a redb database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let db = Arc::new(Database::create(path.as_ref()).map_err(backend)?);
        let (tx, rx) = mpsc::channel();
        let writer_db = Arc::clone(&db);
        let thread = std::thread::Builder::new()
            .name("quipu-store".to_owned())
            .spawn(move || write_loop(&writer_db, &rx))
            .map_err(backend)?;
        Ok(Self {
            db,
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the writer thread after it has committed what it was given. Later writes fail
    /// with [`StoreError::Closed`]; reads keep working.
    pub fn close(&self) {
        drop(self.writer.lock().take());
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(db: &Database, rx: &Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let result = commit(db, group.iter().flat_map(|(ops, _)| ops));
        for (_, reply) in group {
            let _ = reply.send(result.clone());
        }
    }
}

fn commit<'a>(db: &Database, ops: impl Iterator<Item = &'a StoreOp>) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    for op in ops {
        match op {
            StoreOp::Put {
                table: t,
                key,
                value,
            } => {
                let mut table = txn.open_table(table(t)).map_err(backend)?;
                table.insert(&key[..], &value[..]).map_err(backend)?;
            }
            StoreOp::Delete { table: t, key } => {
                let mut table = txn.open_table(table(t)).map_err(backend)?;
                table.remove(&key[..]).map_err(backend)?;
            }
        }
    }
    txn.commit().map_err(backend)
}

impl Store for RedbStore {
    fn get(&self, name: &str, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        check_table(name)?;
        let txn = self.db.begin_read().map_err(backend)?;
        let t = match txn.open_table(table(name)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        Ok(t.get(key)
            .map_err(backend)?
            .map(|v| Bytes::copy_from_slice(v.value())))
    }

    fn range(
        &self,
        name: &str,
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        check_table(name)?;
        let txn = self.db.begin_read().map_err(backend)?;
        let t = match txn.open_table(table(name)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(backend(e)),
        };
        let mut out = Vec::new();
        for item in t.range(start..).map_err(backend)?.take(limit) {
            let (k, v) = item.map_err(backend)?;
            out.push((
                Bytes::copy_from_slice(k.value()),
                Bytes::copy_from_slice(v.value()),
            ));
        }
        Ok(out)
    }

    fn apply(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        for op in ops {
            check_table(op.table())?;
        }
        let (reply, done) = mpsc::sync_channel(1);
        {
            let writer = self.writer.lock();
            let tx = writer.as_ref().ok_or(StoreError::Closed)?;
            tx.send((ops.to_vec(), reply))
                .map_err(|_| StoreError::Closed)?;
        }
        done.recv().map_err(|_| StoreError::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_ranges_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let store = RedbStore::open(&path).unwrap();
            for i in (0..10u8).rev() {
                store.put("t", &[i], &[i, i]).unwrap();
            }
            store.delete("t", &[3]).unwrap();
        }
        let store = RedbStore::open(&path).unwrap();
        let all = store.range("t", &[0], 100).unwrap();
        let keys: Vec<u8> = all.iter().map(|(k, _)| k[0]).collect();
        assert_eq!(keys, vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
        assert_eq!(
            store.get("t", &[5]).unwrap().as_deref(),
            Some(&[5u8, 5][..])
        );
        assert_eq!(store.get("missing", b"x").unwrap(), None);
        assert!(matches!(
            store.put("", b"k", b"v"),
            Err(StoreError::InvalidTable(_))
        ));
    }

    #[test]
    fn concurrent_writers_share_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path().join("s.redb")).unwrap());
        let handles: Vec<_> = (0..8u8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..20u8 {
                        store.put("t", &[t, i], &[i]).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(store.range("t", &[], 1000).unwrap().len(), 160);
    }
}
