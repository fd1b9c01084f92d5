//! Recognizes requests the broker delivers a second time. MQTT QoS 1 is at-least-once: after a
//! reconnect the broker sends every request it holds unacknowledged again, with the DUP flag set.
//! Since requests are acknowledged only once answered, that includes requests still being worked
//! on and requests answered while the connection was down.
//!
//! A redelivery is a message with DUP set whose topic, payload, response topic and correlation
//! data match a request seen recently. Only DUP messages are ever matched, so a client that sends
//! the same request twice on purpose gets two answers, and a redelivery of a request never
//! received (its first delivery lost) is answered.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use crate::daemon::jobs::JobId;
use crate::mqtt::link::InMessage;

/// How many recent requests are remembered: far more than the broker can have in flight to us.
pub const REMEMBERED: usize = 8192;

/// What became of a request seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Waiting for room in the backlog (not a job yet).
    Held,
    /// Still being worked on, as this job.
    Working(JobId),
    /// Answered (the answer is queued or delivered).
    Answered,
}

/// A request's identity for matching redeliveries.
pub type Fingerprint = u64;

pub fn fingerprint(m: &InMessage) -> Fingerprint {
    let mut h = DefaultHasher::new();
    (
        &m.topic,
        &m.payload,
        m.response_topic.as_deref(),
        m.correlation_data.as_deref(),
    )
        .hash(&mut h);
    h.finish()
}

#[derive(Debug)]
pub struct Redeliveries {
    seen: HashMap<Fingerprint, Seen>,
    order: VecDeque<Fingerprint>,
    capacity: usize,
}

impl Redeliveries {
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: HashMap::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// What became of the request a DUP message repeats; `None` for a request never seen (or
    /// a message without DUP, which is always new).
    pub fn lookup(&self, dup: bool, fp: Fingerprint) -> Option<Seen> {
        if !dup {
            return None;
        }
        self.seen.get(&fp).copied()
    }

    /// Records what became of a request.
    pub fn record(&mut self, fp: Fingerprint, state: Seen) {
        if self.seen.insert(fp, state).is_some() {
            return;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(fp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dup_copy_of_a_seen_request_is_matched() {
        let mut r = Redeliveries::new(10);
        r.record(1, Seen::Working(JobId(7)));
        assert_eq!(r.lookup(true, 1), Some(Seen::Working(JobId(7))));
        // Sent twice on purpose: the copy without DUP is new.
        assert_eq!(r.lookup(false, 1), None);
        // First delivery lost: the DUP copy is new too.
        assert_eq!(r.lookup(true, 2), None);
        r.record(1, Seen::Answered);
        assert_eq!(r.lookup(true, 1), Some(Seen::Answered));
    }

    #[test]
    fn remembers_only_the_most_recent() {
        let mut r = Redeliveries::new(2);
        for fp in 1..=3 {
            r.record(fp, Seen::Answered);
        }
        assert_eq!(r.lookup(true, 1), None);
        assert_eq!(r.lookup(true, 3), Some(Seen::Answered));
    }

    #[test]
    fn reply_routing_is_part_of_a_request() {
        let m = |rt: Option<&str>| InMessage {
            topic: "t".into(),
            payload: b"a".to_vec(),
            response_topic: rt.map(String::from),
            correlation_data: None,
            dup: true,
            ack: None,
        };
        assert_ne!(fingerprint(&m(None)), fingerprint(&m(Some("r"))));
        assert_eq!(fingerprint(&m(None)), fingerprint(&m(None)));
    }
}
