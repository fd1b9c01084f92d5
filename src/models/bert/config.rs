//! The Hugging Face `BertConfig` (`config.json`), with the fields that change inference.
//! Mirrors `transformers/models/bert/configuration_bert.py`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::models::layers::Activation;
use crate::models::ModelError;

#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default = "default_pos_type")]
    pub position_embedding_type: String,
    /// Label names by id, as the classification config stores them (keys are decimal strings).
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_max_pos() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_pos_type() -> String {
    "absolute".into()
}

impl BertConfig {
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let config: BertConfig = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ModelError> {
        let bad = |reason: String| ModelError::Config {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(t) = &self.model_type {
            if !matches!(t.as_str(), "bert") {
                return Err(bad(format!(
                    "model_type {t:?} is not a BERT model (expected \"bert\")"
                )));
            }
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.position_embedding_type != "absolute" {
            return Err(bad(format!(
                "position_embedding_type {:?} is not supported (only \"absolute\")",
                self.position_embedding_type
            )));
        }
        self.activation(path)?;
        Ok(())
    }

    pub fn activation(&self, path: &Path) -> Result<Activation, ModelError> {
        Activation::parse(&self.hidden_act).map_err(|reason| ModelError::Config {
            path: path.to_path_buf(),
            reason: format!("hidden_act: {reason}"),
        })
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// `id2label` ordered by id, if the config has a complete one (`0..n` without gaps).
    pub fn labels(&self) -> Option<Vec<String>> {
        let map = self.id2label.as_ref()?;
        let mut labels = vec![None; map.len()];
        for (k, v) in map {
            let id: usize = k.parse().ok()?;
            *labels.get_mut(id)? = Some(v.clone());
        }
        labels.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_ids() {
        let c: BertConfig = serde_json::from_str(
            r#"{"vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,
                "intermediate_size":16,"id2label":{"1":"b","0":"a","2":"c"}}"#,
        )
        .unwrap();
        assert_eq!(c.labels().unwrap(), vec!["a", "b", "c"]);
    }
}
