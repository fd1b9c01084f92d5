//! `landfall models pull`: every file of the selected manifest entries into
//! `<models dir>/<name>/<path>`, verified. A branch or tag is resolved to its commit once. Each
//! file is checked against the sha256 the manifest pins, else the one an earlier pull of the same
//! commit recorded, else the content hash the Hub reports for it ([`super::reported`]). A file is
//! written to `<models dir>/.partial/<hash>` first (named by its content, so a partial file is only
//! ever resumed into the file it was started for), checked, and renamed into place, so a model
//! directory never holds a half-written or unverified file. A file already in place with the
//! right content is left alone; when all files are in place `<name>/landfall-models.json`
//! records the commit, the verified sha256 of every file and the quantization the loader should
//! apply.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use super::installed::{self, Installed};
use super::manifest::{is_commit, Manifest, ModelEntry, PinnedFile, PinnedModel};
use super::partial::{git_blob_id_of, hash_file, place, PartialFile, MAX_GIT_BLOB};
use super::progress::Progress;
use super::reported::{reported, ContentHash};
use super::revision::resolve;
use super::transfer::{Fetch, Received, Sink};
use super::{Hub, HubError};

/// The directory under the models dir that holds unfinished downloads.
pub const PARTIAL_DIR: &str = ".partial";

/// What a pull did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PullSummary {
    pub models: usize,
    /// Files fetched (wholly or the rest of a partial file).
    pub downloaded: usize,
    /// Bytes those files have.
    pub downloaded_bytes: u64,
    /// Files that were already in place with the right content.
    pub present: usize,
}

/// How one entry is pulled.
#[derive(Debug, Clone, Copy)]
pub struct EntryOptions<'a> {
    /// Resolve this instead of the entry's revision (`pin --revision`); a recorded commit is
    /// then not reused.
    pub revision: Option<&'a str>,
    /// Check against the manifest's sha256s (`pin` re-learns them from the Hub instead).
    pub manifest_hashes: bool,
}

impl Default for EntryOptions<'_> {
    fn default() -> Self {
        Self {
            revision: None,
            manifest_hashes: true,
        }
    }
}

/// The content one file must have, and who says so (for messages).
struct Expected {
    size: u64,
    hash: ContentHash,
    from: &'static str,
}

/// Pulls the models `only` names (all when empty) from `manifest` into `models_dir`.
pub async fn pull(
    hub: &Hub,
    manifest: &Manifest,
    only: &[String],
    models_dir: &Path,
    progress: Progress,
) -> Result<PullSummary, HubError> {
    let mut summary = PullSummary::default();
    for model in manifest.select(only)? {
        let options = EntryOptions::default();
        pull_entry(hub, model, options, models_dir, progress, &mut summary).await?;
    }
    // Only our own directory, and only when nothing is left in it to resume.
    let _ = fs::remove_dir(models_dir.join(PARTIAL_DIR));
    Ok(summary)
}

/// Pulls one entry; returns its commit and the verified files.
pub async fn pull_entry(
    hub: &Hub,
    model: &ModelEntry,
    options: EntryOptions<'_>,
    models_dir: &Path,
    progress: Progress,
    summary: &mut PullSummary,
) -> Result<PinnedModel, HubError> {
    let dir = models_dir.join(&model.name);
    let wanted = options.revision.unwrap_or(&model.revision);
    let recorded = installed::read(&dir).filter(|i| i.repo == model.repo);
    let commit = if is_commit(wanted) {
        wanted.to_string()
    } else {
        match recorded.as_ref().filter(|i| {
            options.revision.is_none() && i.requested_revision.as_deref() == Some(wanted)
        }) {
            Some(i) => i.revision.clone(),
            None => {
                let commit = resolve(hub, &model.name, &model.repo, wanted, progress).await?;
                progress.note(&format!("{}: {wanted} is commit {commit}", model.name));
                commit
            }
        }
    };
    let known: HashMap<String, PinnedFile> = recorded
        .iter()
        .filter(|i| i.revision == commit)
        .flat_map(|i| i.files.iter().map(|f| (f.path.clone(), f.clone())))
        .collect();
    let mut files = Vec::with_capacity(model.files.len());
    for file in &model.files {
        let label = format!("{}/{}", model.name, file.path);
        let url = hub.file_url(&model.repo, &commit, &file.path);
        let pinned = match (&file.sha256, file.size) {
            (Some(sha), Some(size)) if options.manifest_hashes => Some((sha.clone(), size)),
            _ => None,
        };
        let expected = match (pinned, known.get(&file.path)) {
            (Some((sha, size)), _) => Expected {
                size,
                hash: ContentHash::Sha256(sha),
                from: "the manifest",
            },
            (None, Some(k)) => Expected {
                size: k.size,
                hash: ContentHash::Sha256(k.sha256.clone()),
                from: "the earlier pull",
            },
            (None, None) => {
                let r = reported(hub, &label, &url).await?;
                Expected {
                    size: r.size,
                    hash: r.hash,
                    from: "the Hub",
                }
            }
        };
        let target = dir.join(&file.path);
        let sha256 = pull_file(
            hub, &label, &url, &expected, &target, models_dir, progress, summary,
        )
        .await?;
        files.push(PinnedFile {
            path: file.path.clone(),
            sha256,
            size: expected.size,
        });
    }
    installed::write(
        &dir,
        &Installed {
            name: model.name.clone(),
            repo: model.repo.clone(),
            revision: commit.clone(),
            requested_revision: (!is_commit(wanted)).then(|| wanted.to_string()),
            quant: model.quant.to_string(),
            files: files.clone(),
            written_by: concat!("landfall ", env!("CARGO_PKG_VERSION")).to_string(),
        },
    )?;
    summary.models += 1;
    Ok(PinnedModel {
        name: model.name.clone(),
        commit,
        files,
    })
}

/// Puts one file in place (or finds it there); returns its sha256.
#[allow(clippy::too_many_arguments)]
async fn pull_file(
    hub: &Hub,
    label: &str,
    url: &str,
    expected: &Expected,
    target: &Path,
    models_dir: &Path,
    progress: Progress,
    summary: &mut PullSummary,
) -> Result<String, HubError> {
    if expected.hash.is_git_blob() && expected.size > MAX_GIT_BLOB {
        return Err(fetch_error(
            label,
            url,
            format!(
                "{} reports {} bytes for a file kept in git; refusing to hash that much",
                expected.from, expected.size
            ),
        ));
    }
    if let Some(sha256) = in_place(target, expected, label, progress)? {
        summary.present += 1;
        return Ok(sha256);
    }
    let partial_dir = models_dir.join(PARTIAL_DIR);
    fs::create_dir_all(&partial_dir).map_err(|e| HubError::io(&partial_dir, e))?;
    let partial = partial_dir.join(expected.hash.hex());
    let mut sink = PartialFile::open(&partial, expected.size)?;
    let mut received = sink.received.clone();
    // Bytes left by an earlier run get one chance: if the whole does not match, they may be
    // what was wrong, so the file is fetched once more from its start.
    let mut resumed = received.len > 0;
    let fetch = Fetch {
        hub,
        label,
        url,
        expected_size: Some(expected.size),
    };
    let (bar, sha256) = loop {
        let mut bar = progress.file(label, "downloading", Some(expected.size));
        if let Err(e) = fetch.run(&mut received, &mut sink, &mut bar).await {
            bar.abandon();
            return Err(e);
        }
        sink.flush()?;
        let got = content_hash(&expected.hash, &received, &partial)?;
        if got == expected.hash.hex() {
            break (bar, received.sha256_hex());
        }
        bar.abandon();
        if resumed {
            progress.note(&format!(
                "{label}: the resumed download does not match its hash; starting it over"
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
            label,
            url,
            format!(
                "{} mismatch: {} says {}, the download has {got}; the download was deleted",
                expected.hash.kind(),
                expected.from,
                expected.hash.hex()
            ),
        ));
    };
    sink.finish()?;
    place(&partial, target)?;
    bar.finish("downloaded and verified");
    summary.downloaded += 1;
    summary.downloaded_bytes += expected.size;
    Ok(sha256)
}

/// The hash of the kind `expected` is, of what was received (into `partial`).
fn content_hash(
    expected: &ContentHash,
    received: &Received,
    partial: &Path,
) -> Result<String, HubError> {
    match expected {
        ContentHash::Sha256(_) => Ok(received.sha256_hex()),
        ContentHash::GitBlob(_) => git_blob_id_of(partial),
    }
}

fn fetch_error(label: &str, url: &str, reason: String) -> HubError {
    HubError::Download {
        file: label.to_string(),
        url: url.to_string(),
        reason,
    }
}

/// The sha256 of `target` when it already holds the expected content. Only a file of the right
/// size is hashed.
fn in_place(
    target: &Path,
    expected: &Expected,
    label: &str,
    progress: Progress,
) -> Result<Option<String>, HubError> {
    match fs::metadata(target) {
        Ok(meta) if meta.is_file() && meta.len() == expected.size => {}
        Ok(_) => {
            progress.note(&format!(
                "{label}: differs from what {} says; downloading it again",
                expected.from
            ));
            return Ok(None);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(HubError::io(target, e)),
    }
    let mut bar = progress.file(label, "verifying", Some(expected.size));
    let received = hash_file(target, expected.size, &mut |n| bar.advance(n))?;
    let got = match &expected.hash {
        ContentHash::Sha256(_) => received.sha256_hex(),
        ContentHash::GitBlob(_) => git_blob_id_of(target)?,
    };
    if got == expected.hash.hex() {
        bar.finish("already present");
        Ok(Some(received.sha256_hex()))
    } else {
        bar.abandon();
        progress.note(&format!(
            "{label}: differs from what {} says; downloading it again",
            expected.from
        ));
        Ok(None)
    }
}
