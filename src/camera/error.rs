//! The one error of capture: why a source could not be opened or give a frame.

/// Why a source could not be opened or give a frame: one line naming the device or file, for
/// health and the log (the capture thread retries either way).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CaptureError(pub String);

impl From<String> for CaptureError {
    fn from(message: String) -> Self {
        Self(message)
    }
}
