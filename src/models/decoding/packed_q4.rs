//! Q4_0 weights repacked for the CPU's few-row products (a decoder's one token per step), and the
//! x86 AVX2 kernel that runs them.
//!
//! Why our own: candle 0.11 runs Q4_0 on x86 through its generic per-column vec-dot (an f16
//! scale conversion per block and column, four shuffles to unpack each block's nibbles), which
//! decodes BLIP-2's OPT-2.7B at under a fifth of the memory bound; its Q4K kernels are fast but
//! keep a repacked copy beside the original blocks, doubling the decoder's memory. This layout
//! holds exactly the Q4_0 bits (18 bytes per 32 weights, as GGML stores them), *instead of* the
//! original blocks, arranged so one 32-byte load carries two blocks of one row and one 16-byte
//! load the scales of eight rows:
//!
//! for each group of 8 output rows, for each pair of 32-wide blocks `(2j, 2j+1)`: 8 f16 scales of
//! block `2j` (rows 0..8), 8 f16 scales of block `2j+1`, then per row 32 bytes whose low nibbles
//! are block `2j`'s 32 quants in order and whose high nibbles are block `2j+1`'s.
//!
//! Activations are rounded to 8 bits per 32-wide block, as GGML's Q8_0 and candle's quantized
//! products do (keeping the block scale in f32 where Q8_0 rounds it to f16), so results stay as
//! close to the dequantized weight's float product as candle's Q4_0 kernels.
//! Elsewhere (aarch64, x86 without AVX2/FMA/F16C) [`PackedQ4::supported`] says no and layers keep
//! candle's kernels; the portable kernel here exists as the reference the SIMD one is tested
//! against.

use super::{simd_available, tiled_product};

/// Values per GGML Q4_0 / Q8_0 block.
const BLOCK: usize = 32;
/// Output rows per group: one AVX2 register of f32 results.
const ROWS: usize = 8;
/// Bytes of one GGML `BlockQ4_0`: an f16 scale and 16 bytes of nibbles.
const GGML_BLOCK_BYTES: usize = 18;
/// Bytes of one (group, block pair) unit: 2 × 8 f16 scales and 8 rows × 32 bytes.
const UNIT_BYTES: usize = 2 * ROWS * 2 + ROWS * BLOCK;

/// A `[out, in]` Q4_0 weight in the grouped layout above.
#[derive(Debug)]
pub struct PackedQ4 {
    data: Vec<u8>,
    out_dim: usize,
    in_dim: usize,
}

/// One row of activations rounded to 8 bits per block: quants, per-block scale, per-block sum
/// of the quants (the kernel reads the weights' nibbles unsigned, 0..15, and takes `8 · Σq`
/// off afterwards instead of recentring every nibble).
struct QuantizedRow {
    qs: Vec<i8>,
    scales: Vec<f32>,
    sums: Vec<i32>,
}

impl PackedQ4 {
    /// Whether layers of this shape can run here: an x86-64 CPU with AVX2, FMA and F16C, rows
    /// in groups of 8, the input in pairs of blocks.
    pub fn supported(out_dim: usize, in_dim: usize) -> bool {
        simd_available() && fits(out_dim, in_dim)
    }

    /// Repacks GGML Q4_0 blocks (`out_dim` rows of `in_dim / 32` blocks, as candle's `QTensor`
    /// holds them) into the grouped layout. `None` when the shape does not fit the layout or
    /// `ggml` is not that many blocks.
    pub fn from_ggml(ggml: &[u8], out_dim: usize, in_dim: usize) -> Option<Self> {
        if !fits(out_dim, in_dim) {
            return None;
        }
        let blocks_per_row = in_dim / BLOCK;
        if ggml.len() != out_dim * blocks_per_row * GGML_BLOCK_BYTES {
            return None;
        }
        let pairs = blocks_per_row / 2;
        let mut data = vec![0u8; out_dim / ROWS * pairs * UNIT_BYTES];
        for (g, group) in data.chunks_exact_mut(pairs * UNIT_BYTES).enumerate() {
            for (j, unit) in group.chunks_exact_mut(UNIT_BYTES).enumerate() {
                let (scales, quants) = unit.split_at_mut(2 * ROWS * 2);
                for r in 0..ROWS {
                    let row = g * ROWS + r;
                    let block = |b: usize| {
                        let at = (row * blocks_per_row + b) * GGML_BLOCK_BYTES;
                        &ggml[at..at + GGML_BLOCK_BYTES]
                    };
                    let (first, second) = (block(2 * j), block(2 * j + 1));
                    scales[2 * r..2 * r + 2].copy_from_slice(&first[..2]);
                    scales[2 * (ROWS + r)..2 * (ROWS + r) + 2].copy_from_slice(&second[..2]);
                    for (i, byte) in quants[r * BLOCK..(r + 1) * BLOCK].iter_mut().enumerate() {
                        *byte = nibble(first, i) | (nibble(second, i) << 4);
                    }
                }
            }
        }
        Some(Self {
            data,
            out_dim,
            in_dim,
        })
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Bytes held: the same as the GGML blocks it came from.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The float weight, `[out, in]` row-major, exactly as GGML dequantizes Q4_0.
    pub fn dequantize(&self) -> Vec<f32> {
        let pairs = self.in_dim / (2 * BLOCK);
        let mut out = vec![0f32; self.out_dim * self.in_dim];
        for (g, group) in self.data.chunks_exact(pairs * UNIT_BYTES).enumerate() {
            for (j, unit) in group.chunks_exact(UNIT_BYTES).enumerate() {
                for r in 0..ROWS {
                    let (d0, d1) = unit_scales(unit, r);
                    let row = &mut out[(g * ROWS + r) * self.in_dim..][..self.in_dim];
                    let quants = &unit[2 * ROWS * 2 + r * BLOCK..][..BLOCK];
                    for (i, &q) in quants.iter().enumerate() {
                        row[2 * j * BLOCK + i] = ((q & 0x0F) as f32 - 8.0) * d0;
                        row[(2 * j + 1) * BLOCK + i] = ((q >> 4) as f32 - 8.0) * d1;
                    }
                }
            }
        }
        out
    }

    /// `y = x W^T` for `x` of `rows` rows of `in_dim` values: `rows × out_dim` values, on
    /// candle's CPU worker pool (groups of 8 output rows are the work items, so a step of
    /// decoding splits every weight across the cores; further rows reuse a group's weights
    /// from cache).
    pub fn matmul(&self, x: &[f32], rows: usize) -> Vec<f32> {
        self.run(x, rows, simd_available())
    }

    fn run(&self, x: &[f32], rows: usize, simd: bool) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.in_dim, "input is not rows × in_dim");
        let quantized: Vec<QuantizedRow> =
            x.chunks_exact(self.in_dim).map(QuantizedRow::new).collect();
        let group_bytes = self.in_dim / (2 * BLOCK) * UNIT_BYTES;
        tiled_product(rows, self.out_dim, ROWS, |g, piece| {
            let group = &self.data[g * group_bytes..(g + 1) * group_bytes];
            for (row, act) in quantized.iter().enumerate() {
                piece[row * ROWS..(row + 1) * ROWS].copy_from_slice(&group_dot(group, act, simd));
            }
        })
    }
}

/// Whether a weight `[out, in]` tiles into the layout: rows in 8s, the input in pairs of blocks.
fn fits(out_dim: usize, in_dim: usize) -> bool {
    out_dim > 0 && out_dim.is_multiple_of(ROWS) && in_dim > 0 && in_dim.is_multiple_of(2 * BLOCK)
}

impl QuantizedRow {
    /// GGML's Q8_0 rounding: per block, scale = max |x| / 127, quants = round(x / scale).
    fn new(x: &[f32]) -> Self {
        let blocks = x.len() / BLOCK;
        let mut qs = vec![0i8; x.len()];
        let mut scales = Vec::with_capacity(blocks);
        let mut sums = Vec::with_capacity(blocks);
        for (xb, qb) in x.chunks_exact(BLOCK).zip(qs.chunks_exact_mut(BLOCK)) {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (q, v) in qb.iter_mut().zip(xb) {
                *q = (v * id).round() as i8;
                sum += *q as i32;
            }
            scales.push(d);
            sums.push(sum);
        }
        Self { qs, scales, sums }
    }
}

/// Quant `i` (0..32) of a GGML Q4_0 block: low nibbles hold 0..16, high nibbles 16..32.
fn nibble(block: &[u8], i: usize) -> u8 {
    let byte = block[2 + i % 16];
    if i < 16 {
        byte & 0x0F
    } else {
        byte >> 4
    }
}

/// Row `r`'s scales of the unit's two blocks.
fn unit_scales(unit: &[u8], r: usize) -> (f32, f32) {
    let at = |i: usize| f16_to_f32(u16::from_le_bytes([unit[2 * i], unit[2 * i + 1]]));
    (at(r), at(ROWS + r))
}

/// IEEE binary16 to f32, exactly (the scalar paths only; the SIMD kernel converts with F16C).
pub(crate) fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = u32::from((bits >> 10) & 0x1F);
    let mant = u32::from(bits & 0x3FF);
    match exp {
        // Zero and subnormals: mant · 2^-24.
        0 => sign * mant as f32 / 16_777_216.0,
        31 => f32::from_bits(((bits as u32 & 0x8000) << 16) | 0x7F80_0000 | (mant << 13)),
        _ => f32::from_bits(((bits as u32 & 0x8000) << 16) | ((exp + 112) << 23) | (mant << 13)),
    }
}

/// The 8 dot products of one group's rows with one quantized activation row.
fn group_dot(group: &[u8], act: &QuantizedRow, simd: bool) -> [f32; ROWS] {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only true where `simd_available` found AVX2, FMA and F16C; the
        // group holds `act.scales.len() / 2` units (checked by the caller's shapes).
        return unsafe { avx2::group_dot(group, act) };
    }
    let _ = simd;
    portable_group_dot(group, act)
}

fn portable_group_dot(group: &[u8], act: &QuantizedRow) -> [f32; ROWS] {
    let mut acc = [0f32; ROWS];
    for (j, unit) in group.chunks_exact(UNIT_BYTES).enumerate() {
        let (xa, xb) = (
            &act.qs[2 * j * BLOCK..][..BLOCK],
            &act.qs[(2 * j + 1) * BLOCK..][..BLOCK],
        );
        for (r, acc) in acc.iter_mut().enumerate() {
            let quants = &unit[2 * ROWS * 2 + r * BLOCK..][..BLOCK];
            let (mut pa, mut pb) = (0i32, 0i32);
            for i in 0..BLOCK {
                pa += (quants[i] & 0x0F) as i32 * xa[i] as i32;
                pb += (quants[i] >> 4) as i32 * xb[i] as i32;
            }
            let (d0, d1) = unit_scales(unit, r);
            *acc += (pa - 8 * act.sums[2 * j]) as f32 * d0 * act.scales[2 * j];
            *acc += (pb - 8 * act.sums[2 * j + 1]) as f32 * d1 * act.scales[2 * j + 1];
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{QuantizedRow, BLOCK, ROWS, UNIT_BYTES};
    use std::arch::x86_64::*;

    /// Lane `r` of the result: the sum of the 8 lanes of `v[r]`.
    #[inline(always)]
    unsafe fn lane_sums(v: [__m256i; ROWS]) -> __m256i {
        // hadd works within 128-bit halves: after two rounds, lane r of the low half holds row
        // r's (r < 4) or row r+4's low-half sum, the high half the high-half sums.
        let t0 = _mm256_hadd_epi32(v[0], v[1]);
        let t1 = _mm256_hadd_epi32(v[2], v[3]);
        let t2 = _mm256_hadd_epi32(v[4], v[5]);
        let t3 = _mm256_hadd_epi32(v[6], v[7]);
        let u0 = _mm256_hadd_epi32(t0, t1);
        let u1 = _mm256_hadd_epi32(t2, t3);
        let low = _mm256_permute2x128_si256(u0, u1, 0x20);
        let high = _mm256_permute2x128_si256(u0, u1, 0x31);
        _mm256_add_epi32(low, high)
    }

    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `group` holds `act.scales.len() / 2` whole units.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn group_dot(group: &[u8], act: &QuantizedRow) -> [f32; ROWS] {
        let low_nibbles = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for (j, unit) in group.chunks_exact(UNIT_BYTES).enumerate() {
            let p = unit.as_ptr();
            let xa = _mm256_loadu_si256(act.qs.as_ptr().add(2 * j * BLOCK) as *const __m256i);
            let xb = _mm256_loadu_si256(act.qs.as_ptr().add((2 * j + 1) * BLOCK) as *const __m256i);
            let mut pa = [_mm256_setzero_si256(); ROWS];
            let mut pb = [_mm256_setzero_si256(); ROWS];
            for r in 0..ROWS {
                let w = _mm256_loadu_si256(p.add(2 * ROWS * 2 + r * BLOCK) as *const __m256i);
                let lo = _mm256_and_si256(w, low_nibbles);
                let hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), low_nibbles);
                // Unsigned nibbles (0..15) times signed activations: pairs fit i16 (≤ 3810).
                pa[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xa), ones);
                pb[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xb), ones);
            }
            let ia = _mm256_sub_epi32(lane_sums(pa), _mm256_set1_epi32(8 * act.sums[2 * j]));
            let ib = _mm256_sub_epi32(lane_sums(pb), _mm256_set1_epi32(8 * act.sums[2 * j + 1]));
            let da = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            let db = _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * ROWS) as *const __m128i));
            let sa = _mm256_mul_ps(da, _mm256_set1_ps(act.scales[2 * j]));
            let sb = _mm256_mul_ps(db, _mm256_set1_ps(act.scales[2 * j + 1]));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia), sa, acc);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ib), sb, acc);
        }
        let mut out = [0f32; ROWS];
        _mm256_storeu_ps(out.as_mut_ptr(), acc);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    /// A `[out, in]` weight of fixed values and its GGML Q4_0 blocks, as candle quantizes it.
    fn q4_0(out_dim: usize, in_dim: usize) -> (QTensor, Vec<u8>) {
        let w = Tensor::arange(0u32, (out_dim * in_dim) as u32, &Device::Cpu)
            .and_then(|t| t.to_dtype(candle_core::DType::F32))
            .and_then(|t| t.affine(0.37, 0.3))
            .and_then(|t| t.sin())
            .and_then(|t| t.reshape((out_dim, in_dim)))
            .expect("weight");
        let q = QTensor::quantize(&w, GgmlDType::Q4_0).expect("quantize");
        let bytes = q.data().expect("blocks").into_owned();
        (q, bytes)
    }

    fn activations(rows: usize, in_dim: usize) -> Vec<f32> {
        (0..rows * in_dim)
            .map(|i| ((i as f32) * 0.73 + 0.1).cos() * (1.0 + (i % 7) as f32))
            .collect()
    }

    #[test]
    fn dequantizes_exactly_as_ggml() {
        let (q, bytes) = q4_0(16, 128);
        let packed = PackedQ4::from_ggml(&bytes, 16, 128).expect("packs");
        let expected = q
            .dequantize(&Device::Cpu)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("dequantize");
        assert_eq!(packed.dequantize(), expected);
        assert_eq!(packed.bytes(), bytes.len(), "holds the Q4_0 bits, no more");
    }

    /// The portable kernel against the float product of the dequantized weight with the
    /// 8-bit-rounded activations: exact up to float rounding.
    #[test]
    fn portable_kernel_is_the_product_with_rounded_activations() {
        let (out_dim, in_dim, rows) = (24, 192, 3);
        let (_, bytes) = q4_0(out_dim, in_dim);
        let packed = PackedQ4::from_ggml(&bytes, out_dim, in_dim).expect("packs");
        let x = activations(rows, in_dim);
        let w = packed.dequantize();
        let got = packed.run(&x, rows, false);
        for (row, xr) in x.chunks_exact(in_dim).enumerate() {
            let act = QuantizedRow::new(xr);
            let rounded: Vec<f32> = act
                .qs
                .iter()
                .enumerate()
                .map(|(i, &q)| q as f32 * act.scales[i / BLOCK])
                .collect();
            for o in 0..out_dim {
                let want: f32 = w[o * in_dim..(o + 1) * in_dim]
                    .iter()
                    .zip(&rounded)
                    .map(|(a, b)| a * b)
                    .sum();
                let have = got[row * out_dim + o];
                assert!(
                    (want - have).abs() <= 1e-4 * (1.0 + want.abs()),
                    "row {row} out {o}: {have} vs {want}"
                );
            }
        }
    }

    /// The AVX2 kernel against the portable one (the same integers, float rounding apart), and
    /// against the float product of the dequantized weight with the unrounded activations: no
    /// further from it than candle's own Q4_0 product of the same blocks, which rounds the
    /// activations to 8 bits too (and their scales to f16, which this kernel does not).
    #[test]
    fn simd_kernel_matches_the_portable_one_and_stays_as_close_as_candle() {
        if !simd_available() {
            eprintln!("no AVX2/FMA/F16C here: the SIMD kernel is not compiled in use");
            return;
        }
        let (out_dim, in_dim, rows) = (40, 2560, 2);
        let (q, bytes) = q4_0(out_dim, in_dim);
        let packed = PackedQ4::from_ggml(&bytes, out_dim, in_dim).expect("packs");
        let x = activations(rows, in_dim);
        let simd = packed.run(&x, rows, true);
        let portable = packed.run(&x, rows, false);
        let candle = Tensor::from_vec(x.clone(), (rows, in_dim), &Device::Cpu)
            .and_then(|t| t.apply_op1_no_bwd(&q))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("candle's product");
        let w = packed.dequantize();
        let (mut ours, mut theirs) = (0f64, 0f64);
        for i in 0..rows * out_dim {
            let scale = 1.0 + portable[i].abs();
            assert!(
                (simd[i] - portable[i]).abs() <= 1e-4 * scale,
                "{i}: simd {} portable {}",
                simd[i],
                portable[i]
            );
            let (row, o) = (i / out_dim, i % out_dim);
            let exact: f64 = (0..in_dim)
                .map(|k| w[o * in_dim + k] as f64 * x[row * in_dim + k] as f64)
                .sum();
            ours += (simd[i] as f64 - exact).abs();
            theirs += (candle[i] as f64 - exact).abs();
        }
        assert!(
            ours > 0.0,
            "activations are rounded: the product cannot be exact"
        );
        assert!(
            ours <= 1.25 * theirs,
            "summed error {ours} from the float product, candle's {theirs}"
        );
    }

    #[test]
    fn converts_half_precision_exactly() {
        for (bits, want) in [
            (0x3C00u16, 1.0f32),
            (0xC000, -2.0),
            (0x3555, 0.333_251_95),
            (0x0001, 5.960_464_5e-8),
            (0x8400, -6.103_515_6e-5),
            (0x7BFF, 65504.0),
            (0x0000, 0.0),
        ] {
            assert_eq!(f16_to_f32(bits), want, "{bits:#06x}");
        }
        assert_eq!(f16_to_f32(0x7C00), f32::INFINITY);
        assert!(f16_to_f32(0x7E00).is_nan());
    }

    #[test]
    fn refuses_shapes_outside_the_layout() {
        let (_, bytes) = q4_0(16, 128);
        assert!(
            PackedQ4::from_ggml(&bytes, 12, 128).is_none(),
            "rows not in 8s"
        );
        assert!(
            PackedQ4::from_ggml(&bytes[..bytes.len() - 18], 16, 128).is_none(),
            "short"
        );
        assert!(
            PackedQ4::from_ggml(&bytes, 16, 96).is_none(),
            "odd block count"
        );
        assert!(!PackedQ4::supported(16, 96));
        assert!(!PackedQ4::supported(12, 128));
    }
}
