//! BLIP-2's vision encoder (EVA ViT-g in blip2-opt-2.7b): patch embedding, class and position
//! embeddings, pre-norm transformer layers whose fused `qkv` has no bias of its own but
//! `q_bias`/`v_bias` (K gets none), and a final layer norm. Mirrors `Blip2VisionModel`.

use candle_core::{Module, Result, Tensor};

use crate::models::linear::BaseLinear;
use crate::models::ModelError;

use super::config::VisionConfig;
use super::layers::{attention, tensor_bytes, LayerNorm, Loader, Mlp};
use crate::models::layers::Activation;

struct VisionLayer {
    norm1: LayerNorm,
    qkv: BaseLinear,
    projection: BaseLinear,
    norm2: LayerNorm,
    mlp: Mlp,
}

pub struct VisionModel {
    /// The patch convolution as a matrix `[hidden, 3 * patch * patch]`: a stride-`patch`
    /// convolution is one matrix product over flattened patches.
    patch_weight: Tensor,
    patch_bias: Tensor,
    class_embedding: Tensor,
    position_embedding: Tensor,
    layers: Vec<VisionLayer>,
    post_layernorm: LayerNorm,
    config: VisionConfig,
}

impl VisionModel {
    pub fn load(l: &Loader, config: &VisionConfig) -> std::result::Result<Self, ModelError> {
        let h = config.hidden_size;
        let p = config.patch_size;
        let patches = (config.image_size / p).pow(2);
        let act = Activation::parse(&config.hidden_act).map_err(|e| ModelError::Usage(e.0))?;
        let patch = l.tensor(
            "vision_model.embeddings.patch_embedding.weight",
            &[h, 3, p, p],
        )?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let m = format!("vision_model.encoder.layers.{i}");
            layers.push(VisionLayer {
                norm1: l.layer_norm(&format!("{m}.layer_norm1"), h, config.layer_norm_eps)?,
                qkv: l.linear_with_bias(
                    &format!("{m}.self_attn.qkv"),
                    3 * h,
                    h,
                    qkv_bias(l, &m, h, config.qkv_bias)?,
                )?,
                projection: l.linear(&format!("{m}.self_attn.projection"), h, h, true)?,
                norm2: l.layer_norm(&format!("{m}.layer_norm2"), h, config.layer_norm_eps)?,
                mlp: Mlp {
                    fc1: l.linear(&format!("{m}.mlp.fc1"), config.intermediate_size, h, true)?,
                    fc2: l.linear(&format!("{m}.mlp.fc2"), h, config.intermediate_size, true)?,
                    act,
                },
            });
        }
        Ok(Self {
            patch_weight: patch.reshape((h, 3 * p * p))?,
            patch_bias: l.tensor("vision_model.embeddings.patch_embedding.bias", &[h])?,
            class_embedding: l.tensor("vision_model.embeddings.class_embedding", &[1, 1, h])?,
            position_embedding: l.tensor(
                "vision_model.embeddings.position_embedding",
                &[1, patches + 1, h],
            )?,
            layers,
            post_layernorm: l.layer_norm(
                "vision_model.post_layernorm",
                h,
                config.layer_norm_eps,
            )?,
            config: config.clone(),
        })
    }

    /// Bytes of the weights (linear layers and embeddings; norms are negligible).
    pub fn weight_bytes(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                l.qkv.weight_bytes()
                    + l.projection.weight_bytes()
                    + l.mlp.fc1.weight_bytes()
                    + l.mlp.fc2.weight_bytes()
            })
            .sum();
        layers
            + tensor_bytes(&self.patch_weight)
            + tensor_bytes(&self.class_embedding)
            + tensor_bytes(&self.position_embedding)
    }

    /// `[b, 3, S, S]` pixel values → `[b, 1 + patches, hidden]`, post-layernorm (transformers'
    /// `last_hidden_state`).
    pub fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let (b, c, height, width) = pixel_values.dims4()?;
        let p = self.config.patch_size;
        let size = self.config.image_size;
        if c != 3 || height != size || width != size {
            candle_core::bail!(
                "pixel values of shape [{b}, {c}, {height}, {width}] do not fit the vision model's [_, 3, {size}, {size}]"
            );
        }
        let g = size / p;
        let dtype = self.patch_weight.dtype();
        // [b, 3, g, p, g, p] → [b, g, g, 3, p, p]: each row one patch, flattened as the conv
        // weight is (channel, y, x).
        let patches = pixel_values
            .to_dtype(dtype)?
            .reshape((b, 3, g, p, g, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * g * g, 3 * p * p))?;
        let embeds = patches
            .matmul(&self.patch_weight.t()?)?
            .broadcast_add(&self.patch_bias)?
            .reshape((b, g * g, self.config.hidden_size))?;
        let class = self
            .class_embedding
            .broadcast_as((b, 1, self.config.hidden_size))?;
        let mut x = Tensor::cat(&[&class, &embeds], 1)?.broadcast_add(&self.position_embedding)?;
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.hidden_size / heads;
        let scale = (head_dim as f64).powf(-0.5);
        for layer in &self.layers {
            let residual = x.clone();
            let h = layer.norm1.forward(&x)?;
            let (b, s, hidden) = h.dims3()?;
            // [b, s, 3, heads, d] → [3, b, heads, s, d], as transformers splits the fused qkv.
            let qkv = layer
                .qkv
                .forward(&h)?
                .reshape((b, s, 3, heads, head_dim))?
                .permute((2, 0, 3, 1, 4))?;
            let q = qkv.get(0)?.contiguous()?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let attn = attention(&q, &k, &v, scale, None)?
                .transpose(1, 2)?
                .reshape((b, s, hidden))?;
            x = (layer.projection.forward(&attn)? + residual)?;
            let residual = x.clone();
            x = (layer.mlp.forward(&layer.norm2.forward(&x)?)? + residual)?;
        }
        self.post_layernorm.forward(&x)
    }
}

/// The fused qkv bias: `qkv.bias` as transformers ≥ 5 saves it, or `q_bias`, zeros for K, and
/// `v_bias` as the original checkpoints (Salesforce/blip2-*) store it.
fn qkv_bias(
    l: &Loader,
    module: &str,
    hidden: usize,
    enabled: bool,
) -> std::result::Result<Option<Tensor>, ModelError> {
    let fused = format!("{module}.self_attn.qkv.bias");
    if l.has(&fused) {
        return Ok(Some(l.tensor(&fused, &[3 * hidden])?));
    }
    let q = format!("{module}.self_attn.q_bias");
    if !enabled && !l.has(&q) {
        return Ok(None);
    }
    let q_bias = l.tensor(&q, &[hidden])?;
    let v_bias = l.tensor(&format!("{module}.self_attn.v_bias"), &[hidden])?;
    let k_bias = q_bias.zeros_like()?;
    Ok(Some(Tensor::cat(&[&q_bias, &k_bias, &v_bias], 0)?))
}
