//! The JSON the daemon speaks, whatever carries it (MQTT now, HTTP too): reading requests into
//! either a typed request or the error answer it deserves ([`requests`]), the answers
//! ([`results`]) and the health report ([`health`]).
//!
//! A leaf: it knows serde and nothing of the daemon, the models or the transports, so every
//! other part can use its types without an import cycle.

pub mod health;
pub mod requests;
pub mod results;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;

/// `P/status` while the daemon runs.
pub const ONLINE: &str = "online";
/// `P/status` after a clean stop, and the Last Will.
pub const OFFLINE: &str = "offline";

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    Classify,
    Caption,
    Vqa,
}

impl Task {
    pub const ALL: [Task; 3] = [Self::Classify, Self::Caption, Self::Vqa];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classify => "classify",
            Self::Caption => "caption",
            Self::Vqa => "vqa",
        }
    }
}

/// A request's `id` exactly as it was sent: a JSON string or number, echoed byte for byte (a
/// number above 2^64 stays that number, not a float); `null` when it could not be read.
#[derive(Debug, Clone)]
pub struct RequestId(Box<RawValue>);

impl RequestId {
    pub fn null() -> Self {
        Self(RawValue::NULL.to_owned())
    }

    /// An id from its JSON text; `None` unless the text is one JSON string or number.
    pub fn from_json(text: &str) -> Option<Self> {
        let text = text.trim();
        let first = text.chars().next()?;
        if !(first == '"' || first == '-' || first.is_ascii_digit() || text == "null") {
            return None;
        }
        RawValue::from_string(text.to_string()).ok().map(Self)
    }

    /// A string id (for callers that make their own, such as HTTP requests without one).
    pub fn string(s: &str) -> Self {
        Self::from_json(&serde_json::Value::from(s).to_string()).unwrap_or_else(Self::null)
    }

    /// The JSON text of the id.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    pub fn is_null(&self) -> bool {
        self.as_json() == "null"
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_json())
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// The error codes of the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidJson,
    MissingField,
    InvalidField,
    PayloadTooLarge,
    UnknownClassifier,
    UnknownCamera,
    /// The camera has no frame to use (starting, or retrying after a failure).
    CameraUnavailable,
    ImageDecodeFailed,
    Overloaded,
    ModelUnavailable,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 11] = [
        Self::InvalidJson,
        Self::MissingField,
        Self::InvalidField,
        Self::PayloadTooLarge,
        Self::UnknownClassifier,
        Self::UnknownCamera,
        Self::CameraUnavailable,
        Self::ImageDecodeFailed,
        Self::Overloaded,
        Self::ModelUnavailable,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnknownClassifier => "unknown_classifier",
            Self::UnknownCamera => "unknown_camera",
            Self::CameraUnavailable => "camera_unavailable",
            Self::ImageDecodeFailed => "image_decode_failed",
            Self::Overloaded => "overloaded",
            Self::ModelUnavailable => "model_unavailable",
            Self::Internal => "internal",
        }
    }
}

/// `{"id", "error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorReply {
    /// The request's id as it was sent, `null` when it could not be read.
    pub id: RequestId,
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// One line, never a backtrace or an error chain over several lines.
    pub message: String,
}

/// Most characters an error message carries; longer ones are cut (with an ellipsis).
const MAX_MESSAGE_CHARS: usize = 500;

impl ErrorReply {
    pub fn new(id: RequestId, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            id,
            error: ErrorBody {
                code,
                message: one_line(&message.into()),
            },
        }
    }
}

/// The first line of `message`, at most [`MAX_MESSAGE_CHARS`] long: what reaches a requester of
/// a failure inside the daemon (a model error may carry a backtrace when `RUST_BACKTRACE` is set).
pub fn one_line(message: &str) -> String {
    let first = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if first.chars().count() <= MAX_MESSAGE_CHARS {
        return first.to_string();
    }
    let mut cut: String = first.chars().take(MAX_MESSAGE_CHARS).collect();
    cut.push('…');
    cut
}

/// What kind of JSON value `v` is, for error messages.
pub fn kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(a) if a.is_empty() => "an empty array",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Probabilities by label name, serialized as a JSON object in label-id order.
///
/// serde_json's own map sorts its keys (landfall does not enable `preserve_order`, which would
/// rebuild candle with other features), and subscribers expect the labels in id order. Names
/// are distinct: requests with repeated choices are refused before they get here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelScores(pub Vec<(String, f32)>);

impl LabelScores {
    pub fn new(labels: &[String], scores: &[f32]) -> Self {
        Self(labels.iter().cloned().zip(scores.iter().copied()).collect())
    }

    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(l, _)| l.as_str())
    }
}

impl Serialize for LabelScores {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (label, score) in &self.0 {
            map.serialize_entry(label, &f64::from(*score))?;
        }
        map.end()
    }
}

/// Serializes a payload. Every payload type here is plain data (strings, numbers, maps with
/// string keys), which serde_json always serializes; the error arm exists so that a future type
/// that could fail is reported instead of publishing an empty payload.
pub fn to_json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_echoed_exactly() {
        for text in [
            "\"a1\"",
            "7",
            "18446744073709551617",
            "-3.25e+400",
            "\"中文\"",
        ] {
            let id = RequestId::from_json(text).unwrap();
            assert_eq!(serde_json::to_string(&id).unwrap(), text);
        }
        assert!(RequestId::from_json("[1]").is_none());
        assert!(RequestId::from_json("true").is_none());
        assert_eq!(RequestId::null().as_json(), "null");
        assert_eq!(RequestId::string("x\"y").as_json(), r#""x\"y""#);
    }

    #[test]
    fn error_replies_serialize_as_the_interface_says() {
        let e = ErrorReply::new(
            RequestId::string("q"),
            ErrorCode::UnknownClassifier,
            "no such",
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"id": "q", "error": {"code": "unknown_classifier", "message": "no such"}})
        );
        for code in ErrorCode::ALL {
            let v = serde_json::to_value(code).unwrap();
            assert_eq!(v, code.as_str());
        }
    }

    #[test]
    fn messages_are_one_line() {
        let e = ErrorReply::new(
            RequestId::null(),
            ErrorCode::Internal,
            "narrow: invalid args\n\nStack backtrace:\n   0: candle_core::error::Error::bt\n",
        );
        assert_eq!(e.error.message, "narrow: invalid args");
        assert_eq!(one_line(&"x".repeat(2000)).chars().count(), 501);
    }

    #[test]
    fn scores_keep_label_order() {
        let labels = vec!["负面".to_string(), "中性".to_string(), "正面".to_string()];
        let s = LabelScores::new(&labels, &[0.25, 0.25, 0.5]);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"负面":0.25,"中性":0.25,"正面":0.5}"#
        );
        assert_eq!(s.labels().collect::<Vec<_>>(), vec!["负面", "中性", "正面"]);
    }
}
