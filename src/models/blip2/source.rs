//! Where BLIP-2's tensors come from: the float checkpoint (`model.safetensors`, shards, or
//! `pytorch_model.bin`) quantized at load, or a GGUF written by `landfall quantize`.

use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};

use crate::models::gguf::GgufStore;
use crate::models::linear::BaseLinear;
use crate::models::runtime::Quant;
use crate::models::weights::{check_shape, WeightStore};
use crate::models::ModelError;

pub enum WeightSource {
    Checkpoint(WeightStore),
    Gguf(GgufStore),
}

/// The GGUF `landfall quantize` writes for `quant` in a model directory.
pub fn gguf_path(dir: &Path, quant: Quant) -> PathBuf {
    dir.join(format!("model-{quant}.gguf"))
}

impl WeightSource {
    pub fn origin(&self) -> &Path {
        match self {
            Self::Checkpoint(store) => store.origin(),
            Self::Gguf(gguf) => gguf.path(),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        match self {
            Self::Checkpoint(store) => store.contains(name),
            Self::Gguf(gguf) => gguf.contains(name),
        }
    }

    fn error(&self, name: &str, reason: String) -> ModelError {
        ModelError::Tensor {
            path: self.origin().to_path_buf(),
            name: name.to_string(),
            reason,
        }
    }

    fn check_shape(&self, name: &str, got: &[usize], want: &[usize]) -> Result<(), ModelError> {
        check_shape(self.origin(), name, got, want)
    }

    /// A float tensor of `shape` in `dtype`.
    pub fn float(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, ModelError> {
        match self {
            Self::Checkpoint(store) => store.get(name, shape, dtype, device),
            Self::Gguf(gguf) => {
                let q = gguf.qtensor(name, device)?;
                self.check_shape(name, q.shape().dims(), shape)?;
                q.dequantize(device)
                    .and_then(|t| t.to_dtype(dtype))
                    .map_err(|e| self.error(name, e.to_string()))
            }
        }
    }

    /// A linear layer `[out_dim, in_dim]`: quantized at load from a float checkpoint as `quant`
    /// says, or taken as stored from a GGUF.
    #[allow(clippy::too_many_arguments)]
    pub fn linear(
        &self,
        name: &str,
        out_dim: usize,
        in_dim: usize,
        bias: Option<Tensor>,
        quant: Quant,
        dtype: DType,
        device: &Device,
    ) -> Result<BaseLinear, ModelError> {
        match self {
            Self::Checkpoint(store) => {
                let weight = store.get(name, &[out_dim, in_dim], dtype, device)?;
                BaseLinear::new(weight, bias, quant).map_err(|e| self.error(name, e.to_string()))
            }
            Self::Gguf(gguf) => {
                let q = gguf.qtensor(name, device)?;
                self.check_shape(name, q.shape().dims(), &[out_dim, in_dim])?;
                let stored_float =
                    matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
                let layer = if stored_float {
                    let weight = q.dequantize(device).and_then(|t| t.to_dtype(dtype));
                    weight.and_then(|w| BaseLinear::new(w, bias, Quant::None))
                } else {
                    BaseLinear::from_qtensor(q, bias)
                };
                layer.map_err(|e| self.error(name, e.to_string()))
            }
        }
    }
}
