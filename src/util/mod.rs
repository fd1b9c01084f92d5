//! Small helpers with no home of their own: reconnect and retry delays ([`backoff`]), the HTTP
//! client setup ([`http`]).

pub mod backoff;
pub mod http;

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

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

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 (hex) of a file, read in pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}
