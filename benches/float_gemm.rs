//! The many-row float product at the models' shapes: `cargo bench --bench float_gemm`.
//!
//! For BERT-base's layers at batch 1 and 16 (64 tokens per text) and ViT-g's at one image (257
//! tokens), times `float_gemm::matmul_wt` (the kernel landfall's layers run) beside candle's own
//! `matmul` on the same operands (the `gemm` crate, as every other candle model runs it) in the
//! same process, and prints GFLOP/s of each and their ratio. Threads: candle's
//! (`RAYON_NUM_THREADS`, default all cores). The end-to-end figures against PyTorch are
//! benches/classifier_vs_pytorch.py's and benches/blip2_vs_pytorch.py's.

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use landfall::models::float_gemm;

fn values(n: usize, step: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * step + 0.3).sin()).collect()
}

/// The best of `runs` timings of `f`, after one warm-up call.
fn best(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() -> candle_core::Result<()> {
    // As the daemon starts: freed tensors stay in the heap for the next call.
    landfall::models::heap::keep_tensor_memory();
    let shapes: [(&str, usize, usize, usize); 11] = [
        ("bert b1 qkv/out", 64, 768, 768),
        ("bert b1 intermediate", 64, 768, 3072),
        ("bert b1 output", 64, 3072, 768),
        ("bert b16 qkv/out", 1024, 768, 768),
        ("bert b16 intermediate", 1024, 768, 3072),
        ("bert b16 output", 1024, 3072, 768),
        ("vit-g qkv", 257, 1408, 4224),
        ("vit-g projection", 257, 1408, 1408),
        ("vit-g fc1", 257, 1408, 6144),
        ("vit-g fc2", 257, 6144, 1408),
        ("vit-g fc1, 4 images", 1028, 1408, 6144),
    ];
    println!(
        "threads: {}\n{:<24} {:>6} {:>6} {:>6} {:>12} {:>12} {:>7}",
        candle_core::utils::get_num_threads(),
        "shape",
        "rows",
        "in",
        "out",
        "landfall",
        "candle",
        "ratio"
    );
    for (name, rows, in_dim, out_dim) in shapes {
        let x = values(rows * in_dim, 0.37);
        let w = values(out_dim * in_dim, 0.11);
        let bias = values(out_dim, 0.7);
        let flops = 2.0 * (rows * in_dim * out_dim) as f64;
        let runs = ((2e10 / flops) as usize).clamp(3, 200);
        let ours = best(runs, || {
            std::hint::black_box(float_gemm::matmul_wt(
                &x,
                rows,
                in_dim,
                &w,
                out_dim,
                Some(&bias),
            ));
        });
        let xt = Tensor::from_slice(&x, (rows, in_dim), &Device::Cpu)?;
        let wt = Tensor::from_slice(&w, (out_dim, in_dim), &Device::Cpu)?;
        let bt = Tensor::from_slice(&bias, out_dim, &Device::Cpu)?;
        let theirs = best(runs, || {
            let y = xt
                .matmul(&wt.t().expect("2-D"))
                .and_then(|y| y.broadcast_add(&bt));
            std::hint::black_box(y.expect("candle's matmul"));
        });
        let gflops = |d: Duration| flops / d.as_secs_f64() / 1e9;
        println!(
            "{name:<24} {rows:>6} {in_dim:>6} {out_dim:>6} {:>8.1} GF/s {:>7.1} GF/s {:>6.2}x",
            gflops(ours),
            gflops(theirs),
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    }
    Ok(())
}
