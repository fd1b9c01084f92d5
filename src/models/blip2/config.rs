//! `Blip2Config` as `config.json` stores it: a vision config, a Q-Former config and the OPT text
//! config. Defaults are transformers' (`configuration_blip_2.py`, `configuration_opt.py`), so a
//! checkpoint that omits a field means what it means there.

use std::path::Path;

use serde::Deserialize;

use crate::models::layers::Activation;
use crate::models::ModelError;

#[derive(Debug, Clone, Deserialize)]
pub struct VisionConfig {
    #[serde(default = "d::vision_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d::vision_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d::vision_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d::vision_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d::vision_image")]
    pub image_size: usize,
    #[serde(default = "d::vision_patch")]
    pub patch_size: usize,
    #[serde(default = "d::gelu")]
    pub hidden_act: String,
    #[serde(default = "d::eps_1e6")]
    pub layer_norm_eps: f64,
    #[serde(default = "d::yes")]
    pub qkv_bias: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QFormerConfig {
    #[serde(default = "d::qformer_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d::qformer_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d::qformer_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d::qformer_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d::gelu")]
    pub hidden_act: String,
    #[serde(default = "d::eps_1e12")]
    pub layer_norm_eps: f64,
    #[serde(default = "d::two")]
    pub cross_attention_frequency: usize,
    /// transformers overwrites this with the vision hidden size when it builds the config; so do we.
    #[serde(default)]
    pub encoder_hidden_size: Option<usize>,
    #[serde(default)]
    pub use_qformer_text_input: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OptConfig {
    #[serde(default = "d::opt_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d::opt_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d::opt_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d::opt_ffn")]
    pub ffn_dim: usize,
    #[serde(default = "d::opt_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d::opt_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "d::yes")]
    pub do_layer_norm_before: bool,
    #[serde(default)]
    pub word_embed_proj_dim: Option<usize>,
    #[serde(default = "d::relu")]
    pub activation_function: String,
    #[serde(default = "d::yes")]
    pub enable_bias: bool,
    #[serde(default = "d::yes")]
    pub layer_norm_elementwise_affine: bool,
    #[serde(default, rename = "_remove_final_layer_norm")]
    pub remove_final_layer_norm: bool,
    #[serde(default = "d::one")]
    pub pad_token_id: u32,
    #[serde(default = "d::two_u32")]
    pub bos_token_id: u32,
    #[serde(default = "d::eos")]
    pub eos_token_id: EosTokens,
    #[serde(default)]
    pub model_type: Option<String>,
}

/// `eos_token_id` is an int or a list of ints in Hugging Face configs.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum EosTokens {
    One(u32),
    Many(Vec<u32>),
}

impl EosTokens {
    pub fn ids(&self) -> Vec<u32> {
        match self {
            Self::One(id) => vec![*id],
            Self::Many(ids) => ids.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Blip2Config {
    #[serde(default = "d::vision")]
    pub vision_config: VisionConfig,
    #[serde(default = "d::qformer")]
    pub qformer_config: QFormerConfig,
    pub text_config: OptConfig,
    #[serde(default = "d::queries")]
    pub num_query_tokens: usize,
    /// Present in checkpoints saved by transformers ≥ 4.47: the prompt carries `num_query_tokens`
    /// copies of this token, which the query outputs replace. Absent: the legacy layout, where the
    /// query outputs are prepended to BOS + prompt. Both give the same sequence of embeddings.
    #[serde(default, alias = "image_token_id")]
    pub image_token_index: Option<u32>,
    #[serde(default)]
    pub model_type: Option<String>,
}

impl OptConfig {
    pub fn embed_dim(&self) -> usize {
        self.word_embed_proj_dim.unwrap_or(self.hidden_size)
    }
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

impl Blip2Config {
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let mut config: Blip2Config =
            serde_json::from_str(&text).map_err(|e| ModelError::Config {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        config.qformer_config.encoder_hidden_size = Some(config.vision_config.hidden_size);
        config.validate(path)?;
        Ok(config)
    }

    pub fn encoder_hidden_size(&self) -> usize {
        self.vision_config.hidden_size
    }

    fn validate(&self, path: &Path) -> Result<(), ModelError> {
        let bad = |reason: String| ModelError::Config {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(t) = &self.model_type {
            if t != "blip-2" {
                return Err(bad(format!(
                    "model_type {t:?} is not a BLIP-2 model (expected \"blip-2\")"
                )));
            }
        }
        if let Some(t) = &self.text_config.model_type {
            if t != "opt" {
                return Err(bad(format!(
                    "text_config.model_type {t:?} is not supported: landfall runs BLIP-2 with an OPT decoder"
                )));
            }
        }
        let heads = [
            (
                "vision_config",
                self.vision_config.hidden_size,
                self.vision_config.num_attention_heads,
            ),
            (
                "qformer_config",
                self.qformer_config.hidden_size,
                self.qformer_config.num_attention_heads,
            ),
            (
                "text_config",
                self.text_config.hidden_size,
                self.text_config.num_attention_heads,
            ),
        ];
        for (part, hidden, n) in heads {
            if n == 0 || hidden % n != 0 {
                return Err(bad(format!(
                    "{part}.hidden_size {hidden} is not a multiple of num_attention_heads {n}"
                )));
            }
        }
        let v = &self.vision_config;
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(bad(format!(
                "vision_config.image_size {} is not a multiple of patch_size {}",
                v.image_size, v.patch_size
            )));
        }
        if self.qformer_config.cross_attention_frequency == 0 {
            return Err(bad("qformer_config.cross_attention_frequency is 0".into()));
        }
        if self.qformer_config.use_qformer_text_input {
            return Err(bad(
                "qformer_config.use_qformer_text_input is an InstructBLIP feature, not BLIP-2"
                    .into(),
            ));
        }
        if self.text_config.embed_dim() != self.text_config.hidden_size {
            // language_projection maps to hidden_size while the token embeddings have
            // word_embed_proj_dim: transformers cannot mix the two either.
            return Err(bad(format!(
                "text_config.word_embed_proj_dim {} differs from hidden_size {}: BLIP-2's query embeddings ({}) could not join the token embeddings",
                self.text_config.embed_dim(),
                self.text_config.hidden_size,
                self.text_config.hidden_size
            )));
        }
        for (field, act) in [
            ("vision_config.hidden_act", &v.hidden_act),
            ("qformer_config.hidden_act", &self.qformer_config.hidden_act),
            (
                "text_config.activation_function",
                &self.text_config.activation_function,
            ),
        ] {
            Activation::parse(act).map_err(|e| bad(format!("{field}: {e}")))?;
        }
        Ok(())
    }
}

/// Defaults of transformers' config classes (blip2-opt-2.7b sizes).
mod d {
    use super::*;
    pub fn vision_hidden() -> usize {
        1408
    }
    pub fn vision_intermediate() -> usize {
        6144
    }
    pub fn vision_layers() -> usize {
        39
    }
    pub fn vision_heads() -> usize {
        16
    }
    pub fn vision_image() -> usize {
        224
    }
    pub fn vision_patch() -> usize {
        14
    }
    pub fn gelu() -> String {
        "gelu".into()
    }
    pub fn relu() -> String {
        "relu".into()
    }
    pub fn eps_1e6() -> f64 {
        1e-6
    }
    pub fn eps_1e12() -> f64 {
        1e-12
    }
    pub fn yes() -> bool {
        true
    }
    pub fn one() -> u32 {
        1
    }
    pub fn two() -> usize {
        2
    }
    pub fn two_u32() -> u32 {
        2
    }
    pub fn eos() -> EosTokens {
        EosTokens::One(2)
    }
    pub fn qformer_hidden() -> usize {
        768
    }
    pub fn qformer_layers() -> usize {
        12
    }
    pub fn qformer_heads() -> usize {
        12
    }
    pub fn qformer_intermediate() -> usize {
        3072
    }
    pub fn opt_vocab() -> usize {
        50272
    }
    pub fn opt_hidden() -> usize {
        768
    }
    pub fn opt_layers() -> usize {
        12
    }
    pub fn opt_ffn() -> usize {
        3072
    }
    pub fn opt_heads() -> usize {
        12
    }
    pub fn opt_positions() -> usize {
        2048
    }
    pub fn queries() -> usize {
        32
    }
    pub fn vision() -> VisionConfig {
        serde_json::from_str("{}").expect("all vision fields have defaults")
    }
    pub fn qformer() -> QFormerConfig {
        serde_json::from_str("{}").expect("all Q-Former fields have defaults")
    }
}
