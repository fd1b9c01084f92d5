//! Text classifiers: a shared BERT base plus a PEFT LoRA adapter and its head, with labels.
//!
//! [`BaseCache`] keeps one copy of each base (per directory, device, dtype and quantization), so
//! several classifiers on bert-base-chinese cost one base in memory.

pub mod evaluate;
pub mod input;
pub mod metrics;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor};

use crate::models::bert::{BertBase, BertConfig, BertLoadOptions, BertTokenizer, LinearDeltas};
use crate::models::lora::LoraAdapter;
use crate::models::runtime::Quant;
use crate::models::ModelError;

/// How to load a classifier.
#[derive(Debug, Clone)]
pub struct ClassifierOptions {
    pub device: Device,
    pub dtype: DType,
    pub quant: Quant,
    /// Merge the LoRA deltas into a private copy of the base (faster, no sharing).
    pub merge: bool,
    /// Label names by id; overrides the adapter dir's `config.json`.
    pub labels: Option<Vec<String>>,
}

impl Default for ClassifierOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            quant: Quant::None,
            merge: false,
            labels: None,
        }
    }
}

/// One prediction.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub label: String,
    pub label_id: usize,
    /// Softmax probabilities, by label id.
    pub scores: Vec<f32>,
    pub logits: Vec<f32>,
}

/// A loaded base with its tokenizer.
pub struct SharedBase {
    pub dir: PathBuf,
    pub model: BertBase,
    pub tokenizer: BertTokenizer,
}

/// Bases by (directory, device, dtype, quantization).
#[derive(Default)]
pub struct BaseCache {
    bases: HashMap<String, Arc<SharedBase>>,
}

impl BaseCache {
    fn key(dir: &Path, opts: &ClassifierOptions) -> String {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        format!(
            "{}|{:?}|{:?}|{}",
            dir.display(),
            opts.device.location(),
            opts.dtype,
            opts.quant
        )
    }

    /// The base at `dir`, loaded on first use.
    pub fn get(
        &mut self,
        dir: &Path,
        opts: &ClassifierOptions,
    ) -> Result<Arc<SharedBase>, ModelError> {
        let key = Self::key(dir, opts);
        if let Some(base) = self.bases.get(&key) {
            return Ok(base.clone());
        }
        let base = Arc::new(load_base(dir, opts, None)?);
        self.bases.insert(key, base.clone());
        Ok(base)
    }

    pub fn len(&self) -> usize {
        self.bases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }
}

fn load_base(
    dir: &Path,
    opts: &ClassifierOptions,
    adapter: Option<&LoraAdapter>,
) -> Result<SharedBase, ModelError> {
    if !dir.is_dir() {
        return Err(ModelError::Usage(format!(
            "--base {}: not a directory (expected a BERT model saved with save_pretrained)",
            dir.display()
        )));
    }
    let load = BertLoadOptions {
        device: opts.device.clone(),
        dtype: opts.dtype,
        quant: opts.quant,
    };
    let merge_hook = |name: &str, w: Tensor| -> Result<Tensor, ModelError> {
        match adapter.and_then(|a| a.delta_for(name)) {
            Some(d) => Ok((w + d.merged_weight()?.to_dtype(opts.dtype)?)?),
            None => Ok(w),
        }
    };
    let model = BertBase::load(dir, &load, adapter.map(|_| &merge_hook as _))?;
    let tokenizer = BertTokenizer::from_dir(dir, model.config.max_position_embeddings)?;
    Ok(SharedBase {
        dir: dir.to_path_buf(),
        model,
        tokenizer,
    })
}

pub struct Classifier {
    base: Arc<SharedBase>,
    /// The LoRA adapter; `None` for a fine-tuned checkpoint that classifies by itself.
    adapter: Option<LoraAdapter>,
    pub labels: Vec<String>,
}

impl Classifier {
    /// A classifier from a base and an adapter, or (`adapter_dir` `None`) from a fine-tuned
    /// `BertForSequenceClassification` checkpoint alone.
    pub fn open(
        base_dir: &Path,
        adapter_dir: Option<&Path>,
        opts: &ClassifierOptions,
        cache: &mut BaseCache,
    ) -> Result<Self, ModelError> {
        match adapter_dir {
            Some(adapter) => Self::load(base_dir, adapter, opts, cache),
            None => Self::load_finetuned(base_dir, opts, cache),
        }
    }

    /// A fine-tuned sequence classifier used as is: its `classifier.*` head, its pooler, and
    /// the labels of its `config.json` (`id2label`).
    pub fn load_finetuned(
        base_dir: &Path,
        opts: &ClassifierOptions,
        cache: &mut BaseCache,
    ) -> Result<Self, ModelError> {
        let base = cache.get(base_dir, opts)?;
        let Some(head) = base.model.head() else {
            return Err(ModelError::Missing {
                dir: base_dir.to_path_buf(),
                what: "classification head",
                looked_for: "classifier.weight (a fine-tuned BertForSequenceClassification); for a plain base give --adapter".into(),
            });
        };
        if !base.model.has_pooler() {
            return Err(ModelError::Missing {
                dir: base_dir.to_path_buf(),
                what: "pooler weights",
                looked_for: "bert.pooler.dense.*".into(),
            });
        }
        let num_labels = head.out_dim();
        let labels = resolve_labels(opts.labels.clone(), base_dir, num_labels)?;
        Ok(Self {
            base,
            adapter: None,
            labels,
        })
    }

    /// Loads the adapter at `adapter_dir` on the base at `base_dir`, sharing the base through
    /// `cache` unless the adapter is merged.
    pub fn load(
        base_dir: &Path,
        adapter_dir: &Path,
        opts: &ClassifierOptions,
        cache: &mut BaseCache,
    ) -> Result<Self, ModelError> {
        if !adapter_dir.is_dir() {
            return Err(ModelError::Usage(format!(
                "--adapter {}: not a directory (expected a PEFT adapter saved with save_pretrained)",
                adapter_dir.display()
            )));
        }
        // Unmerged: the (cached) base comes first and its config shapes the adapter, so
        // config.json is read once. Merged: the adapter is needed to build the base.
        let (base, adapter) = if opts.merge {
            let config = BertConfig::from_file(&base_dir.join("config.json"))?;
            let mut adapter = LoraAdapter::load(adapter_dir, &config, &opts.device, opts.dtype)?;
            let base = Arc::new(load_base(base_dir, opts, Some(&adapter))?);
            adapter.mark_merged();
            (base, adapter)
        } else {
            let base = cache.get(base_dir, opts)?;
            let adapter =
                LoraAdapter::load(adapter_dir, &base.model.config, &opts.device, opts.dtype)?;
            (base, adapter)
        };
        if adapter.pooler.is_none() && !base.model.has_pooler() {
            return Err(ModelError::Missing {
                dir: base_dir.to_path_buf(),
                what: "pooler weights",
                looked_for:
                    "pooler.dense.* in the base or bert.pooler in the adapter's modules_to_save"
                        .into(),
            });
        }
        let labels = resolve_labels(opts.labels.clone(), adapter_dir, adapter.num_labels)?;
        Ok(Self {
            base,
            adapter: Some(adapter),
            labels,
        })
    }

    /// The adapter's directory, or the base's for a fine-tuned checkpoint.
    pub fn adapter_dir(&self) -> &Path {
        self.adapter.as_ref().map_or(&self.base.dir, |a| &a.dir)
    }

    pub fn base(&self) -> &SharedBase {
        &self.base
    }

    pub fn adapter(&self) -> Option<&LoraAdapter> {
        self.adapter.as_ref()
    }

    /// Logits `[texts][labels]` for texts run as one padded batch.
    pub fn logits(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self.base.tokenizer.encode_batch(texts)?;
        let model = &self.base.model;
        let (ids, mask) = model.batch_tensors(&enc.ids, &enc.mask)?;
        let (deltas, pooler, head): (&dyn LinearDeltas, _, _) = match &self.adapter {
            Some(a) => (a, a.pooler.as_ref(), &a.head),
            None => match model.head() {
                Some(head) => (&(), None, head),
                None => {
                    return Err(ModelError::Usage(
                        "this classifier has neither an adapter nor a head".into(),
                    ))
                }
            },
        };
        let hidden = model.encode(&ids, &mask, deltas)?;
        let pooled = model.pool(&hidden, pooler, deltas)?;
        let logits = head.forward(&pooled)?;
        Ok(logits.to_dtype(DType::F32)?.to_vec2()?)
    }

    /// Predictions for texts run as one padded batch.
    pub fn classify(&self, texts: &[&str]) -> Result<Vec<Prediction>, ModelError> {
        Ok(self
            .logits(texts)?
            .into_iter()
            .map(|logits| {
                let scores = softmax(&logits);
                let label_id = argmax(&scores);
                Prediction {
                    label: self.labels[label_id].clone(),
                    label_id,
                    scores,
                    logits,
                }
            })
            .collect())
    }
}

/// Label names: given ones, else `id2label` of a `config.json` in the adapter dir, else `LABEL_i`.
pub fn resolve_labels(
    given: Option<Vec<String>>,
    adapter_dir: &Path,
    num_labels: usize,
) -> Result<Vec<String>, ModelError> {
    if let Some(labels) = given {
        if labels.len() != num_labels {
            return Err(ModelError::Usage(format!(
                "--labels names {} labels but the adapter's head has {num_labels}",
                labels.len()
            )));
        }
        return Ok(labels);
    }
    let config_path = adapter_dir.join("config.json");
    if config_path.is_file() {
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: config_path.clone(),
            reason: format!("not valid JSON: {e}"),
        })?;
        if let Some(map) = v.get("id2label").and_then(|m| m.as_object()) {
            let mut labels = vec![None; num_labels];
            for (k, name) in map {
                let slot = k
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| labels.get_mut(i))
                    .ok_or_else(|| ModelError::Config {
                        path: config_path.clone(),
                        reason: format!("id2label key {k:?} is not an id below {num_labels}"),
                    })?;
                *slot = name.as_str().map(String::from);
            }
            return labels
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ModelError::Config {
                    path: config_path.clone(),
                    reason: format!("id2label must name every id 0..{num_labels} with a string"),
                });
        }
    }
    Ok((0..num_labels).map(|i| format!("LABEL_{i}")).collect())
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

impl Classifier {
    /// Changes the truncation length (benchmarks use it to fix the sequence length). Only
    /// possible while this classifier is the base's sole user.
    pub fn set_max_length(&mut self, max_length: usize) -> Result<(), ModelError> {
        let limit = self.base.model.config.max_position_embeddings;
        if max_length == 0 || max_length > limit {
            return Err(ModelError::Usage(format!(
                "sequence length {max_length} must be in 1..={limit} (max_position_embeddings)"
            )));
        }
        let base = Arc::get_mut(&mut self.base).ok_or_else(|| {
            ModelError::Usage("the base is shared; set the length before sharing it".into())
        })?;
        base.tokenizer.set_max_length(max_length)
    }
}
