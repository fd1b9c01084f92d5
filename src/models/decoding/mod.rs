//! CPU kernels for a decoder's few-row products: one token per step multiplies every weight of
//! the model by a single row, which is a matrix-vector product bounded by memory bandwidth, not
//! the GEMM candle's CPU backend is built around (its float GEMM packs for many rows; its Q4_0
//! kernel converts scales and unpacks nibbles per column). Layers opt in through
//! [`crate::models::linear::BaseLinear::for_decoding`]; the work is split over candle's own CPU
//! worker pool, so the two never compete for cores.
//!
//! x86-64 only, where AVX2, FMA and F16C are present (checked at run time): elsewhere, aarch64
//! among them, layers keep candle's kernels (its NEON Q4_0 path is repacked and fast there).

pub mod float_gemv;
pub mod packed_q4;

use super::cpu::for_each_chunk;

/// Whether this CPU runs the kernels here.
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `rows × out_dim` outputs computed `width` output rows at a time: `fill(tile, piece)` writes
/// tile `tile`'s `rows × width` values, laid out `[row][width]`, on candle's CPU pool; the tiles
/// are then put back in `[row][out]` order (nothing to move for one row).
fn tiled_product(
    rows: usize,
    out_dim: usize,
    width: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    // Laid out [tile][row][width] while computing, so each work item owns one contiguous piece.
    let mut tiles = vec![0f32; rows * out_dim];
    for_each_chunk(&mut tiles, rows * width, fill);
    if rows == 1 {
        return tiles;
    }
    let mut out = vec![0f32; rows * out_dim];
    for tile in 0..out_dim / width {
        for row in 0..rows {
            let from = (tile * rows + row) * width;
            out[row * out_dim + tile * width..][..width]
                .copy_from_slice(&tiles[from..from + width]);
        }
    }
    out
}
