//! The broker connection's side of the core: what a (re)connection owes (subscriptions, the
//! `online` status, discovery, readiness), and the retained health report.

use std::time::Instant;

use crate::daemon::scheduler::Priority;
use crate::mqtt::homeassistant;
use crate::mqtt::spool::OutMessage;
use crate::wire::health::{Health, QueueDepths};
use crate::wire::{to_json, OFFLINE, ONLINE};

use super::answers::status_message;
use super::events::{Action, HealthInputs};
use super::health;
use super::Core;

impl Core {
    pub(super) fn on_connected(&mut self, session_present: bool) {
        tracing::info!("connected to the MQTT broker (session present: {session_present})");
        if self.connected_before {
            self.metrics.reconnects += 1;
        }
        self.connected_before = true;
        self.connected = true;
        if !session_present || !self.subscribed {
            self.subscribed = false;
            self.actions.push(Action::Subscribe(self.subscriptions()));
        }
        // The Last Will may have marked us offline while we were away.
        self.publish_control(status_message(&self.topics.status, ONLINE.to_string()));
        self.publish_all_camera_settings();
        self.republish_adapter_state();
        self.publish_discovery();
        if !self.ready_sent {
            self.ready_sent = true;
            let loaded = self.classifiers.iter().filter(|m| m.is_loaded()).count();
            self.actions.push(Action::Ready(format!(
                "connected; {loaded} of {} classifiers loaded",
                self.classifiers.len()
            )));
        }
    }

    pub(super) fn publish_control(&mut self, msg: OutMessage) {
        self.actions.push(Action::Publish { msg, ack: None });
    }

    /// The retained `offline` status, for a clean stop.
    pub fn offline_message(&self) -> OutMessage {
        status_message(&self.topics.status, OFFLINE.to_string())
    }

    pub(super) fn publish_health(&mut self, inputs: HealthInputs, now: Instant) {
        self.has_temperature = !inputs.system.temperatures_c.is_empty();
        if !self.connected {
            return;
        }
        match to_json(&self.health_report(inputs, now)) {
            Ok(payload) => {
                self.publish_control(status_message(&self.topics.health, payload));
            }
            Err(e) => tracing::error!("cannot serialize the health report: {e}"),
        }
    }

    /// The health report as of now (also for HTTP's `/v1/health` and `/metrics`).
    pub(super) fn health_report(&self, inputs: HealthInputs, now: Instant) -> Health {
        let (cameras, camera_totals) = self.cameras.health();
        let figures = health::CoreFigures {
            device_id: &self.device_id,
            classifiers: &self.classifiers,
            adapter_versions: &self.adapter_versions,
            captioner: &self.captioner,
            cameras,
            camera_totals,
            queues: QueueDepths {
                interactive: self.jobs.depth(Priority::Interactive) + self.backlog.len(),
                periodic: self.jobs.depth(Priority::Periodic),
                engine: self.jobs.in_engine(),
                ..QueueDepths::default()
            },
            metrics: &self.metrics,
            connected: self.connected,
            updates: self.last_adapter_state.as_deref(),
            uptime_s: now
                .saturating_duration_since(self.metrics.started)
                .as_secs(),
        };
        health::report(figures, inputs)
    }

    /// The retained discovery message, when Home Assistant discovery is on and the broker is
    /// there; on the first of a run, the old per-entity messages are moved over and removed.
    pub(super) fn publish_discovery(&mut self) {
        if !self.homeassistant.enabled || !self.connected {
            return;
        }
        let cameras: Vec<String> = self.cameras.names().into_iter().map(String::from).collect();
        let classifiers: Vec<String> = self.classifiers.iter().map(|m| m.name.clone()).collect();
        let prefix = self.homeassistant.discovery_prefix.clone();
        let device = homeassistant::device_discovery(
            &prefix,
            &self.topics,
            homeassistant::DeviceInventory {
                device_id: &self.device_id,
                cameras: &cameras,
                classifiers: &classifiers,
                has_temperature: self.has_temperature,
            },
        );
        if self.legacy_discovery_removed {
            self.publish_control(device);
            return;
        }
        self.legacy_discovery_removed = true;
        let (migrate, remove) = homeassistant::legacy_removal(&prefix, &self.device_id, &cameras);
        for msg in migrate {
            self.publish_control(msg);
        }
        self.publish_control(device);
        for msg in remove {
            self.publish_control(msg);
        }
    }
}
