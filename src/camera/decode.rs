//! Encoded image bytes (JPEG, PNG, WebP) to RGB, for `file:`/`dir:` cameras and `image_b64`:
//! the same decoder as `landfall caption` (EXIF orientation applied, size limits checked before
//! any pixel is allocated), with the error as one line.

use image::RgbImage;

use crate::imaging::{self, DecodeLimits};

/// Decodes an image, or says why not in one line.
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage, String> {
    imaging::decode_image(bytes, &DecodeLimits::default()).map_err(|e| e.to_string())
}
