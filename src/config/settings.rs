//! The validated config: what the daemon uses (durations, non-zero sizes, parsed devices,
//! resolved paths), and the errors that name the file, line, column and field at fault.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

pub use crate::camera::spec::CameraConfig;
use crate::models::runtime::{DeviceChoice, FloatType, Quant};

/// Where `landfall run` and `check-config` look when no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/landfall/landfall.toml";

/// The config without a file: everything default, plus the default model set's classifier
/// (`sentiment-zh`, a fine-tuned Chinese review classifier used without an adapter) and the
/// test-pattern camera the contract promises, so that after `landfall models pull` a newcomer
/// gets classify answers and captions at once.
pub const BUILTIN: &str = "[[classifier]]\nname = \"sentiment-zh\"\nbase = \"roberta-base-finetuned-jd-binary-chinese\"\n\n[[camera]]\nname = \"pattern\"\nsource = \"pattern:bars\"\n";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{col}: {field}: {reason}")]
    Invalid {
        file: String,
        line: usize,
        col: usize,
        field: String,
        reason: String,
    },
}

/// The validated config.
#[derive(Debug, Clone)]
pub struct Config {
    pub mqtt: MqttConfig,
    pub health: HealthConfig,
    pub queue: QueueConfig,
    pub scheduler: SchedulerConfig,
    pub models: ModelsConfig,
    /// In file order; the first answers requests that name no classifier.
    pub classifiers: Vec<ClassifierConfig>,
    pub captioner: CaptionerConfig,
    /// VQA prompt templates by name, built-in ones included.
    pub templates: BTreeMap<String, String>,
    /// In file order; the first is the default for requests that name no camera.
    pub cameras: Vec<CameraConfig>,
    pub homeassistant: HomeAssistantConfig,
    /// Signed adapter updates; `None` without `[updates]`.
    pub updates: Option<UpdatesConfig>,
    pub http: HttpConfig,
}

/// `[updates]`: a TUF repository of adapter bundles.
#[derive(Debug, Clone)]
pub struct UpdatesConfig {
    /// `https://...`, `http://...`, `file://...` or a directory.
    pub repository: String,
    /// The trusted root metadata, installed out of band.
    pub root: PathBuf,
    /// How often to check; `None`: only when an announcement says so.
    pub interval: Option<Duration>,
    /// The update state, the TUF datastore and installed bundles.
    pub dir: PathBuf,
}

/// BLIP-2, for captions and visual questions.
#[derive(Debug, Clone)]
pub struct CaptionerConfig {
    /// The model directory (Hugging Face layout), resolved against `models.dir`.
    pub model: PathBuf,
    pub quant: Quant,
    pub device: DeviceChoice,
    /// `None`: f16 on CUDA, f32 on CPU.
    pub dtype: Option<FloatType>,
    pub max_new_tokens: usize,
    /// The prompt of captions that give none (empty: an unprompted caption).
    pub prompt: String,
}

/// `[http]`: the HTTP API, off unless enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Where it listens; `None`: off.
    pub listen: Option<std::net::SocketAddr>,
    /// Bearer token every request must carry (required off loopback).
    pub token: Option<String>,
    /// Origins allowed cross-origin requests (CORS); none by default.
    pub cors_origins: Vec<String>,
    /// Largest request body; larger ones are answered 413.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct HomeAssistantConfig {
    pub enabled: bool,
    pub discovery_prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V5,
    V311,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V5 => "v5",
            Self::V311 => "v311",
        }
    }
}

#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// The broker the daemon connects to (the embedded one's address when that runs).
    pub host: String,
    pub port: NonZeroU16,
    /// Where the embedded rumqttd broker listens; `None`: use an external broker.
    pub embedded_listen: Option<SocketAddr>,
    pub client_id: String,
    pub topic_prefix: String,
    pub device_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<TlsConfig>,
    pub protocol: Protocol,
    pub keep_alive: Duration,
    /// Zero: a clean session on every connect (requests sent while away are lost).
    pub session_expiry: Duration,
    /// Also take requests from `$share/<group>/<topic_prefix>/fleet/<task>/request`.
    pub fleet_group: Option<String>,
    /// Requests above this get `payload_too_large`.
    pub max_payload_bytes: NonZeroUsize,
}

impl MqttConfig {
    /// `<topic_prefix>/<device_id>`, the prefix of every topic of this device.
    pub fn device_prefix(&self) -> String {
        format!("{}/{}", self.topic_prefix, self.device_id)
    }
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// CA bundle that signs the broker's certificate.
    pub ca_file: PathBuf,
    /// Client certificate and key, for brokers that authenticate clients by certificate.
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub interval: Duration,
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Results that could not be delivered wait here, one file each, across restarts.
    pub dir: PathBuf,
    /// Beyond this the oldest waiting result is dropped (and counted).
    pub max_entries: NonZeroUsize,
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Requests waiting for the engine; one more is answered `overloaded`.
    pub queue_capacity: NonZeroUsize,
    pub max_batch: NonZeroUsize,
    /// How long a request may wait for others to share its batch.
    pub max_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct ModelsConfig {
    /// Relative `base`/`adapter` paths of classifiers are resolved against this.
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ClassifierConfig {
    pub name: String,
    pub base: PathBuf,
    /// The PEFT LoRA adapter; `None`: the base is a fine-tuned sequence classifier by itself.
    pub adapter: Option<PathBuf>,
    pub labels: Option<Vec<String>>,
    pub quant: Quant,
    pub device: DeviceChoice,
    /// `None`: f16 on CUDA, f32 on CPU.
    pub dtype: Option<FloatType>,
    /// Takes adapter updates when `[updates]` is set.
    pub follow_updates: bool,
}

/// The machine's hostname, made safe as one MQTT topic level.
pub fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() {
        "landfall".to_string()
    } else {
        clean
    }
}
