//! `landfall run`: the daemon.
//!
//! ```text
//! MQTT link ──requests──> dispatcher ──batches──> engine thread (models)
//!     ^                    │  scheduler              │
//!     └──outbox (+ spool) <┴────────── answers <─────┘
//! ```
//!
//! [`run`] starts the engine (waiting for its models), the embedded broker if configured and the
//! link, then drives the [`dispatch::Dispatcher`] from one loop until `shutdown` resolves; then it
//! answers what it holds, publishes `offline`, keeps undelivered results on disk and disconnects.

pub mod dedup;
pub mod dispatch;
pub mod engine;
pub mod metrics;
pub mod scheduler;
pub mod systemd;
pub mod vision;

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::time::{interval, sleep_until, MissedTickBehavior};

use crate::camera::Camera;
use crate::config::Config;
use crate::mqtt::link::{self, LinkEvent};
use crate::mqtt::outbox::Outbox;
use crate::mqtt::spool::{Spool, SpoolError};
use crate::mqtt::topics::Topics;
use crate::mqtt::{broker, MqttError};
use dispatch::{Dispatcher, VisionSetup};
use engine::{Engine, EngineError};
use metrics::Metrics;
use scheduler::Scheduler;

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
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Runs the daemon until `shutdown` resolves, then stops cleanly.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let started = Instant::now();
    let spool = Spool::open(&config.queue.dir, config.queue.max_entries.get())?;
    if !spool.is_empty() {
        tracing::info!(
            "{} results from an earlier run wait in {}",
            spool.len(),
            config.queue.dir.display()
        );
    }
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (engine, models, captioner) = Engine::start(
        config.classifiers.clone(),
        config.captioner.clone(),
        done_tx,
    )
    .await?;
    let mqtt = &config.mqtt;
    if let Some(listen) = mqtt.embedded_listen {
        broker::start(listen, mqtt.protocol, mqtt.max_payload_bytes.get())?;
    }
    let mut topics = Topics::new(
        &mqtt.topic_prefix,
        &mqtt.device_id,
        mqtt.fleet_group.as_deref(),
    );
    if config.homeassistant.enabled {
        topics = topics.with_homeassistant(&config.homeassistant.discovery_prefix);
    }
    let (client, mut link_rx, link_task) = link::start(mqtt, &topics.status)?;
    tracing::info!(
        "landfall {} as {} on {}:{} ({}), {} classifiers, {} cameras",
        env!("CARGO_PKG_VERSION"),
        topics.device,
        mqtt.host,
        mqtt.port,
        mqtt.protocol.as_str(),
        models.len(),
        config.cameras.len()
    );
    let (prepared_tx, mut prepared_rx) = mpsc::unbounded_channel();
    let vision = VisionSetup {
        cameras: config.cameras.iter().cloned().map(Camera::start).collect(),
        captioner,
        captioner_config: config.captioner.clone(),
        templates: config.templates.clone(),
        homeassistant: config.homeassistant.clone(),
        prepared: prepared_tx,
    };
    let s = &config.scheduler;
    let mut d = Dispatcher::new(
        topics,
        mqtt.device_id.clone(),
        mqtt.max_payload_bytes.get(),
        client,
        Outbox::new(spool, OUTBOX_WINDOW, OUTBOX_MEMORY),
        Scheduler::new(s.queue_capacity.get(), s.max_batch.get(), s.max_wait),
        engine,
        models,
        Metrics::new(started),
        vision,
    );

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
        let batch_due = d.batch_deadline().map(tokio::time::Instant::from_std);
        let caption_due = d.caption_deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            () = &mut shutdown, if !d.draining => {
                d.begin_drain();
                drain_deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
            }
            event = link_rx.recv(), if link_alive => match event {
                Some(event) => link_alive = d.on_link(event),
                None => link_alive = false,
            },
            done = done_rx.recv(), if engine_alive => match done {
                Some(done) => d.on_done(done),
                None => {
                    engine_alive = false;
                    d.engine_gone();
                }
            },
            Some(prepared) = prepared_rx.recv() => d.on_prepared(prepared),
            () = sleep_until(batch_due.unwrap_or_else(far)), if batch_due.is_some() => {}
            () = sleep_until(caption_due.unwrap_or_else(far)), if caption_due.is_some() => {
                d.periodic_captions(Instant::now());
            }
            _ = health.tick() => d.publish_health(),
            _ = watchdog.tick(), if watchdog_every.is_some() => systemd::watchdog(),
            () = sleep_until(drain_deadline.unwrap_or_else(far)), if drain_deadline.is_some() => {
                tracing::warn!("stopping: not everything was answered and delivered within {DRAIN_TIMEOUT:?}");
                break;
            }
        }
        d.dispatch(Instant::now());
        d.pump();
        if d.draining && d.is_drained() {
            break;
        }
        if !link_alive {
            tracing::error!("the MQTT event loop ended unexpectedly; stopping");
            d.begin_drain();
            break;
        }
    }

    // Goodbye: answer what is left, say offline, keep what the broker did not take.
    d.abandon_unfinished();
    if d.outbox.is_connected() && link_alive {
        d.go_offline();
        d.pump();
        let until = tokio::time::Instant::now() + GOODBYE_TIMEOUT;
        while !(d.offline_acked && d.outbox.is_idle()) && link_alive {
            tokio::select! {
                event = link_rx.recv() => match event {
                    Some(event) => link_alive = d.on_link(event),
                    None => link_alive = false,
                },
                () = sleep_until(until) => break,
            }
            d.pump();
        }
        if !d.offline_acked {
            tracing::warn!("the broker did not confirm the offline status in time");
        }
    }
    // Whether a clean DISCONNECT is possible; taken before persist_all marks the outbox offline.
    let say_goodbye = d.outbox.is_connected() && link_alive;
    if let Err(e) = d.outbox.persist_all() {
        tracing::error!("offline queue: {e}");
    }
    if d.outbox.spooled() > 0 {
        tracing::info!(
            "{} undelivered results kept in {} for the next run",
            d.outbox.spooled(),
            config.queue.dir.display()
        );
    }
    if say_goodbye {
        let _ = d.client.try_disconnect();
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
    let cameras = d.take_cameras();
    let _ = tokio::task::spawn_blocking(move || drop(cameras)).await;
    let Dispatcher { engine, .. } = d;
    engine.stop().await;
    tracing::info!("stopped");
    Ok(())
}
