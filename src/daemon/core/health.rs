//! The health report, assembled from what the core knows (models, cameras, queues, counters,
//! latencies) and what the loop measured (system figures, the outbox).

use std::collections::BTreeMap;

use crate::daemon::metrics::Metrics;
use crate::models::status::ModelStatus;
use crate::wire::health::{
    CameraHealth, Health, ModelHealth, MqttHealth, QueueDepths, SystemHealth,
};

use super::cameras::CameraTotals;
use super::events::HealthInputs;

/// A model as health reports it; `adapter_version` only for classifiers.
pub fn model_health(m: &ModelStatus, adapter_version: Option<Option<u64>>) -> ModelHealth {
    ModelHealth {
        state: m.state.as_str(),
        reason: m.state.reason().map(str::to_string),
        quant: m.quant.clone(),
        device: m.device.clone(),
        adapter: m.adapter.clone(),
        adapter_version,
        labels: m.labels.clone(),
    }
}

/// What the core contributes to a report.
pub struct CoreFigures<'a> {
    pub device_id: &'a str,
    pub classifiers: &'a [ModelStatus],
    /// Per classifier, the update version serving now.
    pub adapter_versions: &'a [Option<u64>],
    pub captioner: &'a ModelStatus,
    pub cameras: BTreeMap<String, CameraHealth>,
    pub camera_totals: CameraTotals,
    pub queues: QueueDepths,
    pub metrics: &'a Metrics,
    pub connected: bool,
    pub uptime_s: u64,
    /// The updater's last report (`P/adapters/state`).
    pub updates: Option<&'a str>,
}

pub fn report(core: CoreFigures, inputs: HealthInputs) -> Health {
    let models = core
        .classifiers
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let version = core.adapter_versions.get(i).copied().flatten();
            (m.name.clone(), model_health(m, Some(version)))
        })
        .collect();
    let mut counters = core
        .metrics
        .counters(inputs.outbox.delivered, inputs.outbox.dropped);
    counters.frames_captured = core.camera_totals.captured;
    counters.frames_dropped = core.camera_totals.dropped;
    counters.captions = core.camera_totals.captions;
    let mut queues = core.queues;
    queues.outbox = inputs.outbox.in_memory;
    queues.spooled = inputs.outbox.spooled;
    Health {
        ts: inputs.ts,
        uptime_s: core.uptime_s,
        version: env!("CARGO_PKG_VERSION"),
        device_id: core.device_id.to_string(),
        models,
        captioner: model_health(core.captioner, None),
        cameras: core.cameras,
        queues,
        counters,
        latency_ms: core.metrics.latency(),
        system: SystemHealth {
            rss_bytes: inputs.memory.rss_bytes,
            peak_rss_bytes: inputs.memory.peak_rss_bytes,
            machine: inputs.system,
        },
        updates: core.updates.and_then(|r| serde_json::from_str(r).ok()),
        mqtt: MqttHealth {
            connected: core.connected,
            reconnects: core.metrics.reconnects,
        },
    }
}
