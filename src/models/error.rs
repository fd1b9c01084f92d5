//! Errors of model loading and inference. Each message names the file, tensor or field at fault.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{path}: not a readable weights file ({reason}); re-save it with save_pretrained")]
    Weights { path: PathBuf, reason: String },
    #[error("{dir}: no {what} found (looked for {looked_for})")]
    Missing {
        dir: PathBuf,
        what: &'static str,
        looked_for: String,
    },
    #[error("{path}: tensor {name}: {reason}")]
    Tensor {
        path: PathBuf,
        name: String,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("{path}: {field}: {reason}")]
    Adapter {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("inference failed: {0}")]
    Inference(#[from] candle_core::Error),
    #[error("tokenizing failed: {0}")]
    Tokenize(String),
    #[error("{0}")]
    Usage(String),
}

impl ModelError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the fault lies in the files or arguments given (exit code 2) rather than in running.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Self::Inference(_) | Self::Tokenize(_))
    }
}
