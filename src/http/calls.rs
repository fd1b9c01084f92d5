//! What the HTTP server asks of the daemon's loop and what comes back: a request (the same
//! [`Request`] an MQTT message becomes), or a status report (health, metrics). The loop answers
//! each call once, through its one-shot channel.

use tokio::sync::oneshot;

use crate::wire::health::Health;
use crate::wire::requests::Request;
use crate::wire::results::Answered;

use super::prometheus::MetricsSnapshot;

/// What an HTTP request needs from the daemon.
#[derive(Debug)]
pub enum Ask {
    /// A classify, caption or VQA request, admitted like an MQTT one.
    Request(Request),
    /// The health report, as `P/health` carries it.
    Health,
    /// The health report plus the figures only `/metrics` shows.
    Metrics,
}

/// One call to the loop, with the channel its reply goes back on.
#[derive(Debug)]
pub struct HttpCall {
    pub ask: Ask,
    pub reply: oneshot::Sender<HttpReply>,
}

/// The loop's reply to a call.
#[derive(Debug)]
pub enum HttpReply {
    Answer(Answered),
    Health(Box<Health>),
    Metrics(Box<MetricsSnapshot>),
}
