//! The OPT decoder BLIP-2 generates with: learned positions offset by 2, pre- or post-norm layers
//! (`do_layer_norm_before`), ReLU feed-forward, optional `project_in`/`project_out` around the
//! layers when `word_embed_proj_dim` differs from `hidden_size`, and the LM head tied to the token
//! embeddings. Keys and values are cached per layer so each new token costs one position.
//! Mirrors `OPTForCausalLM`.

use candle_core::{DType, Device, Module, Result, Tensor};

use crate::models::linear::BaseLinear;
use crate::models::ModelError;

use super::config::OptConfig;
use super::layers::{attention, merge_heads, split_heads, tensor_bytes, LayerNorm, Loader};
use crate::models::layers::Activation;

/// transformers' `OPTLearnedPositionalEmbedding.offset`: positions 0 and 1 are never used.
const POSITION_OFFSET: usize = 2;

struct DecoderLayer {
    q_proj: BaseLinear,
    k_proj: BaseLinear,
    v_proj: BaseLinear,
    out_proj: BaseLinear,
    attn_norm: LayerNorm,
    fc1: BaseLinear,
    fc2: BaseLinear,
    final_norm: LayerNorm,
}

/// Keys and values of every layer for the positions seen so far, `[batch, heads, seq, d]`.
#[derive(Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// Keeps, for each new row, the row `rows[i]` of the old cache (beam search's reordering;
    /// also how one prefilled prompt becomes `n` beams).
    pub fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
        let Some(device) = self
            .layers
            .iter()
            .flatten()
            .next()
            .map(|(k, _)| k.device().clone())
        else {
            return Ok(());
        };
        let index = Tensor::new(rows, &device)?;
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(&index, 0)?;
            *v = v.index_select(&index, 0)?;
        }
        Ok(())
    }
}

pub struct Opt {
    embed_tokens: Tensor,
    embed_positions: Tensor,
    project_in: Option<BaseLinear>,
    project_out: Option<BaseLinear>,
    layers: Vec<DecoderLayer>,
    final_layer_norm: Option<LayerNorm>,
    lm_head: BaseLinear,
    config: OptConfig,
    act: Activation,
}

impl Opt {
    pub fn load(l: &Loader, config: &OptConfig) -> std::result::Result<Self, ModelError> {
        let h = config.hidden_size;
        let e = config.embed_dim();
        let p = "language_model.model.decoder";
        let eps = 1e-5; // nn.LayerNorm's default; OPT configs have no field for it.
        if !config.layer_norm_elementwise_affine {
            return Err(ModelError::Usage(
                "text_config.layer_norm_elementwise_affine = false is not supported".into(),
            ));
        }
        let act =
            Activation::parse(&config.activation_function).map_err(|e| ModelError::Usage(e.0))?;
        let bias = config.enable_bias;
        // The embeddings (and the head tied to them) first: reading the largest tensor (50272 ×
        // 2560 f32 for OPT-2.7B) takes its file bytes and its tensor at once, and taken last,
        // beside every layer already built, that transient was the load's peak RSS.
        let embed_name = format!("{p}.embed_tokens.weight");
        let embed_tokens = l.tensor(&embed_name, &[config.vocab_size, e])?;
        // The head is tied to the token embeddings; checkpoints may or may not store the copy.
        // Without one, the head shares the embedding tensor (or quantizes it).
        let lm_head = if l.has("language_model.lm_head.weight") {
            l.linear("language_model.lm_head", config.vocab_size, e, false)?
        } else {
            BaseLinear::new(embed_tokens.clone(), None, l.quant)
                .and_then(|head| l.finish_linear(head))
                .map_err(|err| ModelError::Tensor {
                    path: l.source.origin().to_path_buf(),
                    name: embed_name.clone(),
                    reason: err.to_string(),
                })?
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let m = format!("{p}.layers.{i}");
            layers.push(DecoderLayer {
                q_proj: l.linear(&format!("{m}.self_attn.q_proj"), h, h, bias)?,
                k_proj: l.linear(&format!("{m}.self_attn.k_proj"), h, h, bias)?,
                v_proj: l.linear(&format!("{m}.self_attn.v_proj"), h, h, bias)?,
                out_proj: l.linear(&format!("{m}.self_attn.out_proj"), h, h, bias)?,
                attn_norm: l.layer_norm(&format!("{m}.self_attn_layer_norm"), h, eps)?,
                fc1: l.linear(&format!("{m}.fc1"), config.ffn_dim, h, bias)?,
                fc2: l.linear(&format!("{m}.fc2"), h, config.ffn_dim, bias)?,
                final_norm: l.layer_norm(&format!("{m}.final_layer_norm"), h, eps)?,
            });
        }
        let (project_in, project_out) = if e != h {
            (
                Some(l.linear(&format!("{p}.project_in"), h, e, false)?),
                Some(l.linear(&format!("{p}.project_out"), e, h, false)?),
            )
        } else {
            (None, None)
        };
        let final_layer_norm = if config.do_layer_norm_before && !config.remove_final_layer_norm {
            Some(l.layer_norm(&format!("{p}.final_layer_norm"), h, eps)?)
        } else {
            None
        };
        Ok(Self {
            embed_tokens,
            embed_positions: l.tensor(
                &format!("{p}.embed_positions.weight"),
                &[config.max_position_embeddings + POSITION_OFFSET, h],
            )?,
            project_in,
            project_out,
            layers,
            final_layer_norm,
            lm_head,
            config: config.clone(),
            act,
        })
    }

    /// Bytes of weights one decoding step reads: every layer's linear weights and the LM head
    /// (of the embeddings, only one row per token).
    pub fn bytes_per_token(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                l.q_proj.weight_bytes()
                    + l.k_proj.weight_bytes()
                    + l.v_proj.weight_bytes()
                    + l.out_proj.weight_bytes()
                    + l.fc1.weight_bytes()
                    + l.fc2.weight_bytes()
            })
            .sum();
        let projections = self.project_in.as_ref().map_or(0, BaseLinear::weight_bytes)
            + self
                .project_out
                .as_ref()
                .map_or(0, BaseLinear::weight_bytes);
        layers + projections + self.lm_head.weight_bytes()
    }

    /// Bytes of all weights held: [`Self::bytes_per_token`] plus the embeddings (counted once
    /// where a float LM head shares the token embeddings).
    pub fn weight_bytes(&self) -> usize {
        let shared = matches!(&self.lm_head, BaseLinear::Float { weight, .. } if weight.id() == self.embed_tokens.id());
        let embeddings = if shared {
            0
        } else {
            tensor_bytes(&self.embed_tokens)
        };
        self.bytes_per_token() + embeddings + tensor_bytes(&self.embed_positions)
    }

    pub fn dtype(&self) -> DType {
        self.embed_tokens.dtype()
    }

    pub fn device(&self) -> &Device {
        self.embed_tokens.device()
    }

    /// Token embeddings `[b, s, embed_dim]` of `ids` `[b, s]`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        self.embed_tokens
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, s, self.config.embed_dim()))
    }

    /// Runs `embeds` `[b, s, embed_dim]` after the cached positions and returns the final hidden
    /// states `[b, s, embed_dim]` (before the LM head). Updates the cache.
    pub fn forward(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (_, s, _) = embeds.dims3()?;
        let past = cache.len;
        if past + s > self.config.max_position_embeddings {
            candle_core::bail!(
                "sequence of {} tokens exceeds the model's {} positions",
                past + s,
                self.config.max_position_embeddings
            );
        }
        if cache.layers.len() != self.layers.len() {
            cache.layers = vec![None; self.layers.len()];
        }
        let positions = self
            .embed_positions
            .narrow(0, past + POSITION_OFFSET, s)?
            .unsqueeze(0)?;
        let x = match &self.project_in {
            Some(p) => p.forward(embeds)?,
            None => embeds.clone(),
        };
        let mut x = x.broadcast_add(&positions.to_dtype(x.dtype())?)?;
        let mask = causal_mask(s, past, x.device())?;
        let heads = self.config.num_attention_heads;
        let scale = (self.config.head_dim() as f64).powf(-0.5);
        let pre_norm = self.config.do_layer_norm_before;
        for (layer, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let residual = x.clone();
            let h = if pre_norm {
                layer.attn_norm.forward(&x)?
            } else {
                x.clone()
            };
            // transformers scales q after its bias; the same product, kept in the same order.
            let q = split_heads(&(layer.q_proj.forward(&h)? * scale)?, heads)?;
            let k = split_heads(&layer.k_proj.forward(&h)?, heads)?;
            let v = split_heads(&layer.v_proj.forward(&h)?, heads)?;
            let (k, v) = match slot.take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                None => (k, v),
            };
            let attn = merge_heads(&attention(&q, &k, &v, 1.0, mask.as_ref())?)?;
            *slot = Some((k, v));
            x = (layer.out_proj.forward(&attn)? + residual)?;
            if !pre_norm {
                x = layer.attn_norm.forward(&x)?;
            }
            let residual = x.clone();
            let h = if pre_norm {
                layer.final_norm.forward(&x)?
            } else {
                x.clone()
            };
            let h = layer
                .fc2
                .forward(&self.act.apply(&layer.fc1.forward(&h)?)?)?;
            x = (h + residual)?;
            if !pre_norm {
                x = layer.final_norm.forward(&x)?;
            }
        }
        cache.len = past + s;
        if let Some(norm) = &self.final_layer_norm {
            x = norm.forward(&x)?;
        }
        match &self.project_out {
            Some(p) => p.forward(&x),
            None => Ok(x),
        }
    }

    /// Logits `[..., vocab]` in f32 of final hidden states.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)?.to_dtype(DType::F32)
    }
}

/// The additive causal mask `[s, past + s]` for `s` new positions after `past` cached ones, or
/// `None` when a single new position may see everything.
fn causal_mask(s: usize, past: usize, device: &Device) -> Result<Option<Tensor>> {
    if s == 1 {
        return Ok(None);
    }
    let total = past + s;
    let mask: Vec<f32> = (0..s)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (s, total), device).map(Some)
}
