//! Encoded image bytes (JPEG, PNG, WebP) to RGB, for `file:`/`dir:` cameras and requests'
//! `image_b64`: the same decoder as `landfall caption` (EXIF orientation applied, size limits
//! checked before any pixel is allocated), with the error as one line.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use image::RgbImage;

use crate::imaging::{self, DecodeLimits, ImageError};

/// Decodes an image.
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    imaging::decode_image(bytes, &DecodeLimits::default())
}

/// Why an `image_b64` gave no image.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("\"image_b64\" is not valid base64: {0}")]
    Base64(base64::DecodeError),
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// `image_b64` to RGB: standard base64 (padding optional, line breaks and a `data:` URL prefix
/// allowed), then the image.
pub fn decode_b64_image(b64: &str) -> Result<RgbImage, UploadError> {
    let data = b64.trim();
    let data = match data.strip_prefix("data:") {
        Some(rest) => rest.split_once(',').map_or(rest, |(_, d)| d),
        None => data,
    };
    let compact: String;
    let data = if data.contains(char::is_whitespace) {
        compact = data.split_whitespace().collect();
        compact.as_str()
    } else {
        data
    };
    let bytes = STANDARD
        .decode(data)
        .or_else(|_| STANDARD_NO_PAD.decode(data))
        .map_err(UploadError::Base64)?;
    Ok(decode_image(&bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_b64() -> String {
        let mut bytes = Vec::new();
        RgbImage::from_pixel(3, 2, image::Rgb([9, 8, 7]))
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .unwrap();
        STANDARD.encode(bytes)
    }

    #[test]
    fn decodes_base64_images_in_the_usual_spellings() {
        let b64 = png_b64();
        assert_eq!(decode_b64_image(&b64).unwrap().dimensions(), (3, 2));
        let wrapped: String = b64
            .as_bytes()
            .chunks(10)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        assert!(decode_b64_image(&wrapped).is_ok());
        assert!(decode_b64_image(&format!("data:image/png;base64,{b64}")).is_ok());
        assert!(decode_b64_image(b64.trim_end_matches('=')).is_ok());
        assert!(decode_b64_image("***")
            .unwrap_err()
            .to_string()
            .contains("not valid base64"));
        assert!(decode_b64_image(&STANDARD.encode(b"not an image"))
            .unwrap_err()
            .to_string()
            .contains("not an image"));
    }
}
