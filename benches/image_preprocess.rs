//! What image input costs per camera frame: `cargo bench --bench image_preprocess`.
//!
//! A 1920×1080 frame (deterministic noise over gradients, the worst case for JPEG and the same
//! work for the resampler as a photo) is resized and normalized into BLIP-2's 224×224
//! `pixel_values` (tests/fixtures/images/blip2-opt-2.7b config), and, separately, decoded from
//! a quality-90 JPEG. Prints the median and minimum of repeated runs.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::Device;
use image::{Rgb, RgbImage};
use landfall::imaging::{decode_image, DecodeLimits, ImageProcessorConfig};

fn frame() -> RgbImage {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    RgbImage::from_fn(1920, 1080, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = (state & 0x3f) as u32;
        Rgb([
            ((x / 8 + n) % 256) as u8,
            ((y / 5 + n) % 256) as u8,
            (((x + y) / 11 + n) % 256) as u8,
        ])
    })
}

fn time(runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut all: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    all.sort();
    (all[runs / 2], all[0])
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/blip2-opt-2.7b");
    let cfg = ImageProcessorConfig::from_dir(&dir).expect("blip2 preprocessor config");
    let img = frame();
    let (med, min) = time(30, || {
        let t = cfg.to_tensor(&img, &Device::Cpu).expect("tensor");
        assert_eq!(t.dims(), &[1, 3, 224, 224]);
    });
    println!("1920x1080 -> 224x224 resize + normalize: median {med:.2?}, min {min:.2?} (30 runs)");

    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&img)
        .expect("encode");
    let limits = DecodeLimits::default();
    let (med, min) = time(10, || {
        let d = decode_image(&jpeg, &limits).expect("decode");
        assert_eq!(d.dimensions(), (1920, 1080));
    });
    println!(
        "1920x1080 JPEG q90 ({} KiB) decode: median {med:.2?}, min {min:.2?} (10 runs)",
        jpeg.len() / 1024
    );
}
