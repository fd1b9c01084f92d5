//! The operator's side of adapter updates, on tough's repository editor: make a repository and
//! its keys (`init-repo`), add a classifier's adapter as a signed bundle (`publish`), and re-sign
//! the short-lived timestamp (`timestamp`, for cron). The repository is plain files (TUF 1.0,
//! without consistent snapshots) that any static HTTP server can serve:
//! `metadata/{1.root.json, root.json, targets.json, snapshot.json, timestamp.json}` and
//! `targets/adapters/<classifier>/<version>/<file>`.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use tough::editor::signed::SignedRole;
use tough::editor::RepositoryEditor;
use tough::key_source::KeySource;
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root, Signed, Timestamp};
use tough::{ExpirationEnforcement, FilesystemTransport, RepositoryLoader};
use url::Url;

use super::bundle::{Bundle, Canary};
use super::error::UpdateError;
use super::keys;
use super::names::{self, target_name};

/// How long each role's signatures last unless told otherwise.
pub const ROOT_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
pub const TARGETS_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// Short: a device that is fed a frozen repository notices within this.
pub const TIMESTAMP_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

fn local(what: impl std::fmt::Display) -> UpdateError {
    UpdateError::local(what.to_string())
}

/// Now + `d`, in whole seconds: TUF writes expiry as `YYYY-MM-DDTHH:MM:SSZ`, and python-tuf
/// refuses the fractions tough would otherwise write.
fn expires_in(d: Duration) -> Result<jiff::Timestamp, UpdateError> {
    let span = jiff::SignedDuration::try_from(d).map_err(local)?;
    let at = jiff::Timestamp::now().checked_add(span).map_err(local)?;
    jiff::Timestamp::from_second(at.as_second()).map_err(local)
}

fn metadata_dir(repo: &Path) -> PathBuf {
    repo.join("metadata")
}

fn root_path(repo: &Path) -> PathBuf {
    metadata_dir(repo).join("1.root.json")
}

/// What `init-repo` made.
#[derive(Debug)]
pub struct InitReport {
    /// The trusted root to install on devices (`[updates] root`).
    pub root: PathBuf,
}

/// Makes keys in `keys_dir` and an empty, signed repository in `repo`.
pub async fn init_repo(repo: &Path, keys_dir: &Path) -> Result<InitReport, UpdateError> {
    if metadata_dir(repo).join("root.json").exists() || root_path(repo).exists() {
        return Err(local(format!(
            "{} holds a repository already",
            repo.display()
        )));
    }
    keys::generate(keys_dir)?;
    let mut keys_by_id = HashMap::new();
    let mut roles = HashMap::new();
    for (role, kind) in keys::ROLES.iter().zip([
        RoleType::Root,
        RoleType::Targets,
        RoleType::Snapshot,
        RoleType::Timestamp,
    ]) {
        let key = keys::public_key(&keys::key_path(keys_dir, role))?;
        let id = key.key_id().map_err(local)?;
        keys_by_id.insert(id.clone(), key);
        roles.insert(
            kind,
            RoleKeys {
                keyids: vec![id],
                threshold: NonZeroU64::MIN,
                _extra: HashMap::new(),
            },
        );
    }
    let root = Root {
        spec_version: "1.0.0".to_string(),
        consistent_snapshot: false,
        version: NonZeroU64::MIN,
        expires: expires_in(ROOT_LIFETIME)?,
        keys: keys_by_id,
        roles,
        _extra: HashMap::new(),
    };
    let sources = keys::sources(keys_dir)?;
    let rng = SystemRandom::new();
    let signed = SignedRole::new(root.clone(), &KeyHolder::Root(root), &sources, &rng)
        .await
        .map_err(UpdateError::from)?;
    let meta = metadata_dir(repo);
    signed
        .write(&meta, false)
        .await
        .map_err(UpdateError::from)?;
    std::fs::create_dir_all(repo.join("targets")).map_err(local)?;
    // The first targets, snapshot and timestamp: an empty but valid repository.
    let mut editor = RepositoryEditor::new(root_path(repo))
        .await
        .map_err(UpdateError::from)?;
    editor
        .targets_version(NonZeroU64::MIN)
        .map_err(UpdateError::from)?
        .targets_expires(expires_in(TARGETS_LIFETIME)?)
        .map_err(UpdateError::from)?
        .snapshot_version(NonZeroU64::MIN)
        .snapshot_expires(expires_in(TARGETS_LIFETIME)?)
        .timestamp_version(NonZeroU64::MIN)
        .timestamp_expires(expires_in(TIMESTAMP_LIFETIME)?);
    write_signed(editor, &sources, repo).await?;
    Ok(InitReport {
        root: root_path(repo),
    })
}

/// Signs what the editor holds and writes it, root.json included (the name python-tuf's and
/// tuftool's tools also look for).
async fn write_signed(
    editor: RepositoryEditor,
    keys: &[Box<dyn KeySource>],
    repo: &Path,
) -> Result<(), UpdateError> {
    let signed = editor.sign(keys).await.map_err(UpdateError::from)?;
    let meta = metadata_dir(repo);
    signed.write(&meta).await.map_err(UpdateError::from)?;
    std::fs::copy(root_path(repo), meta.join("root.json")).map_err(local)?;
    Ok(())
}

/// The repository at `repo` as it stands, verified with its own root (expiry not enforced: an
/// operator re-signs what has run out).
async fn load_local(repo: &Path) -> Result<tough::Repository, UpdateError> {
    let root = std::fs::read(root_path(repo)).map_err(|e| {
        local(format!(
            "{}: {e} (make a repository with `landfall adapter init-repo`)",
            root_path(repo).display()
        ))
    })?;
    let url = |dir: PathBuf| {
        Url::from_directory_path(std::path::absolute(&dir).unwrap_or(dir.clone()))
            .map_err(|()| local(format!("{} is not a directory path", dir.display())))
    };
    let datastore = tempfile::tempdir().map_err(local)?;
    RepositoryLoader::new(&root, url(metadata_dir(repo))?, url(repo.join("targets"))?)
        .transport(FilesystemTransport)
        .datastore(datastore.path())
        .expiration_enforcement(ExpirationEnforcement::Unsafe)
        .load()
        .await
        .map_err(UpdateError::from)
}

fn next(v: NonZeroU64) -> NonZeroU64 {
    v.checked_add(1).unwrap_or(v)
}

/// What to publish.
#[derive(Debug, Clone)]
pub struct Publication {
    pub classifier: String,
    pub adapter: PathBuf,
    pub base_sha256: String,
    /// `None`: one above the highest the repository has for the classifier.
    pub version: Option<u64>,
    pub canary: Option<(PathBuf, f64)>,
    pub labels: Option<Vec<String>>,
}

/// What `publish` did.
#[derive(Debug)]
pub struct Published {
    pub version: u64,
    pub targets: Vec<String>,
}

/// Adds the adapter as `adapters/<classifier>/<version>/...` and signs targets, snapshot and
/// timestamp anew.
pub async fn publish(
    repo: &Path,
    keys_dir: &Path,
    p: &Publication,
) -> Result<Published, UpdateError> {
    if !names::is_safe_name(&p.classifier) {
        return Err(local(format!(
            "--classifier {:?}: use letters, digits, '-', '_' and '.' (it becomes a path)",
            p.classifier
        )));
    }
    let loaded = load_local(repo).await?;
    let highest = super::client::offers(&loaded, &p.classifier)?
        .keys()
        .max()
        .copied()
        .unwrap_or(0);
    let version = match p.version {
        Some(v) if v <= highest => {
            return Err(local(format!(
                "--version {v}: the repository has version {highest} of {:?} already; devices take only higher ones",
                p.classifier
            )))
        }
        Some(0) => return Err(local("--version must be at least 1")),
        Some(v) => v,
        None => highest + 1,
    };
    let sources = keys::sources(keys_dir)?;
    // The bundle's files, written where the targets directory serves them.
    let mut files: Vec<(&'static str, PathBuf)> = vec![
        (names::ADAPTER_CONFIG, p.adapter.join(names::ADAPTER_CONFIG)),
        (
            names::ADAPTER_WEIGHTS,
            p.adapter.join(names::ADAPTER_WEIGHTS),
        ),
    ];
    let labels_file = p.adapter.join(names::LABELS);
    if labels_file.is_file() {
        files.push((names::LABELS, labels_file));
    }
    if let Some((canary, _)) = &p.canary {
        files.push((names::CANARY, canary.clone()));
    }
    for (_, path) in &files {
        if !path.is_file() {
            return Err(local(format!("{}: no such file", path.display())));
        }
    }
    let dest_dir = repo
        .join("targets")
        .join(names::PREFIX)
        .join(&p.classifier)
        .join(version.to_string());
    std::fs::create_dir_all(&dest_dir).map_err(local)?;
    let bundle = Bundle {
        classifier: p.classifier.clone(),
        version,
        base_sha256: p.base_sha256.clone(),
        labels: p.labels.clone(),
        canary: p.canary.as_ref().map(|(_, min_accuracy)| Canary {
            file: names::CANARY.to_string(),
            min_accuracy: *min_accuracy,
        }),
    };
    std::fs::write(dest_dir.join(names::BUNDLE), bundle.to_json()).map_err(local)?;
    for (file, path) in &files {
        std::fs::copy(path, dest_dir.join(file)).map_err(local)?;
    }
    let mut editor = RepositoryEditor::from_repo(root_path(repo), loaded)
        .await
        .map_err(UpdateError::from)?;
    let mut added = Vec::new();
    for file in std::iter::once(names::BUNDLE).chain(files.iter().map(|(f, _)| *f)) {
        let name = target_name(&p.classifier, version, file);
        let target = tough::schema::Target::from_path(dest_dir.join(file))
            .await
            .map_err(local)?;
        editor
            .add_target(name.as_str(), target)
            .map_err(UpdateError::from)?;
        added.push(name);
    }
    bump_and_sign(editor, repo, &sources).await?;
    Ok(Published {
        version,
        targets: added,
    })
}

/// New versions and expiries for targets, snapshot and timestamp, then sign and write.
async fn bump_and_sign(
    mut editor: RepositoryEditor,
    repo: &Path,
    keys: &[Box<dyn KeySource>],
) -> Result<(), UpdateError> {
    let current = current_versions(repo)?;
    editor
        .targets_version(next(current.targets))
        .map_err(UpdateError::from)?
        .targets_expires(expires_in(TARGETS_LIFETIME)?)
        .map_err(UpdateError::from)?
        .snapshot_version(next(current.snapshot))
        .snapshot_expires(expires_in(TARGETS_LIFETIME)?)
        .timestamp_version(next(current.timestamp))
        .timestamp_expires(expires_in(TIMESTAMP_LIFETIME)?);
    write_signed(editor, keys, repo).await
}

struct Versions {
    targets: NonZeroU64,
    snapshot: NonZeroU64,
    timestamp: NonZeroU64,
}

fn current_versions(repo: &Path) -> Result<Versions, UpdateError> {
    let read = |name: &str| -> Result<NonZeroU64, UpdateError> {
        let path = metadata_dir(repo).join(name);
        let v: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&path).map_err(|e| local(format!("{}: {e}", path.display())))?,
        )
        .map_err(|e| local(format!("{}: {e}", path.display())))?;
        v["signed"]["version"]
            .as_u64()
            .and_then(NonZeroU64::new)
            .ok_or_else(|| local(format!("{}: no version", path.display())))
    };
    Ok(Versions {
        targets: read("targets.json")?,
        snapshot: read("snapshot.json")?,
        timestamp: read("timestamp.json")?,
    })
}

/// Re-signs `timestamp.json` alone (the timestamp key is all it needs): a new version lasting
/// `lifetime` (0: expired at once, for testing a device's refusal).
pub async fn timestamp(
    repo: &Path,
    keys_dir: &Path,
    lifetime: Duration,
) -> Result<u64, UpdateError> {
    let root_bytes = std::fs::read(root_path(repo)).map_err(local)?;
    let root: Signed<Root> = serde_json::from_slice(&root_bytes).map_err(local)?;
    let path = metadata_dir(repo).join("timestamp.json");
    let old: Signed<Timestamp> =
        serde_json::from_slice(&std::fs::read(&path).map_err(local)?).map_err(local)?;
    let mut ts = old.signed;
    ts.version = next(ts.version);
    ts.expires = expires_in(lifetime)?;
    let sources = keys::sources(keys_dir)?;
    let rng = SystemRandom::new();
    let signed = SignedRole::new(ts, &KeyHolder::Root(root.signed), &sources, &rng)
        .await
        .map_err(UpdateError::from)?;
    signed
        .write(metadata_dir(repo), false)
        .await
        .map_err(UpdateError::from)?;
    Ok(signed.signed().signed.version.get())
}
