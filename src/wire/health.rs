//! `P/health` (retained, every `health.interval`) and its parts; also `GET /v1/health`.

use std::collections::BTreeMap;

use serde::Serialize;

/// The health report.
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
    pub cameras: BTreeMap<String, CameraHealth>,
    pub queues: QueueDepths,
    pub counters: Counters,
    /// p50/p95/p99 over the recent answers, per task.
    pub latency_ms: BTreeMap<String, Latency>,
    pub system: SystemHealth,
    pub mqtt: MqttHealth,
    /// Adapter updates, as `P/adapters/state` reports them; absent without `[updates]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updates: Option<serde_json::Value>,
}

/// One model in health.
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
    /// The adapter update serving now (`null`: the adapter the config names). Classifiers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter_version: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// One camera in health.
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
    /// Whether periodic captions are on (they can be switched from MQTT).
    pub captions_enabled: bool,
    /// Seconds between periodic captions.
    pub interval_s: f64,
    /// When the latest frame was captured, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_frame_ts: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct QueueDepths {
    pub interactive: usize,
    pub periodic: usize,
    /// Jobs handed to the engine and not yet answered.
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
