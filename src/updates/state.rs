//! What the device has accepted, per classifier: the adapter versions installed (newest
//! serving), the highest version ever accepted, versions rolled back and never to be taken
//! again, and the last attempt. Kept in `<updates dir>/state.json`, written atomically (temporary
//! file, fsync, rename, fsync of the directory): the file is the commit point of an update, so a
//! crash at any moment leaves either the old state or the new one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{Code, Outcome, UpdateError};

/// Installed versions kept per classifier (serving one included); older ones are deleted.
pub const KEPT: usize = 3;

/// One installed adapter version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub version: u64,
    /// sha256 of its `adapter_model.safetensors`.
    pub sha256: String,
    /// When it started serving (Unix seconds).
    pub since: u64,
}

/// An update attempt and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub ts: u64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassifierState {
    /// Accepted versions, oldest first; the last serves. Empty: the configured adapter serves.
    #[serde(default)]
    pub installed: Vec<Installed>,
    /// The highest version ever accepted (0: none).
    #[serde(default)]
    pub highest: u64,
    /// Versions rolled back: never taken again, whatever the repository says.
    #[serde(default)]
    pub blocked: BTreeSet<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<Attempt>,
}

impl ClassifierState {
    pub fn active(&self) -> Option<&Installed> {
        self.installed.last()
    }

    pub fn previous(&self) -> Option<&Installed> {
        let n = self.installed.len();
        (n >= 2).then(|| &self.installed[n - 2])
    }

    /// Records `version` as serving; returns the versions that fall out of [`KEPT`].
    pub fn activate(&mut self, installed: Installed) -> Vec<u64> {
        self.highest = self.highest.max(installed.version);
        self.installed.retain(|i| i.version != installed.version);
        self.installed.push(installed);
        let excess = self.installed.len().saturating_sub(KEPT);
        self.installed.drain(..excess).map(|i| i.version).collect()
    }

    /// Goes back to the previous version (or the configured adapter), blocking the one that
    /// served. `None` when the configured adapter already serves.
    pub fn roll_back(&mut self) -> Option<u64> {
        let gone = self.installed.pop()?;
        self.blocked.insert(gone.version);
        Some(gone.version)
    }
}

/// The state of every classifier that follows the repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub classifiers: BTreeMap<String, ClassifierState>,
}

impl State {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// Reads the state of `dir`; none yet is the empty state.
    pub fn load(dir: &Path) -> Result<Self, UpdateError> {
        let path = Self::path(dir);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                UpdateError::local(format!(
                    "{}: not a landfall update state ({e}); move it away to start over",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(UpdateError::local(format!("{}: {e}", path.display()))),
        }
    }

    /// Writes the state atomically.
    pub fn save(&self, dir: &Path) -> Result<(), UpdateError> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| UpdateError::local(format!("serializing the update state: {e}")))?;
        write_atomically(&Self::path(dir), &text)
    }

    pub fn classifier(&mut self, name: &str) -> &mut ClassifierState {
        self.classifiers.entry(name.to_string()).or_default()
    }

    /// `P/adapters/state`: per classifier its active and previous version (`null`: the
    /// configured adapter) and the last attempt.
    pub fn report(&self, names: &[String]) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for name in names {
            let c = self.classifiers.get(name).cloned().unwrap_or_default();
            out.insert(
                name.clone(),
                serde_json::json!({
                    "active": c.active(),
                    "previous": c.previous(),
                    "highest_accepted": c.highest,
                    "blocked": c.blocked,
                    "last_attempt": c.last_attempt,
                }),
            );
        }
        serde_json::Value::Object(out)
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, whole.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), UpdateError> {
    let io = |what: &str, p: &Path, e: std::io::Error| {
        UpdateError::local(format!("{what} {}: {e}", p.display()))
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| io("writing", &tmp, e))?;
    f.write_all(bytes).map_err(|e| io("writing", &tmp, e))?;
    f.sync_all().map_err(|e| io("syncing", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io("renaming into", path, e))?;
    sync_dir(dir)
}

/// Makes a rename or create in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), UpdateError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| UpdateError::local(format!("syncing {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(version: u64) -> Installed {
        Installed {
            version,
            sha256: format!("{version:064}"),
            since: 1000 + version,
        }
    }

    #[test]
    fn activation_and_rollback_keep_the_books() {
        let mut c = ClassifierState::default();
        assert!(c.roll_back().is_none(), "nothing to roll back to");
        assert!(c.activate(installed(1)).is_empty());
        assert!(c.activate(installed(2)).is_empty());
        assert!(c.activate(installed(3)).is_empty());
        assert_eq!(c.activate(installed(4)), vec![1]);
        assert_eq!(c.active().unwrap().version, 4);
        assert_eq!(c.previous().unwrap().version, 3);
        assert_eq!(c.roll_back(), Some(4));
        assert_eq!(c.active().unwrap().version, 3);
        assert!(c.blocked.contains(&4));
        assert_eq!(
            c.highest, 4,
            "a rollback does not lower the highest accepted"
        );
    }

    #[test]
    fn the_state_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), State::default());
        let mut s = State::default();
        s.classifier("zh").activate(installed(7));
        s.classifier("zh").last_attempt = Some(Attempt {
            version: Some(7),
            ts: 5,
            outcome: Outcome::Activated,
            code: None,
            reason: None,
        });
        s.save(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), s);
        let report = s.report(&["zh".to_string(), "en".to_string()]);
        assert_eq!(report["zh"]["active"]["version"], 7);
        assert_eq!(report["zh"]["previous"], serde_json::Value::Null);
        assert_eq!(report["zh"]["last_attempt"]["outcome"], "activated");
        assert_eq!(report["en"]["active"], serde_json::Value::Null);
        std::fs::write(State::path(dir.path()), b"{").unwrap();
        assert!(State::load(dir.path()).is_err());
    }
}
