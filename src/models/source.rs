//! Where a model's tensors come from: the float checkpoint (`model.safetensors`, shards, or
//! `pytorch_model.bin`, read by [`WeightStore`]) quantized at load, or a GGUF of already
//! quantized weights that `landfall quantize` wrote into the model directory. BERT and BLIP-2
//! both load through here (and [`super::loader::Loader`]), so either can live as a GGUF.

use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};

use super::gguf::{GgufStore, ARCH_KEY, QUANT_KEY};
use super::linear::BaseLinear;
use super::runtime::Quant;
use super::weights::{check_shape, WeightStore};
use super::ModelError;

pub enum WeightSource {
    Checkpoint(WeightStore),
    Gguf(GgufStore),
}

/// The GGUF `landfall quantize` writes for `quant` in a model directory.
pub fn gguf_path(dir: &Path, quant: Quant) -> PathBuf {
    dir.join(format!("model-{quant}.gguf"))
}

impl WeightSource {
    /// The weights of a model directory for `quant`: its `model-<quant>.gguf` when there is one
    /// (then the float checkpoint is not needed), else the checkpoint. `arch` is the
    /// architecture the caller builds (`bert`, `blip-2`); a GGUF of another one is refused.
    pub fn open_dir(dir: &Path, quant: Quant, arch: &str) -> Result<Self, ModelError> {
        let gguf = gguf_path(dir, quant);
        if quant == Quant::None || !gguf.is_file() {
            return WeightStore::open_dir(dir).map(Self::Checkpoint);
        }
        let store = GgufStore::open(&gguf)?;
        if let Some(q) = store.metadata_str(QUANT_KEY) {
            if q != quant.to_string() {
                return Err(ModelError::Weights {
                    path: gguf,
                    reason: format!("holds {q} weights, not {quant}"),
                });
            }
        }
        if let Some(found) = store.metadata_str(ARCH_KEY) {
            if found != arch {
                return Err(ModelError::Weights {
                    path: gguf,
                    reason: format!("holds a {found} model, not {arch}"),
                });
            }
        }
        Ok(Self::Gguf(store))
    }

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

    /// The shape of tensor `name`, if the source has it.
    pub fn dims(&self, name: &str) -> Option<Vec<usize>> {
        match self {
            Self::Checkpoint(store) => store.dims(name),
            Self::Gguf(gguf) => gguf.dims(name),
        }
    }

    pub fn is_gguf(&self) -> bool {
        matches!(self, Self::Gguf(_))
    }

    pub fn tensor_error(&self, name: &str, reason: String) -> ModelError {
        ModelError::Tensor {
            path: self.origin().to_path_buf(),
            name: name.to_string(),
            reason,
        }
    }

    /// A float tensor of `shape` in `dtype` (dequantized if the GGUF stores it quantized).
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
                check_shape(self.origin(), name, q.shape().dims(), shape)?;
                q.dequantize(device)
                    .and_then(|t| t.to_dtype(dtype))
                    .map_err(|e| self.tensor_error(name, e.to_string()))
            }
        }
    }

    /// A linear layer `[out_dim, in_dim]`: quantized at load from a float checkpoint as `quant`
    /// says, or taken as stored from a GGUF. `hook` may change a float weight first (LoRA
    /// merging); a quantized GGUF weight is then dequantized, changed and quantized again.
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
        hook: Option<&dyn Fn(Tensor) -> Result<Tensor, ModelError>>,
    ) -> Result<BaseLinear, ModelError> {
        let float_layer = |weight: Tensor, quant| {
            let weight = match hook {
                Some(h) => h(weight)?,
                None => weight,
            };
            BaseLinear::new(weight, bias.clone(), quant)
                .map_err(|e| self.tensor_error(name, e.to_string()))
        };
        match self {
            Self::Checkpoint(store) => {
                float_layer(store.get(name, &[out_dim, in_dim], dtype, device)?, quant)
            }
            Self::Gguf(gguf) => {
                let q = gguf.qtensor(name, device)?;
                check_shape(self.origin(), name, q.shape().dims(), &[out_dim, in_dim])?;
                let stored_float =
                    matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
                if stored_float || hook.is_some() {
                    let weight = q
                        .dequantize(device)
                        .and_then(|t| t.to_dtype(dtype))
                        .map_err(|e| self.tensor_error(name, e.to_string()))?;
                    let quant = if stored_float { Quant::None } else { quant };
                    return float_layer(weight, quant);
                }
                BaseLinear::from_qtensor(q, bias.clone())
                    .map_err(|e| self.tensor_error(name, e.to_string()))
            }
        }
    }
}
