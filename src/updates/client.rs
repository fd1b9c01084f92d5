//! The device's TUF client: the repository at a URL or directory, loaded and verified by tough
//! against the trusted root (signatures, thresholds, expiry, and versions against what its
//! datastore saw before, so metadata rollback is caught across restarts too); the adapter
//! versions it offers; and target files fetched with their lengths and hashes enforced while
//! they stream.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tough::{ExpirationEnforcement, Repository, RepositoryLoader, TargetName};
use url::Url;

use super::error::{Code, UpdateError};
use super::names::{self, TargetPath};
use super::transport::RepoTransport;
use crate::util::hex;

/// Most bytes a file of a bundle may have: a LoRA adapter of a BERT base is megabytes.
pub fn max_len(file: &str) -> u64 {
    match file {
        names::ADAPTER_WEIGHTS => 1 << 30,
        names::CANARY => 64 << 20,
        _ => 1 << 20,
    }
}

/// Where a repository's metadata and targets are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub metadata: Url,
    pub targets: Url,
}

impl Source {
    /// `https://host/path`, `http://...`, `file:///dir` or a plain directory path.
    pub fn parse(repository: &str) -> Result<Self, UpdateError> {
        let bad =
            |why: String| UpdateError::local(format!("updates.repository {repository:?}: {why}"));
        let base = if repository.contains("://") {
            Url::parse(repository).map_err(|e| bad(e.to_string()))?
        } else {
            let path = std::path::absolute(repository).map_err(|e| bad(e.to_string()))?;
            Url::from_directory_path(&path).map_err(|()| bad("not a directory path".into()))?
        };
        if !matches!(base.scheme(), "http" | "https" | "file") {
            return Err(bad(
                "expected an http(s):// or file:// URL, or a directory".into()
            ));
        }
        // Joining needs a trailing slash, or the last segment would be replaced.
        let mut base = base;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let join = |p: &str| base.join(p).map_err(|e| bad(e.to_string()));
        Ok(Self {
            metadata: join("metadata/")?,
            targets: join("targets/")?,
        })
    }
}

/// Loads and verifies the repository. `datastore`: where the trusted metadata of earlier loads
/// is kept (created if missing).
pub async fn load(
    source: &Source,
    root: &[u8],
    datastore: &Path,
) -> Result<Repository, UpdateError> {
    std::fs::create_dir_all(datastore)
        .map_err(|e| UpdateError::local(format!("creating {}: {e}", datastore.display())))?;
    let transport = RepoTransport::new(source.targets.clone())?;
    let repo = RepositoryLoader::new(&root, source.metadata.clone(), source.targets.clone())
        .transport(transport)
        .datastore(datastore)
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .load()
        .await?;
    Ok(repo)
}

/// One version of a classifier's adapter, as the repository lists it.
#[derive(Debug, Clone)]
pub struct Offer {
    pub version: u64,
    /// Its files by name, with the length the metadata gives.
    pub files: BTreeMap<&'static str, (TargetName, u64)>,
    /// sha256 (hex) of its adapter weights, from the metadata.
    pub weights_sha256: Option<String>,
}

/// Every version of `classifier`'s adapter the repository lists, by version. A malformed adapter
/// target anywhere in the repository rejects it all: it is not a repository to take files from.
pub fn offers(repo: &Repository, classifier: &str) -> Result<BTreeMap<u64, Offer>, UpdateError> {
    let mut out: BTreeMap<u64, Offer> = BTreeMap::new();
    for (name, target) in repo.all_targets() {
        // The raw name, as written: `adapters/x/1/../../y` is refused, not resolved.
        let Some(TargetPath {
            classifier: c,
            version,
            file,
        }) = names::parse(name.raw())?
        else {
            continue;
        };
        if c != classifier {
            continue;
        }
        let offer = out.entry(version).or_insert_with(|| Offer {
            version,
            files: BTreeMap::new(),
            weights_sha256: None,
        });
        if file == names::ADAPTER_WEIGHTS {
            offer.weights_sha256 = Some(hex(&target.hashes.sha256));
        }
        offer.files.insert(file, (name.clone(), target.length));
    }
    Ok(out)
}

/// Fetches a target into `dest` (created, fsynced), refusing one whose listed length is over
/// [`max_len`] before a byte is read; tough stops the stream when the bytes run over the listed
/// length or their hash differs. Returns the bytes' sha256.
pub async fn fetch(
    repo: &Repository,
    name: &TargetName,
    listed_len: u64,
    limit: u64,
    dest: &Path,
) -> Result<String, UpdateError> {
    if listed_len > limit {
        return Err(UpdateError::new(
            Code::TooLarge,
            format!(
                "{} is listed at {listed_len} bytes; the device takes at most {limit}",
                name.raw()
            ),
        ));
    }
    let mut stream = repo.read_target(name).await?.ok_or_else(|| {
        UpdateError::new(Code::BadBundle, format!("{} is not listed", name.raw()))
    })?;
    let io = |e: std::io::Error| UpdateError::local(format!("writing {}: {e}", dest.display()));
    let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.sync_all().await.map_err(io)?;
    Ok(hex(&hasher.finalize()))
}

/// A fresh, empty directory for staging under `root`.
pub fn staging_dir(root: &Path, classifier: &str, version: u64) -> Result<PathBuf, UpdateError> {
    let dir = root.join(format!("{classifier}-{version}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| UpdateError::local(format!("clearing {}: {e}", dir.display())))?;
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| UpdateError::local(format!("creating {}: {e}", dir.display())))?;
    Ok(dir)
}
