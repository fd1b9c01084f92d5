//! `landfall models pull`: every file of the selected manifest entries into
//! `<models dir>/<name>/<path>`, verified. A file is written to `<models dir>/.partial/<sha256>`
//! first (named by its content, so a partial file is only ever resumed into the file it was
//! started for), checked for size and sha256, and renamed into place, so a model directory never
//! holds a half-written or unverified file. A file already in place with the right hash is left
//! alone; when all files are in place `<name>/landfall-models.json` records what was installed
//! and the quantization the loader should apply.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::manifest::{Manifest, ModelEntry, PinnedFile, STATE_FILE};
use super::progress::Progress;
use super::transfer::{Fetch, Received, Sink};
use super::{Hub, HubError};

/// The directory under the models dir that holds unfinished downloads.
pub const PARTIAL_DIR: &str = ".partial";

/// Reads and hashes in blocks of this size (existing files, partial files).
const READ_BLOCK: usize = 1 << 20;

/// What a pull did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PullSummary {
    pub models: usize,
    /// Files fetched (wholly or the rest of a partial file).
    pub downloaded: usize,
    /// Bytes those files have.
    pub downloaded_bytes: u64,
    /// Files that were already in place with the right sha256.
    pub present: usize,
}

/// `landfall-models.json`: what `pull` installed, for the loader and for people.
#[derive(Debug, Serialize)]
struct InstalledState<'a> {
    name: &'a str,
    repo: &'a str,
    revision: &'a str,
    /// The quantization the loader applies (`--quant` / the config may override it).
    quant: String,
    files: &'a [PinnedFile],
    /// Which landfall wrote this, should the format ever change.
    written_by: &'static str,
}

/// Pulls the models `only` names (all when empty) from `manifest` into `models_dir`. Every
/// selected entry must be pinned; that is checked before anything is downloaded.
pub async fn pull(
    hub: &Hub,
    manifest: &Manifest,
    only: &[String],
    models_dir: &Path,
    progress: Progress,
) -> Result<PullSummary, HubError> {
    let selected = manifest.select(only)?;
    let plans = selected
        .iter()
        .map(|m| Ok((*m, m.require_pinned(&manifest.source)?)))
        .collect::<Result<Vec<_>, HubError>>()?;
    let mut summary = PullSummary::default();
    for (model, files) in plans {
        for file in &files {
            pull_file(hub, model, file, models_dir, progress, &mut summary).await?;
        }
        write_state(&models_dir.join(&model.name), model, &files)?;
        summary.models += 1;
    }
    // Only our own directory, and only when nothing is left in it to resume.
    let _ = fs::remove_dir(models_dir.join(PARTIAL_DIR));
    Ok(summary)
}

async fn pull_file(
    hub: &Hub,
    model: &ModelEntry,
    file: &PinnedFile,
    models_dir: &Path,
    progress: Progress,
    summary: &mut PullSummary,
) -> Result<(), HubError> {
    let label = format!("{}/{}", model.name, file.path);
    let target = models_dir.join(&model.name).join(&file.path);
    if is_in_place(&target, file, &label, progress)? {
        summary.present += 1;
        return Ok(());
    }
    let partial_dir = models_dir.join(PARTIAL_DIR);
    fs::create_dir_all(&partial_dir).map_err(|e| HubError::io(&partial_dir, e))?;
    let partial = partial_dir.join(&file.sha256);
    let url = hub.file_url(&model.repo, &model.revision, &file.path);
    let mut sink = PartialFile::open(&partial, file.size)?;
    let mut received = sink.received.clone();
    // Bytes left by an earlier run get one chance: if the whole does not match, they may be
    // what was wrong, so the file is fetched once more from its start.
    let mut resumed = received.len > 0;
    let fetch = Fetch {
        hub,
        label: &label,
        url: &url,
        expected_size: Some(file.size),
    };
    let bar = loop {
        let mut bar = progress.file(&label, "downloading", Some(file.size));
        if let Err(e) = fetch.run(&mut received, &mut sink, &mut bar).await {
            bar.abandon();
            return Err(e);
        }
        let sha256 = received.sha256_hex();
        if sha256 == file.sha256 {
            break bar;
        }
        bar.abandon();
        if resumed {
            progress.note(&format!(
                "{label}: the resumed download does not match its sha256; starting it over"
            ));
            sink.restart()?;
            received = Received::default();
            resumed = false;
            continue;
        }
        drop(sink);
        // Complete but wrong: resuming it could never succeed.
        let _ = fs::remove_file(&partial);
        return Err(fetch_error(
            &label,
            &url,
            format!(
                "sha256 mismatch: expected {}, got {sha256}; the download was deleted",
                file.sha256
            ),
        ));
    };
    sink.finish()?;
    place(&partial, &target)?;
    bar.finish("downloaded and verified");
    summary.downloaded += 1;
    summary.downloaded_bytes += file.size;
    Ok(())
}

fn fetch_error(label: &str, url: &str, reason: String) -> HubError {
    HubError::Download {
        file: label.to_string(),
        url: url.to_string(),
        reason,
    }
}

/// Whether `target` already holds the pinned content. Only a file of the right size is hashed.
fn is_in_place(
    target: &Path,
    file: &PinnedFile,
    label: &str,
    progress: Progress,
) -> Result<bool, HubError> {
    match fs::metadata(target) {
        Ok(meta) if meta.is_file() && meta.len() == file.size => {}
        Ok(_) => {
            progress.note(&format!(
                "{label}: differs from the manifest; downloading it again"
            ));
            return Ok(false);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(HubError::io(target, e)),
    }
    let mut bar = progress.file(label, "verifying", Some(file.size));
    let received = hash_file(target, file.size, &mut |n| bar.advance(n))?;
    if received.sha256_hex() == file.sha256 {
        bar.finish("already present");
        Ok(true)
    } else {
        bar.abandon();
        progress.note(&format!(
            "{label}: sha256 differs from the manifest; downloading it again"
        ));
        Ok(false)
    }
}

/// Hashes the first `limit` bytes of `path`, reporting progress as it reads.
fn hash_file(path: &Path, limit: u64, on_read: &mut dyn FnMut(u64)) -> Result<Received, HubError> {
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

/// The partial file a download appends to.
struct PartialFile {
    path: PathBuf,
    out: BufWriter<File>,
    /// What the file held when opened: the start of the download being resumed.
    received: Received,
}

impl PartialFile {
    /// Opens `path` to append to, hashing what an earlier run left there; more than `size`
    /// bytes cannot be the start of the file, so such a file is emptied.
    fn open(path: &Path, size: u64) -> Result<Self, HubError> {
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
    fn finish(mut self) -> Result<(), HubError> {
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
fn place(partial: &Path, target: &Path) -> Result<(), HubError> {
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
fn staging_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".landfall-tmp");
    target.with_file_name(name)
}

/// Writes `landfall-models.json` into the model directory, atomically.
fn write_state(dir: &Path, model: &ModelEntry, files: &[PinnedFile]) -> Result<(), HubError> {
    let state = InstalledState {
        name: &model.name,
        repo: &model.repo,
        revision: &model.revision,
        quant: model.quant.to_string(),
        files,
        written_by: concat!("landfall ", env!("CARGO_PKG_VERSION")),
    };
    let mut text = serde_json::to_string_pretty(&state).map_err(|e| {
        HubError::io(
            dir.join(STATE_FILE),
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    text.push('\n');
    fs::create_dir_all(dir).map_err(|e| HubError::io(dir, e))?;
    let target = dir.join(STATE_FILE);
    let staging = staging_path(&target);
    fs::write(&staging, text).map_err(|e| HubError::io(&staging, e))?;
    fs::rename(&staging, &target).map_err(|e| HubError::io(&target, e))
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
