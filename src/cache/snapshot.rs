//! Snapshots of critical namespaces ([`Persistence::Snapshot`]): written atomically on close
//! (and on demand), restored when the namespace is created. A snapshot that fails any check
//! is reported and skipped whole: never half-loaded.
//!
//! File `<dir>/<namespace>.snapshot`, format version 1 (docs/FORMAT.md):
//! `magic "QSNP" | version u16 LE | reserved u16 | crc32c u32 LE of payload | length u64 LE |
//! payload`, the payload being postcard of [`Body`].

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Cache;
use super::namespace::Namespace;
use super::shard::Expiry;
use crate::config::Persistence;
use crate::error::{CacheError, Error};

const MAGIC: &[u8; 4] = b"QSNP";
const VERSION: u16 = 1;
const HEADER: usize = 20;

#[derive(Deserialize)]
struct Body {
    namespace: String,
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    key: Vec<u8>,
    value: Vec<u8>,
    /// Absolute deadline in clock milliseconds, `u64::MAX` for none.
    expires_at: u64,
    tags: Vec<String>,
}

/// [`Body`] as it is written, borrowing from the entries taken out of the shards.
#[derive(Serialize)]
struct BodyRef<'a> {
    namespace: &'a str,
    entries: Vec<EntryRef<'a>>,
}

/// [`Entry`] as it is written.
#[derive(Serialize)]
struct EntryRef<'a> {
    key: &'a [u8],
    value: &'a [u8],
    expires_at: u64,
    tags: Vec<&'a str>,
}

/// What happened to one namespace's snapshot when it was restored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotReport {
    /// The snapshot was loaded.
    Restored {
        /// The namespace.
        namespace: String,
        /// Entries loaded (expired ones are skipped).
        entries: usize,
    },
    /// The snapshot failed a check and was skipped whole; the namespace starts empty.
    Corrupt {
        /// The namespace.
        namespace: String,
        /// The file.
        path: PathBuf,
        /// The check that failed.
        reason: String,
    },
}

fn path_of(dir: &Path, ns: &str) -> PathBuf {
    dir.join(format!("{ns}.snapshot"))
}

fn snap_err(path: &Path, reason: impl ToString) -> CacheError {
    CacheError::Snapshot {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Writes `ns`'s snapshot if it is a snapshot namespace; atomic (temp file, fsync, rename,
/// directory fsync).
pub(crate) fn write(dir: &Path, ns: &Namespace) -> Result<(), CacheError> {
    if ns.config().persistence != Persistence::Snapshot {
        return Ok(());
    }
    let path = path_of(dir, ns.name());
    // Encoded from borrowed keys and values (the same postcard as `Body`): besides the
    // entries taken out of the shards, the payload is the one copy.
    let live = ns.inner.entries();
    let body = BodyRef {
        namespace: ns.name(),
        entries: live
            .iter()
            .map(|e| EntryRef {
                key: &e.key,
                value: &e.value,
                expires_at: e.expires_at,
                tags: e.tags.iter().map(|t| &**t).collect(),
            })
            .collect(),
    };
    let payload = postcard::to_allocvec(&body).map_err(|e| snap_err(&path, e))?;
    drop(body);
    drop(live);
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&crate::log::crc32c(&payload).to_le_bytes());
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    fs::create_dir_all(dir).map_err(|e| snap_err(dir, e))?;
    let tmp = path.with_extension("snapshot.tmp");
    let mut f = File::create(&tmp).map_err(|e| snap_err(&tmp, e))?;
    f.write_all(&header)
        .and_then(|()| f.write_all(&payload))
        .map_err(|e| snap_err(&tmp, e))?;
    f.sync_all().map_err(|e| snap_err(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| snap_err(&path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| snap_err(dir, e))
}

/// Reads and checks a snapshot file; every check passes before anything is returned.
fn read(path: &Path, ns: &str) -> Result<Option<Body>, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    decode(&bytes, ns).map(Some)
}

/// Decodes a snapshot image (also the fuzz entry point).
fn decode(bytes: &[u8], ns: &str) -> Result<Body, String> {
    let header = bytes.get(..HEADER).ok_or("shorter than its header")?;
    if &header[..4] != MAGIC {
        return Err("bad magic".to_owned());
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version != VERSION {
        return Err(format!(
            "format version {version}, this build reads {VERSION}"
        ));
    }
    let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[12..20]);
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| "length overflows")?;
    let payload = &bytes[HEADER..];
    if payload.len() != len {
        return Err(format!(
            "payload is {} bytes, header says {len}",
            payload.len()
        ));
    }
    if crate::log::crc32c(payload) != crc {
        return Err("checksum mismatch".to_owned());
    }
    let body: Body = postcard::from_bytes(payload).map_err(|e| e.to_string())?;
    if body.namespace != ns {
        return Err(format!("snapshot of namespace {:?}", body.namespace));
    }
    Ok(body)
}

/// Checks arbitrary bytes as a snapshot image and returns its entry count; never panics.
#[doc(hidden)]
pub fn decode_for_fuzzing(bytes: &[u8]) -> Result<usize, String> {
    decode(bytes, "fuzz").map(|b| b.entries.len())
}

impl Cache {
    /// Writes the snapshot of every [`Persistence::Snapshot`] namespace now. Calls from
    /// several threads take turns.
    ///
    /// # Errors
    /// [`CacheError::Snapshot`] for the first file that could not be written (the others are
    /// still written); `Ok` when the cache has no snapshot directory.
    pub fn snapshot(&self) -> Result<(), Error> {
        let Some(dir) = &self.inner.snapshot_dir else {
            return Ok(());
        };
        let _turn = self.inner.snapshotting.lock();
        let mut first = None;
        for ns in self.namespaces() {
            if let Err(e) = write(dir, &ns) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), |e| Err(e.into()))
    }

    /// What happened to each snapshot restored since the cache was opened.
    #[must_use]
    pub fn snapshot_reports(&self) -> Vec<SnapshotReport> {
        self.inner.reports.lock().clone()
    }

    pub(crate) fn restore(&self, ns: &Namespace) {
        if ns.config().persistence != Persistence::Snapshot {
            return;
        }
        let Some(dir) = &self.inner.snapshot_dir else {
            return;
        };
        let path = path_of(dir, ns.name());
        let report = match read(&path, ns.name()) {
            Ok(None) => return,
            Ok(Some(body)) => {
                let now = ns.inner.clock.now_millis();
                let mut loaded = 0;
                for e in body.entries {
                    if e.expires_at <= now {
                        continue;
                    }
                    let expiry = Expiry {
                        ttl_deadline: e.expires_at,
                        tti_ms: 0,
                    };
                    let tags: Vec<Arc<str>> =
                        e.tags.iter().map(|t| Arc::from(t.as_str())).collect();
                    let value = bytes::Bytes::from(e.value);
                    if ns.inner.check_weight(&e.key, &value).is_ok() {
                        ns.inner.put_with_expiry(&e.key, value, expiry, &tags, now);
                        loaded += 1;
                    }
                }
                SnapshotReport::Restored {
                    namespace: ns.name().to_owned(),
                    entries: loaded,
                }
            }
            Err(reason) => SnapshotReport::Corrupt {
                namespace: ns.name().to_owned(),
                path,
                reason,
            },
        };
        self.inner.reports.lock().push(report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_borrowed_form_written_reads_back_as_the_body() {
        let tags = ["a", "b"];
        let written = postcard::to_allocvec(&BodyRef {
            namespace: "sessions",
            entries: vec![
                EntryRef {
                    key: b"k1",
                    value: &[0, 255, 7],
                    expires_at: u64::MAX,
                    tags: tags.to_vec(),
                },
                EntryRef {
                    key: b"",
                    value: b"",
                    expires_at: 1_234,
                    tags: vec![],
                },
            ],
        })
        .unwrap();
        let body: Body = postcard::from_bytes(&written).unwrap();
        assert_eq!(body.namespace, "sessions");
        let got: Vec<_> = body
            .entries
            .iter()
            .map(|e| (&e.key[..], &e.value[..], e.expires_at, e.tags.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    &b"k1"[..],
                    &[0, 255, 7][..],
                    u64::MAX,
                    vec!["a".to_owned(), "b".to_owned()]
                ),
                (&b""[..], &b""[..], 1_234, vec![]),
            ]
        );
    }
}
