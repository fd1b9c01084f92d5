//! Scene-change detection for `caption_on_change`: a cheap comparison of small grey thumbnails,
//! so a static scene is not captioned again and again. The reference is the last frame that
//! counted as a change, so slow drift adds up until it crosses the threshold.

use image::imageops::{self, FilterType};
use image::RgbImage;

/// Thumbnail size: enough to see a person walk in, small enough to cost microseconds.
const SIDE: u32 = 32;

#[derive(Debug)]
pub struct SceneDetector {
    threshold: f64,
    reference: Option<Vec<u8>>,
}

impl SceneDetector {
    /// `threshold`: mean absolute grey difference, 0 (any change) to 1 (black to white).
    pub fn new(threshold: f64) -> Self {
        Self {
            threshold,
            reference: None,
        }
    }

    /// Whether `image` differs enough from the last changed frame; if so it becomes the reference.
    /// The first frame always counts as a change.
    pub fn changed(&mut self, image: &RgbImage) -> bool {
        let sig = signature(image);
        let changed = match &self.reference {
            None => true,
            Some(old) => difference(old, &sig) >= self.threshold,
        };
        if changed {
            self.reference = Some(sig);
        }
        changed
    }
}

fn signature(image: &RgbImage) -> Vec<u8> {
    let small = imageops::resize(image, SIDE, SIDE, FilterType::Triangle);
    small
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0;
            // BT.601 luma, integer.
            ((u32::from(r) * 299 + u32::from(g) * 587 + u32::from(b) * 114) / 1000) as u8
        })
        .collect()
}

/// Mean absolute difference scaled to 0..1.
fn difference(a: &[u8], b: &[u8]) -> f64 {
    if a.is_empty() || a.len() != b.len() {
        return 1.0;
    }
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / (a.len() as f64 * 255.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn solid(v: u8) -> RgbImage {
        RgbImage::from_pixel(64, 48, Rgb([v, v, v]))
    }

    #[test]
    fn first_frame_counts_then_only_real_changes() {
        let mut d = SceneDetector::new(0.1);
        assert!(d.changed(&solid(100)));
        assert!(!d.changed(&solid(100)));
        // 10/255 ≈ 0.04: below the threshold.
        assert!(!d.changed(&solid(110)));
        // Drift adds up against the reference: 30/255 ≈ 0.12.
        assert!(d.changed(&solid(130)));
        assert!(!d.changed(&solid(135)));
        assert!(d.changed(&solid(0)));
    }

    #[test]
    fn a_local_change_is_seen_in_proportion_to_its_area() {
        let mut d = SceneDetector::new(0.2);
        let base = solid(0);
        assert!(d.changed(&base));
        let mut quarter = base.clone();
        for y in 0..24 {
            for x in 0..32 {
                quarter.put_pixel(x, y, Rgb([255, 255, 255]));
            }
        }
        // A quarter of the frame turned white: 0.25 ≥ 0.2.
        assert!(d.changed(&quarter));
        let mut d = SceneDetector::new(0.3);
        d.changed(&base);
        assert!(!d.changed(&quarter));
    }
}
