//! What each classifier serves when the daemon starts: the configured adapter, or the accepted
//! update the state file names, when its directory is there whole. Also the change that puts an
//! installed update's bundle in service, which the updater hands the engine.
//!
//! May not touch: the engine, the loop (this only reads files and builds specs).

use std::path::Path;

use crate::config::{ClassifierConfig, UpdatesConfig};
use crate::daemon::engine::ClassifierSpec;
use crate::daemon::jobs::{AdapterChange, CanarySpec};
use crate::updates::bundle::Bundle;
use crate::updates::check::installed_dir;
use crate::updates::names;
use crate::updates::state::State;

/// The change that serves `installed`'s bundle.
pub(super) fn change_for(dir: &Path, version: u64, canary: bool) -> AdapterChange {
    let bundle = std::fs::read(dir.join(names::BUNDLE))
        .ok()
        .and_then(|b| Bundle::parse(&b).ok());
    AdapterChange {
        version: Some(version),
        dir: Some(dir.to_path_buf()),
        labels: bundle.as_ref().and_then(|b| b.labels.clone()),
        canary: bundle
            .as_ref()
            .and_then(|b| b.canary.as_ref())
            .filter(|_| canary)
            .map(|c| CanarySpec {
                file: dir.join(&c.file),
                min_accuracy: c.min_accuracy,
            }),
    }
}

/// What each classifier serves at start: the configured adapter, or the accepted update the
/// state file names (when its directory is there, whole). Staging left by a crash is cleared.
pub fn plan_start(
    classifiers: &[ClassifierConfig],
    updates: Option<&UpdatesConfig>,
) -> Vec<ClassifierSpec> {
    let state = updates.map(|u| {
        let _ = std::fs::remove_dir_all(u.dir.join("staging"));
        State::load(&u.dir).unwrap_or_else(|e| {
            tracing::error!("adapter updates: {e}; starting on the configured adapters");
            State::default()
        })
    });
    classifiers
        .iter()
        .map(|c| {
            let update = match (updates, &state) {
                (Some(u), Some(state)) if c.follow_updates => state
                    .classifiers
                    .get(&c.name)
                    .and_then(|s| s.active())
                    .and_then(|active| {
                        let dir = installed_dir(&u.dir, &c.name, active.version);
                        let whole = names::REQUIRED.iter().all(|f| dir.join(f).is_file());
                        if !whole {
                            tracing::error!(
                                "classifier {:?}: update {} is missing from {}; serving the configured adapter",
                                c.name,
                                active.version,
                                dir.display()
                            );
                        }
                        whole.then(|| change_for(&dir, active.version, false))
                    }),
                _ => None,
            };
            ClassifierSpec {
                config: c.clone(),
                update,
            }
        })
        .collect()
}
