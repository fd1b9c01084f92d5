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
    /// Where a long text may be cut before tokenizing without changing its first tokens:
    /// `None` when this tokenizer's splitting is not known to respect such cuts.
    cuts: Option<CutRule>,
}

/// Where the pre-tokenizer always splits, so a text cut there tokenizes into a prefix of the
/// whole text's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CutRule {
    /// Every CJK character is a word of its own (BertNormalizer's `handle_chinese_chars`).
    cjk: bool,
    /// Every ASCII punctuation mark is a word of its own (BertPreTokenizer; a whitespace
    /// splitter keeps runs of marks together).
    punct: bool,
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
        let cuts = cut_rule(&inner);
        Ok(Self {
            inner,
            max_length,
            cuts,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes texts with special tokens, truncated and padded as transformers'
    /// `tokenizer(texts, truncation=True, padding=True)` does.
    ///
    /// A text far longer than the model can take is cut first, at a place where the tokenizer
    /// splits anyway and past enough words to fill `max_length` tokens, so the ids are the same
    /// as from the whole text but a megabyte of input costs what a page does.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<EncodedBatch, ModelError> {
        let bounded: Vec<&str> = texts
            .iter()
            .map(|t| match self.cuts {
                Some(rule) => bounded_prefix(t, self.max_length, rule),
                None => t,
            })
            .collect();
        let encodings = self
            .inner
            .encode_batch(bounded, true)
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

/// The cut rule of a tokenizer whose pre-tokenizer splits at whitespace and punctuation (BERT's,
/// or a whitespace splitter), after a normalizer that keeps them; `None` for anything else.
fn cut_rule(t: &Tokenizer) -> Option<CutRule> {
    use tokenizers::normalizers::NormalizerWrapper;
    use tokenizers::pre_tokenizers::PreTokenizerWrapper;
    let cjk = match t.get_normalizer() {
        Some(NormalizerWrapper::BertNormalizer(n)) => n.handle_chinese_chars,
        None => false,
        Some(_) => return None,
    };
    match t.get_pre_tokenizer() {
        Some(PreTokenizerWrapper::BertPreTokenizer(_)) => Some(CutRule { cjk, punct: true }),
        Some(PreTokenizerWrapper::Whitespace(_) | PreTokenizerWrapper::WhitespaceSplit(_)) => {
            Some(CutRule { cjk, punct: false })
        }
        _ => None,
    }
}

/// Characters BERT treats as CJK ideographs (`BasicTokenizer._is_chinese_char`).
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// The start of `text` that holds at least `tokens` words (each of which becomes at least one
/// token), cut where the pre-tokenizer splits: at whitespace, before ASCII punctuation (with
/// `punct`), or before a CJK character (with `cjk`). The whole text when it is not that long.
fn bounded_prefix(text: &str, tokens: usize, rule: CutRule) -> &str {
    // Cheap exit: fewer characters than tokens wanted means fewer words too.
    if text.len() <= tokens {
        return text;
    }
    let mut words = 0usize;
    // The current word holds a character that yields a token (not only control characters).
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        let own_word = (rule.punct && c.is_ascii_punctuation()) || (rule.cjk && is_cjk(c));
        let splits_before = c.is_whitespace() || own_word;
        if splits_before {
            if in_word {
                words += 1;
                in_word = false;
            }
            if words > tokens {
                return &text[..i];
            }
        }
        if own_word {
            words += 1;
        } else if !c.is_whitespace() && (c.is_alphanumeric() || !c.is_control()) {
            in_word = true;
        }
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: CutRule = CutRule {
        cjk: true,
        punct: true,
    };

    #[test]
    fn short_texts_are_not_cut() {
        assert_eq!(bounded_prefix("a b c", 10, RULE), "a b c");
        assert_eq!(bounded_prefix("", 10, RULE), "");
    }

    #[test]
    fn long_texts_are_cut_at_a_split_past_enough_words() {
        let text = "word ".repeat(100);
        let cut = bounded_prefix(&text, 10, RULE);
        assert!(cut.len() < text.len());
        assert_eq!(cut.split_whitespace().count(), 11);
        let zh = "好".repeat(100);
        let cut = bounded_prefix(&zh, 10, RULE);
        assert_eq!(cut.chars().count(), 11);
        // Without CJK splitting, a run of CJK is one word: nothing to cut at.
        let plain = CutRule {
            cjk: false,
            punct: false,
        };
        assert_eq!(bounded_prefix(&zh, 10, plain), zh);
        // Punctuation splits under BERT's pre-tokenizer: each mark is a word.
        let p = "a,".repeat(100);
        assert!(bounded_prefix(&p, 10, RULE).len() < 30);
        assert_eq!(bounded_prefix(&p, 10, plain), p);
        // Control characters alone make no word.
        let ctl = "\u{1}\u{2} ".repeat(100);
        assert_eq!(bounded_prefix(&ctl, 10, RULE), ctl);
    }
}
