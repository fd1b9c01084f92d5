//! The AVX-512 kernel under [`super::float_gemm`]: `x W^T + bias` for a layer's many rows, with
//! `W` read as `torch.nn.Linear` stores it (`[out, in]`, row-major), in place.
//!
//! The `gemm` crate that candle calls packs the weight into a panel layout of its own on every
//! call. Here the roles are turned around so that the weight needs no packing: `x` is packed once
//! per call into tiles of 32 rows laid out `[in][32]` (two vectors of 16 rows per input index;
//! `rows · in` values, a small fraction of the product's work), and each weight row is read
//! where it lies, one value at a time, broadcast into a vector. One kernel call keeps 12 output
//! columns × 32 rows in 24 of the 32 vector registers and does 24 multiply-adds per input index
//! for 2 vector loads and 12 broadcasts. A last tile of at most 16 rows runs the one-vector
//! variant.
//!
//! Blocking, for the caches of one core: the inputs go in slices of [`KC`] (a 12-row slice of
//! the weight stays in L1), the tiles in blocks of [`BLOCK_TILES`] (a block's slice of `x` stays
//! in L2 while every column group of a chunk reads it), the output columns in chunks of
//! [`CHUNK`] whose partial sums wait in a per-thread buffer between slices. Each thread takes one
//! contiguous share of the columns; the sums are written into the row-major output, bias added,
//! at the end. `cargo bench --bench float_gemm` measures it beside candle's matmul.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::cpu;
use super::weight_rows::Product;

/// Output columns per kernel call.
const COLUMNS: usize = 12;
/// Rows (tokens) per tile, and per vector.
const TILE: usize = 32;
const LANES: usize = 16;

/// Whether the CPU runs this kernel.
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// `x` `[rows, in_dim]` in tiles of [`TILE`] rows (the last of [`LANES`] where the remainder
/// fits one vector), each tile `[in_dim][width]`; rows past the end are zeros.
struct PackedRows {
    data: Vec<f32>,
    rows: usize,
    in_dim: usize,
}

impl PackedRows {
    fn new(x: &[f32], rows: usize, in_dim: usize, parallel: bool) -> Self {
        let padded = rows.div_ceil(LANES) * LANES;
        let mut data = vec![0f32; padded * in_dim];
        let pack = |tile: usize, out: &mut [f32]| {
            let width = out.len() / in_dim;
            let first = tile * TILE;
            let valid = width.min(rows.saturating_sub(first));
            // Written in order, read from `valid` rows at once.
            for (k, column) in out.chunks_exact_mut(width).enumerate() {
                for (j, v) in column[..valid].iter_mut().enumerate() {
                    *v = x[(first + j) * in_dim + k];
                }
            }
        };
        if in_dim > 0 {
            if parallel {
                cpu::for_each_chunk(&mut data, TILE * in_dim, pack);
            } else {
                data.chunks_mut(TILE * in_dim)
                    .enumerate()
                    .for_each(|(i, t)| pack(i, t));
            }
        }
        Self { data, rows, in_dim }
    }

    /// Each tile: its first row, its width (32 or 16) and its values.
    fn tiles(&self) -> impl Iterator<Item = (usize, usize, &[f32])> {
        self.data
            .chunks(TILE * self.in_dim.max(1))
            .enumerate()
            .map(|(i, t)| (i * TILE, t.len() / self.in_dim.max(1), t))
            .filter(move |(first, _, _)| *first < self.rows)
    }
}

thread_local! {
    /// Per thread: weight rows turned into f32 (for weights stored otherwise), and a chunk's
    /// accumulators, kept between calls.
    static SCRATCH: RefCell<(Vec<f32>, Vec<Acc>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Input values per pass over the accumulators: a 12-column slice of the weight (12 KiB) stays
/// in L1 while the tiles of a row block stream past it.
const KC: usize = 256;
/// Tiles per row block: 8 tiles × [`KC`] inputs of `x` are 256 KiB, which stay in a core's L2
/// while every column group of a chunk reads them.
const BLOCK_TILES: usize = 256 / TILE;
/// Output columns whose weight rows are asked for at once (8 groups): 96 rows of up to ViT-g's
/// 6144 inputs, within a quantized source's `rows_per_call`.
const CHUNK: usize = 8 * COLUMNS;

/// One group's accumulators for one tile: 12 columns × 32 rows.
type Acc = [[f32; TILE]; COLUMNS];

/// `x W^T + bias` (`[rows, out_dim]`, row-major), on candle's CPU pool where `parallel` (else on
/// this thread). The caller checked [`available`].
pub fn matmul_rows(p: &Product, parallel: bool) -> Vec<f32> {
    let Product {
        x,
        rows,
        in_dim,
        w,
        out_dim,
        bias,
    } = *p;
    let mut out = vec![0f32; rows * out_dim];
    if rows == 0 || out_dim == 0 {
        return out;
    }
    let packed = PackedRows::new(x, rows, in_dim, parallel);
    let tiles: Vec<(usize, usize, &[f32])> = packed.tiles().collect();
    let base = out.as_mut_ptr() as usize;
    // Each thread one contiguous share of the column groups, so that the row blocks it keeps in
    // its L2 serve all of them.
    let threads = if parallel {
        candle_core::utils::get_num_threads().max(1)
    } else {
        1
    };
    let groups = out_dim.div_ceil(COLUMNS);
    let per_thread = groups.div_ceil(threads);
    let share = |t: usize| {
        let first = (t * per_thread * COLUMNS).min(out_dim);
        let end = ((t + 1) * per_thread * COLUMNS).min(out_dim);
        let mut chunk = first;
        while chunk < end {
            let n = CHUNK.min(end - chunk);
            SCRATCH.with_borrow_mut(|(scratch, acc)| {
                let weight = w.rows(chunk, n, scratch);
                assert_eq!(weight.len(), n * in_dim, "weight rows of the wrong size");
                let columns = ChunkColumns {
                    weight,
                    first: chunk,
                    n,
                    in_dim,
                    bias,
                };
                columns.product(&tiles, acc);
                columns.write(acc, &tiles, rows, out_dim, base);
            });
            chunk += n;
        }
    };
    if threads == 1 {
        share(0);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(threads, |range| range.for_each(share));
    }
    out
}

/// The output columns `first..first + n` of one chunk, their weight rows and bias.
struct ChunkColumns<'a> {
    weight: &'a [f32],
    first: usize,
    n: usize,
    in_dim: usize,
    bias: Option<&'a [f32]>,
}

impl ChunkColumns<'_> {
    /// Fills `acc` with the sums of every (group, tile) of this chunk, group-major.
    fn product(&self, tiles: &[(usize, usize, &[f32])], acc: &mut Vec<Acc>) {
        let groups = self.n.div_ceil(COLUMNS);
        acc.clear();
        acc.resize(groups * tiles.len(), [[0f32; TILE]; COLUMNS]);
        for k0 in (0..self.in_dim).step_by(KC) {
            let kc = KC.min(self.in_dim - k0);
            for block in (0..tiles.len()).step_by(BLOCK_TILES) {
                let block_end = tiles.len().min(block + BLOCK_TILES);
                for g in 0..groups {
                    let c0 = g * COLUMNS;
                    let last = self.n - 1;
                    // Missing columns of the last group repeat its last row; they are not
                    // written out.
                    let w_rows: [*const f32; COLUMNS] = std::array::from_fn(|c| {
                        self.weight[(c0 + c).min(last) * self.in_dim + k0..].as_ptr()
                    });
                    for t in block..block_end {
                        let (_, width, values) = tiles[t];
                        let x = values[k0 * width..].as_ptr();
                        let a = &mut acc[g * tiles.len() + t];
                        // SAFETY: AVX-512F is there (`matmul_rows`'s caller checked); `x` holds
                        // kc × width values from k0 on, each of `w_rows` kc values.
                        unsafe {
                            match width / LANES {
                                1 => kernel::<1>(x, &w_rows, kc, a),
                                2 => kernel::<2>(x, &w_rows, kc, a),
                                3 => kernel::<3>(x, &w_rows, kc, a),
                                _ => kernel::<4>(x, &w_rows, kc, a),
                            }
                        }
                    }
                }
            }
        }
    }

    /// Writes the accumulators into the row-major output at `base` (`[rows, out_dim]`), row
    /// by row: each row's columns of this chunk are contiguous.
    fn write(
        &self,
        acc: &[Acc],
        tiles: &[(usize, usize, &[f32])],
        rows: usize,
        out_dim: usize,
        base: usize,
    ) {
        let groups = self.n.div_ceil(COLUMNS);
        for (t, &(first_row, width, _)) in tiles.iter().enumerate() {
            for j in 0..width.min(rows - first_row) {
                let row = (first_row + j) * out_dim + self.first;
                // SAFETY: row first_row + j < rows and columns first..first + n < out_dim:
                // inside the output, whose columns of this chunk no other thread writes; the
                // output outlives the pool call.
                let out =
                    unsafe { std::slice::from_raw_parts_mut((base as *mut f32).add(row), self.n) };
                for g in 0..groups {
                    let a = &acc[g * tiles.len() + t];
                    let c0 = g * COLUMNS;
                    let columns = &mut out[c0..(c0 + COLUMNS).min(self.n)];
                    match self.bias {
                        // Added to the finished sum: accumulating from a bias much larger than
                        // the products' terms would round every term to its scale.
                        Some(b) => {
                            let b = &b[self.first + c0..];
                            for (c, o) in columns.iter_mut().enumerate() {
                                *o = a[c][j] + b[c];
                            }
                        }
                        None => {
                            for (c, o) in columns.iter_mut().enumerate() {
                                *o = a[c][j];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One tile: `acc[c][j] += Σ_k x[k][j] · w_rows[c][k]` for `kc` inputs, [`COLUMNS`] columns
/// and `V` vectors of 16 rows (`x` laid out `[kc][16 V]`, the tile's row stride).
///
/// # Safety
/// The CPU has AVX-512F; `x` holds `kc · 16 V` values and each of `w_rows` `kc`.
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const V: usize>(
    x: *const f32,
    w_rows: &[*const f32; COLUMNS],
    kc: usize,
    acc: &mut Acc,
) {
    let mut sums = [[_mm512_setzero_ps(); V]; COLUMNS];
    for (s, a) in sums.iter_mut().zip(acc.iter()) {
        for (v, lane) in s.iter_mut().enumerate() {
            *lane = _mm512_loadu_ps(a.as_ptr().add(v * LANES));
        }
    }
    let mut xp = x;
    for k in 0..kc {
        let mut xv = [_mm512_setzero_ps(); V];
        for (v, lane) in xv.iter_mut().enumerate() {
            *lane = _mm512_loadu_ps(xp.add(v * LANES));
        }
        for (s, row) in sums.iter_mut().zip(w_rows) {
            let wv = _mm512_set1_ps(*row.add(k));
            for (lane, xs) in s.iter_mut().zip(&xv) {
                *lane = _mm512_fmadd_ps(*xs, wv, *lane);
            }
        }
        xp = xp.add(V * LANES);
    }
    for (s, a) in sums.iter().zip(acc.iter_mut()) {
        for (v, lane) in s.iter().enumerate() {
            _mm512_storeu_ps(a.as_mut_ptr().add(v * LANES), *lane);
        }
    }
}
