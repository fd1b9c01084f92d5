//! What landfall's own CPU kernels share: a tensor's f32 values borrowed in place, the shape of
//! a layer's output, and work split over candle's CPU pool (so they never compete with candle's
//! own threads for the cores).

use std::ops::Deref;

use candle_core::{CpuStorage, Storage, Tensor};

/// The f32 values of a contiguous CPU tensor, borrowed from its storage (`G`, the read guard
/// candle hands out) for as long as this lives.
pub struct F32View<G> {
    storage: G,
    start: usize,
    end: usize,
}

/// A view of `t`'s values where `t` is a contiguous f32 tensor on the CPU; `None` otherwise.
pub fn f32_view(t: &Tensor) -> Option<F32View<impl Deref<Target = Storage> + '_>> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout.contiguous_offsets()?;
    matches!(&*storage, Storage::Cpu(CpuStorage::F32(_))).then_some(F32View {
        storage,
        start,
        end,
    })
}

impl<G: Deref<Target = Storage>> Deref for F32View<G> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &*self.storage {
            Storage::Cpu(CpuStorage::F32(values)) => &values[self.start..self.end],
            // `f32_view` builds a view only over f32 CPU storage, which a read guard keeps.
            _ => &[],
        }
    }
}

/// `x`'s dims with the last one replaced by `last`: the shape of a linear layer's output.
pub fn with_last_dim(x: &Tensor, last: usize) -> Vec<usize> {
    let mut dims = x.dims().to_vec();
    if let Some(d) = dims.last_mut() {
        *d = last;
    }
    dims
}

/// Runs `item(i, piece)` for every `chunk`-sized piece `i` of `out` (the last one shorter where
/// `chunk` does not divide it) on candle's CPU pool; each piece is written by one work item
/// alone.
pub fn for_each_chunk(out: &mut [f32], chunk: usize, item: impl Fn(usize, &mut [f32]) + Sync) {
    let len = out.len();
    let items = len.div_ceil(chunk.max(1));
    let base = out.as_mut_ptr() as usize;
    candle_core::utils::barrier_pool().execute_chunked(items, |range| {
        for i in range {
            let start = i * chunk;
            let n = chunk.min(len - start);
            // SAFETY: pieces `i` are disjoint, each taken by exactly one work item, and `out`
            // outlives the pool call, which returns only when every item is done.
            let piece = unsafe { std::slice::from_raw_parts_mut((base as *mut f32).add(start), n) };
            item(i, piece);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn views_only_contiguous_f32_cpu_tensors() -> candle_core::Result<()> {
        let t = Tensor::arange(0f32, 6.0, &Device::Cpu)?.reshape((2, 3))?;
        assert_eq!(
            &*f32_view(&t).expect("contiguous f32"),
            &[0., 1., 2., 3., 4., 5.]
        );
        let row = t.narrow(0, 1, 1)?;
        assert_eq!(&*f32_view(&row).expect("a contiguous slice"), &[3., 4., 5.]);
        assert!(f32_view(&t.t()?).is_none(), "transposed");
        assert!(f32_view(&t.to_dtype(DType::F16)?).is_none(), "f16");
        assert_eq!(with_last_dim(&t, 7), vec![2, 7]);
        Ok(())
    }

    #[test]
    fn every_piece_runs_once_the_last_one_short() {
        let mut out = vec![0f32; 10];
        for_each_chunk(&mut out, 4, |i, piece| {
            assert_eq!(piece.len(), if i == 2 { 2 } else { 4 });
            piece.iter_mut().for_each(|v| *v += i as f32 + 1.0);
        });
        assert_eq!(out, [1., 1., 1., 1., 2., 2., 2., 2., 3., 3.]);
    }
}
