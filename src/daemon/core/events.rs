//! What goes into the daemon's core and what comes out of it. The loop in [`crate::daemon`]
//! turns the outside world (the broker connection, the engine thread, decoding workers, timers,
//! signals) into [`Event`]s and carries out the [`Action`]s, in order.

use image::RgbImage;

use crate::daemon::jobs::{AdapterChange, Done, JobId, Swapped, Work};
use crate::health::{ProcessMemory, SystemFacts};
use crate::http::HttpReply;
use crate::mqtt::link::{Ack, InMessage};
use crate::mqtt::spool::OutMessage;
use crate::updates::UpdateError;
use crate::wire::requests::{Request, Upload};

#[derive(Debug)]
pub enum Event {
    /// The broker accepted the connection.
    Connected { session_present: bool },
    /// The connection dropped (the loop retries by itself).
    Disconnected,
    /// SUBACK: how many of the filters the broker refused.
    Subscribed { refused: usize },
    /// A message on one of the subscriptions.
    Message(InMessage),
    /// A decoding worker finished a request's image.
    Decoded {
        job: JobId,
        image: Result<RgbImage, String>,
    },
    /// The engine finished a batch.
    BatchDone(Done),
    /// The engine thread is gone: what it held will never be answered by it.
    EngineGone,
    /// Time passed: batches and captions may be due.
    Tick,
    /// Time for the health report; the loop read these figures.
    Health(HealthInputs),
    /// SIGTERM or SIGINT: answer what is in hand, take nothing new.
    Stop,
    /// The updater has an adapter for `classifier` to load, test and swap in.
    AdapterChange {
        classifier: String,
        change: AdapterChange,
    },
    /// The updater's report for `P/adapters/state` (JSON).
    AdapterState(String),
    /// A classify, caption or VQA request over HTTP, by the loop's number for it.
    HttpRequest { request: u64, body: Request },
    /// An HTTP request for the health report (`metrics`: with the `/metrics` figures); the loop
    /// read these figures.
    HttpStatus {
        request: u64,
        inputs: HealthInputs,
        metrics: bool,
    },
}

/// What the loop measured for a health report.
#[derive(Debug, Clone, Default)]
pub struct HealthInputs {
    /// Unix time, seconds.
    pub ts: u64,
    pub system: SystemFacts,
    pub memory: ProcessMemory,
    pub outbox: OutboxFigures,
}

/// The outbox's side of health.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxFigures {
    pub in_memory: usize,
    pub spooled: usize,
    pub delivered: u64,
    pub dropped: u64,
}

#[derive(Debug)]
pub enum Action {
    /// Queue a message; `ack` is the request it answers, acknowledged once it is safe.
    Publish {
        msg: OutMessage,
        ack: Option<Ack>,
    },
    /// Acknowledge a request now (a redelivery of one already answered and safe).
    Ack(Ack),
    Subscribe(Vec<String>),
    /// Hand a batch to the engine.
    Submit(Work),
    /// Decode a request's image off the loop.
    Decode {
        job: JobId,
        image: Upload,
    },
    /// Tell systemd the daemon is ready, with a status line.
    Ready(String),
    /// Tell systemd the daemon is stopping.
    Stopping,
    /// Answer an HTTP request, by the loop's number for it.
    Respond {
        request: u64,
        reply: HttpReply,
    },
    /// An announcement says the update repository changed: check it now.
    CheckUpdates,
    /// An adapter change the updater asked for is done (swapped in, or refused).
    AdapterDone {
        classifier: String,
        version: Option<u64>,
        result: Result<Swapped, UpdateError>,
    },
}
