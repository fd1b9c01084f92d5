//! Loading a PEFT LoRA adapter for a BERT classifier and applying it unmerged (one base, many
//! adapters) or merging it into a private copy of the base.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::config::{LoraConfig, TargetModules};
use super::modules::{bert_classifier_modules, LinearPlace, ModuleKind};
use crate::models::bert::{BertConfig, LayerSite, LinearDeltas};
use crate::models::linear::{matmul_2d, BaseLinear};
use crate::models::runtime::Quant;
use crate::models::weights::WeightStore;
use crate::models::ModelError;

/// `lora_B(lora_A(x)) * scaling`, stored transposed with the scaling folded in.
#[derive(Debug, Clone)]
pub struct LoraDelta {
    /// `lora_A.weight^T`: `[in, r]`.
    a_t: Tensor,
    /// `lora_B.weight^T * scaling`: `[r, out]`.
    b_t: Tensor,
}

impl LoraDelta {
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        matmul_2d(&matmul_2d(x, &self.a_t)?, &self.b_t)
    }

    /// `scaling * B @ A`, shaped like the base weight `[out, in]`, for merging.
    pub fn merged_weight(&self) -> candle_core::Result<Tensor> {
        self.a_t.matmul(&self.b_t)?.t()
    }
}

/// A loaded adapter: LoRA deltas per adapted linear layer, plus the modules it replaces
/// (`modules_to_save`: the classification head, and the pooler when it was trained too).
pub struct LoraAdapter {
    pub dir: PathBuf,
    pub config: LoraConfig,
    layers: Vec<[Option<LoraDelta>; 6]>,
    pooler_delta: Option<LoraDelta>,
    /// The pooler from `modules_to_save`, replacing the base's.
    pub pooler: Option<BaseLinear>,
    /// The classification head `classifier`: `[num_labels, hidden]`.
    pub head: BaseLinear,
    pub num_labels: usize,
    /// Set once the deltas were merged into a base: they must not be added again.
    merged: bool,
    /// Module names that carry LoRA, for logs and health.
    pub adapted: Vec<String>,
}

/// Strips PEFT's save-time wrappers from a tensor name:
/// `base_model.model.bert.x.lora_A.weight` -> `bert.x.lora_A.weight`,
/// `base_model.model.classifier.modules_to_save.default.weight` -> `classifier.weight`.
fn normalize_key(key: &str) -> String {
    let k = key.strip_prefix("base_model.model.").unwrap_or(key);
    k.replace(".modules_to_save.default.", ".")
        .replace(".lora_A.default.", ".lora_A.")
        .replace(".lora_B.default.", ".lora_B.")
}

impl LoraAdapter {
    /// Loads `adapter_config.json` and `adapter_model.safetensors` from `dir` for a base with
    /// `base` config.
    pub fn load(
        dir: &Path,
        base: &BertConfig,
        device: &Device,
        dtype: DType,
    ) -> Result<Self, ModelError> {
        let config_path = dir.join("adapter_config.json");
        if !config_path.is_file() {
            return Err(ModelError::Missing {
                dir: dir.to_path_buf(),
                what: "PEFT adapter",
                looked_for: "adapter_config.json".into(),
            });
        }
        let config = LoraConfig::from_file(&config_path)?;
        let weights_path = dir.join("adapter_model.safetensors");
        if !weights_path.is_file() {
            return Err(ModelError::Missing {
                dir: dir.to_path_buf(),
                what: "adapter weights",
                looked_for: "adapter_model.safetensors (adapter_model.bin is not read: re-save with safe_serialization=True)".into(),
            });
        }
        let store = WeightStore::open_file(&weights_path)?;
        let keys: HashMap<String, String> = store
            .names()
            .iter()
            .filter(|k| !k.contains(".original_module."))
            .map(|k| (normalize_key(k), k.clone()))
            .collect();
        let mut used = BTreeSet::new();
        let mut take = |name: &str, shape: Option<&[usize]>| -> Result<Tensor, ModelError> {
            let original = keys.get(name).ok_or_else(|| {
                store.tensor_error(
                    &format!("base_model.model.{name}"),
                    "missing from the adapter".into(),
                )
            })?;
            used.insert(original.clone());
            match shape {
                Some(shape) => store.get(original, shape, dtype, device),
                None => store.get_any_shape(original, dtype, device),
            }
        };

        let modules = bert_classifier_modules(base.num_hidden_layers);
        check_every_target_exists(
            &config,
            &modules.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        )?;
        let mut layers: Vec<[Option<LoraDelta>; 6]> = (0..base.num_hidden_layers)
            .map(|_| Default::default())
            .collect();
        let mut pooler_delta = None;
        let mut adapted = Vec::new();
        for m in &modules {
            if !config.targets(&m.name) {
                continue;
            }
            let refuse = |reason: String| ModelError::Adapter {
                path: config.path().to_path_buf(),
                field: "target_modules".into(),
                reason,
            };
            let place = match (m.kind, m.place) {
                (ModuleKind::Linear, Some(place)) => place,
                (ModuleKind::Embedding, _) => {
                    return Err(refuse(format!(
                        "matches the embedding {}; LoRA on embeddings is not supported",
                        m.name
                    )))
                }
                _ => {
                    return Err(refuse(format!(
                        "matches {}, which is not a Linear layer",
                        m.name
                    )))
                }
            };
            let (in_dim, out_dim) = match place {
                LinearPlace::Layer(_, LayerSite::Intermediate) => {
                    (base.hidden_size, base.intermediate_size)
                }
                LinearPlace::Layer(_, LayerSite::Output) => {
                    (base.intermediate_size, base.hidden_size)
                }
                LinearPlace::Layer(..) | LinearPlace::Pooler => {
                    (base.hidden_size, base.hidden_size)
                }
                LinearPlace::Classifier => {
                    return Err(refuse(
                        "matches the classifier head; put it in modules_to_save instead".into(),
                    ))
                }
            };
            let (r, scaling) = config.rank_and_scaling(&m.name);
            let a = take(&format!("{}.lora_A.weight", m.name), Some(&[r, in_dim]))?;
            let b = take(&format!("{}.lora_B.weight", m.name), Some(&[out_dim, r]))?;
            let delta = LoraDelta {
                a_t: a.t()?.contiguous()?,
                b_t: (b.t()? * scaling)?.contiguous()?,
            };
            match place {
                LinearPlace::Layer(i, site) => layers[i][site as usize] = Some(delta),
                _ => pooler_delta = Some(delta),
            }
            adapted.push(m.name.clone());
        }
        if adapted.is_empty() {
            return Err(ModelError::Adapter {
                path: config.path().to_path_buf(),
                field: "target_modules".into(),
                reason: "matches no Linear layer of this BERT model".into(),
            });
        }

        let h = base.hidden_size;
        if !keys.contains_key("classifier.weight") {
            return Err(store.tensor_error(
                "base_model.model.classifier.weight",
                "missing: a SEQ_CLS adapter saves its head (modules_to_save \"classifier\")".into(),
            ));
        }
        let head_w = take("classifier.weight", None)?;
        let num_labels = match head_w.dims() {
            [n, hidden] if *hidden == h && *n > 0 => *n,
            dims => {
                return Err(store.tensor_error(
                    "base_model.model.classifier.weight",
                    format!("shape {dims:?} does not fit hidden size {h} of the base"),
                ))
            }
        };
        let head_b = take("classifier.bias", Some(&[num_labels]))?;
        let head = BaseLinear::new(head_w, Some(head_b), Quant::None)?;
        let pooler = if keys.contains_key("bert.pooler.dense.weight") {
            let w = take("bert.pooler.dense.weight", Some(&[h, h]))?;
            let b = take("bert.pooler.dense.bias", Some(&[h]))?;
            Some(BaseLinear::new(w, Some(b), Quant::None)?)
        } else {
            None
        };
        if let Some(extra) = store
            .names()
            .iter()
            .find(|k| !used.contains(*k) && !k.contains(".original_module."))
        {
            return Err(store.tensor_error(
                extra,
                "is not a tensor this adapter's config explains (is adapter_config.json from the same training run?)".into(),
            ));
        }
        if config.fan_in_fan_out {
            tracing::warn!(
                adapter = %dir.display(),
                "fan_in_fan_out is true but BERT's layers are nn.Linear; ignored, as PEFT does"
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            layers,
            pooler_delta,
            pooler,
            head,
            num_labels,
            merged: false,
            adapted,
        })
    }

    /// The delta of module `name` (a PEFT module name such as
    /// `bert.encoder.layer.0.attention.self.query`), for merging.
    pub fn delta_for(&self, name: &str) -> Option<&LoraDelta> {
        if name == "bert.pooler.dense" {
            return self.pooler_delta.as_ref();
        }
        let rest = name.strip_prefix("bert.encoder.layer.")?;
        let (index, path) = rest.split_once('.')?;
        let index: usize = index.parse().ok()?;
        let site = LayerSite::ALL
            .into_iter()
            .find(|s| s.module_path() == path)?;
        self.layers.get(index)?[site as usize].as_ref()
    }

    /// Marks the deltas as merged into the base, so forward passes no longer add them.
    pub fn mark_merged(&mut self) {
        self.merged = true;
    }

    pub fn is_merged(&self) -> bool {
        self.merged
    }
}

impl LinearDeltas for LoraAdapter {
    fn layer_delta(
        &self,
        layer: usize,
        site: LayerSite,
        x: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        if self.merged {
            return Ok(None);
        }
        match self
            .layers
            .get(layer)
            .and_then(|l| l[site as usize].as_ref())
        {
            Some(d) => d.apply(x).map(Some),
            None => Ok(None),
        }
    }

    fn pooler_delta(&self, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
        match (&self.pooler_delta, self.merged) {
            (Some(d), false) => d.apply(x).map(Some),
            _ => Ok(None),
        }
    }
}

/// landfall is stricter than PEFT here: a `target_modules` name that matches no module of the
/// model is an error (PEFT only fails when no name matches), because it means the adapter was
/// made for another architecture.
fn check_every_target_exists(config: &LoraConfig, names: &[&str]) -> Result<(), ModelError> {
    if let TargetModules::Names(targets) = &config.target_modules {
        for t in targets {
            let suffix = format!(".{t}");
            if !names.iter().any(|n| n == t || n.ends_with(&suffix)) {
                return Err(ModelError::Adapter {
                    path: config.path().to_path_buf(),
                    field: "target_modules".into(),
                    reason: format!(
                        "{t:?} matches no module of BertForSequenceClassification (its linear layers are query, key, value, dense, classifier)"
                    ),
                });
            }
        }
    }
    Ok(())
}
