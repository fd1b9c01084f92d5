//! The daemon's core: every decision the daemon makes, and no I/O. It takes [`Event`]s (a
//! message, a finished batch, a decoded image, a tick, the connection going up or down, a stop)
//! and answers with [`Action`]s (publish, acknowledge, submit a batch, decode an image) that the
//! loop in [`crate::daemon`] carries out in order. Time comes in as `now`; cameras are read
//! through the mailboxes their threads fill. Unit tests drive it event by event.
//!
//! Every accepted request becomes a job with a [`JobId`] and a reply address, and is answered
//! exactly once (an error counts), when its job leaves [`Core::jobs`]. A request from the broker
//! is acknowledged only with (after) its answer, so one the core did not answer is the broker's
//! to deliver again.
//!
//! May not touch: sockets, files, threads, the clock. Those are the loop's.

mod adapters;
mod answers;
mod backlog;
mod cameras;
mod controls;
mod decodes;
mod events;
mod health;
mod http;
mod intake;
mod jobs_table;
mod records;
mod redelivery;
mod replies;
mod routing;
mod session;
#[cfg(test)]
mod tests;
mod vision;

use std::collections::BTreeMap;
use std::time::Instant;

use crate::config::{CaptionerConfig, HomeAssistantConfig};
use crate::daemon::jobs::{BatchKey, Done, Input, JobError, JobId};
use crate::daemon::metrics::Metrics;
use crate::daemon::scheduler::Priority;
use crate::models::status::ModelStatus;
use crate::mqtt::link::InMessage;
use crate::mqtt::topics::Topics;
use crate::wire::requests::Request;
use crate::wire::ErrorCode;

use answers::AnswerSpec;
pub use answers::Answered;
use backlog::Backlog;
pub use cameras::CameraView;
use cameras::Cameras;
use decodes::Decodes;
pub use events::{Action, Event, HealthInputs, OutboxFigures};
use intake::Intake;
use jobs_table::{Full, JobTable};
pub use records::CoreSetup;
use records::{JobKind, RequestJob};
use redelivery::{Redeliveries, Seen, REMEMBERED};
use routing::classifier_for;

/// Decoded broker requests (uploads past their decoding) that may wait unacknowledged for room
/// in the scheduler, at least.
const MIN_PARKED: usize = 128;
/// Payload bytes of broker requests held back while the queues are full, at least (see
/// [`backlog`]); beyond this, and 8 times the payload limit, requests are refused `overloaded`.
const MIN_BACKLOG_BYTES: usize = 64 << 20;

pub struct Core {
    topics: Topics,
    device_id: String,
    max_payload: usize,
    persistent_session: bool,
    /// Every job not answered yet, wherever it is (decoding, parked, queued, in the engine).
    jobs: JobTable<JobKind>,
    engine_alive: bool,
    decodes: Decodes,
    backlog: Backlog,
    redeliveries: Redeliveries,
    pub metrics: Metrics,
    classifiers: Vec<ModelStatus>,
    /// The update version serving each classifier (`None`: the configured adapter).
    adapter_versions: Vec<Option<u64>>,
    captioner: ModelStatus,
    /// The captioner's name in results: its directory's name.
    captioner_name: String,
    captioner_config: CaptionerConfig,
    templates: BTreeMap<String, String>,
    cameras: Cameras,
    homeassistant: HomeAssistantConfig,
    has_temperature: bool,
    /// The old per-entity discovery messages were moved to the device message (once a run).
    legacy_discovery_removed: bool,
    /// Adapter updates are on (announcements are listened to).
    updates: bool,
    /// The updater's last `P/adapters/state` report, sent again on each connect.
    last_adapter_state: Option<String>,
    connected: bool,
    subscribed: bool,
    connected_before: bool,
    ready_sent: bool,
    draining: bool,
    actions: Vec<Action>,
}

impl Core {
    pub fn new(setup: CoreSetup, now: Instant) -> Self {
        let captioner_name = setup.captioner.name.clone();
        let cameras = Cameras::new(setup.cameras, setup.captioner_config.prompt.clone(), now);
        if !setup.captioner.is_loaded() && cameras.periodic() > 0 {
            // Said once here; the cameras then simply publish no captions.
            tracing::warn!(
                "periodic captions of {} camera(s) are off until the captioner is installed (`landfall models pull`)",
                cameras.periodic()
            );
        }
        Self {
            topics: setup.topics,
            device_id: setup.device_id,
            max_payload: setup.max_payload,
            persistent_session: setup.persistent_session,
            // Broker requests that find the queues full wait there unacknowledged, so the
            // broker's in-flight window holds the rest of its backlog back.
            jobs: JobTable::new(
                setup.queue_capacity,
                setup.max_batch,
                setup.max_wait,
                setup.queue_capacity.max(MIN_PARKED),
                setup.engine_slots,
            ),
            engine_alive: true,
            decodes: Decodes::default(),
            backlog: Backlog::new(MIN_BACKLOG_BYTES.max(setup.max_payload.saturating_mul(8))),
            redeliveries: Redeliveries::new(REMEMBERED),
            metrics: Metrics::new(now),
            adapter_versions: setup.adapter_versions,
            classifiers: setup.classifiers,
            captioner: setup.captioner,
            captioner_name,
            captioner_config: setup.captioner_config,
            templates: setup.templates,
            cameras,
            homeassistant: setup.homeassistant,
            has_temperature: false,
            legacy_discovery_removed: false,
            updates: setup.updates,
            last_adapter_state: None,
            connected: false,
            subscribed: false,
            connected_before: false,
            ready_sent: false,
            draining: false,
            actions: Vec::new(),
        }
    }

    /// Takes the actions decided so far, in the order they must be carried out.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Every job answered (or, for broker requests at a stop, left to the broker).
    pub fn is_drained(&self) -> bool {
        self.jobs.is_empty() && self.backlog.is_empty()
    }

    /// When [`Event::Tick`] has work to do: the next batch or periodic caption due.
    pub fn next_deadline(&self) -> Option<Instant> {
        let batch = self.jobs.next_deadline();
        let caption = self
            .captions_on()
            .then(|| self.cameras.next_due())
            .flatten();
        match (batch, caption) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn captions_on(&self) -> bool {
        self.captioner.is_loaded() && !self.draining
    }

    pub fn handle(&mut self, event: Event, now: Instant) {
        match event {
            Event::Connected { session_present } => self.on_connected(session_present),
            Event::Disconnected => self.connected = false,
            Event::Subscribed { refused } => {
                if refused > 0 {
                    tracing::error!(
                        "the broker refused {refused} of the subscriptions {:?}; check its ACLs (and, for mqtt.fleet_group, that it supports shared subscriptions)",
                        self.subscriptions()
                    );
                }
                self.subscribed = true;
            }
            Event::Message(m) => self.on_message(m, now),
            Event::Decoded { job, image } => self.on_decoded(job, image, now),
            Event::BatchDone(done) => self.on_done(done, now),
            Event::EngineGone => self.on_engine_gone(now),
            Event::Tick => self.periodic_captions(now),
            Event::Health(inputs) => self.publish_health(inputs, now),
            Event::AdapterChange { classifier, change } => {
                self.on_adapter_change(classifier, change, now)
            }
            Event::AdapterState(report) => self.publish_adapter_state(report),
            Event::HttpRequest { request, body } => self.on_http_request(request, body, now),
            Event::HttpStatus {
                request,
                inputs,
                metrics,
            } => self.on_http_status(request, inputs, metrics, now),
            Event::Stop => {
                if !self.draining {
                    tracing::info!("stopping: answering the requests in hand, then going offline");
                    self.draining = true;
                    self.actions.push(Action::Stopping);
                    if self.persistent_session {
                        // Not taken yet: left unacknowledged for the broker's next delivery.
                        self.backlog.take_all();
                    }
                }
            }
        }
        self.dispatch(now);
    }

    fn on_message(&mut self, m: InMessage, now: Instant) {
        if self.topics.is_adapters_announce(&m.topic) {
            // A hint, never trusted: the check itself goes through TUF.
            if self.updates {
                self.actions.push(Action::CheckUpdates);
            }
            return self.ack_now(m.ack);
        }
        if let Some((camera, setting)) = self.topics.camera_control(&m.topic) {
            let camera = camera.to_string();
            self.on_camera_control(&camera, setting, &m.payload, now);
            return self.ack_now(m.ack);
        }
        let bytes = m.payload.len();
        let reader = intake::Reader {
            topics: &self.topics,
            max_payload: self.max_payload,
            redeliveries: &self.redeliveries,
            draining: self.draining,
            persistent_session: self.persistent_session,
        };
        match intake::read(m, &reader) {
            Intake::NotARequest {
                ack,
                homeassistant_online,
            } => {
                if homeassistant_online {
                    tracing::info!("Home Assistant is online; sending discovery again");
                    self.publish_discovery();
                }
                self.ack_now(ack);
            }
            Intake::Again {
                seen,
                fingerprint,
                ack,
            } => {
                self.metrics.redeliveries += 1;
                match seen {
                    Seen::Held => {
                        self.backlog.renew(fingerprint, ack);
                    }
                    // The earlier delivery's ack belonged to a connection that is gone.
                    Seen::Working(job) => {
                        if let Some(JobKind::Request(r)) =
                            self.jobs.get_mut(job).map(|j| &mut j.record)
                        {
                            r.ack = ack;
                        }
                    }
                    // Its answer went to disk when the connection dropped, or was delivered.
                    Seen::Answered => self.ack_now(ack),
                }
            }
            Intake::Leave => {}
            Intake::Refuse(job, e) => {
                self.metrics.requests += 1;
                self.send(job, Answered::Error(e));
            }
            Intake::Take(job, request) => {
                self.metrics.requests += 1;
                let full = !self.backlog.is_empty() || !self.jobs.has_room();
                if !(full && job.ack.is_some() && self.backlog.fits(bytes)) {
                    return self.accept(job, request, now);
                }
                // The broker holds it: wait for room rather than refuse it.
                if let Some(fp) = job.fingerprint {
                    self.redeliveries.record(fp, Seen::Held);
                }
                self.backlog.hold(job, request, bytes);
            }
        }
    }

    /// Everything the daemon subscribes to: requests, and the camera settings' commands.
    fn subscriptions(&self) -> Vec<String> {
        let mut subs = self.topics.subscriptions();
        if !self.cameras.is_empty() {
            subs.extend(self.topics.control_subscriptions());
        }
        if self.updates {
            subs.extend(self.topics.adapters_announce.iter().cloned());
        }
        subs
    }

    /// Takes held requests while the queues have room.
    fn take_backlog(&mut self, now: Instant) {
        while self.jobs.has_room() {
            let Some((job, request)) = self.backlog.next() else {
                return;
            };
            self.accept(job, request, now);
        }
    }

    /// Routes a parsed request to its job, or answers it with why not.
    fn accept(&mut self, mut job: RequestJob, request: Request, now: Instant) {
        match request {
            Request::Classify(r) => {
                match classifier_for(r.classifier.as_deref(), &self.classifiers) {
                    Ok(i) => {
                        job.spec = AnswerSpec::Classify { classifier: i };
                        let id = self.new_job(now, JobKind::Request(job));
                        let input = Input::Classify(r.text);
                        self.admit(BatchKey::Classify(i), Priority::Interactive, id, input);
                    }
                    Err((code, message)) => self.refuse(job, code, message),
                }
            }
            Request::Vision(r) => self.accept_vision(job, r, now),
        }
    }

    fn new_job(&mut self, now: Instant, kind: JobKind) -> JobId {
        let (fingerprint, held) = match &kind {
            JobKind::Request(r) => (r.fingerprint, r.ack.is_some()),
            JobKind::Caption { .. } | JobKind::Adapter { .. } => (None, false),
        };
        let id = self.jobs.create(kind, now, held);
        if let Some(fp) = fingerprint {
            self.redeliveries.record(fp, Seen::Working(id));
        }
        id
    }

    /// Queues a job for the engine. A broker request that finds the queue full waits, not
    /// acknowledged, while the broker holds back the rest; anything else is refused `overloaded`.
    fn admit(&mut self, key: BatchKey, priority: Priority, job: JobId, input: Input) {
        if let Err(Full(job)) = self.jobs.admit(key, priority, job, input) {
            self.metrics.overloaded += 1;
            self.fail_job(
                job,
                ErrorCode::Overloaded,
                "too many requests are waiting; send it again later",
            );
        }
    }

    /// Hands due batches to the engine while it has room; held requests then take the room.
    fn dispatch(&mut self, now: Instant) {
        self.submit_due(now);
        if !self.backlog.is_empty() && self.jobs.has_room() {
            self.take_backlog(now);
            self.submit_due(now);
        }
    }

    fn submit_due(&mut self, now: Instant) {
        for work in self.jobs.due_batches(now, self.draining) {
            if self.engine_alive {
                self.actions.push(Action::Submit(work));
                continue;
            }
            let batch = match &work {
                crate::daemon::jobs::Work::Classify { batch, .. }
                | crate::daemon::jobs::Work::Vision { batch, .. }
                | crate::daemon::jobs::Work::Adapter { batch, .. } => *batch,
            };
            for job in self.jobs.finished_batch(batch).unwrap_or_default() {
                let gone = JobError::Failed("the model engine stopped; restart the daemon".into());
                self.finish(job, Err(gone), now);
            }
        }
    }

    fn on_done(&mut self, done: Done, now: Instant) {
        let Some(ids) = self.jobs.finished_batch(done.batch) else {
            tracing::error!(
                "the engine finished batch {:?}, which it was not given",
                done.batch
            );
            return;
        };
        for (job, outcome) in done.outcomes {
            if ids.contains(&job) {
                self.finish(job, outcome, now);
            } else {
                tracing::error!("the engine answered {job:?}, which was not in its batch");
            }
        }
        // Anything the engine left out is still answered.
        for job in ids {
            if self.jobs.contains(job) {
                let missing = JobError::Failed("the engine gave no answer for this input".into());
                self.finish(job, Err(missing), now);
            }
        }
    }

    fn on_engine_gone(&mut self, now: Instant) {
        if !self.engine_alive {
            return;
        }
        tracing::error!("the engine thread is gone; answering its work with errors");
        self.engine_alive = false;
        for job in self.jobs.take_engine_jobs() {
            let gone = JobError::Failed("the model engine stopped; restart the daemon".into());
            self.finish(job, Err(gone), now);
        }
    }

    /// At the end of a stop that ran out of time: what was not answered gets its due. A broker
    /// request with a persistent session is left unacknowledged, so the broker delivers it
    /// again after the restart; anything else is answered `overloaded`.
    pub fn abandon_unfinished(&mut self) {
        self.decodes.clear();
        for (job, _) in self.backlog.take_all() {
            if !self.persistent_session {
                self.refuse(
                    job,
                    ErrorCode::Overloaded,
                    "this device stopped before running the request; send it again".into(),
                );
            }
        }
        for job in self.jobs.take_all() {
            if let JobKind::Request(r) = job.record {
                if self.persistent_session && r.ack.is_some() {
                    continue;
                }
                self.refuse(
                    r,
                    ErrorCode::Overloaded,
                    "this device stopped before running the request; send it again".into(),
                );
            }
        }
    }
}
