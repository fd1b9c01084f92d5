//! Why an update attempt did not activate a new adapter, as the state topic reports it: a code of
//! the interface and a one-line reason. Rejections (the update is wrong) and failures (it could
//! not be fetched or stored, and is tried again) are told apart by [`UpdateError::outcome`].

use serde::{Deserialize, Serialize};

/// The codes of `P/adapters/state`'s `last_attempt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// Bad signature, too few signatures, unknown key, malformed metadata.
    MetadataInvalid,
    Expired,
    /// TUF metadata older than seen before, or an adapter version not above the highest
    /// accepted (or the same version with other content).
    Rollback,
    HashMismatch,
    TooLarge,
    /// The bundle was made for another base model than the one running.
    BaseMismatch,
    /// Names, missing files, not safetensors, another classifier's bundle, an adapter that does
    /// not fit the base.
    BadBundle,
    CanaryFailed,
    DownloadFailed,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MetadataInvalid => "metadata_invalid",
            Self::Expired => "expired",
            Self::Rollback => "rollback",
            Self::HashMismatch => "hash_mismatch",
            Self::TooLarge => "too_large",
            Self::BaseMismatch => "base_mismatch",
            Self::BadBundle => "bad_bundle",
            Self::CanaryFailed => "canary_failed",
            Self::DownloadFailed => "download_failed",
        }
    }
}

/// How an attempt ended (`last_attempt.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Activated,
    Rejected,
    Failed,
    RolledBack,
    UpToDate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct UpdateError {
    /// `None` for failures the interface has no code for (the state directory, say).
    pub code: Option<Code>,
    pub reason: String,
}

impl UpdateError {
    pub fn new(code: Code, reason: impl Into<String>) -> Self {
        Self {
            code: Some(code),
            reason: one_line(&reason.into()),
        }
    }

    /// A failure without a code of its own (local I/O).
    pub fn local(reason: impl Into<String>) -> Self {
        Self {
            code: None,
            reason: one_line(&reason.into()),
        }
    }

    /// Rejected (the update itself is at fault) or failed (tried again on the next check).
    pub fn outcome(&self) -> Outcome {
        match self.code {
            None | Some(Code::DownloadFailed) => Outcome::Failed,
            Some(_) => Outcome::Rejected,
        }
    }
}

fn one_line(s: &str) -> String {
    crate::wire::one_line(s)
}

/// What a TUF client error means for the device. tough reports a target whose bytes run over
/// their length or hash wrong as a transport error with the real one inside: the chain is
/// searched for the most telling error.
impl From<tough::error::Error> for UpdateError {
    fn from(e: tough::error::Error) -> Self {
        let mut code = code_of(&e);
        let mut next = std::error::Error::source(&e);
        while let Some(inner) = next {
            if let Some(inner) = inner.downcast_ref::<tough::error::Error>() {
                match code_of(inner) {
                    Some(Code::DownloadFailed) | None => {}
                    specific => code = specific,
                }
            }
            next = inner.source();
        }
        Self {
            code,
            reason: one_line(&e.to_string()),
        }
    }
}

fn code_of(e: &tough::error::Error) -> Option<Code> {
    use tough::error::Error as E;
    {
        match e {
            E::ExpiredMetadata { .. } => Some(Code::Expired),
            E::OlderMetadata { .. }
            | E::OlderSnapshotInTimestamp { .. }
            | E::SnapshotRoleRollback { .. }
            | E::SystemTimeSteppedBackward { .. } => Some(Code::Rollback),
            E::HashMismatch { .. } => Some(Code::HashMismatch),
            E::MaxSizeExceeded { .. } | E::MaxUpdatesExceeded { .. } => Some(Code::TooLarge),
            E::Transport { .. } => Some(Code::DownloadFailed),
            E::InvalidTargetName { .. }
            | E::UnsafeTargetNameDotDot { .. }
            | E::UnsafeTargetNameEmpty { .. }
            | E::UnsafeTargetNameSlash { .. }
            | E::TargetNameResolve { .. }
            | E::TargetNameComponentsEmpty { .. }
            | E::TargetNameRootMissing { .. } => Some(Code::BadBundle),
            E::DatastoreInit { .. }
            | E::DatastoreCreate { .. }
            | E::DatastoreOpen { .. }
            | E::DatastoreRemove { .. }
            | E::DatastoreSerialize { .. }
            | E::DirCreate { .. } => None,
            // Signatures, thresholds, keys, parsing, versions that do not match their listing.
            _ => Some(Code::MetadataInvalid),
        }
    }
}
