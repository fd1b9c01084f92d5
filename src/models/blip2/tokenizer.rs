//! OPT's byte-level BPE tokenizer from `tokenizer.json`, with OPT's convention that every text
//! starts with `</s>` (id 2) as BOS, whether or not the file's post-processor adds it.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use crate::models::ModelError;

pub struct OptTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    bos: u32,
    add_bos: bool,
}

impl OptTokenizer {
    pub fn from_dir(dir: &Path, bos: u32) -> Result<Self, ModelError> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(ModelError::Missing {
                dir: dir.to_path_buf(),
                what: "tokenizer",
                looked_for: "tokenizer.json".into(),
            });
        }
        let inner = Tokenizer::from_file(&path).map_err(|e| ModelError::Tokenizer {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            inner,
            path,
            bos,
            add_bos: add_bos_token(&dir.join("tokenizer_config.json"))?,
        })
    }

    /// BOS + the prompt's tokens, as transformers' tokenizer gives them.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let mut ids = self.encode(text, true)?;
        if self.add_bos && ids.first() != Some(&self.bos) {
            ids.insert(0, self.bos);
        }
        Ok(ids)
    }

    /// A continuation's tokens, without BOS (for scoring answer choices after a prompt).
    pub fn encode_continuation(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.encode(text, false)
    }

    fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>, ModelError> {
        self.inner
            .encode(text, special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::Tokenize(format!("{}: {e}", self.path.display())))
    }

    /// Text of generated ids, special tokens dropped, surrounding spaces trimmed.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.inner
            .decode(ids, true)
            .map(|s| s.trim().to_string())
            .map_err(|e| ModelError::Tokenize(format!("{}: {e}", self.path.display())))
    }
}

/// `add_bos_token` of `tokenizer_config.json`; OPT's tokenizers default to true.
fn add_bos_token(path: &Path) -> Result<bool, ModelError> {
    if !path.is_file() {
        return Ok(true);
    }
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(value
        .get("add_bos_token")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true))
}
