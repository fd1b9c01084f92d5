//! An opened camera source of any kind, behind one `grab`.

use std::sync::Arc;

use image::RgbImage;

use super::error::CaptureError;
use super::files::{DirSource, FileSource};
use super::spec::CameraConfig;
use super::spec::{Resolution, SourceSpec};
use super::v4l2::V4l2Source;

/// The test pattern's size when no resolution is configured.
const PATTERN_SIZE: Resolution = Resolution {
    width: 320,
    height: 240,
};

pub enum Source {
    V4l2(V4l2Source),
    File(FileSource),
    Dir(DirSource),
    Pattern { size: Resolution, n: u64 },
}

impl Source {
    /// Opens the configured source; the error is one line for health and the log.
    pub fn open(cfg: &CameraConfig) -> Result<Self, CaptureError> {
        Ok(match &cfg.source {
            SourceSpec::V4l2 { index, .. } => Self::V4l2(V4l2Source::open(
                *index,
                cfg.resolution,
                cfg.pixel_format,
                cfg.fps,
            )?),
            SourceSpec::File(p) => Self::File(FileSource::open(p)?),
            SourceSpec::Dir(p) => Self::Dir(DirSource::open(p)?),
            SourceSpec::Pattern(_) => Self::Pattern {
                size: cfg.resolution.unwrap_or(PATTERN_SIZE),
                n: 0,
            },
        })
    }

    pub fn grab(&mut self) -> Result<Arc<RgbImage>, CaptureError> {
        match self {
            Self::V4l2(s) => s.grab().map(Arc::new),
            // A still image is shared by its frames rather than copied into each.
            Self::File(s) => s.grab(),
            Self::Dir(s) => s.grab().map(Arc::new),
            Self::Pattern { size, n } => {
                *n += 1;
                Ok(Arc::new(super::pattern::bars(size.width, size.height, *n)))
            }
        }
    }
}
