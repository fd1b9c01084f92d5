//! Building blocks the three BLIP-2 parts share: layer norm, multi-head attention arithmetic, the
//! MLP; layers come from the models' common [`Loader`].

use candle_core::{DType, Module, Result, Tensor, D};

pub use crate::models::layers::{tensor_bytes, LayerNorm};
use crate::models::linear::BaseLinear;
pub use crate::models::loader::Loader;

/// `[b, s, heads * d]` → `[b, heads, s, d]`.
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, s, h) = x.dims3()?;
    x.reshape((b, s, heads, h / heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// `[b, heads, s, d]` → `[b, s, heads * d]`.
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, heads, s, d) = x.dims4()?;
    x.transpose(1, 2)?.reshape((b, s, heads * d))
}

/// `softmax(q k^T * scale + mask) v` over `[b, heads, s, d]` tensors. The softmax runs in f32 (as
/// transformers' OPT does, and harmless for the f32 parts).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let dtype = q.dtype();
    let scores = (q.matmul(&k.t()?)? * scale)?;
    let scores = match mask {
        Some(mask) => scores.to_dtype(DType::F32)?.broadcast_add(mask)?,
        None => scores.to_dtype(DType::F32)?,
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
    probs.matmul(&v.contiguous()?)
}

/// `fc2(act(fc1(x)))`.
pub struct Mlp {
    pub fc1: BaseLinear,
    pub fc2: BaseLinear,
    pub act: crate::models::layers::Activation,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.act.apply(&self.fc1.forward(x)?)?)
    }
}

/// The last position of `[b, s, h]`, as `[b, h]`.
pub fn last_position(x: &Tensor) -> Result<Tensor> {
    let s = x.dim(1)?;
    x.narrow(1, s - 1, 1)?.squeeze(1)
}

/// Row-wise log-softmax in f32.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::log_softmax(&x.to_dtype(DType::F32)?, D::Minus1)
}
