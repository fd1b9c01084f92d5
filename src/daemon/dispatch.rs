//! The daemon's working loop state: requests in, batches to the engine, answers out. Everything
//! here runs on one task and never waits: the link is fed with `try_*` calls the outbox paces,
//! the engine with `try_submit` the scheduler paces. Caption and VQA requests, cameras and Home
//! Assistant discovery are in [`vision_in`].

mod vision_in;

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::dedup::{Redeliveries, REMEMBERED};
use super::engine::{Done, Engine, ModelState, ModelStatus, Outcomes, Work, QUEUE};
use super::metrics::{round, Metrics};
use super::scheduler::{Overloaded, Priority, Scheduler};
use super::systemd;
use crate::health::SystemSampler;
use crate::mqtt::link::{Client, InMessage, LinkEvent};
use crate::mqtt::outbox::Outbox;
use crate::mqtt::spool::OutMessage;
use crate::mqtt::topics::{
    self, parse_classify_request, ClassifyResult, ErrorCode, ErrorReply, Health, MqttHealth,
    QueueDepths, SystemHealth, Task, Topics,
};
pub use vision_in::{Prepared, VisionSetup};
use vision_in::{VisionJob, VisionState, VISION_KEY};

/// Where an answer goes.
#[derive(Debug, Clone)]
pub struct ReplyTo {
    pub topic: String,
    pub correlation_data: Option<Vec<u8>>,
}

/// Work admitted to the scheduler.
#[derive(Debug)]
pub struct Pending {
    received: Instant,
    job: Job,
}

#[derive(Debug)]
enum Job {
    Classify {
        id: Value,
        text: String,
        reply: ReplyTo,
    },
    Vision(VisionJob),
}

/// The scheduler key of a classifier's jobs; vision jobs use [`VISION_KEY`], which no
/// classifier key can equal.
fn classify_key(name: &str) -> String {
    format!("classify/{name}")
}

pub struct Dispatcher {
    pub topics: Topics,
    device_id: String,
    max_payload: usize,
    pub client: Client,
    pub outbox: Outbox,
    pub scheduler: Scheduler<Pending>,
    pub engine: Engine,
    models: Vec<ModelStatus>,
    /// Batches with the engine, by id, with their classifier.
    in_engine: HashMap<u64, (String, Vec<Pending>)>,
    next_batch_id: u64,
    pub metrics: Metrics,
    redeliveries: Redeliveries,
    /// CPU, memory and Jetson figures for health; keeps the previous CPU sample.
    system: SystemSampler,
    pub draining: bool,
    /// SUBACK seen on this session.
    subscribed: bool,
    connected_before: bool,
    ready_sent: bool,
    /// Connection attempts failed in a row (logged loudly at first, then sparingly).
    failures: u32,
    pub offline_acked: bool,
    vision: VisionState,
}

impl Dispatcher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topics: Topics,
        device_id: String,
        max_payload: usize,
        client: Client,
        outbox: Outbox,
        scheduler: Scheduler<Pending>,
        engine: Engine,
        models: Vec<ModelStatus>,
        metrics: Metrics,
        vision: VisionSetup,
    ) -> Self {
        Self {
            topics,
            device_id,
            max_payload,
            client,
            outbox,
            scheduler,
            engine,
            models,
            in_engine: HashMap::new(),
            next_batch_id: 0,
            metrics,
            redeliveries: Redeliveries::new(REMEMBERED),
            system: SystemSampler::default(),
            draining: false,
            subscribed: false,
            connected_before: false,
            ready_sent: false,
            failures: 0,
            offline_acked: false,
            vision: VisionState::new(vision),
        }
    }

    /// Handles one link event; `false` once the link has closed for good.
    pub fn on_link(&mut self, event: LinkEvent) -> bool {
        match event {
            LinkEvent::Connected { session_present } => self.on_connected(session_present),
            LinkEvent::Message(m) => self.on_message(m),
            LinkEvent::Sent(pkid) => self.outbox.on_outgoing(pkid),
            LinkEvent::Acked { pkid, refused } => match self.outbox.on_ack(pkid) {
                Ok(Some(acked)) => {
                    if let Some(reason) = refused {
                        tracing::warn!(
                            "the broker refused a message on {}: {reason}",
                            acked.msg.topic
                        );
                    }
                    if acked.msg.topic == self.topics.status && acked.msg.payload == topics::OFFLINE
                    {
                        self.offline_acked = true;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!("offline queue: {e}"),
            },
            LinkEvent::Subscribed { refused } => {
                if refused > 0 {
                    tracing::error!(
                        "the broker refused {refused} of the subscriptions {:?}; check its ACLs (and, for mqtt.fleet_group, that it supports shared subscriptions)",
                        self.topics.subscriptions()
                    );
                }
                self.subscribed = true;
            }
            LinkEvent::Disconnected { reason, taken } => self.on_disconnected(&reason, taken),
            LinkEvent::Closed => return false,
        }
        true
    }

    fn on_connected(&mut self, session_present: bool) {
        tracing::info!("connected to the MQTT broker (session present: {session_present})");
        if self.connected_before {
            self.metrics.reconnects += 1;
        }
        self.connected_before = true;
        self.failures = 0;
        self.outbox.on_connect();
        if !session_present || !self.subscribed {
            self.subscribed = false;
            if let Err(e) = self.client.try_subscribe(&self.topics.subscriptions()) {
                tracing::error!("subscribing: {e}");
            }
        }
        // The Last Will may have marked us offline while we were away.
        self.push(status_message(&self.topics.status, topics::ONLINE));
        self.publish_health();
        self.publish_discovery();
        if !self.ready_sent {
            self.ready_sent = true;
            let loaded = self
                .models
                .iter()
                .filter(|m| m.state == ModelState::Loaded)
                .count();
            systemd::ready(&format!(
                "connected; {loaded} of {} classifiers loaded",
                self.models.len()
            ));
        }
    }

    fn on_disconnected(&mut self, reason: &str, taken: usize) {
        let was_connected = self.outbox.is_connected();
        if let Err(e) = self.outbox.on_disconnect(taken) {
            tracing::error!("offline queue: {e}");
        }
        self.failures += 1;
        if was_connected {
            tracing::warn!(
                "lost the MQTT broker ({reason}); results wait on disk until it is back"
            );
        } else if self.failures == 1 || self.failures % 20 == 0 {
            tracing::warn!(
                "cannot reach the MQTT broker ({reason}); still trying (attempt {})",
                self.failures
            );
        } else {
            tracing::debug!("cannot reach the MQTT broker ({reason})");
        }
    }

    fn on_message(&mut self, m: InMessage) {
        if self.topics.homeassistant_status.as_deref() == Some(m.topic.as_str()) {
            if m.payload == topics::ONLINE.as_bytes() {
                tracing::info!("Home Assistant is online; sending discovery again");
                self.publish_discovery();
            }
            return;
        }
        let Some(task) = self.topics.task_of(&m.topic) else {
            tracing::debug!("ignoring a message on {}", m.topic);
            return;
        };
        let redelivered = self.redeliveries.is_redelivery(
            m.dup,
            &m.topic,
            &m.payload,
            m.response_topic.as_deref(),
            m.correlation_data.as_deref(),
        );
        if redelivered {
            self.metrics.redeliveries += 1;
            tracing::debug!("skipping a request the broker delivered again");
            return;
        }
        self.metrics.requests += 1;
        let received = Instant::now();
        let mut reply = ReplyTo {
            topic: self.topics.result_topic(task).to_string(),
            correlation_data: m.correlation_data,
        };
        if let Some(topic) = m.response_topic {
            if topic.is_empty() || topic.contains(['+', '#', '\0']) {
                let message =
                    format!("the Response Topic {topic:?} is not a topic one can publish to");
                return self.reply_error(
                    &reply,
                    ErrorReply::new(Value::Null, ErrorCode::InvalidField, message),
                );
            }
            reply.topic = topic;
        }
        if task != Task::Classify {
            return self.on_vision_request(task, &m.payload, reply, received);
        }
        let request = match parse_classify_request(&m.payload, self.max_payload) {
            Ok(r) => r,
            Err(e) => return self.reply_error(&reply, e),
        };
        let fail = |code, message: String| ErrorReply::new(request.id.clone(), code, message);
        if self.draining {
            let e = fail(
                ErrorCode::Overloaded,
                "this device is shutting down; send the request again".into(),
            );
            return self.reply_error(&reply, e);
        }
        let name = match request
            .classifier
            .clone()
            .or_else(|| self.models.first().map(|m| m.name.clone()))
        {
            Some(name) => name,
            None => {
                let e = fail(
                    ErrorCode::UnknownClassifier,
                    "this device has no classifiers configured; add a [[classifier]] to its config"
                        .into(),
                );
                return self.reply_error(&reply, e);
            }
        };
        let Some(model) = self.models.iter().find(|m| m.name == name) else {
            let known: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
            let e = fail(
                ErrorCode::UnknownClassifier,
                format!("no classifier {name:?} here; this device has {known:?}"),
            );
            return self.reply_error(&reply, e);
        };
        if let ModelState::Missing(why) | ModelState::Failed(why) = &model.state {
            let e = fail(
                ErrorCode::ModelUnavailable,
                format!("classifier {name:?} is not loaded: {why}"),
            );
            return self.reply_error(&reply, e);
        }
        let pending = Pending {
            received,
            job: Job::Classify {
                id: request.id.clone(),
                text: request.text,
                reply,
            },
        };
        self.admit(&classify_key(&name), Priority::Interactive, pending);
    }

    /// Queues work for the engine, answering `overloaded` when the queue is full.
    fn admit(&mut self, key: &str, priority: Priority, pending: Pending) {
        let received = pending.received;
        if let Err(Overloaded(p)) = self.scheduler.push(key, priority, pending, received) {
            self.metrics.overloaded += 1;
            self.refuse(
                p,
                ErrorCode::Overloaded,
                "too many requests are waiting; send it again later",
            );
        }
    }

    /// Answers admitted work with an error (periodic work has nobody to answer: it is logged).
    fn refuse(&mut self, p: Pending, code: ErrorCode, message: &str) {
        match p.job {
            Job::Classify { id, reply, .. } => {
                self.reply_error(&reply, ErrorReply::new(id, code, message.to_string()));
            }
            Job::Vision(job) => self.refuse_vision(job, code, message),
        }
    }

    fn reply_error(&mut self, to: &ReplyTo, e: ErrorReply) {
        self.metrics.errors += 1;
        tracing::debug!(
            "answering {} with {:?}: {}",
            e.id,
            e.error.code,
            e.error.message
        );
        let payload = serde_json::to_string(&e).unwrap_or_default();
        self.push(result_message(to, payload));
    }

    fn push(&mut self, msg: OutMessage) {
        if let Err(e) = self.outbox.push(msg) {
            tracing::error!("offline queue: {e}");
        }
    }

    /// When the scheduler next has a batch due, if the engine could take one.
    pub fn batch_deadline(&self) -> Option<Instant> {
        (self.in_engine.len() < QUEUE)
            .then(|| self.scheduler.next_deadline())
            .flatten()
    }

    /// Hands due batches to the engine while it has room.
    pub fn dispatch(&mut self, now: Instant) {
        while self.in_engine.len() < QUEUE {
            let Some(batch) = self.scheduler.next_batch(now, self.draining) else {
                return;
            };
            self.next_batch_id += 1;
            let batch_id = self.next_batch_id;
            let work = if batch.key == VISION_KEY {
                Work::Vision {
                    batch_id,
                    jobs: batch
                        .items
                        .iter()
                        .filter_map(|p| match &p.job {
                            Job::Vision(v) => Some(v.input.clone()),
                            Job::Classify { .. } => None,
                        })
                        .collect(),
                }
            } else {
                Work::Classify {
                    batch_id,
                    classifier: batch
                        .key
                        .strip_prefix("classify/")
                        .unwrap_or(&batch.key)
                        .to_string(),
                    texts: batch
                        .items
                        .iter()
                        .filter_map(|p| match &p.job {
                            Job::Classify { text, .. } => Some(text.clone()),
                            Job::Vision(_) => None,
                        })
                        .collect(),
                }
            };
            match self.engine.try_submit(work) {
                Ok(()) => {
                    self.in_engine
                        .insert(self.next_batch_id, (batch.key, batch.items));
                }
                Err(_) => {
                    tracing::error!("the engine thread is gone; answering its work with errors");
                    self.fail_all(batch.items, "the model engine stopped; restart the daemon");
                }
            }
        }
    }

    fn fail_all(&mut self, items: Vec<Pending>, message: &str) {
        for p in items {
            self.refuse(p, ErrorCode::Internal, message);
        }
    }

    pub fn on_done(&mut self, done: Done) {
        let Some((key, items)) = self.in_engine.remove(&done.batch_id) else {
            return;
        };
        match done.outcomes {
            Outcomes::Classify(outcomes) => self.on_classified(&key, items, outcomes),
            Outcomes::Vision(outcomes) => self.on_vision_done(items, outcomes),
        }
    }

    fn on_classified(
        &mut self,
        key: &str,
        items: Vec<Pending>,
        outcomes: Vec<Result<crate::classifier::Prediction, String>>,
    ) {
        let name = key.strip_prefix("classify/").unwrap_or(key).to_string();
        let Some(model) = self.models.iter().find(|m| m.name == name).cloned() else {
            return;
        };
        for (p, outcome) in items.into_iter().zip(outcomes) {
            let latency_ms = p.received.elapsed().as_secs_f64() * 1000.0;
            let Job::Classify { id, reply, .. } = p.job else {
                continue;
            };
            self.metrics.record_latency("classify", latency_ms);
            match outcome {
                Ok(pred) => {
                    let result = ClassifyResult {
                        id,
                        scores: crate::json::LabelScores::new(&model.labels, &pred.scores),
                        label: pred.label,
                        label_id: pred.label_id,
                        classifier: name.clone(),
                        adapter: model.adapter.clone(),
                        latency_ms: round(latency_ms),
                    };
                    let payload = serde_json::to_string(&result).unwrap_or_default();
                    self.push(result_message(&reply, payload));
                }
                Err(message) => {
                    tracing::error!("classifier {name:?} failed on request {id}: {message}");
                    let e = ErrorReply::new(
                        id,
                        ErrorCode::Internal,
                        format!("the model failed: {message}"),
                    );
                    self.reply_error(&reply, e);
                }
            }
        }
    }

    /// The engine's result channel closed: whatever it held will never be answered by it.
    pub fn engine_gone(&mut self) {
        let batches: Vec<Vec<Pending>> = self.in_engine.drain().map(|(_, (_, b))| b).collect();
        for items in batches {
            self.fail_all(items, "the model engine stopped; restart the daemon");
        }
    }

    /// Hands the link as much as the outbox allows.
    pub fn pump(&mut self) {
        loop {
            match self.outbox.next_to_send() {
                Ok(Some(msg)) => {
                    if let Err(e) = self.client.try_publish(&msg) {
                        tracing::debug!("the event loop is busy ({e}); publishing later");
                        self.outbox.unsend();
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => tracing::error!("offline queue: {e}"),
            }
        }
    }

    pub fn publish_health(&mut self) {
        if !self.outbox.is_connected() {
            return;
        }
        let payload = serde_json::to_string(&self.health()).unwrap_or_default();
        self.push(status_message(&self.topics.health, &payload));
    }

    fn health(&mut self) -> Health {
        let models = self
            .models
            .iter()
            .map(|m| (m.name.clone(), m.health()))
            .collect::<BTreeMap<_, _>>();
        let memory = crate::health::process_memory();
        let (cameras, captured, dropped, captions) = self.vision.camera_health();
        let mut counters = self
            .metrics
            .counters(self.outbox.delivered, self.outbox.dropped);
        counters.frames_captured = captured;
        counters.frames_dropped = dropped;
        counters.captions = captions;
        let machine = self.system.sample();
        self.vision.has_temperature = !machine.temperatures_c.is_empty();
        Health {
            ts: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            uptime_s: self.metrics.started.elapsed().as_secs(),
            version: env!("CARGO_PKG_VERSION"),
            device_id: self.device_id.clone(),
            models,
            captioner: self.vision.captioner.health(),
            cameras,
            queues: QueueDepths {
                interactive: self.scheduler.depth(Priority::Interactive),
                periodic: self.scheduler.depth(Priority::Periodic),
                engine: self.in_engine.values().map(|(_, b)| b.len()).sum(),
                outbox: self.outbox.in_memory(),
                spooled: self.outbox.spooled(),
            },
            counters,
            latency_ms: self.metrics.latency(),
            system: SystemHealth {
                rss_bytes: memory.rss_bytes,
                peak_rss_bytes: memory.peak_rss_bytes,
                machine,
            },
            mqtt: MqttHealth {
                connected: self.outbox.is_connected(),
                reconnects: self.metrics.reconnects,
            },
        }
    }

    pub fn begin_drain(&mut self) {
        tracing::info!("stopping: answering the requests in hand, then going offline");
        systemd::stopping();
        self.draining = true;
    }

    /// Every admitted request answered and, while connected, every answer acknowledged.
    pub fn is_drained(&self) -> bool {
        self.vision.decodes_done()
            && self.scheduler.is_empty()
            && self.in_engine.is_empty()
            && (!self.outbox.is_connected() || self.outbox.is_idle())
    }

    /// What the drain could not finish in time still gets an answer.
    pub fn abandon_unfinished(&mut self) {
        self.abandon_decodes();
        let waiting = self.scheduler.drain_all();
        let running: Vec<Pending> = self.in_engine.drain().flat_map(|(_, (_, b))| b).collect();
        for p in waiting.into_iter().chain(running) {
            self.refuse(
                p,
                ErrorCode::Overloaded,
                "this device stopped before running the request; send it again",
            );
        }
    }

    /// Queues the retained `offline` status, for a clean stop.
    pub fn go_offline(&mut self) {
        self.push(status_message(&self.topics.status, topics::OFFLINE));
    }
}

/// A result or error answer: QoS 1, queued until acknowledged.
fn result_message(to: &ReplyTo, payload: String) -> OutMessage {
    OutMessage {
        topic: to.topic.clone(),
        payload,
        retain: false,
        correlation_data: to.correlation_data.clone(),
        durable: true,
    }
}

/// Status and health: retained, worth sending only while connected.
fn status_message(topic: &str, payload: &str) -> OutMessage {
    OutMessage {
        topic: topic.to_string(),
        payload: payload.to_string(),
        retain: true,
        correlation_data: None,
        durable: false,
    }
}
