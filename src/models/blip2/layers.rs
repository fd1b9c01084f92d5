//! Building blocks the three BLIP-2 parts share: layer norm, multi-head attention arithmetic and
//! the checkpoint loader that turns tensor names into layers.

use candle_core::{DType, Device, Module, Result, Tensor, D};

pub use crate::models::layers::{tensor_bytes, LayerNorm};
use crate::models::linear::BaseLinear;
use crate::models::runtime::Quant;
use crate::models::ModelError;

use super::source::WeightSource;

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

/// Reads the layers of one part of the checkpoint (`vision_model.`, `qformer.`, ...).
pub struct Loader<'a> {
    pub source: &'a WeightSource,
    pub device: Device,
    pub dtype: DType,
    pub quant: Quant,
}

impl Loader<'_> {
    pub fn has(&self, name: &str) -> bool {
        self.source.contains(name)
    }

    pub fn tensor(&self, name: &str, shape: &[usize]) -> std::result::Result<Tensor, ModelError> {
        self.source.float(name, shape, self.dtype, &self.device)
    }

    pub fn layer_norm(
        &self,
        module: &str,
        size: usize,
        eps: f64,
    ) -> std::result::Result<LayerNorm, ModelError> {
        Ok(LayerNorm {
            weight: self.tensor(&format!("{module}.weight"), &[size])?,
            bias: self.tensor(&format!("{module}.bias"), &[size])?,
            eps: eps as f32,
        })
    }

    /// A linear layer, quantized as `quant` asks when its input dimension allows.
    pub fn linear(
        &self,
        module: &str,
        out_dim: usize,
        in_dim: usize,
        bias: bool,
    ) -> std::result::Result<BaseLinear, ModelError> {
        let bias = if bias {
            Some(self.tensor(&format!("{module}.bias"), &[out_dim])?)
        } else {
            None
        };
        self.linear_with_bias(module, out_dim, in_dim, bias)
    }

    /// A linear layer whose bias the caller assembled (ViT's `q_bias`/`v_bias`).
    pub fn linear_with_bias(
        &self,
        module: &str,
        out_dim: usize,
        in_dim: usize,
        bias: Option<Tensor>,
    ) -> std::result::Result<BaseLinear, ModelError> {
        let name = format!("{module}.weight");
        self.source.linear(
            &name,
            out_dim,
            in_dim,
            bias,
            self.quant,
            self.dtype,
            &self.device,
        )
    }

    /// The same loader with another float dtype (the Q-Former stays f32, as in transformers).
    pub fn with_dtype(&self, dtype: DType) -> Loader<'_> {
        Loader {
            source: self.source,
            device: self.device.clone(),
            dtype,
            quant: self.quant,
        }
    }
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
