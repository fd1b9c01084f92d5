//! The BERT encoder. Weights are found by their checkpoint names (`embeddings.word_embeddings`,
//! `encoder.layer.N.attention.self.query`, ...), with or without the `bert.` prefix that
//! `BertFor*` checkpoints such as bert-base-chinese carry.
//!
//! The base holds no adapter state: LoRA deltas come in with each forward call
//! ([`LinearDeltas`]), so several classifiers share one copy of the (quantized) base.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};

use super::config::BertConfig;
use crate::models::layers::{tensor_bytes, Activation, LayerNorm};
use crate::models::linear::BaseLinear;
use crate::models::loader::{Loader, WeightHook as LoaderHook};
use crate::models::runtime::Quant;
use crate::models::source::WeightSource;
use crate::models::ModelError;

/// The architecture a BERT GGUF records (`general.architecture`).
pub const GGUF_ARCH: &str = "bert";

/// The six linear layers of an encoder layer, in the order of the module tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerSite {
    Query,
    Key,
    Value,
    AttentionOutput,
    Intermediate,
    Output,
}

impl LayerSite {
    pub const ALL: [LayerSite; 6] = [
        Self::Query,
        Self::Key,
        Self::Value,
        Self::AttentionOutput,
        Self::Intermediate,
        Self::Output,
    ];

    /// The module path inside `encoder.layer.N`, as in the checkpoint and in PEFT's names.
    pub fn module_path(self) -> &'static str {
        match self {
            Self::Query => "attention.self.query",
            Self::Key => "attention.self.key",
            Self::Value => "attention.self.value",
            Self::AttentionOutput => "attention.output.dense",
            Self::Intermediate => "intermediate.dense",
            Self::Output => "output.dense",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What an adapter adds to the base's linear layers during a forward pass.
pub trait LinearDeltas {
    /// The delta for `site` of encoder layer `layer` applied to its input `x`, if the adapter
    /// changes that layer.
    fn layer_delta(
        &self,
        layer: usize,
        site: LayerSite,
        x: &Tensor,
    ) -> candle_core::Result<Option<Tensor>>;
    /// The delta of the pooler's dense layer, if any.
    fn pooler_delta(&self, x: &Tensor) -> candle_core::Result<Option<Tensor>>;
}

/// No adapter: the plain base.
impl LinearDeltas for () {
    fn layer_delta(
        &self,
        _: usize,
        _: LayerSite,
        _: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(None)
    }
    fn pooler_delta(&self, _: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(None)
    }
}

/// How to load a base.
#[derive(Debug, Clone)]
pub struct BertLoadOptions {
    pub device: Device,
    /// Float dtype of activations and unquantized weights.
    pub dtype: DType,
    /// Quantization of the encoder's and pooler's linear weights.
    pub quant: Quant,
}

impl Default for BertLoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            quant: Quant::None,
        }
    }
}

/// A hook that may replace a linear weight before it is quantized: used to merge LoRA into the
/// base. Receives the full module name (`bert.encoder.layer.0.attention.self.query`) and the
/// float weight; returns the weight to use.
pub type WeightHook<'a> = &'a dyn Fn(&str, Tensor) -> Result<Tensor, ModelError>;

struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    norm: LayerNorm,
}

struct EncoderLayer {
    linears: Vec<BaseLinear>,
    attention_norm: LayerNorm,
    output_norm: LayerNorm,
}

/// The BERT encoder and pooler, loaded once and shared by every classifier on it.
pub struct BertBase {
    pub config: BertConfig,
    activation: Activation,
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
    pooler: Option<BaseLinear>,
    /// The `classifier` head of a fine-tuned `BertForSequenceClassification` checkpoint
    /// (`[num_labels, hidden]`, float), when the checkpoint has one.
    head: Option<BaseLinear>,
    device: Device,
    dtype: DType,
    quant: Quant,
}

impl BertBase {
    /// Loads `config.json` and the weights of a BERT directory: the float checkpoint, or the
    /// `model-<quant>.gguf` that `landfall quantize` wrote for the quantization asked for.
    pub fn load(
        dir: &Path,
        opts: &BertLoadOptions,
        hook: Option<WeightHook>,
    ) -> Result<Self, ModelError> {
        let config_path = dir.join("config.json");
        let config = BertConfig::from_file(&config_path)?;
        let source = WeightSource::open_dir(dir, opts.quant, GGUF_ARCH)?;
        Self::from_source(config, &config_path, &source, opts, hook)
    }

    fn from_source(
        config: BertConfig,
        config_path: &Path,
        source: &WeightSource,
        opts: &BertLoadOptions,
        hook: Option<WeightHook>,
    ) -> Result<Self, ModelError> {
        let activation = config.activation(config_path)?;
        let prefix = if source.contains("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else if source.contains("embeddings.word_embeddings.weight") {
            ""
        } else {
            return Err(source.tensor_error(
                "embeddings.word_embeddings.weight",
                "missing (with or without the bert. prefix): is this a BERT checkpoint?".into(),
            ));
        };
        let l =
            Loader::new(source, opts.device.clone(), opts.dtype, opts.quant).with_prefix(prefix);
        // LoRA names modules as a `BertFor*` model does, with the `bert.` prefix.
        let prefixed = hook.map(|h| move |module: &str, w: Tensor| h(&format!("bert.{module}"), w));
        let hook: Option<LoaderHook> = prefixed.as_ref().map(|f| f as _);
        let h = config.hidden_size;
        let embeddings = Embeddings {
            word: l.tensor("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            position: l.tensor(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, h],
            )?,
            token_type: l.tensor(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, h],
            )?,
            norm: l.layer_norm("embeddings.LayerNorm", h, config.layer_norm_eps)?,
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let mut linears = Vec::with_capacity(LayerSite::ALL.len());
            for site in LayerSite::ALL {
                let (out_dim, in_dim) = match site {
                    LayerSite::Intermediate => (config.intermediate_size, h),
                    LayerSite::Output => (h, config.intermediate_size),
                    _ => (h, h),
                };
                linears.push(l.linear_hooked(
                    &format!("{p}.{}", site.module_path()),
                    out_dim,
                    in_dim,
                    true,
                    hook,
                )?);
            }
            layers.push(EncoderLayer {
                linears,
                attention_norm: l.layer_norm(
                    &format!("{p}.attention.output.LayerNorm"),
                    h,
                    config.layer_norm_eps,
                )?,
                output_norm: l.layer_norm(
                    &format!("{p}.output.LayerNorm"),
                    h,
                    config.layer_norm_eps,
                )?,
            });
        }
        // A bare encoder saved without pooler is valid; a classifier then needs the pooler from
        // its adapter (`modules_to_save`), which the classifier checks.
        let pooler = if l.has("pooler.dense.weight") {
            Some(l.linear_hooked("pooler.dense", h, h, true, hook)?)
        } else {
            None
        };
        // Outside the `bert.` prefix, as BertForSequenceClassification saves it; kept float.
        let head = match source.dims("classifier.weight").as_deref() {
            Some(&[labels, hidden]) if hidden == h => Some(
                Loader::new(source, opts.device.clone(), opts.dtype, Quant::None).linear(
                    "classifier",
                    labels,
                    h,
                    true,
                )?,
            ),
            Some(other) => {
                return Err(source.tensor_error(
                    "classifier.weight",
                    format!("shape {other:?} is not [num_labels, {h}]"),
                ))
            }
            None => None,
        };
        Ok(Self {
            config,
            activation,
            embeddings,
            layers,
            pooler,
            head,
            device: opts.device.clone(),
            dtype: opts.dtype,
            quant: opts.quant,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn quant(&self) -> Quant {
        self.quant
    }

    pub fn has_pooler(&self) -> bool {
        self.pooler.is_some()
    }

    /// The checkpoint's own classification head (a fine-tuned sequence classifier).
    pub fn head(&self) -> Option<&BaseLinear> {
        self.head.as_ref()
    }

    /// Bytes held by the weights (embeddings, norms, linear layers).
    pub fn weight_bytes(&self) -> usize {
        let t = tensor_bytes;
        let n = LayerNorm::bytes;
        let e = &self.embeddings;
        let mut total = t(&e.word) + t(&e.position) + t(&e.token_type) + n(&e.norm);
        for layer in &self.layers {
            total += layer
                .linears
                .iter()
                .map(BaseLinear::weight_bytes)
                .sum::<usize>();
            total += n(&layer.attention_norm) + n(&layer.output_norm);
        }
        total + self.pooler.as_ref().map_or(0, BaseLinear::weight_bytes)
    }

    /// The attention bias for a `[batch, seq]` 0/1 mask: 0 where attended, a large negative
    /// number where padded, shaped `[batch, 1, 1, seq]`. The floor is finite in every dtype:
    /// candle's bert.rs uses `f32::MIN`, which becomes -inf in f16 and then NaN (0 * -inf).
    fn attention_bias(&self, mask: &Tensor) -> candle_core::Result<Tensor> {
        let floor = match self.dtype {
            DType::F32 | DType::F64 => -1e30,
            _ => -3e4,
        };
        let mask = mask.to_dtype(DType::F32)?;
        let bias = ((1.0 - mask)? * floor)?;
        bias.unsqueeze(1)?.unsqueeze(1)?.to_dtype(self.dtype)
    }

    /// The last hidden state `[batch, seq, hidden]` for token ids and a 0/1 attention mask, both
    /// `[batch, seq]` u32. Token type ids are all 0 (single-sentence classification).
    pub fn encode(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        deltas: &dyn LinearDeltas,
    ) -> candle_core::Result<Tensor> {
        let (batch, seq) = input_ids.dims2()?;
        let e = &self.embeddings;
        let words = e
            .word
            .embedding(&input_ids.flatten_all()?)?
            .reshape((batch, seq, ()))?;
        let positions = e.position.narrow(0, 0, seq)?;
        let types = e.token_type.narrow(0, 0, 1)?;
        let x = words
            .broadcast_add(&positions.unsqueeze(0)?)?
            .broadcast_add(&types)?;
        let mut x = e.norm.forward(&x)?;
        let bias = self.attention_bias(attention_mask)?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = self.layer_forward(i, layer, &x, &bias, deltas)?;
        }
        Ok(x)
    }

    fn linear(
        &self,
        layer_index: usize,
        layer: &EncoderLayer,
        site: LayerSite,
        x: &Tensor,
        deltas: &dyn LinearDeltas,
    ) -> candle_core::Result<Tensor> {
        let y = layer.linears[site.index()].forward(x)?;
        match deltas.layer_delta(layer_index, site, x)? {
            Some(d) => y + d,
            None => Ok(y),
        }
    }

    fn layer_forward(
        &self,
        i: usize,
        layer: &EncoderLayer,
        x: &Tensor,
        bias: &Tensor,
        deltas: &dyn LinearDeltas,
    ) -> candle_core::Result<Tensor> {
        let (b, s, h) = x.dims3()?;
        let heads = self.config.num_attention_heads;
        let hd = self.config.head_dim();
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, s, heads, hd))?.transpose(1, 2)?.contiguous()
        };
        let q = split(self.linear(i, layer, LayerSite::Query, x, deltas)?)?;
        let k = split(self.linear(i, layer, LayerSite::Key, x, deltas)?)?;
        let v = split(self.linear(i, layer, LayerSite::Value, x, deltas)?)?;
        let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))?;
        let attn = self.linear(i, layer, LayerSite::AttentionOutput, &context, deltas)?;
        let x = layer.attention_norm.forward(&(attn + x)?)?;
        let inter = self.linear(i, layer, LayerSite::Intermediate, &x, deltas)?;
        let inter = self.activation.apply(&inter)?;
        let out = self.linear(i, layer, LayerSite::Output, &inter, deltas)?;
        layer.output_norm.forward(&(out + x)?)
    }

    /// BertPooler: `tanh(dense(hidden[:, 0]))`, with the base's pooler or a replacement one
    /// (an adapter's `modules_to_save`).
    pub fn pool(
        &self,
        hidden: &Tensor,
        replacement: Option<&BaseLinear>,
        deltas: &dyn LinearDeltas,
    ) -> candle_core::Result<Tensor> {
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        let dense = match replacement.or(self.pooler.as_ref()) {
            Some(d) => d,
            None => {
                candle_core::bail!("the base has no pooler weights and the adapter brings none")
            }
        };
        let mut y = dense.forward(&first)?;
        if replacement.is_none() {
            if let Some(d) = deltas.pooler_delta(&first)? {
                y = (y + d)?;
            }
        }
        y.tanh()
    }

    /// Ids and mask tensors for a batch of encoded texts.
    pub fn batch_tensors(
        &self,
        ids: &[Vec<u32>],
        mask: &[Vec<u32>],
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let seq = ids.first().map_or(0, Vec::len);
        let flat_ids: Vec<u32> = ids.iter().flatten().copied().collect();
        let flat_mask: Vec<u32> = mask.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat_ids, (ids.len(), seq), &self.device)?;
        let mask = Tensor::from_vec(flat_mask, (mask.len(), seq), &self.device)?;
        Ok((ids, mask))
    }
}
