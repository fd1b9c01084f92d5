//! What leaves the core for a requester: a finished job's answer (or its camera's caption), an
//! error for a job that never reached the model, and acks. Every answer goes out through
//! [`Core::send`], which remembers it for redeliveries and pairs it with its request's ack.

use std::time::Instant;

use crate::daemon::jobs::{Answer, JobError, JobId, ReplyTo};
use crate::http::HttpReply;
use crate::mqtt::link::Ack;
use crate::wire::{ErrorCode, ErrorReply};

use super::answers::{answer, result_message, Answered};
use super::events::Action;
use super::records::{JobKind, RequestJob};
use super::redelivery::Seen;
use super::Core;

impl Core {
    /// A job's outcome: its answer to its requester, or its camera's caption.
    pub(super) fn finish(&mut self, id: JobId, outcome: Result<Answer, JobError>, now: Instant) {
        let Some(job) = self.jobs.take(id) else {
            return;
        };
        let latency_ms = now.saturating_duration_since(job.received).as_secs_f64() * 1000.0;
        match job.record {
            JobKind::Request(r) => {
                self.metrics.record_latency(r.task.as_str(), latency_ms);
                if let Err(JobError::Failed(why)) = &outcome {
                    tracing::error!("request {} failed in the model: {why}", r.id);
                }
                let answered = answer(
                    r.id.clone(),
                    r.spec.clone(),
                    outcome,
                    latency_ms,
                    &self.classifiers,
                    &self.captioner_name,
                );
                self.send(r, answered);
            }
            JobKind::Caption { camera, seq, ts } => {
                self.metrics.record_latency("camera_caption", latency_ms);
                self.cameras.release(camera);
                self.on_camera_caption(camera, seq, ts, latency_ms, outcome);
            }
            JobKind::Adapter {
                classifier,
                version,
            } => self.on_adapter_done(classifier, version, outcome),
        }
    }

    /// Answers a job that never reached the model.
    pub(super) fn fail_job(&mut self, id: JobId, code: ErrorCode, message: &str) {
        self.decodes.forget(id);
        let Some(job) = self.jobs.take(id) else {
            return;
        };
        match job.record {
            JobKind::Request(r) => self.refuse(r, code, message.to_string()),
            JobKind::Caption { camera, .. } => {
                tracing::debug!("caption of camera {camera} not run: {message}");
                self.cameras.release(camera);
            }
            JobKind::Adapter {
                classifier,
                version,
            } => {
                let e = JobError::Failed(message.to_string());
                self.on_adapter_done(classifier, version, Err(e));
            }
        }
    }

    pub(super) fn refuse(&mut self, job: RequestJob, code: ErrorCode, message: String) {
        let answered = Answered::Error(ErrorReply::new(job.id.clone(), code, message));
        self.send(job, answered);
    }

    /// Sends a request its answer, with its ack.
    pub(super) fn send(&mut self, job: RequestJob, answered: Answered) {
        if let Some(code) = answered.code() {
            self.metrics.record_error(code);
            tracing::debug!("answering {} with {code:?}", job.id);
        }
        if let Some(fp) = job.fingerprint {
            self.redeliveries.record(fp, Seen::Answered);
        }
        match job.reply {
            ReplyTo::Mqtt {
                topic,
                correlation_data,
            } => {
                // Not serializable (never for these types): the request stays unacknowledged
                // and comes back with the next connection.
                if let Some(msg) = result_message(&topic, correlation_data, &answered) {
                    self.actions.push(Action::Publish { msg, ack: job.ack });
                }
            }
            ReplyTo::Http(request) => self.actions.push(Action::Respond {
                request,
                reply: HttpReply::Answer(answered),
            }),
        }
    }

    /// Acknowledges a message that needs no answer.
    pub(super) fn ack_now(&mut self, ack: Option<Ack>) {
        if let Some(ack) = ack {
            self.actions.push(Action::Ack(ack));
        }
    }
}
