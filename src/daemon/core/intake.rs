//! What a message on a subscribed topic is: a request to take (parsed, with its reply address
//! and ack), one to refuse at once, a redelivery, a request left for the broker while stopping,
//! or not a request at all. A pure reading of the message and the core's state; the core acts.

use crate::daemon::jobs::ReplyTo;
use crate::mqtt::link::{Ack, InMessage};
use crate::mqtt::topics::Topics;
use crate::wire::requests::{parse_request, Request};
use crate::wire::{ErrorCode, ErrorReply, RequestId, ONLINE};

use super::answers::AnswerSpec;
use super::records::RequestJob;
use super::redelivery::{fingerprint, Fingerprint, Redeliveries, Seen};

#[derive(Debug)]
pub enum Intake {
    /// Not a request: acknowledge it. `homeassistant_online`: Home Assistant just started, so
    /// discovery is sent again.
    NotARequest {
        ack: Option<Ack>,
        homeassistant_online: bool,
    },
    /// A DUP copy of a request seen before.
    Again {
        seen: Seen,
        fingerprint: Fingerprint,
        ack: Option<Ack>,
    },
    /// Stopping with a persistent session: neither answered nor acknowledged, the broker keeps
    /// it for the next run.
    Leave,
    /// Answered at once with this error.
    Refuse(RequestJob, ErrorReply),
    /// A request to route to its model.
    Take(RequestJob, Request),
}

/// What reading a message depends on.
pub struct Reader<'a> {
    pub topics: &'a Topics,
    pub max_payload: usize,
    pub redeliveries: &'a Redeliveries,
    pub draining: bool,
    pub persistent_session: bool,
}

pub fn read(m: InMessage, r: &Reader) -> Intake {
    if r.topics.homeassistant_status.as_deref() == Some(m.topic.as_str()) {
        return Intake::NotARequest {
            ack: m.ack,
            homeassistant_online: m.payload == ONLINE.as_bytes(),
        };
    }
    let Some(task) = r.topics.task_of(&m.topic) else {
        tracing::debug!("ignoring a message on {}", m.topic);
        return Intake::NotARequest {
            ack: m.ack,
            homeassistant_online: false,
        };
    };
    let fp = fingerprint(&m);
    if let Some(seen) = r.redeliveries.lookup(m.dup, fp) {
        return Intake::Again {
            seen,
            fingerprint: fp,
            ack: m.ack,
        };
    }
    if r.draining && r.persistent_session && m.ack.is_some() {
        return Intake::Leave;
    }
    let mut job = RequestJob {
        id: RequestId::null(),
        task,
        reply: ReplyTo::Mqtt {
            topic: r.topics.result_topic(task).to_string(),
            correlation_data: m.correlation_data,
        },
        ack: m.ack,
        fingerprint: Some(fp),
        spec: AnswerSpec::Classify { classifier: 0 },
    };
    if let Some(topic) = m.response_topic {
        if topic.is_empty() || topic.contains(['+', '#', '\0']) {
            let message = format!("the Response Topic {topic:?} is not a topic one can publish to");
            let e = ErrorReply::new(RequestId::null(), ErrorCode::InvalidField, message);
            return Intake::Refuse(job, e);
        }
        if let ReplyTo::Mqtt { topic: t, .. } = &mut job.reply {
            *t = topic;
        }
    }
    let request = match parse_request(&m.payload, r.max_payload, task) {
        Ok(request) => request,
        Err(e) => return Intake::Refuse(job, e),
    };
    job.id = request.id().clone();
    if r.draining {
        let e = ErrorReply::new(
            job.id.clone(),
            ErrorCode::Overloaded,
            "this device is shutting down; send the request again",
        );
        return Intake::Refuse(job, e);
    }
    Intake::Take(job, request)
}
