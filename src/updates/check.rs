//! One classifier's update check, the device's side of it: which version the repository offers
//! (above the highest ever accepted, not rolled back), its bundle checked against its listing and
//! the running base, its files downloaded through TUF into a staging directory, the weights
//! checked to be safetensors, and the whole moved into place (`<updates>/adapters/<name>/<N>/`,
//! fsynced) for the engine to load beside the adapter that serves. Nothing here changes what
//! answers requests; the engine's swap and the state file do that.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tough::Repository;

use super::bundle::Bundle;
use super::client::{self, Offer};
use super::error::{Code, UpdateError};
use super::names;
use super::state::{sync_dir, ClassifierState};

/// Tries per file: a download cut halfway is fetched again at once.
const TRIES: u32 = 3;

/// A version ready for the engine.
#[derive(Debug, Clone)]
pub struct Staged {
    pub classifier: String,
    pub version: u64,
    /// The complete bundle directory.
    pub dir: PathBuf,
    pub bundle: Bundle,
    pub weights_sha256: String,
}

/// Why a check took nothing, and for which version.
#[derive(Debug, Clone)]
pub struct Failure {
    pub version: Option<u64>,
    pub error: UpdateError,
}

fn fail(version: Option<u64>) -> impl Fn(UpdateError) -> Failure {
    move |error| Failure { version, error }
}

/// The directory an accepted version lives in.
pub fn installed_dir(updates: &Path, classifier: &str, version: u64) -> PathBuf {
    updates
        .join("adapters")
        .join(classifier)
        .join(version.to_string())
}

/// Which offer to take, if any: the highest version not rolled back. One not above the highest
/// accepted is a rollback, unless it is the serving one, unchanged.
pub fn choose<'a>(
    offers: &'a std::collections::BTreeMap<u64, Offer>,
    state: &ClassifierState,
) -> Result<Option<&'a Offer>, Failure> {
    let Some(newest) = offers
        .values()
        .rev()
        .find(|o| !state.blocked.contains(&o.version))
    else {
        return Ok(None);
    };
    if newest.version > state.highest {
        return Ok(Some(newest));
    }
    // The one serving, unchanged: nothing to do. Anything else at or below the highest accepted
    // (an older version, even one accepted before) would move the device backwards.
    let serving = state.active().is_some_and(|i| {
        i.version == newest.version && newest.weights_sha256.as_deref() == Some(i.sha256.as_str())
    });
    if serving {
        return Ok(None);
    }
    let why = if state.installed.iter().any(|i| i.version == newest.version) {
        format!(
            "version {} was accepted before with other weights; a version is never replaced",
            newest.version
        )
    } else {
        format!(
            "the newest version offered, {}, is not above the highest accepted, {}",
            newest.version, state.highest
        )
    };
    Err(Failure {
        version: Some(newest.version),
        error: UpdateError::new(Code::Rollback, why),
    })
}

/// The offer `classifier` should take from the loaded repository, if any.
pub fn pick(
    repo: &Repository,
    classifier: &str,
    state: &ClassifierState,
) -> Result<Option<Offer>, Failure> {
    let offers = client::offers(repo, classifier).map_err(fail(None))?;
    Ok(choose(&offers, state)?.cloned())
}

/// Downloads `offer` and moves it into place, ready for the engine.
pub async fn fetch_and_stage(
    repo: &Repository,
    classifier: &str,
    offer: &Offer,
    base_sha256: Option<&str>,
    updates: &Path,
) -> Result<Staged, Failure> {
    let version = offer.version;
    let failed = fail(Some(version));
    let files: BTreeSet<&str> = offer.files.keys().copied().collect();
    let staging_root = updates.join("staging");
    let staging = client::staging_dir(&staging_root, classifier, version).map_err(&failed)?;
    let result = stage(
        repo,
        classifier,
        offer,
        &files,
        base_sha256,
        &staging,
        updates,
    )
    .await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result.map_err(failed)
}

async fn stage(
    repo: &Repository,
    classifier: &str,
    offer: &Offer,
    files: &BTreeSet<&str>,
    base_sha256: Option<&str>,
    staging: &Path,
    updates: &Path,
) -> Result<Staged, UpdateError> {
    let version = offer.version;
    let Some((bundle_name, bundle_len)) = offer.files.get(names::BUNDLE) else {
        return Err(UpdateError::new(
            Code::BadBundle,
            format!("adapters/{classifier}/{version} has no {}", names::BUNDLE),
        ));
    };
    // The bundle first: a wrong one is refused before megabytes of weights are fetched.
    let bundle_path = staging.join(names::BUNDLE);
    fetch_retrying(repo, bundle_name, *bundle_len, names::BUNDLE, &bundle_path).await?;
    let bytes = std::fs::read(&bundle_path)
        .map_err(|e| UpdateError::local(format!("{}: {e}", bundle_path.display())))?;
    let bundle = Bundle::parse(&bytes)?;
    bundle.check(classifier, version, files, base_sha256)?;
    let mut weights_sha256 = String::new();
    for (file, (name, len)) in &offer.files {
        if *file == names::BUNDLE {
            continue;
        }
        let sha = fetch_retrying(repo, name, *len, file, &staging.join(file)).await?;
        if *file == names::ADAPTER_WEIGHTS {
            weights_sha256 = sha;
        }
    }
    crate::models::safetensors_header(&staging.join(names::ADAPTER_WEIGHTS)).map_err(|e| {
        UpdateError::new(
            Code::BadBundle,
            format!(
                "adapters/{classifier}/{version}/{}: {e}",
                names::ADAPTER_WEIGHTS
            ),
        )
    })?;
    sync_dir(staging)?;
    let dir = installed_dir(updates, classifier, version);
    let parent = dir.parent().unwrap_or(updates);
    std::fs::create_dir_all(parent)
        .map_err(|e| UpdateError::local(format!("creating {}: {e}", parent.display())))?;
    if dir.exists() {
        // Left by an attempt that never activated: replaced whole.
        std::fs::remove_dir_all(&dir)
            .map_err(|e| UpdateError::local(format!("clearing {}: {e}", dir.display())))?;
    }
    std::fs::rename(staging, &dir)
        .map_err(|e| UpdateError::local(format!("moving into {}: {e}", dir.display())))?;
    sync_dir(parent)?;
    Ok(Staged {
        classifier: classifier.to_string(),
        version,
        dir,
        bundle,
        weights_sha256,
    })
}

/// [`client::fetch`], again at once when the connection failed (up to [`TRIES`] times).
async fn fetch_retrying(
    repo: &Repository,
    name: &tough::TargetName,
    len: u64,
    file: &str,
    dest: &Path,
) -> Result<String, UpdateError> {
    let mut last = None;
    for attempt in 0..TRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
        match client::fetch(repo, name, len, client::max_len(file), dest).await {
            Ok(sha) => return Ok(sha),
            Err(e) if e.code == Some(Code::DownloadFailed) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| UpdateError::new(Code::DownloadFailed, "no attempt was made")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::updates::state::Installed;

    fn offer(version: u64, sha: &str) -> Offer {
        Offer {
            version,
            files: BTreeMap::new(),
            weights_sha256: Some(sha.into()),
        }
    }

    fn offers(list: &[(u64, &str)]) -> BTreeMap<u64, Offer> {
        list.iter().map(|(v, s)| (*v, offer(*v, s))).collect()
    }

    #[test]
    fn only_a_version_above_the_highest_accepted_is_taken() {
        let mut state = ClassifierState::default();
        let o = offers(&[(1, "a"), (2, "b")]);
        assert_eq!(choose(&o, &state).unwrap().unwrap().version, 2);
        state.activate(Installed {
            version: 2,
            sha256: "b".into(),
            since: 0,
        });
        assert!(
            choose(&o, &state).unwrap().is_none(),
            "the serving one, unchanged"
        );
        // The same version with other weights: refused.
        let e = choose(&offers(&[(2, "other")]), &state).unwrap_err();
        assert_eq!(e.error.code, Some(Code::Rollback));
        // An older newest: refused.
        let e = choose(&offers(&[(1, "a")]), &state).unwrap_err();
        assert_eq!((e.version, e.error.code), (Some(1), Some(Code::Rollback)));
        // Offered again after 2 served: refused, 1 is not above the highest accepted.
        state.installed.insert(
            0,
            Installed {
                version: 1,
                sha256: "a".into(),
                since: 0,
            },
        );
        let e = choose(&offers(&[(1, "a")]), &state).unwrap_err();
        assert_eq!(e.error.code, Some(Code::Rollback));
        state.installed.remove(0);
        // Rolled back: 2 is never taken again, and 1 (installed before) is what serves.
        state.installed.insert(
            0,
            Installed {
                version: 1,
                sha256: "a".into(),
                since: 0,
            },
        );
        state.roll_back();
        assert!(choose(&o, &state).unwrap().is_none());
        assert_eq!(
            choose(&offers(&[(1, "a"), (2, "b"), (3, "c")]), &state)
                .unwrap()
                .unwrap()
                .version,
            3
        );
    }
}
