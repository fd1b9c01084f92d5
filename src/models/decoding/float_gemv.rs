//! `y = x W^T` for an f32 weight `[out, in]` and a few rows of `x`: every weight row is streamed
//! once per call, four rows at a time against one load of `x` (candle's float GEMM packs the
//! weight into panels first, which for one row of `x` costs more than the product).

use super::{simd_available, tiled_product};

/// Output rows per work item: four dot products sharing the activation loads.
const ROWS: usize = 4;

/// Whether a weight `[out, in]` can run here (x86-64 with AVX2 and FMA; `in` in 8s, `out` in 4s).
pub fn supported(out_dim: usize, in_dim: usize) -> bool {
    simd_available()
        && out_dim > 0
        && out_dim.is_multiple_of(ROWS)
        && in_dim > 0
        && in_dim.is_multiple_of(8)
}

/// `rows × out` values of `x W^T`, `weight` row-major `[out, in]`, `x` row-major `[rows, in]`.
pub fn matmul(weight: &[f32], out_dim: usize, in_dim: usize, x: &[f32], rows: usize) -> Vec<f32> {
    run(weight, out_dim, in_dim, x, rows, simd_available())
}

fn run(
    weight: &[f32],
    out_dim: usize,
    in_dim: usize,
    x: &[f32],
    rows: usize,
    simd: bool,
) -> Vec<f32> {
    assert_eq!(weight.len(), out_dim * in_dim, "weight is not out × in");
    assert_eq!(x.len(), rows * in_dim, "input is not rows × in");
    tiled_product(rows, out_dim, ROWS, |tile, piece| {
        let w = &weight[tile * ROWS * in_dim..(tile + 1) * ROWS * in_dim];
        for (row, xr) in x.chunks_exact(in_dim).enumerate() {
            piece[row * ROWS..(row + 1) * ROWS].copy_from_slice(&dot4(w, xr, simd));
        }
    })
}

/// The dot products of `x` with the four consecutive rows in `w`.
fn dot4(w: &[f32], x: &[f32], simd: bool) -> [f32; ROWS] {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only true where AVX2 and FMA were found; `w` holds 4 rows of
        // `x.len()` values, a multiple of 8 (`supported`).
        return unsafe { avx2::dot4(w, x) };
    }
    let _ = simd;
    let n = x.len();
    std::array::from_fn(|r| {
        w[r * n..(r + 1) * n]
            .iter()
            .zip(x)
            .map(|(a, b)| a * b)
            .sum()
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::ROWS;
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// # Safety
    /// AVX2 and FMA are present; `w` holds `ROWS` rows of `x.len()` values, a multiple of 8.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot4(w: &[f32], x: &[f32]) -> [f32; ROWS] {
        let n = x.len();
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        let mut acc = [_mm256_setzero_ps(); ROWS];
        let mut i = 0;
        while i < n {
            let xv = _mm256_loadu_ps(xp.add(i));
            for (r, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(_mm256_loadu_ps(wp.add(r * n + i)), xv, *acc);
            }
            i += 8;
        }
        [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, step: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * step + 0.3).sin()).collect()
    }

    #[test]
    fn matches_the_plain_product_at_one_and_several_rows() {
        let (out_dim, in_dim) = (12, 264);
        let w = values(out_dim * in_dim, 0.37);
        for rows in [1, 3] {
            let x = values(rows * in_dim, 0.73);
            for simd in [false, simd_available()] {
                let got = run(&w, out_dim, in_dim, &x, rows, simd);
                for r in 0..rows {
                    for o in 0..out_dim {
                        let want: f32 = (0..in_dim)
                            .map(|i| w[o * in_dim + i] * x[r * in_dim + i])
                            .sum();
                        let have = got[r * out_dim + o];
                        assert!(
                            (want - have).abs() < 1e-4,
                            "rows {rows} simd {simd} [{r},{o}]: {have} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn refuses_shapes_it_does_not_tile() {
        assert!(!supported(6, 64), "out not in 4s");
        assert!(!supported(8, 60), "in not in 8s");
        assert!(!supported(0, 64));
    }
}
