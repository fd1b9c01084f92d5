//! Any decoded colour layout → 8-bit RGB, the way transformers' `convert_rgb` does it with
//! Pillow: grey is replicated, anything with alpha is composited onto opaque white with
//! `PIL.Image.alpha_composite`'s integer arithmetic, 16-bit samples keep their high byte (what
//! Pillow's PNG reader does for 16-bit RGB/RGBA).
//!
//! One deliberate difference: Pillow opens 16-bit grey as mode "I;16", and its conversion to RGB
//! clips every value above 255 to white, so a 16-bit grey photo comes out blank. We keep the
//! high byte there too, as for 16-bit colour.

use image::{DynamicImage, Rgb, RgbImage};

/// Converts to RGB8 as described in the module docs.
pub fn to_rgb8_like_pil(image: DynamicImage) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageLuma8(g) => RgbImage::from_fn(w, h, |x, y| {
            let v = g.get_pixel(x, y).0[0];
            Rgb([v, v, v])
        }),
        DynamicImage::ImageLumaA8(ga) => RgbImage::from_fn(w, h, |x, y| {
            let [v, a] = ga.get_pixel(x, y).0;
            let o = over_white(v, a);
            Rgb([o, o, o])
        }),
        DynamicImage::ImageRgba8(rgba) => RgbImage::from_fn(w, h, |x, y| {
            let [r, g, b, a] = rgba.get_pixel(x, y).0;
            Rgb([over_white(r, a), over_white(g, a), over_white(b, a)])
        }),
        DynamicImage::ImageLuma16(g) => RgbImage::from_fn(w, h, |x, y| {
            let v = high(g.get_pixel(x, y).0[0]);
            Rgb([v, v, v])
        }),
        DynamicImage::ImageLumaA16(ga) => RgbImage::from_fn(w, h, |x, y| {
            let [v, a] = ga.get_pixel(x, y).0.map(high);
            let o = over_white(v, a);
            Rgb([o, o, o])
        }),
        DynamicImage::ImageRgb16(rgb) => {
            RgbImage::from_fn(w, h, |x, y| Rgb(rgb.get_pixel(x, y).0.map(high)))
        }
        DynamicImage::ImageRgba16(rgba) => RgbImage::from_fn(w, h, |x, y| {
            let [r, g, b, a] = rgba.get_pixel(x, y).0.map(high);
            Rgb([over_white(r, a), over_white(g, a), over_white(b, a)])
        }),
        // Float layouts come only from HDR/EXR decoders, which are not built in; convert plainly.
        other => other.to_rgb8(),
    }
}

fn high(v: u16) -> u8 {
    (v >> 8) as u8
}

/// One channel of `alpha_composite(white, src)`: Pillow's scalar path (AlphaComposite.c) with
/// the destination fixed at opaque white, 7 extra bits of precision, rounded division by 255.
pub(crate) fn over_white(v: u8, a: u8) -> u8 {
    const PRECISION_BITS: u32 = 7;
    if a == 0 {
        return 255;
    }
    let a = u32::from(a);
    let blend = 255 * (255 - a);
    let outa255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let t = u32::from(v) * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS);
    ((((t >> 8) + t) >> 8) >> PRECISION_BITS) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_pixels_keep_their_value_and_transparent_ones_turn_white() {
        for v in 0..=255u8 {
            assert_eq!(over_white(v, 255), v);
            assert_eq!(over_white(v, 0), 255);
        }
    }

    #[test]
    fn half_alpha_blends_towards_white() {
        // Values computed with Pillow 13: alpha_composite(white, (v, v, v, 128)).
        assert_eq!(over_white(0, 128), 127);
        assert_eq!(over_white(100, 128), 177);
    }

    #[test]
    fn sixteen_bit_grey_keeps_the_high_byte_instead_of_clipping() {
        let g = image::ImageBuffer::from_raw(2, 1, vec![0x1234u16, 0xff00]).unwrap();
        let rgb = to_rgb8_like_pil(DynamicImage::ImageLuma16(g));
        assert_eq!(rgb.get_pixel(0, 0).0, [0x12; 3]);
        assert_eq!(rgb.get_pixel(1, 0).0, [0xff; 3]);
    }
}
