//! A quantized weight as the float GEMM's row source: the image side's many-row products
//! (ViT-g's 257 tokens, the Q-Former) on q4_0, q4k or q8_0 weights.
//!
//! Dequantizing a whole layer first (candle's `QTensor::dequantize`, one thread) and then
//! multiplying wrote and re-read every weight as f32 through memory: at the 2.7B shape it cost
//! q4_0 about 1.8 s of vision time per image over fp32. Here each thread of
//! [`float_gemm::matmul_rows`] turns only the rows of its own output columns into f32, at most
//! [`ROWS_PER_CALL`] rows at a time into a buffer that stays in its cache, right before the
//! product reads them. The blocks are read in place (no copy of the weight). Q4_0, the captioner's
//! default, has a conversion of its own written for the compiler to vectorize (candle's
//! `to_float` goes one value at a time: 12% of q4_0's image side in a `perf` profile).

use candle_core::quantized::k_quants::{BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8_0, GgmlType};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Result, Tensor};

use super::decoding::packed_q4::f16_to_f32;
use super::float_gemm::{self, WeightRows};

/// Rows dequantized per call: 128 rows of ViT-g's 1408 (or the Q-Former's 768 and 3072) inputs
/// are 0.4–1.5 MiB of f32, a core's L2.
pub const ROWS_PER_CALL: usize = 128;

/// The rows of a `[out_dim, in_dim]` weight of `T` blocks, `in_dim / T::BLCK_SIZE` per row.
struct BlockRows<'q, T> {
    blocks: &'q [T],
    in_dim: usize,
}

impl<T: GgmlType> WeightRows for BlockRows<'_, T> {
    fn rows_per_call(&self) -> usize {
        ROWS_PER_CALL
    }

    fn rows<'a>(&'a self, first: usize, n: usize, scratch: &'a mut Vec<f32>) -> &'a [f32] {
        let per_row = self.in_dim / T::BLCK_SIZE;
        scratch.resize(n * self.in_dim, 0.0);
        T::to_float(
            &self.blocks[first * per_row..(first + n) * per_row],
            scratch,
        );
        scratch
    }
}

/// The rows of a `[out_dim, in_dim]` Q4_0 weight, read from its bytes by [`q4_0_to_f32`].
struct Q4_0Rows<'q> {
    bytes: &'q [u8],
    in_dim: usize,
}

impl WeightRows for Q4_0Rows<'_> {
    fn rows_per_call(&self) -> usize {
        ROWS_PER_CALL
    }

    fn rows<'a>(&'a self, first: usize, n: usize, scratch: &'a mut Vec<f32>) -> &'a [f32] {
        let row_bytes = self.in_dim / 32 * Q4_0_BYTES;
        scratch.resize(n * self.in_dim, 0.0);
        q4_0_to_f32(
            &self.bytes[first * row_bytes..(first + n) * row_bytes],
            scratch,
        );
        scratch
    }
}

/// Bytes of a GGML `BlockQ4_0`: an f16 scale `d`, then 16 bytes whose low nibbles are values
/// 0..16 and high nibbles values 16..32, each `(nibble - 8) · d`.
const Q4_0_BYTES: usize = 18;

/// Q4_0 blocks into f32, the same values as candle's `to_float`.
fn q4_0_to_f32(bytes: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { q4_0_avx512(bytes, out) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { q4_0_avx2(bytes, out) };
        }
    }
    q4_0_portable(bytes, out)
}

#[inline(always)]
fn q4_0_portable(bytes: &[u8], out: &mut [f32]) {
    for (block, out) in bytes.chunks_exact(Q4_0_BYTES).zip(out.chunks_exact_mut(32)) {
        let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        let (qs, (low, high)) = (&block[2..18], out.split_at_mut(16));
        for j in 0..16 {
            low[j] = ((qs[j] & 0x0F) as i16 - 8) as f32 * d;
            high[j] = ((qs[j] >> 4) as i16 - 8) as f32 * d;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn q4_0_avx512(bytes: &[u8], out: &mut [f32]) {
    q4_0_portable(bytes, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn q4_0_avx2(bytes: &[u8], out: &mut [f32]) {
    q4_0_portable(bytes, out)
}

/// `x W^T + bias` for a quantized CPU weight `q` `[out, in]` on the float GEMM, dequantizing as
/// it goes. `None` where this does not apply (a device other than the CPU, a block type not
/// handled here, a shape whose rows are not whole blocks, or operands
/// [`float_gemm::linear_rows`] refuses), for the caller's own product.
pub fn linear(x: &Tensor, q: &QTensor, bias: Option<&Tensor>) -> Option<Result<Tensor>> {
    if !q.device().is_cpu() {
        return None;
    }
    let (out_dim, in_dim) = q.shape().dims2().ok()?;
    let data = match q.data() {
        Ok(data) => data,
        Err(e) => return Some(Err(e)),
    };
    match q.dtype() {
        GgmlDType::Q4_0 => {
            let whole = in_dim % 32 == 0 && data.len() == out_dim * in_dim / 32 * Q4_0_BYTES;
            let rows = Q4_0Rows {
                bytes: &data,
                in_dim,
            };
            whole.then(|| float_gemm::linear_rows(x, &rows, out_dim, in_dim, bias))?
        }
        GgmlDType::Q8_0 => with_blocks::<BlockQ8_0>(x, &data, out_dim, in_dim, bias),
        GgmlDType::Q4K => with_blocks::<BlockQ4K>(x, &data, out_dim, in_dim, bias),
        GgmlDType::Q5K => with_blocks::<BlockQ5K>(x, &data, out_dim, in_dim, bias),
        GgmlDType::Q6K => with_blocks::<BlockQ6K>(x, &data, out_dim, in_dim, bias),
        _ => None,
    }
}

fn with_blocks<T: GgmlType>(
    x: &Tensor,
    data: &[u8],
    out_dim: usize,
    in_dim: usize,
    bias: Option<&Tensor>,
) -> Option<Result<Tensor>> {
    if !in_dim.is_multiple_of(T::BLCK_SIZE) {
        return None;
    }
    let count = out_dim * in_dim / T::BLCK_SIZE;
    let size = std::mem::size_of::<T>();
    if data.len() != count * size
        || !(data.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    {
        return None;
    }
    // SAFETY: `data` is the tensor's own storage of `count` blocks of `T` (its length and
    // alignment checked above), plain old data that lives as long as the borrow of `q`.
    let blocks = unsafe { std::slice::from_raw_parts(data.as_ptr() as *const T, count) };
    float_gemm::linear_rows(x, &BlockRows { blocks, in_dim }, out_dim, in_dim, bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn tensor(rows: usize, cols: usize, step: f32) -> Result<Tensor> {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| (i as f32 * step + 0.1).sin())
            .collect();
        Tensor::from_vec(values, (rows, cols), &Device::Cpu)
    }

    /// Every handled block type, with more output rows than one call dequantizes (and a ragged
    /// last call), against candle's dequantize-then-multiply.
    #[test]
    fn equals_dequantize_then_multiply() -> Result<()> {
        let x = tensor(300, 512, 0.013)?;
        let w = tensor(ROWS_PER_CALL * 3 + 40, 512, 0.007)?;
        let bias = Tensor::arange(0f32, w.dim(0)? as f32, &Device::Cpu)?;
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
        ] {
            let q = QTensor::quantize(&w, dtype)?;
            let want = x
                .matmul(&q.dequantize(&Device::Cpu)?.t()?)?
                .broadcast_add(&bias)?;
            let got = linear(&x, &q, Some(&bias)).expect("a CPU weight of whole blocks")?;
            // Relative to the output's size (up to ~500 here): the two products sum in
            // different orders.
            let diff = ((got - &want)?.abs()? / (want.abs()? + 1.0)?)?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-5, "{dtype:?}: max relative |diff| {diff}");
        }
        Ok(())
    }

    /// The vectorized Q4_0 conversion gives exactly candle's values, on every compiled form.
    #[test]
    fn q4_0_rows_are_candles_values() -> Result<()> {
        let w = tensor(40, 256, 0.031)?;
        let q = QTensor::quantize(&w, GgmlDType::Q4_0)?;
        let want: Vec<f32> = q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()?;
        let data = q.data()?;
        let mut got = vec![f32::NAN; want.len()];
        q4_0_to_f32(&data, &mut got);
        assert_eq!(got, want, "dispatched");
        let mut portable = vec![f32::NAN; want.len()];
        q4_0_portable(&data, &mut portable);
        assert_eq!(portable, want, "portable");
        Ok(())
    }

    #[test]
    fn leaves_what_it_does_not_handle_to_the_caller() -> Result<()> {
        let w = tensor(64, 256, 0.01)?;
        let x = tensor(4, 256, 0.02)?;
        let q = QTensor::quantize(&w, GgmlDType::Q4_1)?;
        assert!(linear(&x, &q, None).is_none(), "a block type not handled");
        let q = QTensor::quantize(&w, GgmlDType::Q8_0)?;
        let x16 = x.to_dtype(DType::F16)?;
        assert!(linear(&x16, &q, None).is_none(), "an f16 input");
        let narrow = tensor(4, 128, 0.02)?;
        assert!(
            linear(&narrow, &q, None).is_none(),
            "an input of the wrong width"
        );
        Ok(())
    }
}
