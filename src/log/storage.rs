//! The file system as the log sees it, behind a small trait so tests can inject failed
//! writes, failed fsyncs, torn tails and a full disk.

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One open file: written at its end or at a position, read at any position.
pub trait StorageFile: Send + Sync + Debug {
    /// Appends all of `data` at the end of the file. On error, part of it may be written.
    fn append(&self, data: &[u8]) -> io::Result<()>;
    /// Writes all of `data` at `pos`, extending the file if it ends before `pos + data.len()`.
    /// On error, part of it may be written. Segments are written this way: their file may
    /// extend past the data with preallocated zeros.
    fn write_at(&self, data: &[u8], pos: u64) -> io::Result<()>;
    /// Writes `parts` one after another from `pos`, as one [`write_at`](Self::write_at) of
    /// their concatenation would. On error, part of them may be written. The default writes
    /// each part in turn; the real file system writes them with one `pwritev`.
    fn write_vectored_at(&self, parts: &[&[u8]], pos: u64) -> io::Result<()> {
        let mut at = pos;
        for part in parts.iter().filter(|p| !p.is_empty()) {
            self.write_at(part, at)?;
            at += part.len() as u64;
        }
        Ok(())
    }
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Flushes the file's data to stable storage.
    fn sync_data(&self) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Cuts (or extends) the file to `len` bytes.
    fn truncate(&self, len: u64) -> io::Result<()>;
}

/// A file system: the operations the log needs on directories and files.
pub trait Storage: Send + Sync + Debug {
    /// Opens a file for writing and reading, creating it if `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Lists the names of a directory's entries.
    fn list(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames a file.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Fsyncs a directory, making creates, renames and removes in it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Whether a path exists.
    fn exists(&self, path: &Path) -> bool;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

#[derive(Debug)]
struct FsFile {
    file: File,
}

impl StorageFile for FsFile {
    fn append(&self, data: &[u8]) -> io::Result<()> {
        // Not `O_APPEND`: Linux's `pwrite` on such a file ignores the position. Each file has
        // one writer at a time (the partition's lock), so the end cannot move meanwhile.
        let mut file = &self.file;
        file.seek(io::SeekFrom::End(0))?;
        file.write_all(data)
    }

    fn write_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        self.file.write_all_at(data, pos)
    }

    fn write_vectored_at(&self, parts: &[&[u8]], pos: u64) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut slices = &mut slices[..];
        let mut at = pos;
        // Drops leading empty parts: a write of nothing is not a short write.
        IoSlice::advance_slices(&mut slices, 0);
        while !slices.is_empty() {
            match rustix::io::pwritev(&self.file, slices, at) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    at += n as u64;
                    IoSlice::advance_slices(&mut slices, n);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.file.read_at(buf, pos)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

impl Storage for FsStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .open(path)?;
        Ok(Arc::new(FsFile { file }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// Reads a whole file through `storage`.
pub(crate) fn read_all(storage: &dyn Storage, path: &Path) -> io::Result<Vec<u8>> {
    let file = storage.open(path, false)?;
    let len = usize::try_from(file.len()?).map_err(io::Error::other)?;
    let mut buf = vec![0; len];
    read_exact_at(file.as_ref(), &mut buf, 0)?;
    Ok(buf)
}

/// Fills `buf` from `pos`, failing with `UnexpectedEof` if the file ends first.
pub(crate) fn read_exact_at(file: &dyn StorageFile, buf: &mut [u8], pos: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Replaces `path` with `data` atomically and durably: write a temporary file, fsync it,
/// rename it over `path`, fsync the directory.
pub(crate) fn write_atomic(storage: &dyn Storage, path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    if storage.exists(&tmp) {
        storage.remove_file(&tmp)?;
    }
    let file = storage.open(&tmp, true)?;
    file.append(data)?;
    file.sync_data()?;
    drop(file);
    storage.rename(&tmp, path)?;
    storage.sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// The temporary name `write_atomic` uses next to `path`.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vectored_write_lands_as_the_concatenation_would() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = FsStorage.open(&dir.path().join("f"), true).expect("open");
        file.write_at(b"0123456789", 0).expect("write");
        // Empty parts first, between and last; a part big enough for a short write.
        let big = vec![b'x'; 3 << 20];
        let parts: [&[u8]; 6] = [b"", b"ab", b"", &big, b"cd", b""];
        file.write_vectored_at(&parts, 4).expect("vectored write");
        let mut expected = b"0123".to_vec();
        for part in parts {
            expected.extend_from_slice(part);
        }
        assert_eq!(file.len().expect("len"), expected.len() as u64);
        let mut read = vec![0; expected.len()];
        read_exact_at(&*file, &mut read, 0).expect("read");
        assert_eq!(read, expected);
        file.write_vectored_at(&[b"", b""], 1)
            .expect("nothing to write");
        assert_eq!(file.len().expect("len"), expected.len() as u64);
    }
}
