//! Turning a float weight into a quantized one: the one place `quantize` (GGUF files) and the
//! loader's at-load quantization go through, so a GGUF and `--quant` at load hold the same blocks.
//!
//! Q4_0 gets a scale of its own choosing. candle (like GGML's reference `quantize_row_q4_0`)
//! sets each block's scale so that its largest value lands exactly on -8: every other value is
//! then rounded on a grid fitted to one outlier. Here each block tries scales around that one
//! (the search GGML's `make_qx_quants` makes), refits each by least squares to the levels it
//! rounds to, rounds it to f16 as stored, and keeps the one whose block has the smallest squared
//! error — never worse than candle's, which is among the candidates. The blocks are plain GGML
//! Q4_0: every kernel and every reader of the file reads them unchanged.
//!
//! Q4_0 rows are quantized in parallel, a share of them per thread. The other types go through
//! candle's own quantizer, whole (splitting them into row shares for threads gave a q4k BLIP-2
//! whose logits no longer matched, though each share's blocks matched candle's in a unit test:
//! left for later).

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QTensor};
use candle_core::{DType, Device, Result, Tensor};
use half::f16;

use super::cpu;

/// Values per Q4_0 block, and its bytes: an f16 scale, then 16 bytes of two 4-bit levels each.
const Q4_0_BLOCK: usize = 32;
const Q4_0_BYTES: usize = 18;

/// Scales tried per block: the largest value maps to level -(8 + STEP·i) for i in
/// -SEARCH..=SEARCH (i = 0 is candle's choice).
const SEARCH: i32 = 4;
const STEP: f32 = 0.25;

/// Quantizes a `[rows, cols]` float weight (any float dtype, any device) to `dtype` on the
/// weight's device.
pub fn quantize(weight: &Tensor, dtype: GgmlDType) -> Result<QTensor> {
    let device = weight.device().clone();
    let (rows, cols) = weight.dims2()?;
    if cols % dtype.block_size() != 0 {
        candle_core::bail!(
            "a row of {cols} values does not divide into {dtype:?} blocks of {}",
            dtype.block_size()
        );
    }
    if dtype != GgmlDType::Q4_0 {
        // candle's quantizer, on the weight's device. On the CPU it reads a tensor's storage
        // from its start: a view into a larger tensor gets a storage of its own first.
        let w = weight.to_dtype(DType::F32)?.contiguous()?;
        let own = if w.device().is_cpu() && w.layout().start_offset() != 0 {
            Tensor::from_vec(w.flatten_all()?.to_vec1::<f32>()?, (rows, cols), w.device())?
        } else {
            w
        };
        return QTensor::quantize(&own, dtype);
    }
    let cpu = weight
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .contiguous()?;
    let values = cpu::f32_view(&cpu).ok_or_else(|| {
        candle_core::Error::Msg("a contiguous f32 CPU tensor has an f32 view".into())
    })?;
    let values: &[f32] = &values;
    let shares = in_row_shares(rows, |first, n| {
        q4_0_bytes(&values[first * cols..(first + n) * cols])
    });
    let mut bytes = Vec::with_capacity(rows * cols / Q4_0_BLOCK * Q4_0_BYTES);
    for share in shares {
        bytes.extend_from_slice(&share);
    }
    qtensor_from_ggml(dtype, &bytes, vec![rows, cols], &device)
}

/// Runs `share(first_row, rows)` over `rows` split into one share per available core, and
/// returns the results in row order.
fn in_row_shares<T: Send>(rows: usize, share: impl Fn(usize, usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = rows.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..rows)
            .step_by(per)
            .map(|first| {
                let share = &share;
                s.spawn(move || share(first, per.min(rows - first)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Q4_0 blocks of `x` (a multiple of 32 values), in GGML's byte layout.
fn q4_0_bytes(x: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; x.len() / Q4_0_BLOCK * Q4_0_BYTES];
    for (block, bytes) in x
        .chunks_exact(Q4_0_BLOCK)
        .zip(out.chunks_exact_mut(Q4_0_BYTES))
    {
        let block: &[f32; Q4_0_BLOCK] = block.try_into().expect("chunks of 32");
        let (d, levels) = q4_0_block(block);
        bytes[..2].copy_from_slice(&d.to_le_bytes());
        for j in 0..Q4_0_BLOCK / 2 {
            bytes[2 + j] = levels[j] | (levels[j + Q4_0_BLOCK / 2] << 4);
        }
    }
    out
}

/// One block's stored scale and its 32 levels (0..16, value `(level - 8) · d`), chosen by the
/// smallest squared error over the candidate scales.
fn q4_0_block(x: &[f32; Q4_0_BLOCK]) -> (f16, [u8; Q4_0_BLOCK]) {
    let mut max = 0f32;
    for &v in x {
        if v.abs() > max.abs() {
            max = v;
        }
    }
    let d0 = f16::from_f32(max / -8.0);
    if max == 0.0 || !max.is_finite() {
        // All zeros, or a value no scale fits: candle's own block.
        return (d0, levels_for(x, d0.to_f32()));
    }
    // Each candidate's levels are those its own grid rounds to; with the sums over them, the
    // error of a refitted scale d is Σx² − 2dΣxl + d²Σl², no second pass over the values.
    let sum_xx: f32 = x.iter().map(|v| v * v).sum();
    let error = |d: f32, sum_xl: f32, sum_ll: f32| sum_xx - 2.0 * d * sum_xl + d * d * sum_ll;
    let (xl0, ll0) = level_sums(x, 1.0 / d0.to_f32());
    let mut best = (error(d0.to_f32(), xl0, ll0), d0);
    for i in -SEARCH..=SEARCH {
        let (sum_xl, sum_ll) = level_sums(x, -(8.0 + STEP * i as f32) / max);
        if sum_ll == 0.0 {
            continue;
        }
        let d = f16::from_f32(sum_xl / sum_ll);
        let err = error(d.to_f32(), sum_xl, sum_ll);
        if err < best.0 {
            best = (err, d);
        }
    }
    // Each value to its nearest level of the chosen grid: lowers the error further, if at all.
    (best.1, levels_for(x, best.1.to_f32()))
}

/// Σx·l and Σl² over the levels l (-8..8) that `x · iscale` rounds to.
fn level_sums(x: &[f32; Q4_0_BLOCK], iscale: f32) -> (f32, f32) {
    let (mut sum_xl, mut sum_ll) = (0f32, 0f32);
    for &v in x {
        let l = level(v * iscale) as f32 - 8.0;
        sum_xl += v * l;
        sum_ll += l * l;
    }
    (sum_xl, sum_ll)
}

/// The stored level (0..16) of `scaled` (a value over its scale) rounded to nearest, as candle
/// rounds: `+ 8.5` then truncation, clamped first so the conversion needs no rounding
/// instruction beyond SSE2's.
fn level(scaled: f32) -> u8 {
    (scaled + 8.5).clamp(0.0, 15.5) as u8
}

/// Every value of `x` at its nearest level of the grid of scale `d`.
fn levels_for(x: &[f32; Q4_0_BLOCK], d: f32) -> [u8; Q4_0_BLOCK] {
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut levels = [8u8; Q4_0_BLOCK];
    for (l, &v) in levels.iter_mut().zip(x) {
        *l = level(v * id);
    }
    levels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mse(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    fn weight(rows: usize, cols: usize) -> Tensor {
        Tensor::randn(0f32, 0.02, (rows, cols), &Device::Cpu).unwrap()
    }

    #[test]
    fn q4_0_search_beats_candles_scale_and_reads_back_as_q4_0() {
        let w = weight(96, 512);
        let ours = quantize(&w, GgmlDType::Q4_0).unwrap();
        let candle = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
        assert_eq!(ours.dtype(), GgmlDType::Q4_0);
        assert_eq!(ours.shape().dims(), &[96, 512]);
        assert_eq!(ours.storage_size_in_bytes(), candle.storage_size_in_bytes());
        // Read back by candle's own Q4_0 dequantizer: the bytes are GGML's layout.
        let ours_err = mse(&ours.dequantize(&Device::Cpu).unwrap(), &w);
        let candle_err = mse(&candle.dequantize(&Device::Cpu).unwrap(), &w);
        eprintln!(
            "q4_0 mse: searched {ours_err:.3e}, candle {candle_err:.3e} ({:.3})",
            ours_err / candle_err
        );
        assert!(ours_err < 0.9 * candle_err, "{ours_err} vs {candle_err}");
    }

    #[test]
    fn every_block_is_at_least_as_good_as_candles() {
        // Heavy outliers, constant blocks, zeros: the shapes a scale search can get wrong.
        let mut values: Vec<f32> = weight(4, 256).flatten_all().unwrap().to_vec1().unwrap();
        values[3] = 1.5;
        values[40] = -2.0;
        values[64..96].iter_mut().for_each(|v| *v = 0.25);
        values[96..128].iter_mut().for_each(|v| *v = 0.0);
        let w = Tensor::from_vec(values, (4, 256), &Device::Cpu).unwrap();
        let ours = quantize(&w, GgmlDType::Q4_0)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let candle = QTensor::quantize(&w, GgmlDType::Q4_0)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let block_err = |t: &Tensor| -> Vec<f32> {
            (t - &w)
                .unwrap()
                .sqr()
                .unwrap()
                .reshape((32, 32))
                .unwrap()
                .sum(1)
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        for (i, (o, c)) in block_err(&ours).iter().zip(block_err(&candle)).enumerate() {
            assert!(
                *o <= c * (1.0 + 1e-6) + 1e-12,
                "block {i}: {o} > candle's {c}"
            );
        }
        // The zero block stays exactly zero.
        let zeros: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
        assert!(zeros[96..128].iter().all(|v| *v == 0.0));
    }

    #[test]
    fn other_types_are_candles_blocks_also_for_a_view() {
        // Rows 5.. of a larger weight: a view whose storage starts elsewhere.
        let all = weight(42, 256);
        let view = all.narrow(0, 5, 37).unwrap();
        let own = Tensor::from_vec(
            view.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            (37, 256),
            &Device::Cpu,
        )
        .unwrap();
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q4_0] {
            let ours = quantize(&view, dtype).unwrap();
            let want = quantize(&own, dtype).unwrap();
            assert_eq!(ours.data().unwrap(), want.data().unwrap(), "{dtype:?}");
        }
        let candle = QTensor::quantize(&own, GgmlDType::Q8_0).unwrap();
        let ours = quantize(&view, GgmlDType::Q8_0).unwrap();
        assert_eq!(ours.data().unwrap(), candle.data().unwrap());
    }

    #[test]
    fn rows_that_do_not_fill_blocks_are_refused() {
        let err = quantize(&weight(2, 48), GgmlDType::Q4_0).unwrap_err();
        assert!(err.to_string().contains("48"), "{err}");
    }
}
