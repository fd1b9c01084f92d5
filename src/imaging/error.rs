//! Every way image input can fail, each a one-line message that names the input.

use std::path::PathBuf;

/// An image or preprocessor config that cannot be used. `origin` is the file path, or "image"
/// for bytes handed over in memory.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{origin}: cannot read: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}: empty input (0 bytes), expected a JPEG, PNG or WebP image")]
    Empty { origin: String },
    #[error("{origin}: not an image: no JPEG, PNG or WebP signature (starts with {starts_with})")]
    NotAnImage { origin: String, starts_with: String },
    #[error("{origin}: {format} images are not supported (JPEG, PNG and WebP are)")]
    Unsupported { origin: String, format: String },
    #[error("{origin}: image is {width}x{height}, over the limit of {max_width}x{max_height}")]
    TooLarge {
        origin: String,
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
    },
    #[error("{origin}: decoding a {width}x{height} image needs {needed} bytes, over the limit of {max_alloc}")]
    TooMuchMemory {
        origin: String,
        width: u32,
        height: u32,
        needed: u64,
        max_alloc: u64,
    },
    #[error(
        "{origin}: over the decode limits ({max_width}x{max_height}, {max_alloc} bytes): {detail}"
    )]
    LimitExceeded {
        origin: String,
        detail: String,
        max_width: u32,
        max_height: u32,
        max_alloc: u64,
    },
    #[error("{origin}: truncated {format} data (the file ends before the image does)")]
    Truncated { origin: String, format: String },
    #[error("{origin}: corrupt {format} data: {detail}")]
    Corrupt {
        origin: String,
        format: String,
        detail: String,
    },
    #[error("{path}: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error("building the pixel tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}
