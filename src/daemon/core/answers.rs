//! Answers as values: what a finished job (or a refused request) says to its requester, built
//! from the job's record and the model's outcome. Whether it then goes out over MQTT or HTTP is
//! the core's choice ([`super::Core`]); the payloads are the same.

use serde::Serialize;

use crate::daemon::jobs::{Answer, JobError};
use crate::daemon::metrics::round;
use crate::models::status::ModelStatus;
use crate::mqtt::spool::OutMessage;
pub use crate::wire::results::Answered;
use crate::wire::results::{ClassifyResult, VisionResult};
use crate::wire::{to_json, ErrorCode, LabelScores, RequestId, Task};

/// What the job said it was, for building its answer.
#[derive(Debug, Clone)]
pub enum AnswerSpec {
    Classify {
        /// The classifier's status (name, labels).
        classifier: usize,
    },
    Vision {
        task: Task,
        question: Option<String>,
        prompt: String,
        camera: Option<String>,
        seq: Option<u64>,
    },
}

/// The code a model failure gets, and what its message says.
pub fn job_error(e: &JobError, what: &str) -> (ErrorCode, String) {
    match e {
        JobError::Unavailable(why) => (
            ErrorCode::ModelUnavailable,
            format!("the {what} is not available: {why}"),
        ),
        JobError::InvalidInput(why) => (ErrorCode::InvalidField, why.clone()),
        JobError::Failed(why) => (ErrorCode::Internal, format!("the model failed: {why}")),
    }
}

/// The answer of a finished request.
pub fn answer(
    id: RequestId,
    spec: AnswerSpec,
    outcome: Result<Answer, JobError>,
    latency_ms: f64,
    classifiers: &[ModelStatus],
    captioner: &str,
) -> Answered {
    match (spec, outcome) {
        (AnswerSpec::Classify { classifier }, Ok(Answer::Label(l))) => {
            let model = &classifiers[classifier];
            Answered::Classify(ClassifyResult {
                id,
                scores: LabelScores::new(&model.labels, &l.prediction.scores),
                label: l.prediction.label,
                label_id: l.prediction.label_id,
                classifier: model.name.clone(),
                adapter: l.adapter,
                adapter_version: l.adapter_version,
                latency_ms: round(latency_ms),
            })
        }
        (
            AnswerSpec::Vision {
                task,
                question,
                prompt,
                camera,
                seq,
            },
            Ok(Answer::Vision(a)),
        ) => {
            let scores = a.scores.map(|s| {
                let (labels, probs): (Vec<String>, Vec<f32>) = s.into_iter().unzip();
                LabelScores::new(&labels, &probs)
            });
            let (caption, answer) = match task {
                Task::Vqa => (None, Some(a.text)),
                _ => (Some(a.text), None),
            };
            Answered::Vision(VisionResult {
                id,
                caption,
                question,
                answer,
                prompt,
                camera,
                seq,
                latency_ms: round(latency_ms),
                model: captioner.to_string(),
                scores,
            })
        }
        (spec, Err(e)) => {
            let what = match spec {
                AnswerSpec::Classify { .. } => "classifier",
                AnswerSpec::Vision { .. } => "captioner",
            };
            let (code, message) = job_error(&e, what);
            Answered::error(id, code, message)
        }
        // The engine answered a classify job with a caption or the reverse: its bug, reported
        // to the requester rather than sent as the wrong kind of answer.
        (_, Ok(_)) => Answered::error(
            id,
            ErrorCode::Internal,
            "the engine gave an answer of the wrong kind",
        ),
    }
}

/// A result or error answer on a topic: QoS 1, queued until acknowledged.
pub fn result_message(
    topic: &str,
    correlation_data: Option<Vec<u8>>,
    payload: &impl Serialize,
) -> Option<OutMessage> {
    match to_json(payload) {
        Ok(payload) => Some(OutMessage {
            topic: topic.to_string(),
            payload,
            retain: false,
            correlation_data,
            durable: true,
        }),
        Err(e) => {
            tracing::error!("cannot serialize an answer for {topic}: {e}");
            None
        }
    }
}

/// A retained result (a camera's latest caption): QoS 1, queued until acknowledged.
pub fn retained_message(topic: &str, payload: &impl Serialize) -> Option<OutMessage> {
    let mut msg = result_message(topic, None, payload)?;
    msg.retain = true;
    Some(msg)
}

/// Status and health: retained, worth sending only while connected.
pub fn status_message(topic: &str, payload: String) -> OutMessage {
    OutMessage {
        topic: topic.to_string(),
        payload,
        retain: true,
        correlation_data: None,
        durable: false,
    }
}
