//! Small metadata files (topic config, producer state, group offsets): a postcard payload in a
//! versioned, CRC-checked envelope, replaced atomically.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::storage::{self, Storage};
use crate::error::LogError;

const MAGIC: u32 = u32::from_le_bytes(*b"QPMT");
/// Version of the envelope and of every payload in it.
pub(crate) const META_VERSION: u32 = 1;

/// Writes `value` to `path` atomically and durably.
pub(crate) fn write<T: Serialize>(
    storage: &dyn Storage,
    path: &Path,
    value: &T,
) -> Result<(), LogError> {
    let payload = postcard::to_allocvec(value).map_err(|e| LogError::Corrupt {
        path: path.to_owned(),
        position: 0,
        reason: format!("cannot encode metadata: {e}"),
    })?;
    let mut out = Vec::with_capacity(payload.len() + 12);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&META_VERSION.to_le_bytes());
    out.extend_from_slice(&super::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    storage::write_atomic(storage, path, &out).map_err(|e| LogError::io(path, e))
}

/// Reads a file written by [`write`]; `Ok(None)` if it does not exist.
pub(crate) fn read<T: DeserializeOwned>(
    storage: &dyn Storage,
    path: &Path,
) -> Result<Option<T>, LogError> {
    if !storage.exists(path) {
        return Ok(None);
    }
    let bytes = storage::read_all(storage, path).map_err(|e| LogError::io(path, e))?;
    decode(&bytes)
        .map(Some)
        .map_err(|(position, reason)| match reason {
            Reason::Newer(found) => LogError::UnsupportedFormat {
                path: path.to_owned(),
                found,
                supported: META_VERSION,
            },
            Reason::Bad(reason) => LogError::Corrupt {
                path: path.to_owned(),
                position,
                reason: reason.to_owned(),
            },
        })
}

enum Reason {
    Newer(u32),
    Bad(&'static str),
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, (u64, Reason)> {
    let word = |i: usize| {
        bytes
            .get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or((i as u64, Reason::Bad("truncated envelope")))
    };
    if word(0)? != MAGIC {
        return Err((0, Reason::Bad("bad magic")));
    }
    let version = word(4)?;
    if version > META_VERSION {
        return Err((4, Reason::Newer(version)));
    }
    let crc = word(8)?;
    let payload = &bytes[12..];
    if super::crc32c(payload) != crc {
        return Err((8, Reason::Bad("crc mismatch")));
    }
    postcard::from_bytes(payload).map_err(|_| (12, Reason::Bad("payload does not decode")))
}
