//! The engine: one thread that owns every model (and the GPU), fed batches through a bounded
//! channel. Start-up is a handshake: the thread loads what it can and reports each model's state
//! before the daemon goes on, so "loaded", "missing" and "failed" are known before the first
//! request. Model code runs under `catch_unwind`: a panic in a kernel answers `internal` for its
//! batch instead of taking the daemon down.
//!
//! May not touch: MQTT, the outbox, the config file. It gets [`Work`] and gives back [`Done`].

mod captioner;
mod classifiers;

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::config::CaptionerConfig;
use crate::daemon::jobs::{Answer, Done, Work};
use crate::models::status::ModelStatus;
use captioner::CaptionerSlot;
pub use classifiers::ClassifierSpec;
use classifiers::Classifiers;

/// Batches handed over and not yet taken by the thread; the daemon keeps at most this many out.
pub const QUEUE: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot start the engine thread: {0}")]
    Spawn(std::io::Error),
    #[error("the engine thread died while loading models (see the log above)")]
    Died,
}

/// What the engine loaded: each classifier's status (in config order) and the captioner's.
pub struct Loaded {
    pub classifiers: Vec<ModelStatus>,
    pub captioner: ModelStatus,
}

pub struct Engine {
    tx: SyncSender<Work>,
    thread: JoinHandle<()>,
}

impl Engine {
    /// Starts the thread and waits for it to load the models; finished batches arrive on `done`.
    pub async fn start(
        classifiers: Vec<ClassifierSpec>,
        captioner: CaptionerConfig,
        done: mpsc::UnboundedSender<Done>,
    ) -> Result<(Self, Loaded), EngineError> {
        let (tx, rx) = sync_channel(QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("landfall-engine".into())
            .spawn(move || {
                let (mut models, classifier_status) = Classifiers::load(&classifiers);
                let (vision, captioner_status) = CaptionerSlot::load(&captioner);
                let loaded = Loaded {
                    classifiers: classifier_status,
                    captioner: captioner_status,
                };
                if ready_tx.send(loaded).is_err() {
                    return;
                }
                while let Ok(work) = rx.recv() {
                    let done_batch = match work {
                        Work::Classify {
                            batch,
                            classifier,
                            items,
                        } => Done {
                            batch,
                            outcomes: models.run(classifier, items),
                        },
                        Work::Vision { batch, items } => Done {
                            batch,
                            outcomes: vision.run(items),
                        },
                        Work::Adapter {
                            batch,
                            classifier,
                            job,
                            change,
                        } => Done {
                            batch,
                            outcomes: vec![(
                                job,
                                Ok(Answer::Adapter(models.swap(classifier, change))),
                            )],
                        },
                    };
                    if done.send(done_batch).is_err() {
                        return;
                    }
                }
            })
            .map_err(EngineError::Spawn)?;
        let loaded = ready_rx.await.map_err(|_| EngineError::Died)?;
        Ok((Self { tx, thread }, loaded))
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
