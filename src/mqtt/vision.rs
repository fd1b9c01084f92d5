//! Payloads of the vision topics: `P/caption/request`, `P/vqa/request`, their results and
//! `P/camera/<cam>/caption`. Parsing here is cheap (no base64, no image decoding): those run on a
//! worker, never on the loop that reads MQTT.

use serde::Serialize;
use serde_json::Value;

use super::topics::{kind, parse_object, ErrorCode, ErrorReply, Task};

/// A caption or VQA request as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionRequest {
    pub id: Value,
    pub task: Task,
    /// VQA only (required there).
    pub question: Option<String>,
    pub camera: Option<String>,
    /// Base64 of an encoded image (JPEG, PNG, WebP); `None`: the camera's latest frame.
    pub image_b64: Option<String>,
    /// The full prompt, used as is (a VQA request's question then only goes in the answer).
    pub prompt: Option<String>,
    /// VQA: answer options, filled into the template's `{choices}`.
    pub choices: Option<Vec<String>>,
    /// VQA: the name of a `[templates]` entry.
    pub template: Option<String>,
}

/// Reads a caption (`task` = Caption) or VQA request, or says which error answer it gets.
pub fn parse_vision_request(
    payload: &[u8],
    max_bytes: usize,
    task: Task,
) -> Result<VisionRequest, ErrorReply> {
    let (id, obj) = parse_object(payload, max_bytes)?;
    let fail = |code, message: String| ErrorReply::new(id.clone(), code, message);
    let string = |key: &str, what: &str| -> Result<Option<String>, ErrorReply> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(fail(
                ErrorCode::InvalidField,
                format!("\"{key}\" must be a string ({what}), not {}", kind(other)),
            )),
        }
    };
    let question = string("question", "the question about the image")?;
    if task == Task::Vqa && question.as_deref().is_none_or(|q| q.trim().is_empty()) {
        return Err(fail(
            ErrorCode::MissingField,
            "\"question\" is required: what to ask about the image".into(),
        ));
    }
    let choices = match obj.get("choices") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if !items.is_empty() => Some(
            items
                .iter()
                .map(|v| match v {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                    other => Err(fail(
                        ErrorCode::InvalidField,
                        format!(
                            "\"choices\" must list non-empty strings; found {}",
                            kind(other)
                        ),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(fail(
                ErrorCode::InvalidField,
                format!(
                    "\"choices\" must be a non-empty list of strings, not {}",
                    kind(other)
                ),
            ))
        }
    };
    let request = VisionRequest {
        id: id.clone(),
        task,
        question,
        camera: string("camera", "a configured camera's name")?,
        image_b64: string("image_b64", "base64 of a JPEG, PNG or WebP image")?,
        prompt: string("prompt", "the prompt text")?,
        choices,
        template: string("template", "the name of a [templates] entry")?,
    };
    if task == Task::Caption && (request.choices.is_some() || request.template.is_some()) {
        return Err(fail(
            ErrorCode::InvalidField,
            "\"choices\" and \"template\" belong to vqa requests; a caption takes \"prompt\""
                .into(),
        ));
    }
    Ok(request)
}

/// `P/caption/result` and `P/vqa/result`.
#[derive(Debug, Clone, Serialize)]
pub struct VisionResult {
    pub id: Value,
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
    pub scores: Option<crate::json::LabelScores>,
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

/// One camera in `P/health`.
#[derive(Debug, Clone, Serialize)]
pub struct CameraHealth {
    pub source: String,
    /// `starting`, `ok`, `retrying` or `stopped`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    pub fps: f64,
    pub captured: u64,
    /// Frames replaced in the mailbox before anything used them.
    pub dropped: u64,
    pub captions: u64,
    /// When the latest frame was captured, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_frame_ts: Option<f64>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn code(payload: &str, task: Task) -> (Value, ErrorCode) {
        let e = parse_vision_request(payload.as_bytes(), 1000, task).unwrap_err();
        (e.id, e.error.code)
    }

    #[test]
    fn reads_requests() {
        let r = parse_vision_request(
            br#"{"id":1,"question":"what colour?","camera":"door","choices":["red","blue"],"template":"choices"}"#,
            1000,
            Task::Vqa,
        )
        .unwrap();
        assert_eq!(r.question.as_deref(), Some("what colour?"));
        assert_eq!(r.choices.unwrap(), vec!["red", "blue"]);
        let r = parse_vision_request(br#"{"id":"c"}"#, 1000, Task::Caption).unwrap();
        assert_eq!((r.id, r.camera, r.image_b64), (json!("c"), None, None));
    }

    #[test]
    fn bad_requests_get_the_contract_codes() {
        assert_eq!(code("{", Task::Vqa), (Value::Null, ErrorCode::InvalidJson));
        assert_eq!(
            code(r#"{"id":"a"}"#, Task::Vqa),
            (json!("a"), ErrorCode::MissingField)
        );
        assert_eq!(
            code(r#"{"id":"a","question":" "}"#, Task::Vqa),
            (json!("a"), ErrorCode::MissingField)
        );
        assert_eq!(
            code(r#"{"id":"a","question":"q","choices":[]}"#, Task::Vqa),
            (json!("a"), ErrorCode::InvalidField)
        );
        assert_eq!(
            code(r#"{"id":"a","question":"q","choices":[1]}"#, Task::Vqa),
            (json!("a"), ErrorCode::InvalidField)
        );
        assert_eq!(
            code(r#"{"id":"a","camera":5}"#, Task::Caption),
            (json!("a"), ErrorCode::InvalidField)
        );
        assert_eq!(
            code(r#"{"id":"a","template":"vqa"}"#, Task::Caption),
            (json!("a"), ErrorCode::InvalidField)
        );
    }
}
