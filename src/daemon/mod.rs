//! `landfall run`: the daemon.
//!
//! ```text
//! MQTT link ──messages──> core ──batches──> engine thread (models)
//!     ^                    │ scheduler          │
//!     └──outbox (+ spool) <┴──── answers <──────┘
//! ```
//!
//! [`core`] makes every decision and does no I/O; this module is the thin loop around it: it
//! starts the engine (waiting for its models), the embedded broker if configured, the link and
//! the cameras, turns what happens into core events, and carries out the actions the core
//! returns. A stop answers what is in hand, says `offline`, keeps undelivered results on disk,
//! acknowledges what was answered, and disconnects.

pub mod core;
pub mod engine;
mod http_bridge;
pub mod jobs;
pub mod metrics;
pub mod scheduler;
pub mod systemd;
pub mod updater;

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::{interval, sleep_until, MissedTickBehavior};

use self::core::{Action, CameraView, Core, CoreSetup, Event, HealthInputs, OutboxFigures};
use crate::camera::decode::{decode_b64_image, decode_image};
use crate::camera::Camera;
use crate::config::Config;
use crate::health::SystemSampler;
use crate::http::Ask;
use crate::mqtt::link::{self, Ack, Client, LinkEvent};
use crate::mqtt::outbox::Outbox;
use crate::mqtt::spool::{Spool, SpoolError};
use crate::mqtt::topics::Topics;
use crate::mqtt::{broker, MqttError};
use crate::wire::requests::Upload;
use crate::wire::OFFLINE;
use engine::{Engine, EngineError};
use http_bridge::HttpBridge;
use jobs::JobId;

/// How long a stop may take to answer what is in hand.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the broker to take `offline` and for the event loop to close.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(3);
/// Messages handed to the event loop and not yet acknowledged, at most.
const OUTBOX_WINDOW: usize = 64;
/// Results held in memory before they spill to disk while the broker is slow.
const OUTBOX_MEMORY: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("offline queue: {0}")]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    #[error("HTTP API: {0}")]
    Http(std::io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What the loop owns besides the core: the transports and workers that act for it.
struct Hands {
    client: Client,
    outbox: Outbox,
    engine: Engine,
    /// The connection the link is on; acks of earlier ones are void.
    epoch: u64,
    decoded: mpsc::UnboundedSender<(JobId, Result<image::RgbImage, String>)>,
    /// To the updater task, when adapter updates are on.
    updater: Option<mpsc::UnboundedSender<updater::FromLoop>>,
    offline_acked: bool,
    /// Connection attempts failed in a row (logged loudly at first, then sparingly).
    failures: u32,
    http: HttpBridge,
}

impl Hands {
    /// Carries out the core's actions, in order; returns whether the engine refused a batch
    /// because it is gone.
    fn act(&mut self, actions: Vec<Action>) -> bool {
        let mut engine_gone = false;
        for action in actions {
            match action {
                Action::Publish { msg, ack } => {
                    if let Err(e) = self.outbox.push(msg, ack) {
                        tracing::error!("offline queue: {e}");
                    }
                }
                Action::Ack(ack) => self.ack(ack),
                Action::Subscribe(filters) => {
                    if let Err(e) = self.client.try_subscribe(&filters) {
                        tracing::error!("subscribing: {e}");
                    }
                }
                Action::Submit(work) => {
                    if self.engine.try_submit(work).is_err() {
                        engine_gone = true;
                    }
                }
                Action::Decode { job, image } => {
                    let tx = self.decoded.clone();
                    tokio::task::spawn_blocking(move || {
                        let image = match image {
                            Upload::Base64(b64) => {
                                decode_b64_image(&b64).map_err(|e| e.to_string())
                            }
                            Upload::Bytes(bytes) => decode_image(&bytes).map_err(|e| e.to_string()),
                        };
                        let _ = tx.send((job, image));
                    });
                }
                Action::CheckUpdates => self.to_updater(updater::FromLoop::Check),
                Action::AdapterDone {
                    classifier,
                    version,
                    result,
                } => self.to_updater(updater::FromLoop::Done {
                    classifier,
                    version,
                    result,
                }),
                Action::Ready(status) => systemd::ready(&status),
                Action::Stopping => systemd::stopping(),
                Action::Respond { request, reply } => self.http.respond(request, reply),
            }
        }
        engine_gone
    }

    fn to_updater(&self, msg: updater::FromLoop) {
        if let Some(tx) = &self.updater {
            let _ = tx.send(msg);
        }
    }

    fn ack(&self, ack: Ack) {
        if ack.epoch != self.epoch {
            return;
        }
        if let Err(e) = self.client.try_ack(ack) {
            tracing::warn!("acknowledging a request: {e}");
        }
    }

    /// Acknowledges the requests whose answers became safe.
    fn release_acks(&mut self) {
        for ack in self.outbox.take_released() {
            self.ack(ack);
        }
    }

    /// Hands the link as much as the outbox allows.
    fn pump(&mut self) {
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

    /// Link events the outbox handles; the rest become core events.
    fn on_link(&mut self, event: LinkEvent, status_topic: &str) -> Option<Event> {
        match event {
            LinkEvent::Connected {
                session_present,
                epoch,
            } => {
                self.epoch = epoch;
                self.failures = 0;
                self.outbox.on_connect();
                Some(Event::Connected { session_present })
            }
            LinkEvent::Message(m) => Some(Event::Message(m)),
            LinkEvent::Sent(pkid) => {
                self.outbox.on_outgoing(pkid);
                None
            }
            LinkEvent::Acked { pkid, refused } => {
                match self.outbox.on_ack(pkid) {
                    Ok(Some(acked)) => {
                        if let Some(reason) = refused {
                            tracing::warn!(
                                "the broker refused a message on {}: {reason}",
                                acked.msg.topic
                            );
                        }
                        if acked.msg.topic == status_topic && acked.msg.payload == OFFLINE {
                            self.offline_acked = true;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!("offline queue: {e}"),
                }
                None
            }
            LinkEvent::Subscribed { refused } => Some(Event::Subscribed { refused }),
            LinkEvent::Disconnected { reason, taken } => {
                let was_connected = self.outbox.is_connected();
                if let Err(e) = self.outbox.on_disconnect(taken) {
                    tracing::error!("offline queue: {e}");
                }
                self.failures += 1;
                if was_connected {
                    tracing::warn!("lost the MQTT broker ({reason}); reconnecting");
                } else if self.failures == 1 || self.failures.is_multiple_of(20) {
                    tracing::warn!(
                        "cannot reach the MQTT broker ({reason}); still trying (attempt {})",
                        self.failures
                    );
                } else {
                    tracing::debug!("cannot reach the MQTT broker ({reason})");
                }
                Some(Event::Disconnected)
            }
            LinkEvent::Closed => None,
        }
    }

    fn outbox_figures(&self) -> OutboxFigures {
        OutboxFigures {
            in_memory: self.outbox.in_memory(),
            spooled: self.outbox.spooled(),
            delivered: self.outbox.delivered,
            dropped: self.outbox.dropped,
        }
    }
}

fn health_inputs(system: crate::health::SystemFacts, hands: &Hands) -> HealthInputs {
    HealthInputs {
        ts: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        system,
        memory: crate::health::process_memory(),
        outbox: hands.outbox_figures(),
    }
}

/// Runs the daemon until `shutdown` resolves, then stops cleanly.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let spool = Spool::open(&config.queue.dir, config.queue.max_entries.get())?;
    if !spool.is_empty() {
        tracing::info!(
            "{} results from an earlier run wait in {}",
            spool.len(),
            config.queue.dir.display()
        );
    }
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    // What each classifier serves: its configured adapter, or the update it accepted last.
    let specs = updater::plan_start(&config.classifiers, config.updates.as_ref());
    let adapter_versions: Vec<Option<u64>> = specs
        .iter()
        .map(|s| s.update.as_ref().and_then(|u| u.version))
        .collect();
    let (engine, loaded) = Engine::start(specs.clone(), config.captioner.clone(), done_tx).await?;
    let (updates_tx, mut updates_rx) = mpsc::unbounded_channel();
    let updater = match &config.updates {
        Some(u) if specs.iter().any(|s| s.config.follow_updates) => {
            let (tx, rx) = mpsc::unbounded_channel();
            let task = updater::Updater::new(u.clone(), &specs, updates_tx, rx);
            tokio::spawn(task.run());
            Some(tx)
        }
        _ => {
            drop(updates_tx);
            None
        }
    };
    let mqtt = &config.mqtt;
    if let Some(listen) = mqtt.embedded_listen {
        broker::start(listen, mqtt.max_payload_bytes.get())?;
    }
    let mut topics = Topics::new(
        &mqtt.topic_prefix,
        &mqtt.device_id,
        mqtt.fleet_group.as_deref(),
    );
    if config.homeassistant.enabled {
        topics = topics.with_homeassistant(&config.homeassistant.discovery_prefix);
    }
    let status_topic = topics.status.clone();
    let (client, mut link_rx, link_task) = link::start(mqtt, &topics.status)?;
    tracing::info!(
        "landfall {} as {} on {}:{} ({}), {} classifiers, {} cameras",
        env!("CARGO_PKG_VERSION"),
        topics.device,
        mqtt.host,
        mqtt.port,
        mqtt.protocol.as_str(),
        loaded.classifiers.len(),
        config.cameras.len()
    );
    let cameras: Vec<Camera> = config.cameras.iter().cloned().map(Camera::start).collect();
    let s = &config.scheduler;
    let captioner_name = loaded.captioner.name.clone();
    let mut core = Core::new(
        CoreSetup {
            topics,
            device_id: mqtt.device_id.clone(),
            max_payload: mqtt.max_payload_bytes.get(),
            persistent_session: !mqtt.session_expiry.is_zero(),
            queue_capacity: s.queue_capacity.get(),
            max_batch: s.max_batch.get(),
            max_wait: s.max_wait,
            engine_slots: engine::QUEUE,
            classifiers: loaded.classifiers,
            captioner: loaded.captioner,
            captioner_config: config.captioner.clone(),
            templates: config.templates.clone(),
            cameras: cameras
                .iter()
                .map(|c| CameraView {
                    config: c.config.clone(),
                    shared: c.shared.clone(),
                })
                .collect(),
            homeassistant: config.homeassistant.clone(),
            adapter_versions,
            updates: updater.is_some(),
        },
        Instant::now(),
    );
    let (decoded_tx, mut decoded_rx) = mpsc::unbounded_channel();
    let (http, mut http_rx) = HttpBridge::start(&config.http, &captioner_name)
        .await
        .map_err(DaemonError::Http)?;
    let mut hands = Hands {
        client,
        outbox: Outbox::new(spool, OUTBOX_WINDOW, OUTBOX_MEMORY),
        engine,
        epoch: 0,
        decoded: decoded_tx,
        updater,
        offline_acked: false,
        failures: 0,
        http,
    };
    let mut system = SystemSampler::default();

    let mut health = interval(config.health.interval);
    health.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let watchdog_every = systemd::watchdog_interval();
    let mut watchdog = interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
    let far = || tokio::time::Instant::now() + Duration::from_secs(86400);
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let mut engine_alive = true;
    let mut link_alive = true;
    tokio::pin!(shutdown);
    loop {
        let due = core.next_deadline().map(tokio::time::Instant::from_std);
        let mut event = None;
        tokio::select! {
            () = &mut shutdown, if drain_deadline.is_none() => {
                drain_deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                event = Some(Event::Stop);
            }
            e = link_rx.recv(), if link_alive => match e {
                Some(e) => {
                    let connected = matches!(e, LinkEvent::Connected { .. });
                    event = hands.on_link(e, &status_topic);
                    if connected {
                        // First the connection, then a health report right away.
                        core.handle(event.take().unwrap_or(Event::Tick), Instant::now());
                        event = Some(Event::Health(health_inputs(system.sample(), &hands)));
                    }
                }
                None => link_alive = false,
            },
            done = done_rx.recv(), if engine_alive => match done {
                Some(done) => event = Some(Event::BatchDone(done)),
                None => {
                    engine_alive = false;
                    event = Some(Event::EngineGone);
                }
            },
            Some((job, image)) = decoded_rx.recv() => event = Some(Event::Decoded { job, image }),
            Some(call) = http_rx.recv() => {
                let (request, ask) = hands.http.take(call);
                event = Some(match ask {
                    Ask::Request(body) => Event::HttpRequest { request, body },
                    Ask::Health | Ask::Metrics => Event::HttpStatus {
                        request,
                        // The last periodic sample: a poller must not shorten P/health's CPU window.
                        inputs: health_inputs(system.latest().clone(), &hands),
                        metrics: matches!(ask, Ask::Metrics),
                    },
                });
            }
            Some(msg) = updates_rx.recv() => event = Some(match msg {
                updater::ToLoop::Change { classifier, change } => {
                    Event::AdapterChange { classifier, change }
                }
                updater::ToLoop::State(report) => Event::AdapterState(report),
            }),
            () = sleep_until(due.unwrap_or_else(far)), if due.is_some() => event = Some(Event::Tick),
            _ = health.tick() => event = Some(Event::Health(health_inputs(system.sample(), &hands))),
            _ = watchdog.tick(), if watchdog_every.is_some() => systemd::watchdog(),
            () = sleep_until(drain_deadline.unwrap_or_else(far)), if drain_deadline.is_some() => {
                tracing::warn!("stopping: not everything was answered and delivered within {DRAIN_TIMEOUT:?}");
                break;
            }
        }
        if let Some(event) = event {
            core.handle(event, Instant::now());
        }
        if hands.act(core.take_actions()) {
            core.handle(Event::EngineGone, Instant::now());
            hands.act(core.take_actions());
        }
        hands.pump();
        hands.release_acks();
        let delivered = !hands.outbox.is_connected() || hands.outbox.is_idle();
        if core.is_draining() && core.is_drained() && delivered {
            break;
        }
        if !link_alive {
            tracing::error!("the MQTT event loop ended unexpectedly; stopping");
            break;
        }
    }

    // Goodbye: answer what is left, say offline, keep what the broker did not take.
    core.abandon_unfinished();
    hands.act(core.take_actions());
    hands.http.stop().await;
    if hands.outbox.is_connected() && link_alive {
        let offline = core.offline_message();
        if let Err(e) = hands.outbox.push(offline, None) {
            tracing::error!("offline queue: {e}");
        }
        hands.pump();
        let until = tokio::time::Instant::now() + GOODBYE_TIMEOUT;
        while !(hands.offline_acked && hands.outbox.is_idle()) && link_alive {
            tokio::select! {
                e = link_rx.recv() => match e {
                    Some(e) => {
                        if let Some(Event::Message(_)) = hands.on_link(e, &status_topic) {
                            // Taken neither now nor later by this run: the broker keeps it.
                        }
                    }
                    None => link_alive = false,
                },
                () = sleep_until(until) => break,
            }
            hands.pump();
            hands.release_acks();
        }
        if !hands.offline_acked {
            tracing::warn!("the broker did not confirm the offline status in time");
        }
    }
    // Whether a clean DISCONNECT is possible; taken before persist_all marks the outbox offline.
    let say_goodbye = hands.outbox.is_connected() && link_alive;
    if let Err(e) = hands.outbox.persist_all() {
        tracing::error!("offline queue: {e}");
    }
    // Answers now on disk are safe: their requests are acknowledged before the DISCONNECT.
    hands.release_acks();
    if hands.outbox.spooled() > 0 {
        tracing::info!(
            "{} undelivered results kept in {} for the next run",
            hands.outbox.spooled(),
            config.queue.dir.display()
        );
    }
    if say_goodbye {
        let _ = hands.client.try_disconnect();
        let closed = async {
            while let Some(event) = link_rx.recv().await {
                if matches!(event, LinkEvent::Closed) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, closed).await;
    }
    link_task.abort();
    // Joining a capture thread may wait for one grab: not on the async loop.
    let _ = tokio::task::spawn_blocking(move || drop(cameras)).await;
    hands.engine.stop().await;
    tracing::info!("stopped");
    Ok(())
}
