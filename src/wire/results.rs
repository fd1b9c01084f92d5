//! The answers: `P/classify/result`, `P/caption/result`, `P/vqa/result` and the retained
//! `P/camera/<cam>/caption` (the same JSON over HTTP's `/v1/...` endpoints).

use serde::Serialize;

use super::{ErrorCode, ErrorReply, LabelScores, RequestId};

/// A classify answer.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifyResult {
    pub id: RequestId,
    pub label: String,
    pub label_id: usize,
    /// Probability by label name, in label-id order.
    pub scores: LabelScores,
    pub classifier: String,
    /// The adapter that answered: the name of its directory (or of the base, for a fine-tuned
    /// checkpoint without an adapter).
    pub adapter: String,
    /// The update's version that answered, `null` for the adapter the config names.
    pub adapter_version: Option<u64>,
    /// From the request's arrival to its answer.
    pub latency_ms: f64,
}

/// A caption or VQA answer.
#[derive(Debug, Clone, Serialize)]
pub struct VisionResult {
    pub id: RequestId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    pub prompt: String,
    /// The camera whose frame was used; absent for a sent image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub latency_ms: f64,
    pub model: String,
    /// VQA with choices: every choice's probability, in the order asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<LabelScores>,
}

/// `P/camera/<cam>/caption`, retained.
#[derive(Debug, Clone, Serialize)]
pub struct CameraCaption {
    pub camera: String,
    pub seq: u64,
    /// When the frame was captured, Unix seconds.
    pub ts: f64,
    pub caption: String,
    pub latency_ms: f64,
    pub model: String,
}

/// A finished request's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Answered {
    Classify(ClassifyResult),
    Vision(VisionResult),
    Error(ErrorReply),
}

impl Answered {
    pub fn error(id: RequestId, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error(ErrorReply::new(id, code, message))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Self::Error(_))
    }

    /// The error code, for an error answer.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Error(e) => Some(e.error.code),
            _ => None,
        }
    }
}
