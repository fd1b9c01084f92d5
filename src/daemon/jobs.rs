//! The work the daemon does, as typed values: a job's identity and reply address, the batches
//! handed to the engine and the outcomes it hands back. Every outcome carries the [`JobId`] of
//! the job it answers, so an answer can only ever reach the job's own requester.

use std::sync::Arc;

use image::RgbImage;

use std::path::PathBuf;

use crate::classifier::Prediction;
use crate::updates::Code;

/// One accepted request (or periodic caption), from admission to its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

/// One batch handed to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchId(pub u64);

/// Which model a job needs; jobs with equal keys may share a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchKey {
    /// The classifier at this index of the configured list.
    Classify(usize),
    /// The captioner (captions and questions).
    Vision,
    /// A new adapter for the classifier at this index (loaded, canary-tested, swapped in).
    Adapter(usize),
}

/// Where an answer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyTo {
    /// A topic: the task's result topic or the request's MQTT 5 Response Topic.
    Mqtt {
        topic: String,
        correlation_data: Option<Vec<u8>>,
    },
    /// An HTTP request waiting for its response, by the server's number for it.
    Http(u64),
}

/// One caption or question for the captioner.
#[derive(Debug, Clone)]
pub struct VisionInput {
    pub image: Arc<RgbImage>,
    /// The full prompt: empty for a plain caption, a filled-in template for VQA.
    pub prompt: String,
    pub max_new_tokens: usize,
    /// VQA with choices: answer with the most likely one instead of free text.
    pub choices: Option<Vec<String>>,
}

/// What a job hands the model.
#[derive(Debug, Clone)]
pub enum Input {
    Classify(String),
    Vision(VisionInput),
    Adapter(AdapterChange),
}

/// A batch for one model.
#[derive(Debug)]
pub enum Work {
    Classify {
        batch: BatchId,
        /// Index into the configured classifiers.
        classifier: usize,
        items: Vec<(JobId, String)>,
    },
    Vision {
        batch: BatchId,
        items: Vec<(JobId, VisionInput)>,
    },
    /// One adapter change: the batches handed over before it run on the old adapter, those
    /// after on the new one.
    Adapter {
        batch: BatchId,
        classifier: usize,
        job: JobId,
        change: AdapterChange,
    },
}

/// An adapter to serve instead of the current one.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterChange {
    /// The update version; `None` for the adapter the config names.
    pub version: Option<u64>,
    /// The bundle's directory; `None`: the configured adapter.
    pub dir: Option<PathBuf>,
    /// Label names the bundle gives.
    pub labels: Option<Vec<String>>,
    /// Labelled texts it must classify well enough before it serves.
    pub canary: Option<CanarySpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CanarySpec {
    pub file: PathBuf,
    pub min_accuracy: f64,
}

/// A swap that happened: the adapter now serving and its canary's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Swapped {
    pub version: Option<u64>,
    /// Canary accuracy and its size, when there was a canary.
    pub canary: Option<(f64, usize)>,
}

/// What an adapter change came to: the swap, or the update code and reason it failed with (the
/// old adapter serving on).
pub type AdapterOutcome = Result<Swapped, (Code, String)>;

/// A classification and which adapter gave it.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub prediction: Prediction,
    /// The adapter's name (its directory's).
    pub adapter: String,
    /// The update version that answered; `None` for the configured adapter.
    pub adapter_version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VisionAnswer {
    pub text: String,
    /// With choices: each choice and its probability, in the order asked.
    pub scores: Option<Vec<(String, f32)>>,
}

#[derive(Debug, Clone)]
pub enum Answer {
    Label(Labelled),
    Vision(VisionAnswer),
    Adapter(AdapterOutcome),
}

/// Why a job got no answer from the model; each kind maps to one of the interface's codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// No model to run (`model_unavailable`).
    #[error("{0}")]
    Unavailable(String),
    /// The input does not fit the model, e.g. a prompt longer than its positions (`invalid_field`).
    #[error("{0}")]
    InvalidInput(String),
    /// The model failed on this input (`internal`).
    #[error("{0}")]
    Failed(String),
}

/// A finished batch: one outcome per job, each naming its job.
#[derive(Debug)]
pub struct Done {
    pub batch: BatchId,
    pub outcomes: Vec<(JobId, Result<Answer, JobError>)>,
}
