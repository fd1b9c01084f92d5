//! The work the daemon does, as typed values: a job's identity and reply address, the batches
//! handed to the engine and the outcomes it hands back. Every outcome carries the [`JobId`] of
//! the job it answers, so an answer can only ever reach the job's own requester.

use std::sync::Arc;

use image::RgbImage;

use crate::classifier::Prediction;

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
}

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
