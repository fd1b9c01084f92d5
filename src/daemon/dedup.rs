//! Recognizes requests the broker delivers a second time. MQTT QoS 1 is at-least-once: a broker
//! that restarts, or a connection that drops before the broker saw our PUBACK, makes the broker
//! send the same request again with the DUP flag set. Answering it again would double the answer.
//!
//! A redelivery is a message with DUP set whose topic, payload, response topic and correlation
//! data match a request seen recently. Only DUP messages are ever skipped, so a client that sends
//! the same request twice on purpose gets two answers, and a redelivery of a request we never
//! received (its first delivery lost) is answered.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};

/// How many recent requests are remembered: more than the broker can have in flight to us.
pub const REMEMBERED: usize = 8192;

#[derive(Debug)]
pub struct Redeliveries {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl Redeliveries {
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: HashSet::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// Records a request; `true` when it is a redelivery of one already taken (skip it).
    pub fn is_redelivery(
        &mut self,
        dup: bool,
        topic: &str,
        payload: &[u8],
        response_topic: Option<&str>,
        correlation_data: Option<&[u8]>,
    ) -> bool {
        let mut h = DefaultHasher::new();
        (topic, payload, response_topic, correlation_data).hash(&mut h);
        let fingerprint = h.finish();
        if self.seen.contains(&fingerprint) {
            return dup;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(fingerprint);
        self.order.push_back(fingerprint);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dup_copy_of_a_seen_request_is_a_redelivery() {
        let mut r = Redeliveries::new(10);
        assert!(!r.is_redelivery(false, "t", b"a", None, None));
        assert!(r.is_redelivery(true, "t", b"a", None, None));
        // Sent twice on purpose: both answered.
        assert!(!r.is_redelivery(false, "t", b"a", None, None));
        // First delivery lost: the DUP copy is answered.
        assert!(!r.is_redelivery(true, "t", b"b", None, None));
        // Different reply routing is a different request.
        assert!(!r.is_redelivery(true, "t", b"a", Some("r"), None));
        assert!(!r.is_redelivery(true, "t", b"a", None, Some(b"c")));
    }

    #[test]
    fn remembers_only_the_most_recent() {
        let mut r = Redeliveries::new(2);
        r.is_redelivery(false, "t", b"1", None, None);
        r.is_redelivery(false, "t", b"2", None, None);
        r.is_redelivery(false, "t", b"3", None, None);
        assert!(!r.is_redelivery(true, "t", b"1", None, None));
        assert!(r.is_redelivery(true, "t", b"3", None, None));
    }
}
