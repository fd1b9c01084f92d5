//! Where a float product's weight rows come from: the one trait the float GEMM
//! ([`super::float_gemm`]), its AVX-512 kernel ([`super::avx512_gemm`]) and the quantized row
//! sources ([`super::quantized_rows`]) share, so that none of them imports another for it.

/// Where a product's weight rows (`W` `[out_dim, in_dim]`, row-major) come from.
pub trait WeightRows: Sync {
    /// At most this many rows are asked for at once.
    fn rows_per_call(&self) -> usize;
    /// Rows `first..first + n` of `W`, row-major: borrowed where they are stored as f32, else
    /// written into `scratch` (which the caller keeps between calls of one thread).
    fn rows<'a>(&'a self, first: usize, n: usize, scratch: &'a mut Vec<f32>) -> &'a [f32];
}

/// A weight stored as f32, `[out_dim, in_dim]` row-major.
pub struct FloatRows<'w> {
    pub values: &'w [f32],
    pub in_dim: usize,
}

impl WeightRows for FloatRows<'_> {
    fn rows_per_call(&self) -> usize {
        usize::MAX
    }

    fn rows<'a>(&'a self, first: usize, n: usize, _: &'a mut Vec<f32>) -> &'a [f32] {
        &self.values[first * self.in_dim..(first + n) * self.in_dim]
    }
}

/// One product `x W^T + bias`: `x` `[rows, in_dim]` row-major, `W` `[out_dim, in_dim]` with its
/// rows from `w`, an optional `bias` `[out_dim]`; what each GEMM implementation is handed.
#[derive(Clone, Copy)]
pub struct Product<'a> {
    pub x: &'a [f32],
    pub rows: usize,
    pub in_dim: usize,
    pub w: &'a dyn WeightRows,
    pub out_dim: usize,
    pub bias: Option<&'a [f32]>,
}
