//! Target names of adapter bundles: `adapters/<classifier>/<version>/<file>`, `<version>` a
//! decimal integer ≥ 1, `<file>` one of the bundle's known files. A name under `adapters/` that
//! does not fit (`..`, an absolute path, another file, a version that is not a number) makes the
//! bundle invalid; it is never turned into a path.

use super::error::{Code, UpdateError};

/// The files a bundle may hold; the first three are required.
pub const BUNDLE: &str = "bundle.json";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
pub const LABELS: &str = "config.json";
pub const CANARY: &str = "canary.csv";
pub const FILES: [&str; 5] = [BUNDLE, ADAPTER_CONFIG, ADAPTER_WEIGHTS, LABELS, CANARY];
pub const REQUIRED: [&str; 3] = [BUNDLE, ADAPTER_CONFIG, ADAPTER_WEIGHTS];

/// The prefix of every adapter target.
pub const PREFIX: &str = "adapters/";

/// One file of one version of one classifier's adapter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TargetPath {
    pub classifier: String,
    pub version: u64,
    pub file: &'static str,
}

impl TargetPath {
    pub fn name(&self) -> String {
        target_name(&self.classifier, self.version, self.file)
    }
}

pub fn target_name(classifier: &str, version: u64, file: &str) -> String {
    format!("{PREFIX}{classifier}/{version}/{file}")
}

/// Whether `name` can stand in a target name and a directory name: letters, digits, `-`, `_`,
/// `.`, not starting with `.`.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Reads a target name: `Ok(None)` for targets that are not adapters (other files a repository
/// may hold), `Ok(Some)` for a well-formed adapter file, an error for a malformed one.
pub fn parse(name: &str) -> Result<Option<TargetPath>, UpdateError> {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        if name.contains("adapters/") {
            // "/adapters/...", "./adapters/...": made to look like ours from elsewhere.
            return Err(bad(
                name,
                "an adapter target must be adapters/<classifier>/<version>/<file>",
            ));
        }
        return Ok(None);
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let [classifier, version, file] = parts[..] else {
        return Err(bad(name, "expected adapters/<classifier>/<version>/<file>"));
    };
    if !is_safe_name(classifier) {
        return Err(bad(name, "the classifier part is not a plain name"));
    }
    let version: u64 = version
        .parse()
        .ok()
        .filter(|v| *v >= 1 && version.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| {
            bad(
                name,
                "the version part must be a decimal integer of at least 1",
            )
        })?;
    let file = FILES
        .iter()
        .copied()
        .find(|f| *f == file)
        .ok_or_else(|| bad(name, &format!("a bundle holds only {}", FILES.join(", "))))?;
    Ok(Some(TargetPath {
        classifier: classifier.to_string(),
        version,
        file,
    }))
}

fn bad(name: &str, why: &str) -> UpdateError {
    UpdateError::new(Code::BadBundle, format!("target {name:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_adapter_targets_and_ignores_others() {
        let t = parse("adapters/sentiment-zh/12/adapter_model.safetensors")
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.classifier.as_str(), t.version, t.file),
            ("sentiment-zh", 12, ADAPTER_WEIGHTS)
        );
        assert_eq!(
            t.name(),
            "adapters/sentiment-zh/12/adapter_model.safetensors"
        );
        assert_eq!(parse("README.txt").unwrap(), None);
        assert_eq!(parse("models/x.bin").unwrap(), None);
    }

    #[test]
    fn malformed_adapter_targets_are_bad_bundles() {
        for name in [
            "adapters/zh/../../../etc/passwd",
            "adapters/zh/1/../../x/1/bundle.json",
            "adapters/../1/bundle.json",
            "/adapters/zh/1/bundle.json",
            "adapters/zh/0/bundle.json",
            "adapters/zh/01x/bundle.json",
            "adapters/zh/+1/bundle.json",
            "adapters/zh/1/run.sh",
            "adapters/zh/1/sub/bundle.json",
            "adapters/.hidden/1/bundle.json",
        ] {
            let e = parse(name).unwrap_err();
            assert_eq!(e.code, Some(Code::BadBundle), "{name}");
        }
    }
}
