//! The operator's signing keys: one Ed25519 key per TUF role (`root`, `targets`, `snapshot`,
//! `timestamp`), each a PKCS#8 file `<role>.pk8` in the keys directory, readable by its owner
//! only. tough signs with them; python-tuf and tuftool verify what they sign.

use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::key::Key;
use tough::sign::Sign;

use super::error::UpdateError;

/// The roles, in the order keys are made.
pub const ROLES: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];

pub fn key_path(dir: &Path, role: &str) -> PathBuf {
    dir.join(format!("{role}.pk8"))
}

/// Makes a new key for every role in `dir`; refuses to overwrite one.
pub fn generate(dir: &Path) -> Result<(), UpdateError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| UpdateError::local(format!("creating {}: {e}", dir.display())))?;
    for role in ROLES {
        let path = key_path(dir, role);
        if path.exists() {
            return Err(UpdateError::local(format!(
                "{} exists already; init-repo makes new keys only into an empty keys directory",
                path.display()
            )));
        }
    }
    let rng = SystemRandom::new();
    for role in ROLES {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|e| UpdateError::local(format!("generating the {role} key: {e}")))?;
        write_private(&key_path(dir, role), pkcs8.as_ref())?;
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), UpdateError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| UpdateError::local(format!("writing {}: {e}", path.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| UpdateError::local(format!("writing {}: {e}", path.display())))
}

/// The public key of a key file, as TUF metadata lists it.
pub fn public_key(path: &Path) -> Result<Key, UpdateError> {
    let bytes = std::fs::read(path)
        .map_err(|e| UpdateError::local(format!("reading {}: {e}", path.display())))?;
    let pair = tough::sign::parse_keypair(&bytes)
        .map_err(|e| UpdateError::local(format!("{}: not a signing key ({e})", path.display())))?;
    Ok(pair.tuf_key())
}

/// Every key file of `dir`, for signing (tough picks those the role needs).
pub fn sources(dir: &Path) -> Result<Vec<Box<dyn KeySource>>, UpdateError> {
    let keys: Vec<Box<dyn KeySource>> = ROLES
        .iter()
        .map(|role| key_path(dir, role))
        .filter(|p| p.is_file())
        .map(|path| Box::new(LocalKeySource { path }) as Box<dyn KeySource>)
        .collect();
    if keys.is_empty() {
        return Err(UpdateError::local(format!(
            "{}: no keys (root.pk8, targets.pk8, snapshot.pk8, timestamp.pk8); make them with `landfall adapter init-repo`",
            dir.display()
        )));
    }
    Ok(keys)
}
