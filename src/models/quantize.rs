//! `landfall quantize`: reads a BLIP-2 or BERT checkpoint tensor by tensor, quantizes every linear
//! weight the loader would quantize (the same per-layer type choice, [`Quant::ggml_for`]), keeps
//! embeddings, norms, biases (and a fine-tuned classifier's head) in f32, and writes one GGUF
//! that loads without the checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device};

use super::blip2::Blip2Config;
use super::gguf::{write_gguf, ARCH_KEY, QUANT_KEY};
use super::quantizer;
use super::runtime::Quant;
use super::source::gguf_path;
use super::weights::WeightStore;
use super::ModelError;

const EMBED_TOKENS: &str = "language_model.model.decoder.embed_tokens.weight";
const LM_HEAD: &str = "language_model.lm_head.weight";

/// What a quantization run did.
#[derive(Debug, Clone)]
pub struct QuantizeReport {
    pub path: PathBuf,
    pub tensors: usize,
    pub quantized: usize,
    /// Bytes of the float checkpoint's tensors (as f32).
    pub float_bytes: usize,
    /// Bytes of tensor data in the GGUF.
    pub gguf_bytes: usize,
}

/// The architectures `quantize` knows, from `model_type` in config.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    Blip2,
    Bert,
}

impl Arch {
    fn of(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.clone(),
            reason: format!("not valid JSON: {e}"),
        })?;
        match v.get("model_type").and_then(|t| t.as_str()) {
            Some("blip-2") => {
                // Validates the whole config before gigabytes are read.
                Blip2Config::from_file(&path)?;
                Ok(Self::Blip2)
            }
            Some("bert") => {
                super::bert::BertConfig::from_file(&path)?;
                Ok(Self::Bert)
            }
            other => Err(ModelError::Config {
                path,
                reason: format!("model_type {other:?}: landfall quantizes blip-2 and bert models"),
            }),
        }
    }

    fn gguf_name(self) -> &'static str {
        match self {
            Self::Blip2 => super::blip2::GGUF_ARCH,
            Self::Bert => super::bert::GGUF_ARCH,
        }
    }

    /// Whether the loader builds a quantizable linear layer from this tensor.
    fn is_linear_weight(self, name: &str, dims: &[usize]) -> bool {
        let linear = dims.len() == 2 && name.ends_with(".weight");
        linear
            && match self {
                Self::Blip2 => !name.contains("embed_tokens") && !name.contains("embed_positions"),
                // The head of a fine-tuned classifier is read as a float tensor.
                Self::Bert => !name.contains("embeddings.") && !name.starts_with("classifier."),
            }
    }
}

/// Quantizes the checkpoint in `dir` to `out` (default `dir/model-<quant>.gguf`), calling
/// `progress(done, total, name)` after each tensor.
pub fn quantize_dir(
    dir: &Path,
    quant: Quant,
    out: Option<&Path>,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<QuantizeReport, ModelError> {
    if quant == Quant::None {
        return Err(ModelError::Usage(
            "--quant none writes nothing: choose q8_0, q4_0 or q4k".into(),
        ));
    }
    let arch = Arch::of(dir)?;
    let store = WeightStore::open_dir(dir)?;
    let path = out.map_or_else(|| gguf_path(dir, quant), Path::to_path_buf);
    let names: Vec<String> = store.names().to_vec();
    let needs_head = arch == Arch::Blip2 && !store.contains(LM_HEAD);
    let total = names.len() + usize::from(needs_head);
    let mut tensors = Vec::with_capacity(total);
    let mut report = QuantizeReport {
        path: path.clone(),
        tensors: 0,
        quantized: 0,
        float_bytes: 0,
        gguf_bytes: 0,
    };
    let mut add = |name: &str, t: candle_core::Tensor, report: &mut QuantizeReport| {
        let dims = t.dims().to_vec();
        let ggml = if arch.is_linear_weight(name, &dims) {
            quant.ggml_for(dims[1]).unwrap_or(GgmlDType::F32)
        } else {
            GgmlDType::F32
        };
        let q = if ggml == GgmlDType::F32 {
            QTensor::quantize(&t, ggml)
        } else {
            quantizer::quantize(&t, ggml)
        }
        .map_err(|e| store.tensor_error(name, e.to_string()))?;
        report.tensors += 1;
        report.quantized += usize::from(ggml != GgmlDType::F32);
        report.float_bytes += t.elem_count() * 4;
        report.gguf_bytes += q.storage_size_in_bytes();
        tensors.push((name.to_string(), q));
        Ok::<(), ModelError>(())
    };
    for (i, name) in names.iter().enumerate() {
        let t = store.get_any_shape(name, DType::F32, &Device::Cpu)?;
        add(name, t, &mut report)?;
        progress(i + 1, total, name);
    }
    if needs_head {
        // The head is tied to the embeddings; the GGUF stores its quantized copy so the
        // embeddings can stay float for lookups.
        let t = store.get_any_shape(EMBED_TOKENS, DType::F32, &Device::Cpu)?;
        add(LM_HEAD, t, &mut report)?;
        progress(total, total, LM_HEAD);
    }
    let mut metadata = HashMap::new();
    metadata.insert(ARCH_KEY.to_string(), Value::String(arch.gguf_name().into()));
    metadata.insert(QUANT_KEY.to_string(), Value::String(quant.to_string()));
    write_gguf(&path, &metadata, &tensors)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_linear_weights_are_quantized() {
        let b = Arch::Blip2;
        assert!(b.is_linear_weight(
            "vision_model.encoder.layers.0.self_attn.qkv.weight",
            &[96, 32]
        ));
        assert!(!b.is_linear_weight(EMBED_TOKENS, &[500, 32]));
        assert!(!b.is_linear_weight(
            "language_model.model.decoder.embed_positions.weight",
            &[130, 32]
        ));
        assert!(!b.is_linear_weight("qformer.layernorm.weight", &[32]));
        assert!(!b.is_linear_weight("query_tokens", &[1, 4, 32]));
        let bert = Arch::Bert;
        assert!(bert.is_linear_weight(
            "bert.encoder.layer.0.attention.self.query.weight",
            &[32, 32]
        ));
        assert!(!bert.is_linear_weight("bert.embeddings.word_embeddings.weight", &[500, 32]));
        assert!(!bert.is_linear_weight("classifier.weight", &[2, 32]));
    }
}
