//! Adapter updates in the field, on The Update Framework (TUF 1.0) through the `tough` crate.
//!
//! - Device side: [`client`] loads and verifies the repository (signatures, thresholds, expiry,
//!   metadata versions against those seen before, kept in a datastore across restarts);
//!   [`check`] picks the version to take for a classifier and stages its bundle, checked by
//!   [`bundle`] and [`names`]; [`state`] is what the device accepted, the commit point of every
//!   update. The daemon's updater task drives them and hands staged bundles to the engine,
//!   which loads the new adapter beside the serving one, runs its canary and swaps.
//! - Operator side: [`operator`] (`init-repo`, `publish`, `timestamp`) on tough's repository
//!   editor, with [`keys`].
//!
//! May not touch: the models and the daemon's queues (this module fetches, checks and stores;
//! the engine decides what serves).

pub mod bundle;
pub mod check;
pub mod client;
pub mod error;
pub mod keys;
pub mod names;
pub mod operator;
pub mod state;
pub mod transport;

use std::path::{Path, PathBuf};

pub use error::{Code, Outcome, UpdateError};

/// The weights file whose sha256 a bundle's `base_sha256` names: `model.safetensors`, else
/// `model.safetensors.index.json`, else `pytorch_model.bin`.
pub fn base_weights_file(base: &Path) -> Option<PathBuf> {
    [
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
    ]
    .iter()
    .map(|f| base.join(f))
    .find(|p| p.is_file())
}

/// The sha256 of a base's weights file (see [`base_weights_file`]).
pub fn base_sha256(base: &Path) -> Result<String, UpdateError> {
    let file = base_weights_file(base).ok_or_else(|| {
        UpdateError::local(format!(
            "{}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin",
            base.display()
        ))
    })?;
    crate::util::sha256_file(&file)
        .map_err(|e| UpdateError::local(format!("reading {}: {e}", file.display())))
}

/// The updates directory when the config names none: `$STATE_DIRECTORY/updates`, else
/// `./state/updates`.
pub fn default_dir() -> PathBuf {
    match std::env::var("STATE_DIRECTORY") {
        Ok(dirs) if !dirs.is_empty() => {
            PathBuf::from(dirs.split(':').next().unwrap_or(&dirs)).join("updates")
        }
        _ => PathBuf::from("./state/updates"),
    }
}
