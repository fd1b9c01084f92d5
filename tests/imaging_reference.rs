//! Image input against transformers' `pixel_values` (tests/fixtures/generate_images.py:
//! `AutoImageProcessor` → `BlipImageProcessorPil`, transformers 5.24, Pillow 13): PNG and
//! lossless WebP identical, JPEG within the decoder tolerance, EXIF images upright, and every bad
//! input refused with its own one-line error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use landfall::imaging::{
    decode_image, decode_image_file, DecodeLimits, ImageError, ImageProcessorConfig,
};

/// zune-jpeg and libjpeg-turbo (Pillow) differ in IDCT and chroma upsampling rounding by a
/// few u8 levels on some pixels; after /std (≈0.27) one level is ≈0.0146. Measured max on these
/// fixtures: see the JPEG tests' output and README "Image input".
const JPEG_TOLERANCE: f32 = 0.15;

fn images() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images")
}

fn references() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(images().join("reference.safetensors"), &Device::Cpu)
        .expect("reference tensors")
}

/// (max |Δ|, number of differing values) between our pixel_values and the reference.
fn compare(cfg_name: &str, image: &str, reference: &Tensor) -> (f32, usize) {
    let cfg = ImageProcessorConfig::from_dir(&images().join(cfg_name)).expect("config");
    let img = decode_image_file(&images().join(image), &DecodeLimits::default()).expect("decode");
    let ours = cfg.to_tensor(&img, &Device::Cpu).expect("tensor");
    assert_eq!(ours.dims(), reference.dims(), "{cfg_name}/{image}: shape");
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    (max, differing)
}

fn split(key: &str) -> (&str, &str) {
    key.split_once('/')
        .expect("reference keys are config/image")
}

#[test]
fn png_and_lossless_webp_equal_the_reference() {
    let refs = references();
    let mut checked = 0;
    let mut off = Vec::new();
    for (key, reference) in &refs {
        let (cfg, image) = split(key);
        if image.ends_with(".jpg") {
            continue;
        }
        let (max, differing) = compare(cfg, image, reference);
        println!("{key}: max |Δ| {max:e}, {differing} values differ");
        if max > 1e-6 {
            off.push(format!("{key}: max |Δ| {max}"));
        }
        checked += 1;
    }
    assert!(off.is_empty(), "{off:#?}");
    // Every lossless fixture of every config: a missing reference would shrink this.
    assert_eq!(checked, 29, "lossless pairs checked");
}

#[test]
fn jpeg_is_within_the_decoder_tolerance() {
    let refs = references();
    let mut checked = 0;
    for (key, reference) in &refs {
        let (cfg, image) = split(key);
        if !image.ends_with(".jpg") {
            continue;
        }
        let (max, differing) = compare(cfg, image, reference);
        println!(
            "{key}: max |Δ| {max:e}, {differing} of {} values differ",
            reference.elem_count()
        );
        assert!(max <= JPEG_TOLERANCE, "{key}: max |Δ| {max}");
        checked += 1;
    }
    assert_eq!(checked, 3, "JPEG pairs checked");
}

#[test]
fn exif_orientation_makes_the_image_upright() {
    let limits = DecodeLimits::default();
    // Stored 40 wide × 24 tall; orientations 6 and 8 turn it a quarter, 3 half a turn.
    for (name, want) in [
        ("exif6_40x24.jpg", (24, 40)),
        ("exif8_40x24.png", (24, 40)),
        ("exif3_40x24.jpg", (40, 24)),
    ] {
        let img = decode_image_file(&images().join(name), &limits).unwrap();
        assert_eq!(img.dimensions(), want, "{name}");
    }
    // Pixel-exact for the lossless one (the reference is ImageOps.exif_transpose's output).
    let refs = references();
    let (max, _) = compare("tiny32", "exif8_40x24.png", &refs["tiny32/exif8_40x24.png"]);
    assert!(max <= 1e-6, "exif8 png: {max}");
}

#[test]
fn bytes_and_files_decode_alike() {
    for name in [
        "rgba_45x33.png",
        "palette_trns_35x26.png",
        "lossless_rgba_36x30.webp",
        "photo_64x48.jpg",
    ] {
        let path = images().join(name);
        let from_file = decode_image_file(&path, &DecodeLimits::default()).unwrap();
        let from_bytes =
            decode_image(&std::fs::read(&path).unwrap(), &DecodeLimits::default()).unwrap();
        assert_eq!(from_file, from_bytes, "{name}");
    }
}

fn bad(name: &str) -> (ImageError, String) {
    let path = images().join("bad").join(name);
    let err = decode_image_file(&path, &DecodeLimits::default()).expect_err(name);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&path.display().to_string()),
        "{name}: names the file: {msg}"
    );
    assert!(!msg.contains('\n'), "{name}: one line: {msg}");
    // The same bytes from memory fail the same way (and are called "image").
    let bytes = std::fs::read(&path).unwrap();
    let mem = decode_image(&bytes, &DecodeLimits::default()).expect_err(name);
    assert_eq!(
        std::mem::discriminant(&mem),
        std::mem::discriminant(&err),
        "{name}: {mem}"
    );
    assert!(mem.to_string().starts_with("image: "), "{mem}");
    (err, msg)
}

#[test]
fn each_bad_input_gets_its_own_error() {
    let (e, msg) = bad("truncated.png");
    assert!(matches!(e, ImageError::Truncated { .. }), "{msg}");
    assert!(msg.contains("truncated PNG"), "{msg}");

    let (e, msg) = bad("random.bin");
    assert!(matches!(e, ImageError::NotAnImage { .. }), "{msg}");

    let (e, msg) = bad("empty.png");
    assert!(matches!(e, ImageError::Empty { .. }), "{msg}");
    assert!(msg.contains("empty input"), "{msg}");

    let (e, msg) = bad("notes.txt");
    assert!(matches!(e, ImageError::NotAnImage { .. }), "{msg}");
    assert!(msg.contains("\"this is \""), "shows the text it got: {msg}");

    let (e, msg) = bad("huge_header.png");
    assert!(
        matches!(
            e,
            ImageError::TooLarge {
                width: 20000,
                height: 20000,
                max_width: 8192,
                max_height: 8192,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("20000x20000") && msg.contains("8192x8192"),
        "{msg}"
    );

    let (e, msg) = bad("animation.gif");
    assert!(matches!(e, ImageError::Unsupported { .. }), "{msg}");
    assert!(msg.contains("GIF images are not supported"), "{msg}");

    let missing = images().join("bad/no_such_file.png");
    let e = decode_image_file(&missing, &DecodeLimits::default()).unwrap_err();
    assert!(
        matches!(e, ImageError::Read { .. }) && e.to_string().contains("no_such_file.png"),
        "{e}"
    );
}

#[test]
fn limits_are_the_callers() {
    let path = images().join("rgb_61x37.png");
    let narrow = DecodeLimits {
        max_width: 60,
        ..DecodeLimits::default()
    };
    let e = decode_image_file(&path, &narrow).unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::TooLarge {
                width: 61,
                height: 37,
                ..
            }
        ),
        "{e}"
    );
    // 61*37*3 = 6771 bytes decoded.
    let tight = DecodeLimits {
        max_alloc: 6000,
        ..DecodeLimits::default()
    };
    let e = decode_image_file(&path, &tight).unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::TooMuchMemory {
                needed: 6771,
                max_alloc: 6000,
                ..
            }
        ),
        "{e}"
    );
    let exact = DecodeLimits {
        max_width: 61,
        max_height: 37,
        max_alloc: 1 << 20,
    };
    assert_eq!(
        decode_image_file(&path, &exact).unwrap().dimensions(),
        (61, 37)
    );
}

#[test]
fn every_truncation_of_every_fixture_fails_cleanly() {
    // Cut each good file at many points: each must be an error (or, for a cut inside trailing
    // metadata, a full image), never a panic.
    for name in [
        "rgb_61x37.png",
        "photo_64x48.jpg",
        "lossless_50x40.webp",
        "exif6_40x24.jpg",
        "palette_35x26.png",
    ] {
        let bytes = std::fs::read(images().join(name)).unwrap();
        for cut in (0..bytes.len()).step_by(bytes.len() / 40 + 1) {
            if let Err(e) = decode_image(&bytes[..cut], &DecodeLimits::default()) {
                let msg = e.to_string();
                assert!(
                    msg.starts_with("image: ") && !msg.contains('\n'),
                    "{name} cut at {cut}: {msg}"
                );
            }
        }
    }
}

#[test]
fn config_files_are_read_and_bad_ones_named() {
    let blip2 = ImageProcessorConfig::from_dir(&images().join("blip2-opt-2.7b")).unwrap();
    assert_eq!(blip2.image_size(), (224, 224));
    let missing = images().join("no_such_model");
    let e = ImageProcessorConfig::from_dir(&missing).unwrap_err();
    assert!(
        e.to_string()
            .contains("no_such_model/preprocessor_config.json: cannot read"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("preprocessor_config.json");
    std::fs::write(&file, "{\"size\": 224,").unwrap();
    let e = ImageProcessorConfig::from_file(&file).unwrap_err();
    assert!(e.to_string().contains("not valid JSON"), "{e}");
    std::fs::write(&file, "{\"resample\": 0}").unwrap();
    let e = ImageProcessorConfig::from_file(&file).unwrap_err();
    assert!(
        e.to_string().contains("\"resample\": 0 is not supported"),
        "{e}"
    );
}
