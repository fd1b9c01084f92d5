//! The engine: one thread that owns every model (and the GPU), fed batches through a bounded
//! channel. Start-up is a handshake: the thread loads what it can and reports each model's state
//! before the daemon goes on, so "loaded", "missing" and "failed" are known before the first
//! request. Model code runs under `catch_unwind`: a panic in a kernel answers `internal` for its
//! batch instead of taking the daemon down.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::vision::{VisionAnswer, VisionError, VisionInput, VisionModel};
use crate::classifier::{BaseCache, Classifier, ClassifierOptions, Prediction};
use crate::config::{CaptionerConfig, ClassifierConfig};
use crate::models::runtime::{device_name, FloatType};
use crate::mqtt::topics::ModelHealth;

/// Batches handed over and not yet taken by the thread; the daemon keeps at most this many out.
pub const QUEUE: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot start the engine thread: {0}")]
    Spawn(std::io::Error),
    #[error("the engine thread died while loading models (see the log above)")]
    Died,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    Loaded,
    /// Files absent; the string says which and how to get them.
    Missing(String),
    /// Files present but not loadable; the string is the loader's error.
    Failed(String),
}

/// What the health topic and request routing need to know about one model.
#[derive(Debug, Clone)]
pub struct ModelStatus {
    pub name: String,
    pub state: ModelState,
    pub quant: String,
    pub device: String,
    /// The adapter's version: its directory name.
    pub adapter: String,
    pub labels: Vec<String>,
}

impl ModelStatus {
    /// This model as the health topic reports it.
    pub fn health(&self) -> ModelHealth {
        let (state, reason) = match &self.state {
            ModelState::Loaded => ("loaded", None),
            ModelState::Missing(r) => ("missing", Some(r.clone())),
            ModelState::Failed(r) => ("failed", Some(r.clone())),
        };
        ModelHealth {
            state,
            reason,
            quant: self.quant.clone(),
            device: self.device.clone(),
            adapter: self.adapter.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// A batch for one model.
#[derive(Debug)]
pub enum Work {
    Classify {
        batch_id: u64,
        classifier: String,
        texts: Vec<String>,
    },
    /// Captions and questions for the captioner.
    Vision {
        batch_id: u64,
        jobs: Vec<VisionInput>,
    },
}

/// One outcome per item of the batch, in order.
#[derive(Debug)]
pub enum Outcomes {
    Classify(Vec<Result<Prediction, String>>),
    Vision(Vec<Result<VisionAnswer, VisionError>>),
}

/// A finished batch.
#[derive(Debug)]
pub struct Done {
    pub batch_id: u64,
    pub outcomes: Outcomes,
}

pub struct Engine {
    tx: SyncSender<Work>,
    thread: JoinHandle<()>,
}

impl Engine {
    /// Starts the thread and waits for it to load the models; finished batches arrive on `done`.
    /// Gives back the classifiers' states and the captioner's.
    pub async fn start(
        classifiers: Vec<ClassifierConfig>,
        captioner: CaptionerConfig,
        done: mpsc::UnboundedSender<Done>,
    ) -> Result<(Self, Vec<ModelStatus>, ModelStatus), EngineError> {
        let (tx, rx) = sync_channel(QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("landfall-engine".into())
            .spawn(move || {
                let mut models = HashMap::new();
                let statuses = load_all(&classifiers, &mut models);
                let (vision, vision_status) = VisionModel::load(&captioner);
                if ready_tx.send((statuses, vision_status)).is_ok() {
                    serve(&models, &vision, &rx, &done);
                }
            })
            .map_err(EngineError::Spawn)?;
        let (statuses, vision) = ready_rx.await.map_err(|_| EngineError::Died)?;
        Ok((Self { tx, thread }, statuses, vision))
    }

    /// Hands a batch over without waiting; gives it back if the thread is busy or gone.
    pub fn try_submit(&self, work: Work) -> Result<(), Work> {
        self.tx.try_send(work).map_err(|e| match e {
            TrySendError::Full(w) | TrySendError::Disconnected(w) => w,
        })
    }

    /// Closes the channel and waits for the thread to finish its current batch.
    pub async fn stop(self) {
        drop(self.tx);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

fn load_all(
    configs: &[ClassifierConfig],
    models: &mut HashMap<String, Classifier>,
) -> Vec<ModelStatus> {
    let mut cache = BaseCache::default();
    configs
        .iter()
        .map(|cfg| {
            let mut status = ModelStatus {
                name: cfg.name.clone(),
                state: ModelState::Loaded,
                quant: cfg.quant.to_string(),
                device: cfg.device.to_string(),
                adapter: cfg.adapter.file_name().map_or_else(
                    || cfg.adapter.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                ),
                labels: Vec::new(),
            };
            if let Some(missing) = missing_files(cfg) {
                tracing::warn!("classifier {:?}: {missing}", cfg.name);
                status.state = ModelState::Missing(missing);
                return status;
            }
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
                    models.insert(cfg.name.clone(), classifier);
                }
                Err(reason) => {
                    tracing::error!("classifier {:?} failed to load: {reason}", cfg.name);
                    status.state = ModelState::Failed(reason);
                }
            }
            status
        })
        .collect()
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
    let device = cfg.device.open()?;
    let dtype = cfg.dtype.unwrap_or_else(|| FloatType::default_for(&device));
    let opts = ClassifierOptions {
        device: device.clone(),
        dtype: dtype.dtype(),
        quant: cfg.quant,
        merge: false,
        labels: cfg.labels.clone(),
    };
    let classifier =
        Classifier::load(&cfg.base, &cfg.adapter, &opts, cache).map_err(|e| e.to_string())?;
    Ok((classifier, device_name(&device)))
}

fn serve(
    models: &HashMap<String, Classifier>,
    vision: &VisionModel,
    rx: &Receiver<Work>,
    done: &mpsc::UnboundedSender<Done>,
) {
    while let Ok(work) = rx.recv() {
        let (batch_id, outcomes) = match work {
            Work::Classify {
                batch_id,
                classifier,
                texts,
            } => {
                let outcomes = match models.get(&classifier) {
                    Some(c) => classify(c, &texts),
                    None => {
                        vec![Err(format!("classifier {classifier:?} is not loaded")); texts.len()]
                    }
                };
                (batch_id, Outcomes::Classify(outcomes))
            }
            Work::Vision { batch_id, jobs } => {
                let outcomes = jobs
                    .iter()
                    .map(|job| {
                        catch_unwind(AssertUnwindSafe(|| vision.run(job))).unwrap_or_else(|_| {
                            Err(VisionError::Failed(
                                "the model panicked on this input".to_string(),
                            ))
                        })
                    })
                    .collect();
                (batch_id, Outcomes::Vision(outcomes))
            }
        };
        if done.send(Done { batch_id, outcomes }).is_err() {
            return;
        }
    }
}

/// Runs the batch; if it fails as a whole, each text alone, so one bad text fails only itself.
fn classify(c: &Classifier, texts: &[String]) -> Vec<Result<Prediction, String>> {
    let run = |texts: &[&str]| match catch_unwind(AssertUnwindSafe(|| c.classify(texts))) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("the model panicked on this input".to_string()),
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    match run(&refs) {
        Ok(preds) if preds.len() == texts.len() => preds.into_iter().map(Ok).collect(),
        Ok(_) | Err(_) if refs.len() > 1 => refs
            .iter()
            .map(|t| run(&[t]).and_then(|mut p| p.pop().ok_or_else(|| "no prediction".to_string())))
            .collect(),
        Ok(_) => vec![Err("no prediction".to_string())],
        Err(e) => vec![Err(e)],
    }
}
