//! The HTTP API's side of the core: a request over HTTP is admitted like an MQTT one (same
//! routing, limits, scheduler queue and priority as interactive MQTT requests), only without a
//! broker ack: a full queue answers `overloaded` (HTTP 503) at once instead of waiting. Status
//! calls get the health report as of now, and for `/metrics` the figures only it shows.

use std::time::Instant;

use crate::daemon::jobs::ReplyTo;
use crate::http::prometheus::MetricsSnapshot;
use crate::http::HttpReply;
use crate::wire::requests::Request;
use crate::wire::{ErrorCode, Task};

use super::answers::AnswerSpec;
use super::events::{Action, HealthInputs};
use super::records::RequestJob;
use super::Core;

impl Core {
    pub(super) fn on_http_request(&mut self, request: u64, body: Request, now: Instant) {
        self.metrics.requests += 1;
        let task = match &body {
            Request::Classify(_) => Task::Classify,
            Request::Vision(v) => v.task,
        };
        let job = RequestJob {
            id: body.id().clone(),
            task,
            reply: ReplyTo::Http(request),
            ack: None,
            fingerprint: None,
            spec: AnswerSpec::Classify { classifier: 0 },
        };
        if self.draining {
            return self.refuse(
                job,
                ErrorCode::Overloaded,
                "this device is shutting down; send the request again".into(),
            );
        }
        self.accept(job, body, now);
    }

    pub(super) fn on_http_status(
        &mut self,
        request: u64,
        inputs: HealthInputs,
        metrics: bool,
        now: Instant,
    ) {
        let health = self.health_report(inputs, now);
        let reply = if metrics {
            HttpReply::Metrics(Box::new(MetricsSnapshot {
                health,
                errors: self.metrics.errors_by_code(),
                latency: self.metrics.histograms(),
            }))
        } else {
            HttpReply::Health(Box::new(health))
        };
        self.actions.push(Action::Respond { request, reply });
    }
}
