//! The classifiers on the engine thread: loaded once (bases shared between classifiers on the
//! same base directory), then run batch by batch. A batch that fails as a whole is run text by
//! text, so one bad text fails only itself.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use crate::classifier::{BaseCache, Classifier, ClassifierOptions, Prediction};
use crate::config::ClassifierConfig;
use crate::daemon::jobs::{Answer, JobError, JobId, Labelled};
use crate::models::first_line;
use crate::models::runtime::Placement;
use crate::models::status::{ModelState, ModelStatus};

/// One configured classifier: loaded, or why not.
struct Slot {
    name: String,
    loaded: Result<Classifier, String>,
    /// The adapter's name, for answers.
    adapter: String,
}

pub struct Classifiers {
    slots: Vec<Slot>,
}

/// The adapter's name as answers and health show it: its directory's name.
fn dir_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

impl Classifiers {
    /// Loads every configured classifier; each one's status says how that went.
    pub fn load(configs: &[ClassifierConfig]) -> (Self, Vec<ModelStatus>) {
        let mut cache = BaseCache::default();
        let mut slots = Vec::with_capacity(configs.len());
        let mut statuses = Vec::with_capacity(configs.len());
        for cfg in configs {
            let mut status =
                ModelStatus::configured(&cfg.name, cfg.quant.to_string(), cfg.device.to_string());
            status.adapter = dir_name(&cfg.adapter);
            let loaded = match missing_files(cfg) {
                Some(missing) => {
                    tracing::warn!("classifier {:?}: {missing}", cfg.name);
                    status.state = ModelState::Missing(missing.clone());
                    Err(missing)
                }
                None => {
                    let loaded = catch_unwind(AssertUnwindSafe(|| load_one(cfg, &mut cache)))
                        .unwrap_or_else(|_| Err("the loader panicked".to_string()));
                    match loaded {
                        Ok((classifier, device)) => {
                            tracing::info!(
                                "classifier {:?} loaded on {device}: {} + {} ({} labels)",
                                cfg.name,
                                cfg.base.display(),
                                cfg.adapter.display(),
                                classifier.labels.len()
                            );
                            status.device = device;
                            status.labels = classifier.labels.clone();
                            Ok(classifier)
                        }
                        Err(reason) => {
                            tracing::error!("classifier {:?} failed to load: {reason}", cfg.name);
                            status.state = ModelState::Failed(reason.clone());
                            Err(reason)
                        }
                    }
                }
            };
            slots.push(Slot {
                name: cfg.name.clone(),
                loaded,
                adapter: status.adapter.clone(),
            });
            statuses.push(status);
        }
        (Self { slots }, statuses)
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
                let e = JobError::Unavailable(format!("classifier {:?}: {why}", slot.name));
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
                        adapter_version: None,
                    })
                });
                (id, answer)
            })
            .collect()
    }
}

/// Which required file is absent, phrased as what to do about it.
fn missing_files(cfg: &ClassifierConfig) -> Option<String> {
    let check = |dir: &Path, file: &str, what: &str| {
        (!dir.join(file).is_file()).then(|| {
            format!(
                "{} not found ({what}); run `landfall models pull` or point the config's classifier {:?} at it",
                dir.join(file).display(),
                cfg.name
            )
        })
    };
    check(&cfg.base, "config.json", "the BERT base model")
        .or_else(|| check(&cfg.adapter, "adapter_config.json", "the LoRA adapter"))
}

fn load_one(cfg: &ClassifierConfig, cache: &mut BaseCache) -> Result<(Classifier, String), String> {
    let placement = Placement::open(cfg.device, cfg.dtype).map_err(|e| e.to_string())?;
    let opts = ClassifierOptions {
        device: placement.device.clone(),
        dtype: placement.dtype.dtype(),
        quant: cfg.quant,
        merge: false,
        labels: cfg.labels.clone(),
    };
    let classifier = Classifier::load(&cfg.base, &cfg.adapter, &opts, cache)
        .map_err(|e| first_line(&e.to_string()))?;
    Ok((classifier, placement.device_name()))
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
