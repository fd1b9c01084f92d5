//! `landfall bench caption`: BLIP-2's cost at one image, as one JSON line: load time, peak RSS,
//! weight bytes, vision+Q-Former time (and images/s with several cameras' frames as one batch),
//! prefill time, decode tokens/s, and the machine's memory
//! bandwidth with the decode speed it allows. benches/blip2_vs_pytorch.py runs this beside
//! transformers and prints the ratios.

use std::io::Write;
use std::time::Instant;

use candle_core::Tensor;
use serde_json::json;

use super::{runtime_options, CliError};
use crate::cli::BenchCaptionArgs;
use crate::health::process_memory;
use crate::models::blip2::{Blip2, Blip2LoadOptions, GenerationOptions};

const MIB: f64 = 1024.0 * 1024.0;

/// The synthetic image, `[1, 3, size, size]`: a pattern in [-1, 1] that
/// benches/blip2_vs_pytorch.py computes the same way, so both sides see identical input
/// without decoding or resizing an image.
pub fn synthetic_pixels(size: usize) -> Vec<f32> {
    let mut values = Vec::with_capacity(3 * size * size);
    for c in 0..3 {
        for y in 0..size {
            for x in 0..size {
                values.push(((x * 7 + y * 13 + c * 29) % 256) as f32 / 127.5 - 1.0);
            }
        }
    }
    values
}

/// Runs `f` `repeats` times and returns the fastest time in ms and the last result.
fn best_of<T>(
    repeats: u32,
    mut f: impl FnMut() -> Result<T, CliError>,
) -> Result<(f64, T), CliError> {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..repeats {
        let start = Instant::now();
        let out = f()?;
        best = best.min(start.elapsed().as_secs_f64() * 1e3);
        last = Some(out);
    }
    // repeats >= 1 (clap enforces it), so `last` is set.
    last.map(|out| (best, out))
        .ok_or_else(|| CliError::usage("--repeats must be at least 1"))
}

pub fn run(args: &BenchCaptionArgs) -> Result<(), CliError> {
    let (device, dtype) = runtime_options(&args.runtime)?;
    let opts = Blip2LoadOptions {
        device: device.clone(),
        dtype: dtype.dtype(),
        quant: args.runtime.quant,
    };
    let start = Instant::now();
    let model = Blip2::load(&args.model, &opts)?;
    let load_s = start.elapsed().as_secs_f64();
    let after_load = process_memory();

    let size = model.image_size();
    let pixels = Tensor::from_vec(synthetic_pixels(size), (1, 3, size, size), &device)
        .map_err(|e| CliError::runtime(format!("building the synthetic image: {e}")))?;
    let (vision_ms, features) = best_of(args.repeats, || Ok(model.image_features(&pixels)?))?;
    // Frames of several cameras due at once go through vision+Q-Former as one batch (as the
    // daemon runs them): images/s at that batch beside images/s one at a time.
    let cameras = args.cameras as usize;
    let batched_ms = if cameras > 1 {
        let batch = Tensor::cat(&vec![&pixels; cameras], 0)
            .map_err(|e| CliError::runtime(format!("building the image batch: {e}")))?;
        Some(best_of(args.repeats, || Ok(model.image_features(&batch)?))?.0)
    } else {
        None
    };
    let (prefill_ms, logits) = best_of(args.repeats, || {
        Ok(model.first_logits(&features, &args.prompt)?)
    })?;
    let n = args.new_tokens as usize;
    let gen = GenerationOptions {
        max_new_tokens: n,
        min_new_tokens: n,
        ..Default::default()
    };
    // The fastest decoding of the repeats, as generate times it itself (subtracting a separately
    // timed prefill from the whole could come out negative on a small model).
    let mut generated = model.generate(&features, &args.prompt, &gen)?;
    for _ in 1..args.repeats {
        let g = model.generate(&features, &args.prompt, &gen)?;
        if g.decode < generated.decode {
            generated = g;
        }
    }
    // The first token comes from the prefill; decoding makes the other n - 1.
    let decode_ms = generated.decode.as_secs_f64() * 1e3;
    let tokens_per_s = (n - 1) as f64 / (decode_ms.max(1e-6) / 1e3);
    // Taken before the bandwidth buffer exists, so it is the model's own peak.
    let mem = process_memory();

    if let Some(path) = &args.logits_out {
        let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes)
            .map_err(|e| CliError::runtime(format!("writing {}: {e}", path.display())))?;
    }
    let bytes_per_token = model.decoder_bytes_per_token();
    let bandwidth = (args.bandwidth_mib > 0).then(|| read_bandwidth(args.bandwidth_mib << 20));
    let bound = bandwidth.map(|bw| bw / bytes_per_token as f64);
    let line = json!({
        "impl": "landfall",
        "quant": args.runtime.quant.to_string(),
        "weights_file": model.weights_file().display().to_string(),
        "load_s": load_s,
        "rss_after_load_mib": after_load.rss_bytes as f64 / MIB,
        "peak_rss_mib": mem.peak_rss_bytes as f64 / MIB,
        "weight_mib": model.weight_bytes() as f64 / MIB,
        "decoder_mib_per_token": bytes_per_token as f64 / MIB,
        "vision_qformer_ms": vision_ms,
        "vision_images_per_s_1_camera": 1e3 / vision_ms.max(1e-6),
        "cameras": cameras,
        "vision_images_per_s_cameras": batched_ms.map(|ms| cameras as f64 * 1e3 / ms.max(1e-6)),
        "prefill_ms": prefill_ms,
        "prompt_tokens": model.input_ids(&args.prompt)?.len(),
        "new_tokens": generated.tokens.len(),
        "decode_tokens_per_s": tokens_per_s,
        "bandwidth_gb_s": bandwidth.map(|bw| bw / 1e9),
        "decode_bound_tokens_per_s": bound,
        "decode_of_bound": bound.map(|b| tokens_per_s / b),
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(())
}

/// Bytes/s of a streaming read over `bytes` of memory (far beyond any last-level cache), on as
/// many threads as decoding uses; the best of three passes.
fn read_bandwidth(bytes: usize) -> f64 {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Non-zero contents, so every page is really backed (a zeroed buffer may map one shared page).
    let buffer: Vec<u64> = (0..bytes / 8).map(|i| i as u64).collect();
    let chunk = buffer.len().div_ceil(threads);
    let mut best = 0.0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = buffer
                .chunks(chunk)
                .map(|part| s.spawn(move || part.iter().fold(0u64, |a, &v| a.wrapping_add(v))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        });
        std::hint::black_box(total);
        best = best.max((buffer.len() * 8) as f64 / start.elapsed().as_secs_f64());
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_pixels_span_the_normalised_range() {
        let v = synthetic_pixels(224);
        assert_eq!(v.len(), 3 * 224 * 224);
        assert_eq!(v[0], -1.0);
        // x = 1 in channel 0: 7 / 127.5 - 1
        assert_eq!(v[1], 7.0 / 127.5 - 1.0);
        assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
    }

    #[test]
    fn bandwidth_is_positive_and_finite() {
        let bw = read_bandwidth(8 << 20);
        assert!(bw.is_finite() && bw > 0.0);
    }
}
