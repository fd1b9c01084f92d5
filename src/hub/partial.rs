//! Files on their way into a models directory: the partial file a download appends to (resumed
//! across runs, named by the content it must end up with), hashing what is on disk, and the
//! atomic move into place.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::reported::git_blob_id;
use super::transfer::{Received, Sink};
use super::HubError;

/// Reads and hashes in blocks of this size (existing files, partial files).
const READ_BLOCK: usize = 1 << 20;

/// Git blob ids are only checked on files kept in git itself, which the Hub keeps small; a file
/// this large is read whole to hash it no further.
pub const MAX_GIT_BLOB: u64 = 64 << 20;

/// Hashes the first `limit` bytes of `path`, reporting progress as it reads.
pub fn hash_file(
    path: &Path,
    limit: u64,
    on_read: &mut dyn FnMut(u64),
) -> Result<Received, HubError> {
    let file = File::open(path).map_err(|e| HubError::io(path, e))?;
    let mut reader = file.take(limit);
    let mut received = Received::default();
    let mut block = vec![0u8; READ_BLOCK];
    loop {
        let n = reader.read(&mut block).map_err(|e| HubError::io(path, e))?;
        if n == 0 {
            return Ok(received);
        }
        received.add(&block[..n]);
        on_read(n as u64);
    }
}

/// The git blob id of the file at `path` (at most [`MAX_GIT_BLOB`] bytes).
pub fn git_blob_id_of(path: &Path) -> Result<String, HubError> {
    let len = fs::metadata(path).map_err(|e| HubError::io(path, e))?.len();
    if len > MAX_GIT_BLOB {
        return Err(HubError::io(
            path,
            std::io::Error::other(format!("{len} bytes is too large for a git blob")),
        ));
    }
    let bytes = fs::read(path).map_err(|e| HubError::io(path, e))?;
    Ok(git_blob_id(&bytes))
}

/// The partial file a download appends to.
pub struct PartialFile {
    path: PathBuf,
    out: BufWriter<File>,
    /// What the file held when opened: the start of the download being resumed.
    pub received: Received,
}

impl PartialFile {
    /// Opens `path` to append to, hashing what an earlier run left there; more than `size`
    /// bytes cannot be the start of the file, so such a file is emptied.
    pub fn open(path: &Path, size: u64) -> Result<Self, HubError> {
        let io = |e| HubError::io(path, e);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let received = if len > size {
            file.set_len(0).map_err(io)?;
            Received::default()
        } else if len > 0 {
            hash_file(path, len, &mut |_| {})?
        } else {
            Received::default()
        };
        file.seek(SeekFrom::Start(received.len)).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(READ_BLOCK, file),
            received,
        })
    }

    /// Makes the bytes durable before the rename, so a crash cannot leave a short file in place.
    pub fn finish(mut self) -> Result<(), HubError> {
        self.flush()?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| HubError::io(&self.path, e))
    }
}

impl Sink for PartialFile {
    fn write(&mut self, bytes: &[u8]) -> Result<(), HubError> {
        self.out
            .write_all(bytes)
            .map_err(|e| HubError::io(&self.path, e))
    }

    fn restart(&mut self) -> Result<(), HubError> {
        let io = |e| HubError::io(&self.path, e);
        self.out.flush().map_err(io)?;
        let file = self.out.get_mut();
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), HubError> {
        self.out.flush().map_err(|e| HubError::io(&self.path, e))
    }
}

/// Moves a verified download to `target` atomically (a reader sees the old file or the new one).
pub fn place(partial: &Path, target: &Path) -> Result<(), HubError> {
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
    }
    match fs::rename(partial, target) {
        Ok(()) => Ok(()),
        // The model directory is another filesystem (a symlink to a bigger disk): copy next to
        // the target first, so the final step is still a rename.
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            let staging = staging_path(target);
            fs::copy(partial, &staging).map_err(|e| HubError::io(&staging, e))?;
            fs::rename(&staging, target).map_err(|e| HubError::io(target, e))?;
            fs::remove_file(partial).map_err(|e| HubError::io(partial, e))
        }
        Err(e) => Err(HubError::io(target, e)),
    }
}

/// A sibling of `target` to write before renaming over it.
pub fn staging_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".landfall-tmp");
    target.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_file_resumes_with_its_hash_and_an_overlong_one_is_emptied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p");
        fs::write(&path, b"abc").expect("write");
        let mut partial = PartialFile::open(&path, 6).expect("open");
        assert_eq!(partial.received.len, 3);
        let mut received = partial.received.clone();
        partial.write(b"def").expect("write");
        received.add(b"def");
        partial.finish().expect("finish");
        assert_eq!(fs::read(&path).expect("read"), b"abcdef");
        let mut whole = Received::default();
        whole.add(b"abcdef");
        assert_eq!(received.sha256_hex(), whole.sha256_hex());

        let partial = PartialFile::open(&path, 4).expect("open");
        assert_eq!(partial.received.len, 0);
        drop(partial);
        assert_eq!(fs::metadata(&path).expect("meta").len(), 0);
    }

    #[test]
    fn place_creates_parents_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let partial = dir.path().join("part");
        let target = dir.path().join("m/sub/file.bin");
        fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        fs::write(&target, b"old").expect("write");
        fs::write(&partial, b"new").expect("write");
        place(&partial, &target).expect("place");
        assert_eq!(fs::read(&target).expect("read"), b"new");
        assert!(!partial.exists());
    }
}
