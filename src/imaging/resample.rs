//! Pillow's `Image.resize` for 8-bit RGB (libImaging/Resample.c), reproduced bit for bit so the
//! pixels equal what transformers' PIL backend feeds the model.
//!
//! Separable: two passes, each rounded and clipped to u8; horizontal first (over only the source
//! rows the vertical pass will read) unless the height shrinks by more than twice what the width
//! does, then vertical first, as Pillow 13 decides. Each output pixel's filter covers `support × scale`
//! source pixels when shrinking (so shrinking averages instead of aliasing). Weights are computed
//! in f64 exactly as Pillow orders the arithmetic, normalised to sum 1, then turned into
//! fixed-point i32 with 22 fraction bits; sums start at one half and are shifted back, so every
//! step is integer and the result does not depend on summation order.

use image::RgbImage;

/// Pillow's convolution filters, by their `PIL.Image.Resampling` numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Lanczos = 1,
    Bilinear = 2,
    Bicubic = 3,
    Box = 4,
    Hamming = 5,
}

impl Filter {
    /// `PIL.Image.Resampling` value → filter; NEAREST (0) takes a different code path in
    /// Pillow and is not reproduced, so it is refused like any unknown number.
    pub fn from_pil(value: i64) -> Option<Self> {
        Some(match value {
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            _ => return None,
        })
    }

    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    /// The kernels with Pillow's exact expression order (float results must match to the bit).
    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    // Pillow writes these constants as C floats (0.54f), widened to double.
                    x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point weights for one axis: output pixel `i` reads `count[i]` source pixels from
/// `first[i]`, with weights `k[i * ksize ..][..count[i]]`.
#[derive(Debug, Clone)]
struct Taps {
    first: Vec<usize>,
    count: Vec<usize>,
    ksize: usize,
    k: Vec<i32>,
}

impl Taps {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the whole-image box.
    fn new(in_size: usize, out_size: usize, filter: Filter) -> Self {
        // Pillow: (double)(in1 - in0) / outSize with the box edges as C floats.
        let scale = f64::from(in_size as f32) / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut taps = Taps {
            first: Vec::with_capacity(out_size),
            count: Vec::with_capacity(out_size),
            ksize,
            k: vec![0; out_size * ksize],
        };
        let mut w = vec![0f64; ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's (int) cast truncates toward zero, as `as i64` does.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
            let n = xmax.max(0) as usize;
            let mut ww = 0.0;
            for (x, wx) in w.iter_mut().enumerate().take(n) {
                *wx = filter.weight(((x as i64 + xmin) as f64 - center + 0.5) * ss);
                ww += *wx;
            }
            let row = &mut taps.k[xx * ksize..(xx + 1) * ksize];
            for (x, &wx) in w.iter().enumerate().take(n) {
                let v = if ww != 0.0 { wx / ww } else { wx };
                let scaled = v * f64::from(1u32 << PRECISION_BITS);
                row[x] = if v < 0.0 {
                    (-0.5 + scaled) as i32
                } else {
                    (0.5 + scaled) as i32
                };
            }
            taps.first.push(xmin as usize);
            taps.count.push(n);
        }
        taps
    }

    fn weights(&self, i: usize) -> &[i32] {
        &self.k[i * self.ksize..i * self.ksize + self.count[i]]
    }
}

/// Pillow's `clip8`: drop the fraction bits (arithmetic shift, i.e. floor) and clamp.
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Resizes like `PIL.Image.resize((width, height), filter)` on an RGB image.
pub fn resize(src: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    if (in_w, in_h) == (out_w, out_h) {
        // Pillow returns a copy without resampling.
        return src.clone();
    }
    let need_h = out_w != in_w;
    let need_v = out_h != in_h;
    let vert = Taps::new(in_h, out_h, filter);
    let horiz = Taps::new(in_w, out_w, filter);
    // Pillow 13's order rule (ImagingResampleInner): when the height shrinks by more than twice
    // what the width does, the vertical pass goes first. The passes round to u8 in between, so
    // the order changes pixels.
    let (dh, dw) = (in_h as i64 - out_h as i64, in_w as i64 - out_w as i64);
    let horizontal_first = !(dh > 0 && dh > dw * 2);
    let out = if horizontal_first {
        // Rows the vertical pass reads: the horizontal pass skips the rest.
        let row0 = vert.first[0];
        let row1 = vert.first[out_h - 1] + vert.count[out_h - 1];
        let (rows, row_offset, rows_w) = if need_h {
            (
                horizontal(src.as_raw(), in_w, row0..row1, &horiz, out_w),
                row0,
                out_w,
            )
        } else {
            (src.as_raw().clone(), 0, in_w)
        };
        if need_v {
            vertical(&rows, rows_w, row_offset, &vert, out_h)
        } else {
            rows
        }
    } else {
        let rows = if need_v {
            vertical(src.as_raw(), in_w, 0, &vert, out_h)
        } else {
            src.as_raw().clone()
        };
        if need_h {
            horizontal(&rows, in_w, 0..out_h, &horiz, out_w)
        } else {
            rows
        }
    };
    RgbImage::from_raw(width, height, out).expect("resampled buffer has width*height*3 bytes")
}

fn horizontal(
    src: &[u8],
    in_w: usize,
    rows: std::ops::Range<usize>,
    taps: &Taps,
    out_w: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * out_w * 3);
    for y in rows {
        let line = &src[y * in_w * 3..(y + 1) * in_w * 3];
        for xx in 0..out_w {
            let first = taps.first[xx];
            let (mut r, mut g, mut b) = (HALF, HALF, HALF);
            for (px, &k) in line[first * 3..].chunks_exact(3).zip(taps.weights(xx)) {
                r += i32::from(px[0]) * k;
                g += i32::from(px[1]) * k;
                b += i32::from(px[2]) * k;
            }
            out.extend_from_slice(&[clip8(r), clip8(g), clip8(b)]);
        }
    }
    out
}

/// `rows` holds source rows from `row_offset` on, `width` pixels each.
fn vertical(rows: &[u8], width: usize, row_offset: usize, taps: &Taps, out_h: usize) -> Vec<u8> {
    let stride = width * 3;
    let mut out = Vec::with_capacity(out_h * stride);
    let mut acc = vec![0i32; stride];
    for yy in 0..out_h {
        acc.fill(HALF);
        let first = taps.first[yy] - row_offset;
        // Tap-major: each source row is added whole, which vectorises; integer sums make the
        // order irrelevant to the result.
        for (dy, &k) in taps.weights(yy).iter().enumerate() {
            let line = &rows[(first + dy) * stride..(first + dy + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(line) {
                *a += i32::from(p) * k;
            }
        }
        out.extend(acc.iter().map(|&a| clip8(a)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_of_every_output_pixel_sum_to_one_in_fixed_point() {
        for (i, o) in [(1920, 224), (13, 32), (37, 32), (5, 5), (1, 7)] {
            for f in [
                Filter::Bicubic,
                Filter::Bilinear,
                Filter::Box,
                Filter::Hamming,
                Filter::Lanczos,
            ] {
                let t = Taps::new(i, o, f);
                for xx in 0..o {
                    let s: i64 = t.weights(xx).iter().map(|&k| i64::from(k)).sum();
                    // Each weight rounds by at most half a unit.
                    assert!(
                        (s - (1 << PRECISION_BITS)).abs() <= t.count[xx] as i64,
                        "{f:?} {i}->{o} px {xx}: {s}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_flat_image_stays_flat_whatever_the_size() {
        let src = RgbImage::from_pixel(37, 23, image::Rgb([10, 128, 250]));
        for (w, h) in [(224, 224), (5, 3), (37, 100), (100, 23)] {
            let out = resize(&src, w, h, Filter::Bicubic);
            assert_eq!(out.dimensions(), (w, h));
            assert!(out.pixels().all(|p| p.0 == [10, 128, 250]), "{w}x{h}");
        }
    }

    #[test]
    fn same_size_is_a_copy() {
        let src = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 50, 7]));
        assert_eq!(resize(&src, 7, 5, Filter::Bicubic), src);
    }

    #[test]
    fn nearest_and_unknown_filters_are_refused() {
        assert_eq!(Filter::from_pil(0), None);
        assert_eq!(Filter::from_pil(6), None);
        assert_eq!(Filter::from_pil(3), Some(Filter::Bicubic));
    }
}
