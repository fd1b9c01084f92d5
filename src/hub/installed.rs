//! `<model>/landfall-models.json`: what `pull` installed — the commit, the revision the manifest
//! asked for when that was a branch or tag, the quantization the loader applies, and every file
//! with the sha256 it was verified to have. A later pull of the same branch stays on the recorded
//! commit and checks the files against the recorded hashes, offline too.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::manifest::{PinnedFile, STATE_FILE};
use super::partial::staging_path;
use super::HubError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Installed {
    pub name: String,
    pub repo: String,
    /// The commit the files are from.
    pub revision: String,
    /// The branch or tag the manifest named, resolved to `revision` once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_revision: Option<String>,
    /// The quantization the loader applies (`--quant` / the config may override it).
    pub quant: String,
    pub files: Vec<PinnedFile>,
    /// Which landfall wrote this, should the format ever change.
    #[serde(default)]
    pub written_by: String,
}

/// What `dir` records, if it records anything readable.
pub fn read(dir: &Path) -> Option<Installed> {
    let text = fs::read_to_string(dir.join(STATE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes `state` into `dir`, atomically.
pub fn write(dir: &Path, state: &Installed) -> Result<(), HubError> {
    let target = dir.join(STATE_FILE);
    let mut text = serde_json::to_string_pretty(state).map_err(|e| {
        HubError::io(
            &target,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    text.push('\n');
    fs::create_dir_all(dir).map_err(|e| HubError::io(dir, e))?;
    let staging = staging_path(&target);
    fs::write(&staging, text).map_err(|e| HubError::io(&staging, e))?;
    fs::rename(&staging, &target).map_err(|e| HubError::io(&target, e))
}
