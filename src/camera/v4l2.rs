//! `v4l2:/dev/videoN` through nokhwa's V4L2 backend: the configured resolution, fps and pixel
//! format are requested as the closest the device offers, and frames are decoded to RGB.

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution as NResolution,
};
use nokhwa::Camera;

use image::RgbImage;

use super::error::CaptureError;
use super::spec::{PixelFormat, Resolution};

/// Asked for when no resolution is configured: plenty for BLIP-2, which sees 224x224.
const DEFAULT_SIZE: Resolution = Resolution {
    width: 640,
    height: 480,
};

pub struct V4l2Source {
    camera: Camera,
}

impl V4l2Source {
    pub fn open(
        index: u32,
        resolution: Option<Resolution>,
        pixel_format: Option<PixelFormat>,
        fps: f64,
    ) -> Result<Self, CaptureError> {
        let fps = fps.ceil().max(1.0) as u32;
        let size = resolution.unwrap_or(DEFAULT_SIZE);
        let closest = |f: PixelFormat| {
            RequestedFormatType::Closest(CameraFormat::new(
                NResolution::new(size.width, size.height),
                frame_format(f),
                fps,
            ))
        };
        // nokhwa's "closest" only looks among modes of the requested pixel format. A configured
        // format is a requirement; otherwise prefer MJPEG (cheap on USB), then YUYV, then any.
        let attempts: Vec<RequestedFormatType> = match pixel_format {
            Some(f) => vec![closest(f)],
            None => vec![
                closest(PixelFormat::Mjpeg),
                closest(PixelFormat::Yuyv),
                RequestedFormatType::None,
            ],
        };
        let mut first_error = None;
        for requested in attempts {
            let format = RequestedFormat::new::<RgbFormat>(requested);
            match Camera::with_backend(CameraIndex::Index(index), format, ApiBackend::Video4Linux) {
                Ok(mut camera) => {
                    camera
                        .open_stream()
                        .map_err(|e| format!("/dev/video{index}: cannot start streaming: {e}"))?;
                    tracing::info!(
                        "/dev/video{index}: streaming {} at {} fps",
                        camera.camera_format(),
                        camera.frame_rate()
                    );
                    return Ok(Self { camera });
                }
                Err(e) => {
                    first_error.get_or_insert(format!("/dev/video{index}: {e}"));
                }
            }
        }
        Err(CaptureError(first_error.unwrap_or_else(|| {
            format!("/dev/video{index}: no usable format")
        })))
    }

    pub fn grab(&mut self) -> Result<RgbImage, CaptureError> {
        let buffer = self.camera.frame().map_err(|e| e.to_string())?;
        // MJPEG frames are JPEG images: the same decoder as every other image (nokhwa's own
        // MJPEG path needs mozjpeg, which landfall does not build).
        if buffer.source_frame_format() == FrameFormat::MJPEG {
            return super::decode::decode_image(buffer.buffer())
                .map_err(|e| CaptureError(format!("cannot decode the MJPEG frame: {e}")));
        }
        buffer
            .decode_image::<RgbFormat>()
            .map_err(|e| CaptureError(format!("cannot decode the frame: {e}")))
    }
}

fn frame_format(f: PixelFormat) -> FrameFormat {
    match f {
        PixelFormat::Mjpeg => FrameFormat::MJPEG,
        PixelFormat::Yuyv => FrameFormat::YUYV,
        PixelFormat::Nv12 => FrameFormat::NV12,
        PixelFormat::Gray => FrameFormat::GRAY,
        PixelFormat::Rgb => FrameFormat::RAWRGB,
    }
}

impl Drop for V4l2Source {
    fn drop(&mut self) {
        // Releases the device so the next attempt (or another program) can open it.
        let _ = self.camera.stop_stream();
    }
}
