//! Encoded image bytes (JPEG, PNG, WebP) to RGB, for `file:`/`dir:` cameras and `image_b64`.

use image::RgbImage;

/// Decodes an image, or says why not in one line.
// replaced by imaging::decode_image at merge
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage, String> {
    image::load_from_memory(bytes)
        .map(|img| img.to_rgb8())
        .map_err(|e| format!("cannot decode the image: {e}"))
}
