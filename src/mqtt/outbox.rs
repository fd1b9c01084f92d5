//! What has been published and what the broker has acknowledged.
//!
//! rumqttc hands out packet ids inside its event loop and, when a connection drops, either
//! retransmits un-acknowledged QoS 1 messages (session resumed) or silently drops them (new
//! session). So the daemon keeps its own books: a message is finished only when its PUBACK
//! arrives. The event loop reports `Outgoing::Publish(pkid)` in the order messages were handed
//! to it, which ties each packet id to a message; on a disconnect the link task takes back what
//! rumqttc still held (see [`super::link`]) and says how many not-yet-numbered messages that was,
//! and everything unacknowledged is sent again after the reconnect.
//!
//! Results wait in memory while the broker is reachable and on disk ([`Spool`]) while it is not;
//! once anything is on disk, new results queue behind it there, so they leave in order.
//!
//! A result may carry the [`Ack`] of the request it answers. The outbox hands that ack back
//! ([`Outbox::take_released`]) once the result is safe: acknowledged by the broker, or written
//! to disk. Only then is the request acknowledged, so at no moment is a request neither owed by
//! the broker nor answered on the daemon's side.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::link::Ack;
use super::spool::{OutMessage, Spool, SpoolError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Status or health: dropped rather than queued when the connection goes.
    Control,
    /// A result held in memory; `u64` orders it among other results.
    Memory(u64),
    /// A result on disk under this sequence number.
    Spooled(u64),
}

#[derive(Debug)]
struct Entry {
    msg: OutMessage,
    origin: Origin,
    /// The request this answers, acknowledged once the answer is safe (memory results only:
    /// a spooled one is safe already).
    ack: Option<Ack>,
}

/// What happened to a message the broker acknowledged.
#[derive(Debug, PartialEq, Eq)]
pub struct Acked {
    pub msg: OutMessage,
}

#[derive(Debug)]
pub struct Outbox {
    control: VecDeque<OutMessage>,
    memory: VecDeque<(u64, OutMessage, Option<Ack>)>,
    spool: Spool,
    /// Spooled messages handed to the link and not yet acknowledged.
    spool_in_flight: BTreeSet<u64>,
    /// Handed to the link, no packet id seen yet, in hand-over order.
    unassigned: VecDeque<Entry>,
    /// By packet id, waiting for PUBACK.
    in_flight: HashMap<u16, Entry>,
    connected: bool,
    /// Most messages handed over and unacknowledged at once.
    window: usize,
    /// Beyond this many results in memory, they move to disk.
    memory_limit: usize,
    next_order: u64,
    /// Results acknowledged since start.
    pub delivered: u64,
    /// Results lost to a full or broken disk queue.
    pub dropped: u64,
    /// Acks of requests whose answers became safe, not yet taken.
    released: Vec<Ack>,
}

impl Outbox {
    pub fn new(spool: Spool, window: usize, memory_limit: usize) -> Self {
        Self {
            control: VecDeque::new(),
            memory: VecDeque::new(),
            spool,
            spool_in_flight: BTreeSet::new(),
            unassigned: VecDeque::new(),
            in_flight: HashMap::new(),
            connected: false,
            window: window.max(1),
            memory_limit: memory_limit.max(1),
            next_order: 0,
            delivered: 0,
            dropped: 0,
            released: Vec::new(),
        }
    }

    /// The acks of requests whose answers are now safe (see the module doc).
    pub fn take_released(&mut self) -> Vec<Ack> {
        std::mem::take(&mut self.released)
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Results in memory: waiting, handed over or unacknowledged.
    pub fn in_memory(&self) -> usize {
        self.memory.len() + self.unassigned.len() + self.in_flight.len()
    }

    pub fn spooled(&self) -> usize {
        self.spool.len()
    }

    /// Nothing waits to be sent or acknowledged (results on disk count as waiting).
    pub fn is_idle(&self) -> bool {
        self.control.is_empty()
            && self.memory.is_empty()
            && self.spool.is_empty()
            && self.unassigned.is_empty()
            && self.in_flight.is_empty()
    }

    /// Queues a message. Status and health are dropped while disconnected. `ack` is the request
    /// a result answers (see the module doc).
    pub fn push(&mut self, msg: OutMessage, ack: Option<Ack>) -> Result<(), SpoolError> {
        if !msg.durable {
            if self.connected {
                self.control.push_back(msg);
            }
            self.released.extend(ack);
            return Ok(());
        }
        if !self.connected || !self.spool.is_empty() {
            return self.spool_one(&msg, ack);
        }
        self.memory.push_back((self.next_order, msg, ack));
        self.next_order += 1;
        if self.memory.len() > self.memory_limit {
            self.spill_memory()?;
        }
        Ok(())
    }

    /// Writes a result to disk; its request's ack is released either way: on disk it is safe,
    /// and a result the disk cannot take is lost whether or not the request is acknowledged
    /// (counted in `dropped`, and the error reported).
    fn spool_one(&mut self, msg: &OutMessage, ack: Option<Ack>) -> Result<(), SpoolError> {
        let dropped = self.spool.push(msg);
        self.released.extend(ack);
        match dropped {
            Ok(n) => {
                self.dropped += n as u64;
                Ok(())
            }
            Err(e) => {
                self.dropped += 1;
                Err(e)
            }
        }
    }

    /// Moves the results waiting in memory to disk, keeping their order.
    fn spill_memory(&mut self) -> Result<(), SpoolError> {
        let mut first_error = None;
        while let Some((_, msg, ack)) = self.memory.pop_front() {
            if let Err(e) = self.spool_one(&msg, ack) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The next message to hand to the link, recorded as handed over; `None` when disconnected,
    /// when the window is full or when nothing waits.
    pub fn next_to_send(&mut self) -> Result<Option<OutMessage>, SpoolError> {
        if !self.connected || self.unassigned.len() + self.in_flight.len() >= self.window {
            return Ok(None);
        }
        let unsent_spooled = self
            .spool
            .seqs()
            .find(|s| !self.spool_in_flight.contains(s));
        let entry = if let Some(msg) = self.control.pop_front() {
            Entry {
                msg,
                origin: Origin::Control,
                ack: None,
            }
        } else if let Some(seq) = unsent_spooled {
            let msg = match self.spool.read(seq) {
                Ok(msg) => msg,
                Err(e) => {
                    // Unreadable now is unreadable next time: give up on it rather than retry.
                    let _ = self.spool.remove(seq);
                    self.dropped += 1;
                    return Err(e);
                }
            };
            self.spool_in_flight.insert(seq);
            Entry {
                msg,
                origin: Origin::Spooled(seq),
                ack: None,
            }
        } else if let Some((order, msg, ack)) = self.memory.pop_front() {
            Entry {
                msg,
                origin: Origin::Memory(order),
                ack,
            }
        } else {
            return Ok(None);
        };
        let msg = entry.msg.clone();
        self.unassigned.push_back(entry);
        Ok(Some(msg))
    }

    /// The link refused the message [`Self::next_to_send`] just returned; it goes back to the front.
    pub fn unsend(&mut self) {
        if let Some(entry) = self.unassigned.pop_back() {
            self.restore(entry);
        }
    }

    fn restore(&mut self, entry: Entry) {
        match entry.origin {
            Origin::Control => self.control.push_front(entry.msg),
            Origin::Memory(order) => self.memory.push_front((order, entry.msg, entry.ack)),
            Origin::Spooled(seq) => {
                self.spool_in_flight.remove(&seq);
            }
        }
    }

    /// The event loop sent a publish with this packet id.
    pub fn on_outgoing(&mut self, pkid: u16) {
        // 0 is QoS 0 (never ours); a known id is rumqttc retransmitting on a resumed session.
        if pkid == 0 || self.in_flight.contains_key(&pkid) {
            return;
        }
        if let Some(entry) = self.unassigned.pop_front() {
            self.in_flight.insert(pkid, entry);
        }
    }

    /// The broker acknowledged a packet id; returns the message it finished.
    pub fn on_ack(&mut self, pkid: u16) -> Result<Option<Acked>, SpoolError> {
        let Some(entry) = self.in_flight.remove(&pkid) else {
            return Ok(None);
        };
        if let Origin::Spooled(seq) = entry.origin {
            self.spool_in_flight.remove(&seq);
            self.spool.remove(seq)?;
        }
        if entry.msg.durable {
            self.delivered += 1;
        }
        self.released.extend(entry.ack);
        Ok(Some(Acked { msg: entry.msg }))
    }

    pub fn on_connect(&mut self) {
        self.connected = true;
    }

    /// The connection dropped. Every unacknowledged message, and the first `taken` handed-over
    /// ones that the link took back from rumqttc, will be sent again; results go to disk.
    pub fn on_disconnect(&mut self, taken: usize) -> Result<(), SpoolError> {
        self.connected = false;
        self.control.clear();
        let mut back: Vec<Entry> = self.in_flight.drain().map(|(_, e)| e).collect();
        let taken = taken.min(self.unassigned.len());
        back.extend(self.unassigned.drain(..taken));
        let mut memory: Vec<(u64, OutMessage, Option<Ack>)> = self.memory.drain(..).collect();
        for entry in back {
            match entry.origin {
                Origin::Control => {}
                Origin::Memory(order) => memory.push((order, entry.msg, entry.ack)),
                Origin::Spooled(seq) => {
                    self.spool_in_flight.remove(&seq);
                }
            }
        }
        memory.sort_by_key(|(order, _, _)| *order);
        self.memory = memory.into();
        self.spill_memory()
    }

    /// At shutdown: everything not acknowledged goes to disk for the next run.
    pub fn persist_all(&mut self) -> Result<(), SpoolError> {
        let taken = self.unassigned.len();
        self.on_disconnect(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(n: u32) -> OutMessage {
        OutMessage {
            topic: "r".into(),
            payload: n.to_string(),
            retain: false,
            correlation_data: None,
            durable: true,
        }
    }

    fn outbox(window: usize) -> (Outbox, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 100).unwrap();
        (Outbox::new(spool, window, 1000), dir)
    }

    fn send_all(o: &mut Outbox) -> Vec<String> {
        std::iter::from_fn(|| o.next_to_send().unwrap())
            .map(|m| m.payload)
            .collect()
    }

    #[test]
    fn acks_finish_messages_by_packet_id() {
        let (mut o, _d) = outbox(10);
        o.on_connect();
        o.push(result(1), None).unwrap();
        o.push(result(2), None).unwrap();
        assert_eq!(send_all(&mut o), vec!["1", "2"]);
        o.on_outgoing(7);
        o.on_outgoing(8);
        assert_eq!(o.on_ack(8).unwrap().unwrap().msg, result(2));
        assert_eq!(o.on_ack(8).unwrap(), None);
        assert_eq!(o.on_ack(7).unwrap().unwrap().msg, result(1));
        assert!(o.is_idle());
        assert_eq!(o.delivered, 2);
    }

    #[test]
    fn the_window_limits_what_is_handed_over() {
        let (mut o, _d) = outbox(2);
        o.on_connect();
        for n in 0..4 {
            o.push(result(n), None).unwrap();
        }
        assert_eq!(send_all(&mut o), vec!["0", "1"]);
        o.on_outgoing(1);
        o.on_ack(1).unwrap();
        assert_eq!(send_all(&mut o), vec!["2"]);
    }

    #[test]
    fn status_goes_first_and_is_never_queued_offline() {
        let (mut o, _d) = outbox(10);
        let mut status = result(0);
        status.durable = false;
        o.push(status.clone(), None).unwrap();
        assert!(o.is_idle());
        o.on_connect();
        o.push(result(1), None).unwrap();
        o.push(status, None).unwrap();
        assert_eq!(send_all(&mut o), vec!["0", "1"]);
    }

    #[test]
    fn unacknowledged_results_survive_a_disconnect_in_order() {
        let (mut o, _d) = outbox(10);
        o.on_connect();
        for n in 1..=4 {
            o.push(result(n), None).unwrap();
        }
        assert_eq!(send_all(&mut o), vec!["1", "2", "3", "4"]);
        o.on_outgoing(1);
        o.on_outgoing(2);
        o.on_ack(1).unwrap();
        // 3 was taken back from the event loop; 4 is still in its channel and will go out.
        o.on_disconnect(1).unwrap();
        o.push(result(5), None).unwrap();
        assert_eq!(o.spooled(), 3);
        assert_eq!(o.next_to_send().unwrap(), None);
        o.on_connect();
        o.on_outgoing(1); // 4 leaves the channel in the new session
        assert_eq!(send_all(&mut o), vec!["2", "3", "5"]);
        for pkid in 2..=4 {
            o.on_outgoing(pkid);
        }
        for pkid in 1..=4 {
            assert!(o.on_ack(pkid).unwrap().is_some());
        }
        assert!(o.is_idle());
        assert_eq!(o.delivered, 5);
    }

    #[test]
    fn while_anything_is_on_disk_new_results_queue_behind_it() {
        let (mut o, _d) = outbox(1);
        o.push(result(1), None).unwrap();
        o.on_connect();
        o.push(result(2), None).unwrap();
        let mut got = Vec::new();
        for pkid in 1..=2 {
            got.extend(send_all(&mut o));
            o.on_outgoing(pkid);
            o.on_ack(pkid).unwrap();
        }
        assert_eq!(got, vec!["1", "2"]);
        assert!(o.is_idle());
    }

    #[test]
    fn a_resumed_session_retransmission_is_not_a_new_message() {
        let (mut o, _d) = outbox(10);
        o.on_connect();
        o.push(result(1), None).unwrap();
        o.push(result(2), None).unwrap();
        send_all(&mut o);
        o.on_outgoing(5);
        o.on_outgoing(5);
        o.on_outgoing(6);
        assert_eq!(o.on_ack(6).unwrap().unwrap().msg, result(2));
    }

    fn ack(pkid: u16) -> Option<Ack> {
        Some(Ack { epoch: 1, pkid })
    }

    #[test]
    fn a_request_is_acked_only_once_its_answer_is_safe() {
        let (mut o, _d) = outbox(10);
        o.on_connect();
        o.push(result(1), ack(101)).unwrap();
        o.push(result(2), ack(102)).unwrap();
        assert_eq!(send_all(&mut o), vec!["1", "2"]);
        assert!(
            o.take_released().is_empty(),
            "nothing is safe before the broker has it"
        );
        o.on_outgoing(7);
        o.on_outgoing(8);
        o.on_ack(8).unwrap();
        assert_eq!(o.take_released(), vec![ack(102).unwrap()]);
        // The connection drops before 1 is acknowledged: it goes to disk, and is safe there.
        o.on_disconnect(0).unwrap();
        assert_eq!(o.take_released(), vec![ack(101).unwrap()]);
        // While disconnected, a new result is written to disk at once.
        o.push(result(3), ack(103)).unwrap();
        assert_eq!(o.take_released(), vec![ack(103).unwrap()]);
        assert_eq!(o.spooled(), 2);
    }

    #[test]
    fn persist_all_keeps_everything_for_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::new(Spool::open(dir.path(), 100).unwrap(), 10, 1000);
        o.on_connect();
        for n in 1..=3 {
            o.push(result(n), None).unwrap();
        }
        send_all(&mut o);
        o.on_outgoing(1);
        o.persist_all().unwrap();
        drop(o);
        let mut o = Outbox::new(Spool::open(dir.path(), 100).unwrap(), 10, 1000);
        o.on_connect();
        assert_eq!(send_all(&mut o), vec!["1", "2", "3"]);
    }
}
