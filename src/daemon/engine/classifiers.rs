//! The classifiers on the engine thread: loaded once (bases shared between classifiers on the
//! same base directory), run batch by batch (a batch that fails as a whole is run text by text,
//! so one bad text fails only itself), and given new adapters: the new one is loaded beside the
//! serving one on the same base, must pass its canary, and only then takes over, between two
//! batches.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use crate::classifier::evaluate::{accuracy, gold_ids, predict};
use crate::classifier::input::read_rows;
use crate::classifier::{BaseCache, Classifier, ClassifierOptions, Prediction};
use crate::config::ClassifierConfig;
use crate::daemon::jobs::{
    AdapterChange, AdapterOutcome, Answer, JobError, JobId, Labelled, Swapped,
};
use crate::models::first_line;
use crate::models::runtime::Placement;
use crate::models::status::{ModelState, ModelStatus};
use crate::updates::Code;

/// Canary texts per forward pass.
const CANARY_BATCH: usize = 16;

/// A configured classifier and the update (if any) it serves at start.
#[derive(Debug, Clone)]
pub struct ClassifierSpec {
    pub config: ClassifierConfig,
    /// An accepted update serving instead of the configured adapter.
    pub update: Option<AdapterChange>,
}

/// One configured classifier: loaded, or why not.
struct Slot {
    config: ClassifierConfig,
    /// Where it runs, once known.
    options: Option<ClassifierOptions>,
    loaded: Result<Classifier, String>,
    /// The adapter's name, for answers.
    adapter: String,
    /// The update version serving (`None`: the configured adapter).
    version: Option<u64>,
}

pub struct Classifiers {
    slots: Vec<Slot>,
    /// Kept for the engine's life: a new adapter loads on the base already in memory.
    cache: BaseCache,
}

/// An adapter's name as answers and health show it: its directory's name.
fn dir_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The name answers give the adapter of `config` (its directory, or the base's for a
/// fine-tuned checkpoint), or of an update (`<classifier>@<version>`).
fn adapter_name(config: &ClassifierConfig, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("{}@{v}", config.name),
        None => dir_name(config.adapter.as_deref().unwrap_or(&config.base)),
    }
}

impl Classifiers {
    /// Loads every configured classifier; each one's status says how that went.
    pub fn load(specs: &[ClassifierSpec]) -> (Self, Vec<ModelStatus>) {
        let mut me = Self {
            slots: Vec::with_capacity(specs.len()),
            cache: BaseCache::default(),
        };
        let mut statuses = Vec::with_capacity(specs.len());
        for spec in specs {
            let cfg = &spec.config;
            let version = spec.update.as_ref().and_then(|u| u.version);
            let mut status =
                ModelStatus::configured(&cfg.name, cfg.quant.to_string(), cfg.device.to_string());
            status.adapter = adapter_name(cfg, version);
            let mut slot = Slot {
                config: cfg.clone(),
                options: None,
                loaded: Err(String::new()),
                adapter: status.adapter.clone(),
                version,
            };
            let adapter_dir = spec
                .update
                .as_ref()
                .and_then(|u| u.dir.clone())
                .or_else(|| cfg.adapter.clone());
            let labels = spec
                .update
                .as_ref()
                .and_then(|u| u.labels.clone())
                .or_else(|| cfg.labels.clone());
            slot.loaded = match missing_files(cfg, adapter_dir.as_deref()) {
                Some(missing) => {
                    tracing::warn!("classifier {:?}: {missing}", cfg.name);
                    status.state = ModelState::Missing(missing.clone());
                    Err(missing)
                }
                None => match me.build(cfg, adapter_dir.as_deref(), labels) {
                    Ok((classifier, options)) => {
                        let device = crate::models::runtime::device_name(&options.device);
                        tracing::info!(
                            "classifier {:?} loaded on {device}: {} + {} ({} labels)",
                            cfg.name,
                            cfg.base.display(),
                            status.adapter,
                            classifier.labels.len()
                        );
                        status.device = device;
                        status.labels = classifier.labels.clone();
                        slot.options = Some(options);
                        Ok(classifier)
                    }
                    Err(reason) => {
                        tracing::error!("classifier {:?} failed to load: {reason}", cfg.name);
                        status.state = ModelState::Failed(reason.clone());
                        Err(reason)
                    }
                },
            };
            me.slots.push(slot);
            statuses.push(status);
        }
        (me, statuses)
    }

    /// A classifier for `cfg` with `adapter` (`None`: fine-tuned checkpoint), on the shared base.
    fn build(
        &mut self,
        cfg: &ClassifierConfig,
        adapter: Option<&Path>,
        labels: Option<Vec<String>>,
    ) -> Result<(Classifier, ClassifierOptions), String> {
        let placement = Placement::open(cfg.device, cfg.dtype).map_err(|e| e.to_string())?;
        let opts = ClassifierOptions {
            device: placement.device.clone(),
            dtype: placement.dtype.dtype(),
            quant: cfg.quant,
            merge: false,
            labels,
        };
        let cache = &mut self.cache;
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            Classifier::open(&cfg.base, adapter, &opts, cache)
        }))
        .unwrap_or_else(|_| {
            Err(crate::models::ModelError::Usage(
                "the loader panicked".to_string(),
            ))
        });
        let classifier = loaded.map_err(|e| first_line(&e.to_string()))?;
        Ok((classifier, opts))
    }

    /// Runs one batch for the classifier at `index`.
    pub fn run(
        &self,
        index: usize,
        items: Vec<(JobId, String)>,
    ) -> Vec<(JobId, Result<Answer, JobError>)> {
        let slot = match self.slots.get(index) {
            Some(slot) => slot,
            None => {
                let e = JobError::Failed(format!("no classifier number {index}"));
                return items
                    .into_iter()
                    .map(|(id, _)| (id, Err(e.clone())))
                    .collect();
            }
        };
        let classifier = match &slot.loaded {
            Ok(c) => c,
            Err(why) => {
                let e = JobError::Unavailable(format!("classifier {:?}: {why}", slot.config.name));
                return items
                    .into_iter()
                    .map(|(id, _)| (id, Err(e.clone())))
                    .collect();
            }
        };
        let (ids, texts): (Vec<JobId>, Vec<String>) = items.into_iter().unzip();
        let outcomes = classify(classifier, &texts);
        ids.into_iter()
            .zip(outcomes)
            .map(|(id, outcome)| {
                let answer = outcome.map(|prediction| {
                    Answer::Label(Labelled {
                        prediction,
                        adapter: slot.adapter.clone(),
                        adapter_version: slot.version,
                    })
                });
                (id, answer)
            })
            .collect()
    }

    /// Loads the adapter of `change` beside the serving one, runs its canary, and swaps it in
    /// if it passes; on any failure the serving adapter stays.
    pub fn swap(&mut self, index: usize, change: AdapterChange) -> AdapterOutcome {
        let Some(slot) = self.slots.get(index) else {
            return Err((Code::BadBundle, format!("no classifier number {index}")));
        };
        let cfg = slot.config.clone();
        let dir = change.dir.clone().or_else(|| cfg.adapter.clone());
        let labels = change.labels.clone().or_else(|| cfg.labels.clone());
        let (candidate, options) = self
            .build(&cfg, dir.as_deref(), labels)
            .map_err(|why| (Code::BadBundle, why))?;
        if let Ok(serving) = &self.slots[index].loaded {
            if serving.labels.len() != candidate.labels.len() {
                return Err((
                    Code::BadBundle,
                    format!(
                        "the new adapter has {} labels, the serving one {}",
                        candidate.labels.len(),
                        serving.labels.len()
                    ),
                ));
            }
        }
        let canary = match &change.canary {
            Some(spec) => Some(run_canary(&candidate, &spec.file, spec.min_accuracy)?),
            None => None,
        };
        let slot = &mut self.slots[index];
        slot.loaded = Ok(candidate);
        slot.options = Some(options);
        slot.version = change.version;
        slot.adapter = adapter_name(&cfg, change.version);
        tracing::info!("classifier {:?}: now serving {}", cfg.name, slot.adapter);
        Ok(Swapped {
            version: change.version,
            canary,
        })
    }
}

/// The candidate's accuracy on the canary file, which must reach `min_accuracy`.
fn run_canary(
    candidate: &Classifier,
    file: &Path,
    min_accuracy: f64,
) -> Result<(f64, usize), (Code, String)> {
    let bad = |why: String| (Code::BadBundle, why);
    let rows = read_rows(file, true).map_err(|e| bad(e.to_string()))?;
    if rows.is_empty() {
        return Err(bad(format!("{}: the canary has no rows", file.display())));
    }
    let gold = gold_ids(&rows, &candidate.labels, file).map_err(|e| bad(e.to_string()))?;
    tracing::info!("canary: {} texts from {}", rows.len(), file.display());
    let predicted = catch_unwind(AssertUnwindSafe(|| predict(candidate, &rows, CANARY_BATCH)))
        .map_err(|_| bad("the model panicked on the canary".into()))?
        .map_err(|e| bad(first_line(&e.to_string())))?;
    let acc = accuracy(&gold, &predicted);
    if acc < min_accuracy {
        return Err((
            Code::CanaryFailed,
            format!(
                "canary accuracy {acc:.4} on {} texts is below the bundle's min_accuracy {min_accuracy}",
                rows.len()
            ),
        ));
    }
    Ok((acc, rows.len()))
}

/// Which required file is absent, phrased as what to do about it.
fn missing_files(cfg: &ClassifierConfig, adapter: Option<&Path>) -> Option<String> {
    let check = |dir: &Path, file: &str, what: &str| {
        (!dir.join(file).is_file()).then(|| {
            format!(
                "{} not found ({what}); run `landfall models pull` or point the config's classifier {:?} at it",
                dir.join(file).display(),
                cfg.name
            )
        })
    };
    check(&cfg.base, "config.json", "the BERT model")
        .or_else(|| adapter.and_then(|a| check(a, "adapter_config.json", "the LoRA adapter")))
}

/// Runs the batch; if it fails as a whole, each text alone, so one bad text fails only itself.
fn classify(c: &Classifier, texts: &[String]) -> Vec<Result<Prediction, JobError>> {
    let run = |texts: &[&str]| match catch_unwind(AssertUnwindSafe(|| c.classify(texts))) {
        Ok(result) => result.map_err(|e| JobError::Failed(first_line(&e.to_string()))),
        Err(_) => Err(JobError::Failed(
            "the model panicked on this input".to_string(),
        )),
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    match run(&refs) {
        Ok(preds) if preds.len() == texts.len() => preds.into_iter().map(Ok).collect(),
        Ok(_) | Err(_) if refs.len() > 1 => refs
            .iter()
            .map(|t| {
                run(&[t]).and_then(|mut p| {
                    p.pop()
                        .ok_or_else(|| JobError::Failed("no prediction".to_string()))
                })
            })
            .collect(),
        Ok(_) => vec![Err(JobError::Failed("no prediction".to_string()))],
        Err(e) => vec![Err(e)],
    }
}
