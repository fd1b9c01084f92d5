//! Broker requests waiting for room: when the queues are full, a request the broker holds
//! unacknowledged waits here, parsed, instead of being refused, and is taken in arrival order as
//! room frees. Brokers do not all pace what they send by the in-flight window the daemon asks
//! for (mosquitto 2.0 sends subscribers everything at once), so this is what keeps a backlog from
//! being answered `overloaded`. Bounded by bytes, not count: a request weighs its payload.

use std::collections::VecDeque;

use crate::mqtt::link::Ack;
use crate::wire::requests::Request;

use super::records::RequestJob;
use super::redelivery::Fingerprint;

#[derive(Debug)]
struct Held {
    job: RequestJob,
    request: Request,
    bytes: usize,
}

#[derive(Debug)]
pub struct Backlog {
    queue: VecDeque<Held>,
    bytes: usize,
    budget: usize,
}

impl Backlog {
    /// `budget`: most payload bytes held at once.
    pub fn new(budget: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether a request of `bytes` payload fits the budget (the first always does).
    pub fn fits(&self, bytes: usize) -> bool {
        self.queue.is_empty() || self.bytes + bytes <= self.budget
    }

    /// Holds a request of `bytes` payload.
    pub fn hold(&mut self, job: RequestJob, request: Request, bytes: usize) {
        self.bytes += bytes;
        self.queue.push_back(Held {
            job,
            request,
            bytes,
        });
    }

    /// The oldest held request.
    pub fn next(&mut self) -> Option<(RequestJob, Request)> {
        let held = self.queue.pop_front()?;
        self.bytes -= held.bytes;
        Some((held.job, held.request))
    }

    /// A redelivery of a held request: it takes the new ack. `false` if none is held.
    pub fn renew(&mut self, fp: Fingerprint, ack: Option<Ack>) -> bool {
        match self
            .queue
            .iter_mut()
            .find(|h| h.job.fingerprint == Some(fp))
        {
            Some(held) => {
                held.job.ack = ack;
                true
            }
            None => false,
        }
    }

    /// Everything held, oldest first (a stop hands it back to the broker).
    pub fn take_all(&mut self) -> Vec<(RequestJob, Request)> {
        self.bytes = 0;
        self.queue.drain(..).map(|h| (h.job, h.request)).collect()
    }
}
