//! `v4l2:` cameras in a build without the `v4l2` feature (the default): the camera reports why it cannot open
//! (and is retried like any failing source), the other sources work.

use image::RgbImage;

use super::error::CaptureError;
use super::spec::{PixelFormat, Resolution};

pub enum V4l2Source {}

impl V4l2Source {
    pub fn open(
        index: u32,
        _resolution: Option<Resolution>,
        _pixel_format: Option<PixelFormat>,
        _fps: f64,
    ) -> Result<Self, CaptureError> {
        Err(CaptureError(format!(
            "/dev/video{index}: this landfall was built without V4L2 support; rebuild it with `--features v4l2`"
        )))
    }

    pub fn grab(&mut self) -> Result<RgbImage, CaptureError> {
        match *self {}
    }
}
