//! The Q-Former: learned query tokens that attend to each other in every layer and to the image
//! in every `cross_attention_frequency`-th layer, with BERT-style post-norm blocks and the
//! query-only feed-forward (`intermediate_query`/`output_query`). Mirrors `Blip2QFormerModel` run
//! on the queries alone, as BLIP-2 captioning does. Kept in f32 whatever the model dtype, as
//! transformers keeps it (`_keep_in_fp32_modules`).

use candle_core::{DType, Module, Result, Tensor};

use crate::models::linear::BaseLinear;
use crate::models::ModelError;

use super::config::QFormerConfig;
use super::layers::{attention, merge_heads, split_heads, tensor_bytes, LayerNorm, Loader};
use crate::models::layers::Activation;

/// Multi-head attention plus its `output` block: `LayerNorm(dense(attn) + input)`.
struct QAttention {
    query: BaseLinear,
    key: BaseLinear,
    value: BaseLinear,
    dense: BaseLinear,
    norm: LayerNorm,
    heads: usize,
}

impl QAttention {
    fn load(
        l: &Loader,
        module: &str,
        config: &QFormerConfig,
        kv_dim: usize,
    ) -> std::result::Result<Self, ModelError> {
        let h = config.hidden_size;
        Ok(Self {
            query: l.linear(&format!("{module}.attention.query"), h, h, true)?,
            key: l.linear(&format!("{module}.attention.key"), h, kv_dim, true)?,
            value: l.linear(&format!("{module}.attention.value"), h, kv_dim, true)?,
            dense: l.linear(&format!("{module}.output.dense"), h, h, true)?,
            norm: l.layer_norm(
                &format!("{module}.output.LayerNorm"),
                h,
                config.layer_norm_eps,
            )?,
            heads: config.num_attention_heads,
        })
    }

    /// `x` attends to `context` (itself for self-attention, the image for cross-attention).
    fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let q = split_heads(&self.query.forward(x)?, self.heads)?;
        let k = split_heads(&self.key.forward(context)?, self.heads)?;
        let v = split_heads(&self.value.forward(context)?, self.heads)?;
        let head_dim = q.dim(3)?;
        let attn = merge_heads(&attention(&q, &k, &v, (head_dim as f64).powf(-0.5), None)?)?;
        self.norm.forward(&(self.dense.forward(&attn)? + x)?)
    }
}

struct QFormerLayer {
    self_attention: QAttention,
    cross_attention: Option<QAttention>,
    intermediate: BaseLinear,
    output: BaseLinear,
    output_norm: LayerNorm,
    act: Activation,
}

pub struct QFormer {
    query_tokens: Tensor,
    layernorm: LayerNorm,
    layers: Vec<QFormerLayer>,
}

impl QFormer {
    pub fn load(
        l: &Loader,
        config: &QFormerConfig,
        num_queries: usize,
        encoder_hidden: usize,
    ) -> std::result::Result<Self, ModelError> {
        let l = l.with_dtype(DType::F32);
        let h = config.hidden_size;
        let act = Activation::parse(&config.hidden_act).map_err(|e| ModelError::Usage(e.0))?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let m = format!("qformer.encoder.layer.{i}");
            let cross_attention = if i % config.cross_attention_frequency == 0 {
                Some(QAttention::load(
                    &l,
                    &format!("{m}.crossattention"),
                    config,
                    encoder_hidden,
                )?)
            } else {
                None
            };
            layers.push(QFormerLayer {
                self_attention: QAttention::load(&l, &format!("{m}.attention"), config, h)?,
                cross_attention,
                intermediate: l.linear(
                    &format!("{m}.intermediate_query.dense"),
                    config.intermediate_size,
                    h,
                    true,
                )?,
                output: l.linear(
                    &format!("{m}.output_query.dense"),
                    h,
                    config.intermediate_size,
                    true,
                )?,
                output_norm: l.layer_norm(
                    &format!("{m}.output_query.LayerNorm"),
                    h,
                    config.layer_norm_eps,
                )?,
                act,
            });
        }
        Ok(Self {
            query_tokens: l.tensor("query_tokens", &[1, num_queries, h])?,
            layernorm: l.layer_norm("qformer.layernorm", h, config.layer_norm_eps)?,
            layers,
        })
    }

    /// Image embeddings `[b, patches + 1, vision_hidden]` → query outputs `[b, queries, hidden]`
    /// in f32.
    /// Bytes of the weights (linear layers and query tokens; norms are negligible).
    pub fn weight_bytes(&self) -> usize {
        let attn = |a: &QAttention| {
            a.query.weight_bytes()
                + a.key.weight_bytes()
                + a.value.weight_bytes()
                + a.dense.weight_bytes()
        };
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                attn(&l.self_attention)
                    + l.cross_attention.as_ref().map_or(0, attn)
                    + l.intermediate.weight_bytes()
                    + l.output.weight_bytes()
            })
            .sum();
        layers + tensor_bytes(&self.query_tokens)
    }

    pub fn forward(&self, image_embeds: &Tensor) -> Result<Tensor> {
        let b = image_embeds.dim(0)?;
        let image = image_embeds.to_dtype(DType::F32)?;
        let (_, q, h) = self.query_tokens.dims3()?;
        let mut x = self
            .layernorm
            .forward(&self.query_tokens.broadcast_as((b, q, h))?.contiguous()?)?;
        for layer in &self.layers {
            x = layer.self_attention.forward(&x, &x)?;
            if let Some(cross) = &layer.cross_attention {
                x = cross.forward(&x, &image)?;
            }
            let hidden = layer.act.apply(&layer.intermediate.forward(&x)?)?;
            x = layer
                .output_norm
                .forward(&(layer.output.forward(&hidden)? + &x)?)?;
        }
        Ok(x)
    }
}
