//! What the core starts from and what it keeps of each job: plain data, shared by the core's
//! parts.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::config::{CaptionerConfig, HomeAssistantConfig};
use crate::daemon::jobs::ReplyTo;
use crate::models::status::ModelStatus;
use crate::mqtt::link::Ack;
use crate::mqtt::topics::Topics;
use crate::wire::{RequestId, Task};

use super::answers::AnswerSpec;
use super::cameras::CameraView;
use super::redelivery::Fingerprint;

/// What the core starts from.
pub struct CoreSetup {
    pub topics: Topics,
    pub device_id: String,
    /// Requests above this many bytes are answered `payload_too_large`.
    pub max_payload: usize,
    /// The broker keeps the daemon's session while it is away (`mqtt.session_expiry` > 0), so a
    /// request left unanswered at a stop comes back after the restart.
    pub persistent_session: bool,
    pub queue_capacity: usize,
    pub max_batch: usize,
    pub max_wait: Duration,
    /// Batches the engine may hold at once.
    pub engine_slots: usize,
    pub classifiers: Vec<ModelStatus>,
    pub captioner: ModelStatus,
    pub captioner_config: CaptionerConfig,
    pub templates: BTreeMap<String, String>,
    pub cameras: Vec<CameraView>,
    pub homeassistant: HomeAssistantConfig,
    /// The update versions serving at start, per classifier.
    pub adapter_versions: Vec<Option<u64>>,
    /// Adapter updates are on: listen for announcements.
    pub updates: bool,
}

/// The core's record of a job, from admission to its answer.
#[derive(Debug)]
pub enum JobKind {
    Request(RequestJob),
    /// A camera's periodic caption of the frame captured at `ts`.
    Caption {
        camera: usize,
        seq: u64,
        ts: SystemTime,
    },
    /// An adapter change for classifier `classifier`, asked for by the updater.
    Adapter {
        classifier: usize,
        version: Option<u64>,
    },
}

/// A request and how to answer it.
#[derive(Debug)]
pub struct RequestJob {
    pub id: RequestId,
    pub task: Task,
    pub reply: ReplyTo,
    /// The broker's ack, sent with the answer; replaced when the broker delivers it again.
    pub ack: Option<Ack>,
    /// For recognizing the broker's redeliveries.
    pub fingerprint: Option<Fingerprint>,
    pub spec: AnswerSpec,
}
