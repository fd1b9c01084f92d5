//! Topic names and payloads of the MQTT interface (`shared/contract.md`, "MQTT"), and the parsing
//! of requests into either a request or the error answer it deserves.

use crate::json::LabelScores;
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// Every topic of one device, built once from the config.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `<topic_prefix>/<device_id>`.
    pub device: String,
    pub status: String,
    pub health: String,
    pub classify_request: String,
    pub classify_result: String,
    /// `$share/<group>/<topic_prefix>/fleet/classify/request`, when in a fleet.
    pub fleet_classify_request: Option<String>,
    /// The topic fleet requests carry (the filter above without `$share/<group>/`).
    fleet_classify_topic: Option<String>,
    pub caption_request: String,
    pub caption_result: String,
    pub vqa_request: String,
    pub vqa_result: String,
    /// Shared-subscription filters and the topics they carry, for caption and vqa.
    fleet_vision: Vec<(String, String, Task)>,
    /// Home Assistant's birth topic (`<discovery_prefix>/status`), when discovery is on.
    pub homeassistant_status: Option<String>,
}

/// What a request topic asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Classify,
    Caption,
    Vqa,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classify => "classify",
            Self::Caption => "caption",
            Self::Vqa => "vqa",
        }
    }
}

impl Topics {
    pub fn new(topic_prefix: &str, device_id: &str, fleet_group: Option<&str>) -> Self {
        let device = format!("{topic_prefix}/{device_id}");
        Self {
            status: format!("{device}/status"),
            health: format!("{device}/health"),
            classify_request: format!("{device}/classify/request"),
            classify_result: format!("{device}/classify/result"),
            fleet_classify_request: fleet_group
                .map(|g| format!("$share/{g}/{topic_prefix}/fleet/classify/request")),
            fleet_classify_topic: fleet_group
                .map(|_| format!("{topic_prefix}/fleet/classify/request")),
            caption_request: format!("{device}/caption/request"),
            caption_result: format!("{device}/caption/result"),
            vqa_request: format!("{device}/vqa/request"),
            vqa_result: format!("{device}/vqa/result"),
            fleet_vision: fleet_group
                .map(|g| {
                    [Task::Caption, Task::Vqa]
                        .into_iter()
                        .map(|t| {
                            let topic = format!("{topic_prefix}/fleet/{}/request", t.as_str());
                            (format!("$share/{g}/{topic}"), topic, t)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            homeassistant_status: None,
            device,
        }
    }

    /// Also listens for Home Assistant's birth message under `discovery_prefix`.
    pub fn with_homeassistant(mut self, discovery_prefix: &str) -> Self {
        self.homeassistant_status = Some(format!("{discovery_prefix}/status"));
        self
    }

    /// The filters the daemon subscribes to.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut subs = vec![self.classify_request.clone()];
        subs.extend(self.fleet_classify_request.clone());
        subs.push(self.caption_request.clone());
        subs.push(self.vqa_request.clone());
        subs.extend(self.fleet_vision.iter().map(|(f, _, _)| f.clone()));
        subs.extend(self.homeassistant_status.clone());
        subs
    }

    /// The task a message on `topic` asks for, if it is a request topic (own or fleet).
    pub fn task_of(&self, topic: &str) -> Option<Task> {
        if self.is_classify_request(topic) {
            Some(Task::Classify)
        } else if topic == self.caption_request {
            Some(Task::Caption)
        } else if topic == self.vqa_request {
            Some(Task::Vqa)
        } else {
            self.fleet_vision
                .iter()
                .find(|(_, t, _)| t == topic)
                .map(|(_, _, task)| *task)
        }
    }

    /// Where a task's answers go when the request names no Response Topic.
    pub fn result_topic(&self, task: Task) -> &str {
        match task {
            Task::Classify => &self.classify_result,
            Task::Caption => &self.caption_result,
            Task::Vqa => &self.vqa_result,
        }
    }

    /// `P/camera/<cam>/caption`.
    pub fn camera_caption(&self, camera: &str) -> String {
        format!("{}/camera/{camera}/caption", self.device)
    }

    /// Whether a message on `topic` is a classify request (own or fleet).
    pub fn is_classify_request(&self, topic: &str) -> bool {
        topic == self.classify_request || self.fleet_classify_topic.as_deref() == Some(topic)
    }
}

pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

/// The error codes of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// `{"id", "error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorReply {
    /// The request's id as it was sent (string or number), `null` when it could not be read.
    pub id: Value,
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorReply {
    pub fn new(id: Value, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            id,
            error: ErrorBody {
                code,
                message: message.into(),
            },
        }
    }
}

/// `P/classify/request`: `{"id", "text", "classifier"?}`. Other keys are ignored, so clients
/// may add their own.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyRequest {
    pub id: Value,
    pub text: String,
    /// `None`: the first configured classifier.
    pub classifier: Option<String>,
}

/// `P/classify/result`.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifyResult {
    pub id: Value,
    pub label: String,
    pub label_id: usize,
    /// Probability by label name, in label-id order.
    pub scores: LabelScores,
    pub classifier: String,
    /// The adapter's version: the name of its directory.
    pub adapter: String,
    /// From the request's arrival to its answer.
    pub latency_ms: f64,
}

/// Reads the common part of every request: within the size limit, UTF-8, a JSON object with
/// an `id`. Gives back the id and the object, or the error answer.
pub fn parse_object(
    payload: &[u8],
    max_bytes: usize,
) -> Result<(Value, serde_json::Map<String, Value>), ErrorReply> {
    let fail = |code, message: String| ErrorReply::new(Value::Null, code, message);
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
    let value: Value = serde_json::from_str(text).map_err(|e| {
        fail(
            ErrorCode::InvalidJson,
            format!("the payload is not JSON: {e}"),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(fail(
            ErrorCode::InvalidJson,
            "the payload must be a JSON object like {\"id\": \"1\", ...}".into(),
        ));
    };
    let id = match obj.get("id") {
        None | Some(Value::Null) => {
            return Err(fail(
                ErrorCode::MissingField,
                "\"id\" is required: a string or number that the answer echoes".into(),
            ));
        }
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        Some(other) => {
            return Err(fail(
                ErrorCode::InvalidField,
                format!("\"id\" must be a string or number, not {}", kind(other)),
            ));
        }
    };
    Ok((id, obj))
}

/// Reads a classify request, or says which error answer it gets.
pub fn parse_classify_request(
    payload: &[u8],
    max_bytes: usize,
) -> Result<ClassifyRequest, ErrorReply> {
    let fail = |id: &Value, code, message: String| ErrorReply::new(id.clone(), code, message);
    let (id, obj) = parse_object(payload, max_bytes)?;
    let text = match obj.get("text") {
        None | Some(Value::Null) => {
            return Err(fail(
                &id,
                ErrorCode::MissingField,
                "\"text\" is required: the text to classify".into(),
            ));
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(fail(
                &id,
                ErrorCode::InvalidField,
                format!("\"text\" must be a string, not {}", kind(other)),
            ));
        }
    };
    let classifier = match obj.get("classifier") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(fail(
                &id,
                ErrorCode::InvalidField,
                format!(
                    "\"classifier\" must be a string naming a configured classifier, not {}",
                    kind(other)
                ),
            ));
        }
    };
    Ok(ClassifyRequest {
        id,
        text,
        classifier,
    })
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `P/health`, retained, every `health.interval`.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// Unix time, seconds.
    pub ts: u64,
    pub uptime_s: u64,
    pub version: &'static str,
    pub device_id: String,
    pub models: BTreeMap<String, ModelHealth>,
    /// BLIP-2, for captions and VQA.
    pub captioner: ModelHealth,
    pub cameras: BTreeMap<String, super::vision::CameraHealth>,
    pub queues: QueueDepths,
    pub counters: Counters,
    /// p50/p95/p99 over the recent answers, per task.
    pub latency_ms: BTreeMap<String, Latency>,
    pub system: SystemHealth,
    pub mqtt: MqttHealth,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelHealth {
    /// `loaded`, `missing` or `failed`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub quant: String,
    pub device: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub adapter: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct QueueDepths {
    pub interactive: usize,
    pub periodic: usize,
    /// Batches handed to the engine and not yet answered.
    pub engine: usize,
    /// Results waiting to be sent or acknowledged, in memory.
    pub outbox: usize,
    /// Results waiting on disk for the broker.
    pub spooled: usize,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counters {
    pub requests: u64,
    pub errors: u64,
    pub overloaded: u64,
    /// Requests the broker sent again (DUP) that were already taken: not answered twice.
    pub redeliveries: u64,
    pub results_delivered: u64,
    /// Results dropped because the on-disk queue was full.
    pub results_dropped: u64,
    /// All cameras together.
    pub frames_captured: u64,
    pub frames_dropped: u64,
    /// Periodic captions published.
    pub captions: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    /// How many answers the figures cover.
    pub n: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SystemHealth {
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    /// CPU, memory, temperatures and Jetson figures, each only where the machine exposes it.
    #[serde(flatten)]
    pub machine: crate::health::SystemFacts,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MqttHealth {
    pub connected: bool,
    pub reconnects: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn code(payload: &[u8]) -> (Value, ErrorCode) {
        let e = parse_classify_request(payload, 1000).unwrap_err();
        (e.id, e.error.code)
    }

    #[test]
    fn reads_a_request() {
        let r = parse_classify_request(
            br#"{"id":"a1","text":"hi","classifier":"zh","extra":1}"#,
            1000,
        )
        .unwrap();
        assert_eq!(r.id, json!("a1"));
        assert_eq!(r.text, "hi");
        assert_eq!(r.classifier.as_deref(), Some("zh"));
        let r = parse_classify_request(br#"{"id":7,"text":""}"#, 1000).unwrap();
        assert_eq!((r.id, r.classifier), (json!(7), None));
    }

    #[test]
    fn bad_requests_get_the_contract_codes() {
        assert_eq!(code(b"{nope"), (Value::Null, ErrorCode::InvalidJson));
        assert_eq!(code(b"[1,2]"), (Value::Null, ErrorCode::InvalidJson));
        assert_eq!(
            code(b"{\"id\":\"x\",\"text\":\"\xff\xfe\"}"),
            (Value::Null, ErrorCode::InvalidJson)
        );
        assert_eq!(
            code(br#"{"text":"t"}"#),
            (Value::Null, ErrorCode::MissingField)
        );
        assert_eq!(
            code(br#"{"id":[1],"text":"t"}"#),
            (Value::Null, ErrorCode::InvalidField)
        );
        assert_eq!(
            code(br#"{"id":"a"}"#),
            (json!("a"), ErrorCode::MissingField)
        );
        assert_eq!(
            code(br#"{"id":"a","text":5}"#),
            (json!("a"), ErrorCode::InvalidField)
        );
        assert_eq!(
            code(br#"{"id":"a","text":"t","classifier":1}"#),
            (json!("a"), ErrorCode::InvalidField)
        );
        assert_eq!(
            code(&[b' '; 1001]),
            (Value::Null, ErrorCode::PayloadTooLarge)
        );
    }

    #[test]
    fn error_replies_serialize_as_the_contract_says() {
        let e = ErrorReply::new(json!("q"), ErrorCode::UnknownClassifier, "no such");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"id": "q", "error": {"code": "unknown_classifier", "message": "no such"}})
        );
    }

    #[test]
    fn topics_follow_prefix_device_and_fleet() {
        let t = Topics::new("landfall", "cam1", Some("g"));
        assert_eq!(t.status, "landfall/cam1/status");
        assert_eq!(
            t.subscriptions(),
            vec![
                "landfall/cam1/classify/request",
                "$share/g/landfall/fleet/classify/request",
                "landfall/cam1/caption/request",
                "landfall/cam1/vqa/request",
                "$share/g/landfall/fleet/caption/request",
                "$share/g/landfall/fleet/vqa/request",
            ]
        );
        assert_eq!(t.task_of("landfall/fleet/vqa/request"), Some(Task::Vqa));
        assert_eq!(
            t.task_of("landfall/cam1/caption/request"),
            Some(Task::Caption)
        );
        assert_eq!(t.task_of("landfall/cam1/caption/result"), None);
        assert_eq!(
            t.camera_caption("door"),
            "landfall/cam1/camera/door/caption"
        );
        assert!(t.is_classify_request("landfall/fleet/classify/request"));
        assert!(!Topics::new("landfall", "cam1", None)
            .is_classify_request("landfall/fleet/classify/request"));
    }

    #[test]
    fn scores_keep_label_order() {
        let labels = vec!["负面".to_string(), "中性".to_string(), "正面".to_string()];
        let m = LabelScores::new(&labels, &[0.1, 0.2, 0.7]);
        assert_eq!(m.labels().collect::<Vec<_>>(), vec!["负面", "中性", "正面"]);
    }
}
