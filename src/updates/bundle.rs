//! `bundle.json`, the description every adapter update carries: which classifier it is for, its
//! version, the sha256 of the base weights it was trained on, optionally its labels and a canary
//! set. [`Bundle::check`] holds it to the target listing it came with and to the device.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::error::{Code, UpdateError};
use super::names::{self, REQUIRED};

/// The canary: labelled texts the new adapter must classify well enough before it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// A file of the bundle (`canary.csv`: `text,label` columns, label = id or name).
    pub file: String,
    /// Accuracy the adapter must reach, 0 to 1.
    pub min_accuracy: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub classifier: String,
    pub version: u64,
    /// sha256 (hex) of the base's weights file the adapter was trained on.
    pub base_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

impl Bundle {
    /// Reads `bundle.json` (bounded by the caller: it came through TUF with a known length).
    pub fn parse(bytes: &[u8]) -> Result<Self, UpdateError> {
        serde_json::from_slice(bytes)
            .map_err(|e| UpdateError::new(Code::BadBundle, format!("bundle.json: {e}")))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Holds the bundle to where it was found (`classifier`, `version` of its target names),
    /// to the files listed beside it, and to the base the device runs (`base_sha256`, when
    /// known).
    pub fn check(
        &self,
        classifier: &str,
        version: u64,
        files: &BTreeSet<&str>,
        base_sha256: Option<&str>,
    ) -> Result<(), UpdateError> {
        let bad = |why: String| Err(UpdateError::new(Code::BadBundle, why));
        if self.classifier != classifier {
            return bad(format!(
                "bundle.json of adapters/{classifier}/{version} is for classifier {:?}",
                self.classifier
            ));
        }
        if self.version != version {
            return bad(format!(
                "bundle.json of adapters/{classifier}/{version} says version {}",
                self.version
            ));
        }
        if let Some(missing) = REQUIRED.iter().find(|f| !files.contains(**f)) {
            return bad(format!("adapters/{classifier}/{version} has no {missing}"));
        }
        if let Some(canary) = &self.canary {
            if canary.file != names::CANARY {
                return bad(format!(
                    "the canary must be the bundle's {}, not {:?}",
                    names::CANARY,
                    canary.file
                ));
            }
            if !files.contains(names::CANARY) {
                return bad(format!(
                    "bundle.json names a canary, but adapters/{classifier}/{version} has no {}",
                    names::CANARY
                ));
            }
            if !(0.0..=1.0).contains(&canary.min_accuracy) {
                return bad(format!(
                    "canary.min_accuracy {} is not between 0 and 1",
                    canary.min_accuracy
                ));
            }
        }
        if let Some(labels) = &self.labels {
            if labels.is_empty() || labels.iter().any(|l| l.trim().is_empty()) {
                return bad("bundle.json's labels must be non-empty names".into());
            }
        }
        if let Some(running) = base_sha256 {
            if !self.base_sha256.eq_ignore_ascii_case(running) {
                return Err(UpdateError::new(
                    Code::BaseMismatch,
                    format!(
                        "adapters/{classifier}/{version} was made for a base with sha256 {}, this device runs {running}",
                        self.base_sha256
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Bundle {
        Bundle {
            classifier: "zh".into(),
            version: 2,
            base_sha256: "ab".repeat(32),
            labels: None,
            canary: Some(Canary {
                file: "canary.csv".into(),
                min_accuracy: 0.8,
            }),
        }
    }

    fn files(with_canary: bool) -> BTreeSet<&'static str> {
        let mut f: BTreeSet<&str> = REQUIRED.into_iter().collect();
        if with_canary {
            f.insert(names::CANARY);
        }
        f
    }

    #[test]
    fn a_bundle_must_fit_its_place_files_and_base() {
        let b = bundle();
        let base = "ab".repeat(32);
        assert!(b.check("zh", 2, &files(true), Some(&base)).is_ok());
        let code = |r: Result<(), UpdateError>| r.unwrap_err().code.unwrap();
        assert_eq!(code(b.check("en", 2, &files(true), None)), Code::BadBundle);
        assert_eq!(code(b.check("zh", 3, &files(true), None)), Code::BadBundle);
        assert_eq!(code(b.check("zh", 2, &files(false), None)), Code::BadBundle);
        assert_eq!(
            code(b.check("zh", 2, &files(true), Some(&"cd".repeat(32)))),
            Code::BaseMismatch
        );
        let mut missing = files(true);
        missing.remove(names::ADAPTER_WEIGHTS);
        assert_eq!(code(b.check("zh", 2, &missing, None)), Code::BadBundle);
    }

    #[test]
    fn bundle_json_is_read_strictly() {
        let b = bundle();
        assert_eq!(Bundle::parse(b.to_json().as_bytes()).unwrap(), b);
        let e = Bundle::parse(br#"{"classifier":"zh","version":1,"base_sha256":"x","extra":1}"#)
            .unwrap_err();
        assert_eq!(e.code, Some(Code::BadBundle));
        assert!(Bundle::parse(b"not json").is_err());
    }
}
