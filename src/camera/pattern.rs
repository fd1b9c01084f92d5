//! `pattern:bars`: SMPTE-like colour bars that scroll sideways one step per frame, above a strip
//! that shows the frame counter in binary (white squares are ones, lowest bit on the right). The
//! picture changes every frame, so captions, scene-change detection and the dropped-frame count
//! all have something to work on without a camera.

use image::{Rgb, RgbImage};

const BARS: [[u8; 3]; 8] = [
    [235, 235, 235],
    [235, 235, 16],
    [16, 235, 235],
    [16, 235, 16],
    [235, 16, 235],
    [235, 16, 16],
    [16, 16, 235],
    [16, 16, 16],
];
/// Bits of the counter shown.
const BITS: u32 = 16;
/// Frames for the bars to scroll once across.
const STEPS: u64 = 40;

/// Frame `n` of the pattern at `width` x `height`.
pub fn bars(width: u32, height: u32, n: u64) -> RgbImage {
    let strip = (height / 6).max(1);
    let shift = ((n % STEPS) * u64::from(width) / STEPS) as u32;
    let bar_width = (width / BARS.len() as u32).max(1);
    let cell = (width / BITS).max(1);
    RgbImage::from_fn(width, height, |x, y| {
        if y + strip < height {
            let bar = (((x + shift) % width) / bar_width) as usize % BARS.len();
            Rgb(BARS[bar])
        } else {
            let bit = BITS - 1 - (x / cell).min(BITS - 1);
            let on = (n >> bit) & 1 == 1;
            // A dark gap between cells keeps neighbouring ones apart.
            if on && x % cell != 0 {
                Rgb([255, 255, 255])
            } else {
                Rgb([0, 0, 0])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_differ_and_show_the_counter() {
        let a = bars(160, 120, 1);
        let b = bars(160, 120, 2);
        assert_eq!(a.dimensions(), (160, 120));
        assert_ne!(a, b);
        // Frame 1: only the lowest bit (rightmost cell) is lit.
        let y = 119;
        assert_eq!(a.get_pixel(159, y).0, [255, 255, 255]);
        assert_eq!(a.get_pixel(149, y).0, [0, 0, 0]);
        assert_eq!(b.get_pixel(149, y).0, [255, 255, 255]);
        // After a full scroll the bars are back where they started.
        assert_eq!(
            bars(160, 120, 0).get_pixel(3, 3),
            bars(160, 120, STEPS).get_pixel(3, 3)
        );
    }
}
