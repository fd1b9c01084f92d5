//! The CPU float GEMM for a layer's many-row products (BLIP-2's 257 image tokens, BERT's 64
//! tokens per text): `x W^T` with `W` as `torch.nn.Linear` stores it, `[out, in]`.
//!
//! On a CPU with AVX-512F the product runs landfall's own kernel ([`super::avx512_gemm`]): it
//! reads the weight rows in place (no per-call repacking of the weight, as the `gemm` crate
//! does) and adds the bias as it writes the output. `cargo bench --bench float_gemm` times it
//! beside candle's matmul at BERT's and ViT-g's shapes; benches/blip2_vs_pytorch.py and
//! benches/classifier_vs_pytorch.py measure the models beside PyTorch (figures in the README).
//!
//! Elsewhere the product is the `gemm` crate's, with the output columns cut into one piece per
//! thread of candle's CPU pool, each a single-threaded gemm (gemm's own threading left a core
//! idle on BERT's 64 rows). This crate's dependency on gemm turns on its `x86-v4` feature, so
//! every gemm call (candle's too) picks its AVX-512 kernels where the CPU has them.
//!
//! Layers use this module only where [`available`] says so (AVX-512F); elsewhere (AVX2-only x86,
//! aarch64's NEON) they keep candle's matmul. The product itself runs on any CPU, which the
//! tests use.

use candle_core::{DType, Result, Tensor};

#[cfg(target_arch = "x86_64")]
use super::avx512_gemm;
use super::cpu;
pub use super::weight_rows::{FloatRows, Product, WeightRows};

/// Output columns per piece are a multiple of this (the widest kernel's lanes).
const COLUMN_STEP: usize = 16;

/// Below this many multiply-adds a product runs on the calling thread alone: waking the pool
/// would cost more than it saves.
const SPLIT_FROM: usize = 1 << 18;

/// Whether many-row layers run here: an x86-64 CPU with AVX-512F.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x W^T + bias` for `x` `[rows, in_dim]` and `w` `[out_dim, in_dim]`, both row-major, and an
/// optional `bias` `[out_dim]`: `[rows, out_dim]`, row-major. The bias is where the product
/// accumulates into (gemm's `read_dst`), which saves a pass over the output.
pub fn matmul_wt(
    x: &[f32],
    rows: usize,
    in_dim: usize,
    w: &[f32],
    out_dim: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert_eq!(w.len(), out_dim * in_dim, "w is not out_dim × in_dim");
    matmul_rows(
        x,
        rows,
        in_dim,
        &FloatRows { values: w, in_dim },
        out_dim,
        bias,
    )
}

/// [`matmul_wt`] with the weight's rows from `w`: each thread's piece of output columns asks
/// for its rows [`WeightRows::rows_per_call`] at a time, so a weight stored in another form is
/// turned into f32 one cache-sized slice at a time, by the thread that uses it.
pub fn matmul_rows(
    x: &[f32],
    rows: usize,
    in_dim: usize,
    w: &dyn WeightRows,
    out_dim: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert_eq!(x.len(), rows * in_dim, "x is not rows × in_dim");
    if let Some(b) = bias {
        assert_eq!(b.len(), out_dim, "bias is not out_dim long");
    }
    let product = Product {
        x,
        rows,
        in_dim,
        w,
        out_dim,
        bias,
    };
    #[cfg(target_arch = "x86_64")]
    if avx512_gemm::available() {
        let parallel =
            candle_core::utils::get_num_threads() > 1 && rows * in_dim * out_dim >= SPLIT_FROM;
        return avx512_gemm::matmul_rows(&product, parallel);
    }
    with_gemm_crate(&product)
}

/// [`matmul_rows`] on the `gemm` crate, one single-threaded call per piece of output columns.
fn with_gemm_crate(p: &Product) -> Vec<f32> {
    let Product {
        x,
        rows,
        in_dim,
        w,
        out_dim,
        bias,
    } = *p;
    let mut out = match bias {
        Some(b) => b.repeat(rows),
        None => vec![0f32; rows * out_dim],
    };
    if rows == 0 || out_dim == 0 {
        return out;
    }
    let accumulate = bias.is_some();
    let threads = candle_core::utils::get_num_threads().max(1);
    let width = if threads == 1 || rows * in_dim * out_dim < SPLIT_FROM {
        out_dim
    } else {
        out_dim.div_ceil(threads).div_ceil(COLUMN_STEP) * COLUMN_STEP
    };
    let pieces = out_dim.div_ceil(width);
    let step = w.rows_per_call().max(1);
    let base = out.as_mut_ptr() as usize;
    let piece = |p: usize| {
        let mut scratch = Vec::new();
        let end = out_dim.min((p + 1) * width);
        let mut first = p * width;
        while first < end {
            let columns = step.min(end - first);
            let weight = w.rows(first, columns, &mut scratch);
            assert_eq!(
                weight.len(),
                columns * in_dim,
                "weight rows of the wrong size"
            );
            // SAFETY: this call writes columns `first..first + columns` of every output row,
            // which no other call touches; `out` outlives the pool call, which returns when all
            // are done; the reads stay inside `x` (rows × in_dim) and `weight` (columns × in_dim).
            unsafe {
                gemm::gemm(
                    rows,
                    columns,
                    in_dim,
                    (base as *mut f32).add(first),
                    1,
                    out_dim as isize,
                    accumulate,
                    x.as_ptr(),
                    1,
                    in_dim as isize,
                    weight.as_ptr(),
                    in_dim as isize,
                    1,
                    // dst = alpha · dst + beta · x W^T (alpha is read only with read_dst).
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            }
            first += columns;
        }
    };
    if pieces == 1 {
        piece(0);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(pieces, |range| range.for_each(piece));
    }
    out
}

/// [`matmul_wt`] on tensors: `x` `[..., in]`, a CPU f32 `weight` `[out, in]` and an optional
/// f32 `bias` `[out]`, giving `[..., out]`. `None` where the operands are not that (other
/// devices, dtypes or layouts), for the caller's own product.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Option<Result<Tensor>> {
    if weight.dtype() != DType::F32 || !weight.device().is_cpu() || !weight.is_contiguous() {
        return None;
    }
    let (out_dim, in_dim) = weight.dims2().ok()?;
    let values = cpu::f32_view(weight)?;
    linear_rows(
        x,
        &FloatRows {
            values: &values,
            in_dim,
        },
        out_dim,
        in_dim,
        bias,
    )
}

/// [`matmul_rows`] on tensors, for a weight `[out_dim, in_dim]` whose rows come from `w`. `None`
/// where `x` is not f32 on the CPU with `in_dim` last, or the bias is not f32 `[out_dim]`.
pub fn linear_rows(
    x: &Tensor,
    w: &dyn WeightRows,
    out_dim: usize,
    in_dim: usize,
    bias: Option<&Tensor>,
) -> Option<Result<Tensor>> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || x.dims().last() != Some(&in_dim) {
        return None;
    }
    let bias = match bias {
        None => None,
        Some(b) if b.dims() == [out_dim] => Some(cpu::f32_view(b)?),
        Some(_) => return None,
    };
    Some(product(x, w, out_dim, in_dim, bias.as_deref()))
}

fn product(
    x: &Tensor,
    w: &dyn WeightRows,
    out_dim: usize,
    in_dim: usize,
    bias: Option<&[f32]>,
) -> Result<Tensor> {
    let rows = x.elem_count() / in_dim.max(1);
    let x = x.contiguous()?;
    let y = match cpu::f32_view(&x) {
        Some(xs) => matmul_rows(&xs, rows, in_dim, w, out_dim, bias),
        None => candle_core::bail!("the float GEMM needs a contiguous f32 CPU input"),
    };
    Tensor::from_vec(y, cpu::with_last_dim(&x, out_dim), x.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn values(n: usize, step: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * step + 0.3).sin()).collect()
    }

    /// The plain triple loop, in f64.
    fn reference(x: &[f32], rows: usize, in_dim: usize, w: &[f32], out_dim: usize) -> Vec<f64> {
        let mut y = vec![0f64; rows * out_dim];
        for r in 0..rows {
            for o in 0..out_dim {
                y[r * out_dim + o] = (0..in_dim)
                    .map(|i| x[r * in_dim + i] as f64 * w[o * in_dim + i] as f64)
                    .sum();
            }
        }
        y
    }

    #[test]
    fn matches_the_plain_product_split_or_not() {
        // Small (one piece), split with a ragged last piece, one row, and widths under a step.
        for (rows, in_dim, out_dim) in [
            (3, 5, 7),
            (64, 96, 200),
            (1, 512, 1000),
            (37, 384, 17),
            (257, 88, 130),
            (16, 40, 12),
            (33, 64, 25),
            (48, 1, 13),
        ] {
            let x = values(rows * in_dim, 0.37);
            let w = values(out_dim * in_dim, 0.11);
            let rows_of = FloatRows { values: &w, in_dim };
            // Both kernels: the gemm crate's, and the one `matmul_wt` picks here.
            let crate_result = with_gemm_crate(&Product {
                x: &x,
                rows,
                in_dim,
                w: &rows_of,
                out_dim,
                bias: None,
            });
            let got = matmul_wt(&x, rows, in_dim, &w, out_dim, None);
            let worst = crate_result
                .iter()
                .zip(&reference(&x, rows, in_dim, &w, out_dim))
                .map(|(g, w)| (*g as f64 - w).abs() / (1.0 + w.abs()))
                .fold(0f64, f64::max);
            assert!(
                worst < 1e-5,
                "gemm crate {rows}x{in_dim}x{out_dim}: {worst}"
            );
            let want = reference(&x, rows, in_dim, &w, out_dim);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (*g as f64 - w).abs() / (1.0 + w.abs()))
                .fold(0f64, f64::max);
            assert!(
                worst < 1e-5,
                "{rows}x{in_dim}x{out_dim}: relative error {worst}"
            );
            // With a bias, every piece adds it to its own columns, once.
            let bias = values(out_dim, 0.7);
            let got = matmul_wt(&x, rows, in_dim, &w, out_dim, Some(&bias));
            let worst = got
                .iter()
                .zip(&want)
                .enumerate()
                .map(|(i, (g, w))| {
                    let w = w + bias[i % out_dim] as f64;
                    (*g as f64 - w).abs() / (1.0 + w.abs())
                })
                .fold(0f64, f64::max);
            assert!(
                worst < 1e-5,
                "{rows}x{in_dim}x{out_dim} with bias: relative error {worst}"
            );
        }
    }

    #[test]
    fn linear_keeps_leading_dimensions_and_equals_candles_matmul() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::from_vec(values(2 * 33 * 48, 0.21), (2, 33, 48), &dev)?;
        let w = Tensor::from_vec(values(80 * 48, 0.05), (80, 48), &dev)?;
        let got = linear(&x, &w, None).expect("f32 CPU operands")?;
        assert_eq!(got.dims(), &[2, 33, 80]);
        let want = x.broadcast_matmul(&w.t()?)?;
        let diff = (got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "max |diff| {diff} against candle's matmul");
        let bias = Tensor::from_vec(values(80, 0.9), 80, &dev)?;
        let got = linear(&x, &w, Some(&bias)).expect("f32 CPU operands")?;
        let want = want.broadcast_add(&bias)?;
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(
            diff < 1e-4,
            "max |diff| {diff} against candle's matmul plus bias"
        );
        Ok(())
    }

    #[test]
    fn linear_leaves_other_operands_to_the_caller() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((4, 8), DType::F16, &dev)?;
        let w = Tensor::zeros((3, 8), DType::F32, &dev)?;
        assert!(linear(&x, &w, None).is_none(), "f16 input");
        let x = Tensor::zeros((4, 8), DType::F32, &dev)?;
        assert!(
            linear(&x, &w.t()?.t()?.to_dtype(DType::F16)?, None).is_none(),
            "f16 weight"
        );
        // A transposed weight is not `[out, in]` row-major.
        let wt = Tensor::zeros((8, 8), DType::F32, &dev)?.t()?;
        assert!(linear(&x, &wt, None).is_none(), "non-contiguous weight");
        assert!(
            linear(&x, &Tensor::zeros((3, 5), DType::F32, &dev)?, None).is_none(),
            "wrong width"
        );
        let short = Tensor::zeros(2, DType::F32, &dev)?;
        assert!(
            linear(&x, &w, Some(&short)).is_none(),
            "bias of the wrong length"
        );
        Ok(())
    }
}
