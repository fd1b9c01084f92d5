//! Image input for BLIP-2: decode (JPEG/PNG/WebP, EXIF-upright, size-limited) to RGB8, then
//! resize and normalize into `pixel_values` exactly as transformers' image processor does.
//!
//! - [`decode`]: bytes or file → [`image::RgbImage`], limits checked before decoding.
//! - [`color`]: grey/alpha/palette/16-bit → RGB the way `convert_rgb` (Pillow) does.
//! - [`resample`]: Pillow's resize, bit for bit.
//! - [`preprocess`]: `preprocessor_config.json` and the [1, 3, H, W] tensor.
//! - [`error`]: the one error type.

pub mod color;
pub mod decode;
pub mod error;
pub mod preprocess;
pub mod resample;

pub use decode::{decode_image, decode_image_file, DecodeLimits};
pub use error::ImageError;
pub use preprocess::{ImageProcessorConfig, ResizeTarget};
pub use resample::Filter;
