//! Bytes or a file → an upright 8-bit RGB image: JPEG, PNG and WebP, EXIF orientation applied,
//! other colour layouts converted as transformers' `convert_rgb` does (see [`super::color`]).
//!
//! Size limits are checked against the header before any pixel is decoded, so a tiny file that
//! claims to be 20000×20000 is refused without allocating its 1.2 GB.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use super::color::to_rgb8_like_pil;
use super::error::ImageError;

/// What a caller accepts before decoding starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width in pixels.
    pub max_width: u32,
    /// Largest accepted height in pixels.
    pub max_height: u32,
    /// Most bytes the decoder may allocate at once (the decoded image counts).
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    /// 8192×8192 covers every camera frame up to 8K; 512 MiB is an 8192² RGBA16 frame (the
    /// widest layout these formats decode to) with room for the decoder's own buffers.
    fn default() -> Self {
        Self {
            max_width: 8192,
            max_height: 8192,
            max_alloc: 512 * 1024 * 1024,
        }
    }
}

impl DecodeLimits {
    fn to_image_limits(self) -> Limits {
        // `Limits` is non-exhaustive: start from its default and set the fields we know.
        let mut limits = Limits::default();
        limits.max_image_width = Some(self.max_width);
        limits.max_image_height = Some(self.max_height);
        limits.max_alloc = Some(self.max_alloc);
        limits
    }
}

/// Decodes an in-memory image; errors name it "image".
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    decode_named(bytes, "image", limits)
}

/// Reads and decodes an image file; errors name the file.
pub fn decode_image_file(path: &Path, limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ImageError::Read {
        origin: origin.clone(),
        source: e,
    })?;
    decode_named(&bytes, &origin, limits)
}

fn decode_named(bytes: &[u8], origin: &str, limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    let origin = origin.to_string();
    if bytes.is_empty() {
        return Err(ImageError::Empty { origin });
    }
    let format = sniff_format(bytes, &origin)?;
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format);
    // Opening a decoder reads only the header. The limits go on afterwards, once we have
    // compared the header with them ourselves: the decoders' own limit errors do not say the
    // image's size, ours do.
    reader.no_limits();
    let fail = |e| classify(e, &origin, format, limits);
    let mut decoder = reader.into_decoder().map_err(fail)?;

    let (width, height) = decoder.dimensions();
    if width > limits.max_width || height > limits.max_height {
        return Err(ImageError::TooLarge {
            origin,
            width,
            height,
            max_width: limits.max_width,
            max_height: limits.max_height,
        });
    }
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt {
            origin,
            format: format_name(format),
            detail: "zero-sized image".into(),
        });
    }
    let needed = decoder.total_bytes();
    if needed > limits.max_alloc {
        return Err(ImageError::TooMuchMemory {
            origin,
            width,
            height,
            needed,
            max_alloc: limits.max_alloc,
        });
    }
    // Still enforced while decoding: a decoder's working buffers count too.
    decoder.set_limits(limits.to_image_limits()).map_err(fail)?;
    // A broken EXIF block must not cost the picture: use it upright-as-stored then.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(fail)?;
    image.apply_orientation(orientation);
    Ok(to_rgb8_like_pil(image))
}

/// Picks the format from the signature; the file name is never trusted.
fn sniff_format(bytes: &[u8], origin: &str) -> Result<ImageFormat, ImageError> {
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => Ok(f),
        Ok(other) => Err(ImageError::Unsupported {
            origin: origin.to_string(),
            format: format_name(other),
        }),
        Err(_) => Err(ImageError::NotAnImage {
            origin: origin.to_string(),
            starts_with: describe_start(bytes),
        }),
    }
}

/// The first bytes, shown as text when they are printable (a text file, an HTML error page),
/// else as hex: enough to tell what was sent instead of an image.
fn describe_start(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(8)];
    if head.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?}", String::from_utf8_lossy(head))
    } else {
        head.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn format_name(format: ImageFormat) -> String {
    match format {
        ImageFormat::Jpeg => "JPEG".into(),
        ImageFormat::Png => "PNG".into(),
        ImageFormat::WebP => "WebP".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// Maps the decoder's error onto ours, so "truncated" and "too large" read as such.
fn classify(
    e: image::ImageError,
    origin: &str,
    format: ImageFormat,
    limits: &DecodeLimits,
) -> ImageError {
    let origin = origin.to_string();
    let format_s = format_name(format);
    match e {
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ImageError::Truncated {
                origin,
                format: format_s,
            }
        }
        image::ImageError::Limits(l) => ImageError::LimitExceeded {
            origin,
            detail: l.to_string(),
            max_width: limits.max_width,
            max_height: limits.max_height,
            max_alloc: limits.max_alloc,
        },
        image::ImageError::Unsupported(u) => ImageError::Corrupt {
            origin,
            format: format_s,
            detail: u.to_string(),
        },
        other => {
            // Some decoders' messages span lines; ours are one line.
            let detail = other
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            // Decoders report running out of data in their own words; group those as truncated.
            let lower = detail.to_lowercase();
            if [
                "eof",
                "end of file",
                "unexpected end",
                "truncated",
                "no more data",
                "not enough",
            ]
            .iter()
            .any(|w| lower.contains(w))
            {
                ImageError::Truncated {
                    origin,
                    format: format_s,
                }
            } else {
                ImageError::Corrupt {
                    origin,
                    format: format_s,
                    detail,
                }
            }
        }
    }
}
