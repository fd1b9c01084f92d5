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

/// Runs `item(i, out_chunk)` for every `chunk`-sized piece of `out` (`items` of them) on
/// candle's CPU pool; each piece is written by one work item alone.
fn for_each_chunk(out: &mut [f32], chunk: usize, item: impl Fn(usize, &mut [f32]) + Sync) {
    let items = out.len() / chunk;
    let base = out.as_mut_ptr() as usize;
    candle_core::utils::barrier_pool().execute_chunked(items, |range| {
        for i in range {
            // SAFETY: pieces `i` are disjoint, each taken by exactly one work item, and `out`
            // outlives the pool call, which returns only when every item is done.
            let piece =
                unsafe { std::slice::from_raw_parts_mut((base as *mut f32).add(i * chunk), chunk) };
            item(i, piece);
        }
    });
}
