//! BERT tokenization from `tokenizer.json`, or from `vocab.txt` (+ `tokenizer_config.json`) the
//! way `BertTokenizerFast` builds it, with transformers' truncation and right padding.

use std::path::Path;

use serde_json::Value;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::models::ModelError;

/// Token ids of a batch, padded to its longest member.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    /// `[batch][seq]` ids, right-padded.
    pub ids: Vec<Vec<u32>>,
    /// `[batch][seq]` 1 for real tokens, 0 for padding.
    pub mask: Vec<Vec<u32>>,
}

pub struct BertTokenizer {
    inner: Tokenizer,
    /// Truncation length: `min(model_max_length, max_position_embeddings)`.
    pub max_length: usize,
}

impl BertTokenizer {
    /// Loads the tokenizer of a model directory. `max_positions` is the model's
    /// `max_position_embeddings`, the hard limit on sequence length.
    pub fn from_dir(dir: &Path, max_positions: usize) -> Result<Self, ModelError> {
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let settings = TokenizerSettings::read(&dir.join("tokenizer_config.json"))?;
        let mut inner = if json.is_file() {
            Tokenizer::from_file(&json).map_err(|e| ModelError::Tokenizer {
                path: json.clone(),
                reason: e.to_string(),
            })?
        } else if vocab.is_file() {
            from_vocab(&vocab, &settings)?
        } else {
            return Err(ModelError::Missing {
                dir: dir.to_path_buf(),
                what: "tokenizer",
                looked_for: "tokenizer.json, vocab.txt".into(),
            });
        };
        let max_length = settings
            .model_max_length
            .map_or(max_positions, |m| m.min(max_positions));
        let pad_token = settings.pad_token.unwrap_or_else(|| "[PAD]".into());
        let pad_id = inner.token_to_id(&pad_token).unwrap_or(0);
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                ..Default::default()
            }))
            .map_err(|e| ModelError::Tokenizer {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..Default::default()
        }));
        Ok(Self { inner, max_length })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes texts with special tokens, truncated and padded as transformers'
    /// `tokenizer(texts, truncation=True, padding=True)` does.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<EncodedBatch, ModelError> {
        let encodings = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| ModelError::Tokenize(e.to_string()))?;
        Ok(EncodedBatch {
            ids: encodings.iter().map(|e| e.get_ids().to_vec()).collect(),
            mask: encodings
                .iter()
                .map(|e| e.get_attention_mask().to_vec())
                .collect(),
        })
    }
}

/// What `tokenizer_config.json` says that matters here; absent fields take BertTokenizer's defaults.
#[derive(Debug, Default)]
struct TokenizerSettings {
    model_max_length: Option<usize>,
    do_lower_case: Option<bool>,
    tokenize_chinese_chars: Option<bool>,
    strip_accents: Option<bool>,
    pad_token: Option<String>,
}

impl TokenizerSettings {
    fn read(path: &Path) -> Result<Self, ModelError> {
        if !path.is_file() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::Tokenizer {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        // transformers writes a huge sentinel (1e30) when there is no limit; f64 keeps it parseable.
        let model_max_length = v
            .get("model_max_length")
            .and_then(Value::as_f64)
            .filter(|m| *m < 1e9)
            .map(|m| m as usize);
        let token = |key: &str| match v.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(String::from),
            _ => None,
        };
        Ok(Self {
            model_max_length,
            do_lower_case: v.get("do_lower_case").and_then(Value::as_bool),
            tokenize_chinese_chars: v.get("tokenize_chinese_chars").and_then(Value::as_bool),
            strip_accents: v.get("strip_accents").and_then(Value::as_bool),
            pad_token: token("pad_token"),
        })
    }
}

/// A WordPiece tokenizer built the way `BertTokenizerFast` converts a `vocab.txt`.
fn from_vocab(vocab: &Path, settings: &TokenizerSettings) -> Result<Tokenizer, ModelError> {
    let bad = |reason: String| ModelError::Tokenizer {
        path: vocab.to_path_buf(),
        reason,
    };
    let path = vocab
        .to_str()
        .ok_or_else(|| bad("path is not valid UTF-8".into()))?;
    let model = WordPiece::from_file(path)
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut tokenizer = Tokenizer::new(model);
    let lowercase = settings.do_lower_case.unwrap_or(true);
    tokenizer.with_normalizer(Some(BertNormalizer::new(
        true,
        settings.tokenize_chinese_chars.unwrap_or(true),
        settings.strip_accents,
        lowercase,
    )));
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    let id = |t: &str| {
        tokenizer
            .token_to_id(t)
            .ok_or_else(|| bad(format!("vocabulary has no {t} token")))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    tokenizer.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    Ok(tokenizer)
}

impl BertTokenizer {
    /// Truncates to `max_length` tokens from now on.
    pub fn set_max_length(&mut self, max_length: usize) -> Result<(), ModelError> {
        self.inner
            .with_truncation(Some(TruncationParams {
                max_length,
                ..Default::default()
            }))
            .map_err(|e| ModelError::Tokenize(e.to_string()))?;
        self.max_length = max_length;
        Ok(())
    }
}
