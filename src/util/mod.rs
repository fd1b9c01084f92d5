//! Small helpers with no home of their own: reconnect and retry delays ([`backoff`]).

pub mod backoff;

/// A value that does not parse: one line naming the value and what would do instead. The error
/// of every `FromStr` here (devices, dtypes, quantizations, camera sources, durations), so clap
/// and the config validation report it the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

impl From<String> for InvalidValue {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl From<&str> for InvalidValue {
    fn from(message: &str) -> Self {
        Self(message.to_string())
    }
}
