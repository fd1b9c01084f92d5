//! The exact (erf-based) GELU on the CPU, as BERT, ViT-g and the Q-Former run it between their
//! two MLP products: `x · (1 + erf(x / √2)) / 2`.
//!
//! candle computes it one element at a time through `libm::erff`, which has branches the
//! compiler cannot turn into vector code. Here erf is Abramowitz & Stegun's 7.1.26 (absolute
//! error under 1.5e-7, below f32's own rounding of values near 1) over a branch-free exp, so
//! the loop vectorizes: compiled once more for AVX2+FMA and for AVX-512F, picked at run time,
//! and NEON on aarch64 by default. The tensor is cut into chunks run on candle's CPU pool.
//! Other devices and dtypes keep candle's `gelu_erf`.

use candle_core::{DType, Result, Tensor};

use super::cpu;

/// Elements per chunk of work handed to the pool: big enough that one chunk outweighs taking it.
const CHUNK: usize = 1 << 14;

/// `e^x` for `x ≤ 0` (Cephes' `expf`: `x = n ln 2 + r`, a degree-5 polynomial for `e^r`, `2^n`
/// from the exponent bits), without branches. Below -87 it gives `e^-87` (≈ 1.6e-38), which
/// the erf below multiplies by at most 0.26 and then subtracts from 1.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    // 1.5 · 2^23: adding it rounds to the nearest integer n (what `round` does), and leaves n in
    // the low bits of the sum, so 2^n is built with integer operations only (a float-to-int
    // cast would not vectorize: Rust's `as` saturates, one lane at a time).
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // ln 2 in two parts, so `n ln 2` keeps its precision.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * (r * r) + r + 1.0;
    // n is in -126..=0 here, so n + 127 is a valid biased exponent.
    let two_n = (shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127))
        << 23;
    e * f32::from_bits(two_n)
}

/// erf by Abramowitz & Stegun 7.1.26.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_7) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp_nonpositive(-a * a)).copysign(x)
}

#[inline(always)]
fn gelu_one(x: f32) -> f32 {
    (erf(x * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * x
}

#[inline(always)]
fn gelu_portable(xs: &[f32], ys: &mut [f32]) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = gelu_one(x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_avx2(xs: &[f32], ys: &mut [f32]) {
    gelu_portable(xs, ys)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_avx512(xs: &[f32], ys: &mut [f32]) {
    gelu_portable(xs, ys)
}

/// One compiled form of the loop: GELU of `xs` into `ys`.
type Kernel = fn(&[f32], &mut [f32]);

/// The kernels this CPU can run, widest first (the tests compare them all).
fn kernels() -> Vec<(&'static str, Kernel)> {
    let mut found: Vec<(&'static str, Kernel)> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            found.push(("avx512f", |xs, ys| unsafe { gelu_avx512(xs, ys) }));
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            found.push(("avx2", |xs, ys| unsafe { gelu_avx2(xs, ys) }));
        }
    }
    found.push(("portable", gelu_portable));
    found
}

/// GELU of every element of `xs` into `ys` (equal lengths), on the widest kernel the CPU has.
pub fn gelu_slice(xs: &[f32], ys: &mut [f32]) {
    assert_eq!(
        xs.len(),
        ys.len(),
        "gelu_slice: input and output lengths differ"
    );
    static KERNEL: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    let kernel = KERNEL.get_or_init(|| kernels()[0].1);
    kernel(xs, ys)
}

/// [`gelu_slice`] in chunks on candle's CPU pool.
pub fn gelu_par(xs: &[f32]) -> Vec<f32> {
    let mut ys = vec![0f32; xs.len()];
    if xs.len() <= CHUNK {
        gelu_slice(xs, &mut ys);
    } else {
        cpu::for_each_chunk(&mut ys, CHUNK, |c, out| {
            gelu_slice(&xs[c * CHUNK..][..out.len()], out)
        });
    }
    ys
}

/// The exact GELU of a tensor: here for f32 on the CPU, candle's `gelu_erf` otherwise.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return x.gelu_erf();
    }
    let x = x.contiguous()?;
    let y = match cpu::f32_view(&x) {
        Some(xs) => gelu_par(&xs),
        None => candle_core::bail!("gelu_erf: a contiguous f32 CPU tensor was expected"),
    };
    Tensor::from_vec(y, x.dims(), x.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Inputs over the range activations take and beyond: dense near 0, the tails, ±0,
    /// subnormals, huge values.
    fn inputs() -> Vec<f32> {
        let mut xs: Vec<f32> = (0..200_001).map(|i| -10.0 + i as f32 * 1e-4).collect();
        xs.extend([
            0.0, -0.0, 1e-40, -1e-40, 1e-30, -30.0, 30.0, -1e30, 1e30, -87.5, 87.5,
        ]);
        xs
    }

    #[test]
    fn matches_candles_gelu_erf_on_every_kernel() -> Result<()> {
        let xs = inputs();
        let t = Tensor::from_vec(xs.clone(), xs.len(), &Device::Cpu)?;
        let want: Vec<f32> = t.gelu_erf()?.to_vec1()?;
        let kernels = kernels();
        assert!(kernels.iter().any(|(name, _)| *name == "portable"));
        for (name, kernel) in kernels {
            let mut got = vec![f32::NAN; xs.len()];
            kernel(&xs, &mut got);
            for ((x, g), w) in xs.iter().zip(&got).zip(&want) {
                // erf's error (1.5e-7 in exact arithmetic, measured up to 5.3e-7 in f32 against
                // libm) times |x| / 2, plus the product's rounding.
                let tol = 3e-7 * x.abs().max(1.0) + 1e-7 * w.abs();
                assert!(
                    (g - w).abs() <= tol,
                    "{name}: gelu({x}) = {g}, candle says {w}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn tensor_form_is_parallel_elementwise_and_keeps_the_shape() -> Result<()> {
        // Several chunks plus a ragged one, and a non-contiguous input.
        let rows = (3 * CHUNK + 77) / 7;
        let n = rows * 7;
        let xs: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.013).sin() * 6.0).collect();
        let t = Tensor::from_vec(xs.clone(), (rows, 7), &Device::Cpu)?;
        let y = gelu_erf(&t)?;
        assert_eq!(y.dims(), t.dims());
        let flat: Vec<f32> = y.flatten_all()?.to_vec1()?;
        for (x, y) in xs.iter().zip(&flat) {
            assert_eq!(*y, gelu_one(*x), "element of {x}");
        }
        let yt: Vec<Vec<f32>> = gelu_erf(&t.t()?)?.to_vec2()?;
        let want: Vec<Vec<f32>> = gelu_erf(&t)?.t()?.to_vec2()?;
        assert_eq!(yt, want);
        Ok(())
    }

    #[test]
    fn nan_stays_nan_and_the_tails_are_exact() {
        let mut y = [0f32; 4];
        gelu_slice(&[f32::NAN, -20.0, 20.0, 0.0], &mut y);
        assert!(y[0].is_nan());
        assert_eq!(y[1], 0.0);
        assert_eq!(y[2], 20.0);
        assert_eq!(y[3], 0.0);
    }
}
