//! Reading requests: within the size limit, UTF-8, a JSON object with an `id`, then the fields of
//! each task. Every failure is the error answer the requester gets, with the contract's code and
//! the id when it could be read. Parsing is cheap (no base64, no image decoding, no tokenizing):
//! it runs on the daemon's loop.

use std::collections::{BTreeMap, HashSet};

use serde_json::value::RawValue;
use serde_json::Value;

use super::{kind, ErrorCode, ErrorReply, RequestId, Task};

/// `P/classify/request`: `{"id", "text", "classifier"?}`. Other keys are ignored, so clients
/// may add their own.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyRequest {
    pub id: RequestId,
    pub text: String,
    /// `None`: the first configured classifier.
    pub classifier: Option<String>,
}

/// A caption or VQA request as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionRequest {
    pub id: RequestId,
    pub task: Task,
    /// VQA only (required there).
    pub question: Option<String>,
    pub camera: Option<String>,
    /// An encoded image (JPEG, PNG, WebP); `None`: the camera's latest frame.
    pub image: Option<Upload>,
    /// The full prompt, used as is (a VQA request's question then only goes in the answer).
    pub prompt: Option<String>,
    /// VQA: answer options, filled into the template's `{choices}`; distinct.
    pub choices: Option<Vec<String>>,
    /// VQA: the name of a `[templates]` entry.
    pub template: Option<String>,
}

/// An uploaded image as it came: MQTT's `image_b64` text, or a file's bytes (HTTP uploads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upload {
    Base64(String),
    Bytes(Vec<u8>),
}

/// Any request, by task.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Classify(ClassifyRequest),
    Vision(VisionRequest),
}

impl Request {
    pub fn id(&self) -> &RequestId {
        match self {
            Self::Classify(r) => &r.id,
            Self::Vision(r) => &r.id,
        }
    }
}

/// Reads a request for `task`, or says which error answer it gets.
pub fn parse_request(payload: &[u8], max_bytes: usize, task: Task) -> Result<Request, ErrorReply> {
    match task {
        Task::Classify => parse_classify_request(payload, max_bytes).map(Request::Classify),
        Task::Caption | Task::Vqa => {
            parse_vision_request(payload, max_bytes, task).map(Request::Vision)
        }
    }
}

/// The top level of a request: its id and its other fields, still as JSON text.
pub struct Fields<'a> {
    pub id: RequestId,
    fields: BTreeMap<String, &'a RawValue>,
}

impl Fields<'_> {
    fn fail(&self, code: ErrorCode, message: String) -> ErrorReply {
        ErrorReply::new(self.id.clone(), code, message)
    }

    /// The value of `key`; `None` when absent or `null`.
    fn value(&self, key: &str) -> Option<Value> {
        let raw = self.fields.get(key)?;
        // Already validated as JSON when the object was read.
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::Null) | Err(_) => None,
            Ok(v) => Some(v),
        }
    }

    /// An optional string field; `what` says what it should hold.
    fn string(&self, key: &str, what: &str) -> Result<Option<String>, ErrorReply> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.fail(
                ErrorCode::InvalidField,
                format!("\"{key}\" must be a string ({what}), not {}", kind(&other)),
            )),
        }
    }
}

/// Reads the common part of every request: within the size limit, UTF-8, a JSON object with an
/// `id` that is a string or a number.
pub fn parse_object(payload: &[u8], max_bytes: usize) -> Result<Fields<'_>, ErrorReply> {
    let fail = |code, message: String| ErrorReply::new(RequestId::null(), code, message);
    if payload.len() > max_bytes {
        return Err(fail(
            ErrorCode::PayloadTooLarge,
            format!(
                "the request is {} bytes; this device takes at most {max_bytes} (mqtt.max_payload_bytes)",
                payload.len()
            ),
        ));
    }
    let text = std::str::from_utf8(payload).map_err(|e| {
        fail(
            ErrorCode::InvalidJson,
            format!(
                "the payload is not UTF-8 (invalid byte at offset {}); send a UTF-8 JSON object",
                e.valid_up_to()
            ),
        )
    })?;
    let whole: &RawValue = serde_json::from_str(text).map_err(|e| {
        fail(
            ErrorCode::InvalidJson,
            format!("the payload is not JSON: {e}"),
        )
    })?;
    if !whole.get().starts_with('{') {
        return Err(fail(
            ErrorCode::InvalidJson,
            "the payload must be a JSON object like {\"id\": \"1\", ...}".into(),
        ));
    }
    let fields: BTreeMap<String, &RawValue> = serde_json::from_str(text).map_err(|e| {
        fail(
            ErrorCode::InvalidJson,
            format!("the payload is not a JSON object: {e}"),
        )
    })?;
    let id = match fields.get("id").map(|raw| raw.get()) {
        None | Some("null") => {
            return Err(fail(
                ErrorCode::MissingField,
                "\"id\" is required: a string or number that the answer echoes".into(),
            ));
        }
        Some(raw) => RequestId::from_json(raw).ok_or_else(|| {
            let what =
                serde_json::from_str::<Value>(raw).map_or("not a string or number", |v| kind(&v));
            fail(
                ErrorCode::InvalidField,
                format!("\"id\" must be a string or number, not {what}"),
            )
        })?,
    };
    Ok(Fields { id, fields })
}

/// Reads a classify request, or says which error answer it gets.
pub fn parse_classify_request(
    payload: &[u8],
    max_bytes: usize,
) -> Result<ClassifyRequest, ErrorReply> {
    let f = parse_object(payload, max_bytes)?;
    let text = match f.value("text") {
        None => {
            return Err(f.fail(
                ErrorCode::MissingField,
                "\"text\" is required: the text to classify".into(),
            ));
        }
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(f.fail(
                ErrorCode::InvalidField,
                format!("\"text\" must be a string, not {}", kind(&other)),
            ));
        }
    };
    let classifier = f.string("classifier", "naming a configured classifier")?;
    Ok(ClassifyRequest {
        id: f.id,
        text,
        classifier,
    })
}

/// Reads a caption (`task` = Caption) or VQA request, or says which error answer it gets.
pub fn parse_vision_request(
    payload: &[u8],
    max_bytes: usize,
    task: Task,
) -> Result<VisionRequest, ErrorReply> {
    let f = parse_object(payload, max_bytes)?;
    let question = f.string("question", "the question about the image")?;
    if task == Task::Vqa && question.as_deref().is_none_or(|q| q.trim().is_empty()) {
        return Err(f.fail(
            ErrorCode::MissingField,
            "\"question\" is required: what to ask about the image".into(),
        ));
    }
    let choices = match f.value("choices") {
        None => None,
        Some(Value::Array(items)) => Some(parse_choices(&f, &items)?),
        Some(other) => {
            return Err(f.fail(
                ErrorCode::InvalidField,
                format!(
                    "\"choices\" must be a list of strings, not {}",
                    kind(&other)
                ),
            ))
        }
    };
    let request = VisionRequest {
        task,
        question,
        camera: f.string("camera", "a configured camera's name")?,
        image: f
            .string("image_b64", "base64 of a JPEG, PNG or WebP image")?
            .map(Upload::Base64),
        prompt: f.string("prompt", "the prompt text")?,
        choices,
        template: f.string("template", "the name of a [templates] entry")?,
        id: f.id.clone(),
    };
    if task == Task::Caption && (request.choices.is_some() || request.template.is_some()) {
        return Err(f.fail(
            ErrorCode::InvalidField,
            "\"choices\" and \"template\" belong to vqa requests; a caption takes \"prompt\""
                .into(),
        ));
    }
    Ok(request)
}

/// Choices are non-empty, distinct strings: each becomes a key of the answer's `scores`.
fn parse_choices(f: &Fields, items: &[Value]) -> Result<Vec<String>, ErrorReply> {
    if items.is_empty() {
        return Err(f.fail(
            ErrorCode::InvalidField,
            "\"choices\" is empty: list at least one answer to choose from, or leave it out".into(),
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for v in items {
        let Value::String(s) = v else {
            return Err(f.fail(
                ErrorCode::InvalidField,
                format!("\"choices\" must list strings; found {}", kind(v)),
            ));
        };
        if s.trim().is_empty() {
            return Err(f.fail(
                ErrorCode::InvalidField,
                "\"choices\" must list non-empty strings; found an empty one".into(),
            ));
        }
        if !seen.insert(s.as_str()) {
            return Err(f.fail(
                ErrorCode::InvalidField,
                format!("\"choices\" lists {s:?} twice; each choice must differ from the others"),
            ));
        }
        out.push(s.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> RequestId {
        RequestId::from_json(text).unwrap()
    }

    fn classify_code(payload: &[u8]) -> (RequestId, ErrorCode) {
        let e = parse_classify_request(payload, 1000).unwrap_err();
        (e.id, e.error.code)
    }

    fn vision_code(payload: &str, task: Task) -> (RequestId, ErrorCode, String) {
        let e = parse_vision_request(payload.as_bytes(), 1000, task).unwrap_err();
        (e.id, e.error.code, e.error.message)
    }

    #[test]
    fn reads_a_classify_request() {
        let r = parse_classify_request(
            br#"{"id":"a1","text":"hi","classifier":"zh","extra":1}"#,
            1000,
        )
        .unwrap();
        assert_eq!(r.id, id("\"a1\""));
        assert_eq!(r.text, "hi");
        assert_eq!(r.classifier.as_deref(), Some("zh"));
        let r = parse_classify_request(br#"{"id":7,"text":""}"#, 1000).unwrap();
        assert_eq!((r.id, r.classifier), (id("7"), None));
        let r = parse_classify_request(br#"{"id":18446744073709551616,"text":"x"}"#, 1000).unwrap();
        assert_eq!(r.id.as_json(), "18446744073709551616");
    }

    #[test]
    fn bad_classify_requests_get_the_contract_codes() {
        let null = RequestId::null();
        assert_eq!(
            classify_code(b"{nope"),
            (null.clone(), ErrorCode::InvalidJson)
        );
        assert_eq!(
            classify_code(b"[1,2]"),
            (null.clone(), ErrorCode::InvalidJson)
        );
        assert_eq!(
            classify_code(b"{\"id\":\"x\",\"text\":\"\xff\xfe\"}"),
            (null.clone(), ErrorCode::InvalidJson)
        );
        assert_eq!(
            classify_code(br#"{"text":"t"}"#),
            (null.clone(), ErrorCode::MissingField)
        );
        assert_eq!(
            classify_code(br#"{"id":[1],"text":"t"}"#),
            (null.clone(), ErrorCode::InvalidField)
        );
        assert_eq!(
            classify_code(br#"{"id":"a"}"#),
            (id("\"a\""), ErrorCode::MissingField)
        );
        assert_eq!(
            classify_code(br#"{"id":"a","text":5}"#),
            (id("\"a\""), ErrorCode::InvalidField)
        );
        assert_eq!(
            classify_code(br#"{"id":"a","text":"t","classifier":1}"#),
            (id("\"a\""), ErrorCode::InvalidField)
        );
        assert_eq!(
            classify_code(&[b' '; 1001]),
            (null, ErrorCode::PayloadTooLarge)
        );
    }

    #[test]
    fn reads_vision_requests() {
        let r = parse_vision_request(
            br#"{"id":1,"question":"what colour?","camera":"door","choices":["red","blue"],"template":"choices"}"#,
            1000,
            Task::Vqa,
        )
        .unwrap();
        assert_eq!(r.question.as_deref(), Some("what colour?"));
        assert_eq!(r.choices.unwrap(), vec!["red", "blue"]);
        let r = parse_vision_request(br#"{"id":"c"}"#, 1000, Task::Caption).unwrap();
        assert_eq!((r.id, r.camera, r.image), (id("\"c\""), None, None));
    }

    #[test]
    fn bad_vision_requests_get_the_contract_codes() {
        let a = id("\"a\"");
        let code = |p: &str, t| {
            let (id, code, _) = vision_code(p, t);
            (id, code)
        };
        assert_eq!(
            code("{", Task::Vqa),
            (RequestId::null(), ErrorCode::InvalidJson)
        );
        assert_eq!(
            code(r#"{"id":"a"}"#, Task::Vqa),
            (a.clone(), ErrorCode::MissingField)
        );
        assert_eq!(
            code(r#"{"id":"a","question":" "}"#, Task::Vqa),
            (a.clone(), ErrorCode::MissingField)
        );
        assert_eq!(
            code(r#"{"id":"a","question":"q","choices":[1]}"#, Task::Vqa),
            (a.clone(), ErrorCode::InvalidField)
        );
        assert_eq!(
            code(r#"{"id":"a","camera":5}"#, Task::Caption),
            (a.clone(), ErrorCode::InvalidField)
        );
        assert_eq!(
            code(r#"{"id":"a","template":"vqa"}"#, Task::Caption),
            (a, ErrorCode::InvalidField)
        );
    }

    #[test]
    fn choices_must_be_distinct_and_not_empty() {
        let (_, code, message) = vision_code(
            r#"{"id":"a","question":"q","choices":["a","a"]}"#,
            Task::Vqa,
        );
        assert_eq!(code, ErrorCode::InvalidField);
        assert!(message.contains("\"a\" twice"), "{message}");
        let (_, code, message) =
            vision_code(r#"{"id":"a","question":"q","choices":[]}"#, Task::Vqa);
        assert_eq!(code, ErrorCode::InvalidField);
        assert!(message.contains("is empty"), "{message}");
        assert!(!message.contains("not an array"), "{message}");
        let (_, _, message) =
            vision_code(r#"{"id":"a","question":"q","choices":"a,b"}"#, Task::Vqa);
        assert!(message.contains("not a string"), "{message}");
    }
}
