//! The connection to the broker: one task owns the rumqttc event loop and does nothing but poll
//! it, turning what happens into [`LinkEvent`]s; the daemon talks back through [`Client`], whose
//! calls never wait. Both protocol versions (3.1.1 and 5) look the same from outside.
//!
//! On a connection error the task takes back what rumqttc would otherwise retransmit or drop
//! (its pending list and collision slot), so [`super::outbox::Outbox`] alone decides what to send
//! again, then waits a backed-off, jittered delay before the next attempt.
//!
//! Requests are acknowledged by hand (rumqttc's manual acks): the daemon sends a request's PUBACK
//! only once the request's answer is safe (see [`Ack`]), so a request the daemon took but did not
//! answer before a stop or a crash is delivered again by the broker instead of being lost, and
//! the broker's backlog reaches the daemon no faster than its in-flight window allows.

use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::{QoS, Transport};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::spool::OutMessage;
use super::MqttError;
use crate::config::{MqttConfig, Protocol};
use crate::util::backoff::Backoff;

/// Largest packet the daemon reads. Requests above `max_payload_bytes` but below this are
/// answered `payload_too_large`; MQTT 5 brokers drop bigger ones instead of sending them.
const READ_LIMIT: usize = 64 << 20;
/// Requests the daemon may queue for the event loop; more than the outbox window plus the
/// subscribe and disconnect requests, so `try_*` calls do not fail on a full channel.
const REQUEST_CHANNEL: usize = 512;
/// Requests the broker may have in flight to us (MQTT 5's Receive Maximum; for 3.1.1 the broker's
/// own in-flight limit plays this part). Since requests are acknowledged only once answered, this
/// is also how many the broker hands over before it waits: enough for several full batches.
const RECEIVE_MAXIMUM: u16 = 64;
/// A connection that lasted this long resets the reconnect backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// The acknowledgement a QoS 1 request is owed: its packet id on the connection it came in on.
/// An ack is worth sending only on that connection ([`Self::epoch`] counts connections); after a
/// reconnect the broker delivers unacknowledged requests again, with new acks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ack {
    pub epoch: u64,
    pub pkid: u16,
}

/// A message that arrived on a subscription.
#[derive(Debug, Clone)]
pub struct InMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    /// MQTT 5 Response Topic: where the answer goes instead of the usual result topic.
    pub response_topic: Option<String>,
    pub correlation_data: Option<Vec<u8>>,
    /// The broker's DUP flag: it may have delivered this message before (a redelivery after a
    /// reconnect or a broker restart).
    pub dup: bool,
    /// What to acknowledge once the request is answered (`None` for QoS 0).
    pub ack: Option<Ack>,
}

#[derive(Debug)]
pub enum LinkEvent {
    /// CONNACK; `epoch` numbers this connection (from 1).
    Connected {
        session_present: bool,
        epoch: u64,
    },
    Message(InMessage),
    /// A QoS 1 publish left with this packet id (see [`super::outbox`]).
    Sent(u16),
    /// PUBACK; `refused` carries an MQTT 5 reason the broker gave for not taking it.
    Acked {
        pkid: u16,
        refused: Option<String>,
    },
    /// SUBACK; the filters the broker refused.
    Subscribed {
        refused: usize,
    },
    /// The connection dropped; `taken` handed-over messages were taken back un-numbered.
    Disconnected {
        reason: String,
        taken: usize,
    },
    /// The event loop finished after a clean DISCONNECT.
    Closed,
}

/// The daemon's side of the connection.
#[derive(Clone)]
pub enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl Client {
    /// Hands a QoS 1 message to the event loop without waiting.
    pub fn try_publish(&self, msg: &OutMessage) -> Result<(), MqttError> {
        let payload = msg.payload.clone().into_bytes();
        match self {
            Self::V311(c) => c.try_publish(&msg.topic, QoS::AtLeastOnce, msg.retain, payload),
            Self::V5(c) => {
                let props = p5::PublishProperties {
                    correlation_data: msg.correlation_data.clone().map(Into::into),
                    // Says "UTF-8 text": every payload the daemon sends is.
                    payload_format_indicator: Some(1),
                    ..Default::default()
                };
                return c
                    .try_publish_with_properties(
                        &msg.topic,
                        QoS5::AtLeastOnce,
                        msg.retain,
                        payload,
                        props,
                    )
                    .map_err(|e| MqttError::Request(e.to_string()));
            }
        }
        .map_err(|e| MqttError::Request(e.to_string()))
    }

    /// Acknowledges a QoS 1 request without waiting.
    pub fn try_ack(&self, ack: Ack) -> Result<(), MqttError> {
        match self {
            Self::V311(c) => {
                let mut p = rumqttc::Publish::new("", QoS::AtLeastOnce, Vec::new());
                p.pkid = ack.pkid;
                c.try_ack(&p).map_err(|e| MqttError::Request(e.to_string()))
            }
            Self::V5(c) => {
                let mut p = p5::Publish::new("", QoS5::AtLeastOnce, Vec::new(), None);
                p.pkid = ack.pkid;
                c.try_ack(&p).map_err(|e| MqttError::Request(e.to_string()))
            }
        }
    }

    pub fn try_subscribe(&self, filters: &[String]) -> Result<(), MqttError> {
        match self {
            Self::V311(c) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)),
                )
                .map_err(|e| MqttError::Request(e.to_string())),
            Self::V5(c) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|f| p5::Filter::new(f.clone(), QoS5::AtLeastOnce)),
                )
                .map_err(|e| MqttError::Request(e.to_string())),
        }
    }

    pub fn try_disconnect(&self) -> Result<(), MqttError> {
        match self {
            Self::V311(c) => c
                .try_disconnect()
                .map_err(|e| MqttError::Request(e.to_string())),
            Self::V5(c) => c
                .try_disconnect()
                .map_err(|e| MqttError::Request(e.to_string())),
        }
    }
}

/// Connects (in the background) and returns the client, the event stream and the polling task.
/// The Last Will marks `will_topic` `offline` (retained) if the daemon vanishes.
pub fn start(
    cfg: &MqttConfig,
    will_topic: &str,
) -> Result<(Client, mpsc::UnboundedReceiver<LinkEvent>, JoinHandle<()>), MqttError> {
    let transport = match &cfg.tls {
        None => Transport::Tcp,
        Some(tls) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|source| MqttError::Tls {
                    path: p.to_path_buf(),
                    source,
                })
            };
            let client_auth = match &tls.client_auth {
                Some((cert, key)) => Some((read(cert)?, read(key)?)),
                None => None,
            };
            Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
                ca: read(&tls.ca_file)?,
                alpn: None,
                client_auth,
            })
        }
    };
    let clean = cfg.session_expiry.is_zero();
    let read_limit = READ_LIMIT.max(cfg.max_payload_bytes.get().saturating_mul(2));
    // An unbounded channel: the polling task must never wait on the daemon, or the daemon
    // waiting on the event loop (for a full request channel) could deadlock it. What flows
    // here is bounded by the broker's flow control and the outbox window.
    let (tx, rx) = mpsc::unbounded_channel();
    let offline = crate::wire::OFFLINE;
    match cfg.protocol {
        Protocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port.get());
            o.set_keep_alive(cfg.keep_alive)
                .set_manual_acks(true)
                .set_clean_session(clean)
                .set_max_packet_size(read_limit, read_limit)
                .set_request_channel_capacity(REQUEST_CHANNEL)
                .set_transport(transport)
                .set_last_will(rumqttc::LastWill::new(
                    will_topic,
                    offline,
                    QoS::AtLeastOnce,
                    true,
                ));
            if let Some(user) = &cfg.username {
                o.set_credentials(user, cfg.password.clone().unwrap_or_default());
            }
            let (client, mut eventloop) = rumqttc::AsyncClient::new(o, REQUEST_CHANNEL);
            eventloop.network_options = network_options();
            let task = tokio::spawn(drive(V311Loop(eventloop), tx));
            Ok((Client::V311(client), rx, task))
        }
        Protocol::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port.get());
            o.set_keep_alive(cfg.keep_alive)
                .set_manual_acks(true)
                .set_clean_start(clean)
                .set_max_packet_size(Some(u32::try_from(read_limit).unwrap_or(u32::MAX)))
                .set_request_channel_capacity(REQUEST_CHANNEL)
                .set_receive_maximum(Some(RECEIVE_MAXIMUM))
                .set_transport(transport)
                .set_last_will(p5::LastWill::new(
                    will_topic,
                    offline,
                    QoS5::AtLeastOnce,
                    true,
                    None,
                ));
            if !clean {
                // Validation keeps this below u32::MAX seconds.
                let secs = u32::try_from(cfg.session_expiry.as_secs()).unwrap_or(u32::MAX);
                o.set_session_expiry_interval(Some(secs));
            }
            if let Some(user) = &cfg.username {
                o.set_credentials(user, cfg.password.clone().unwrap_or_default());
            }
            o.set_network_options(network_options());
            let (client, eventloop) = rumqttc::v5::AsyncClient::new(o, REQUEST_CHANNEL);
            let task = tokio::spawn(drive(V5Loop(eventloop), tx));
            Ok((Client::V5(client), rx, task))
        }
    }
}

/// TCP_NODELAY: an answer goes out as soon as it is written. With Nagle's algorithm it waited
/// behind the PUBACK for its request until the broker's delayed ACK (about 40 ms on Linux),
/// measured by `benches/daemon_overhead.rs`.
fn network_options() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

/// One protocol version's event loop, seen as [`LinkEvent`]s.
trait Poller: Send {
    /// The next event worth reporting (`Ok(None)`: nothing to report), or why the connection
    /// failed.
    fn next(
        &mut self,
        epoch: u64,
    ) -> impl std::future::Future<Output = Result<Option<LinkEvent>, String>> + Send;
    /// After a failure: the events rumqttc buffered, and how many un-numbered publishes it held
    /// (taken out, so it neither retransmits nor silently drops them).
    fn take_back(&mut self, epoch: u64) -> (Vec<LinkEvent>, usize);
}

async fn drive<L: Poller>(mut lp: L, tx: mpsc::UnboundedSender<LinkEvent>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(15));
    let mut connected_at: Option<Instant> = None;
    // Counts CONNACKs; messages carry the count of the connection they came in on.
    let mut epoch = 0u64;
    loop {
        let step = tokio::select! {
            step = lp.next(epoch + 1) => step,
            () = tx.closed() => return,
        };
        match step {
            Ok(None) => {}
            Ok(Some(LinkEvent::Closed)) => {
                let _ = tx.send(LinkEvent::Closed);
                return;
            }
            Ok(Some(event)) => {
                if matches!(event, LinkEvent::Connected { .. }) {
                    connected_at = Some(Instant::now());
                    epoch += 1;
                }
                if tx.send(event).is_err() {
                    return;
                }
            }
            Err(reason) => {
                let (events, taken) = lp.take_back(epoch);
                for event in events {
                    let _ = tx.send(event);
                }
                let _ = tx.send(LinkEvent::Disconnected { reason, taken });
                if connected_at
                    .take()
                    .is_some_and(|t| t.elapsed() >= STABLE_AFTER)
                {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = tx.closed() => return,
                }
            }
        }
    }
}

struct V311Loop(rumqttc::EventLoop);

/// `epoch`: the number of the connection the event belongs to (a CONNACK starts the next one).
fn convert_v311(event: rumqttc::Event, epoch: u64) -> Option<LinkEvent> {
    use rumqttc::{Event, Outgoing, Packet};
    Some(match event {
        Event::Incoming(Packet::ConnAck(c)) => LinkEvent::Connected {
            session_present: c.session_present,
            epoch,
        },
        Event::Incoming(Packet::Publish(p)) => LinkEvent::Message(InMessage {
            ack: (p.qos != QoS::AtMostOnce).then_some(Ack {
                epoch,
                pkid: p.pkid,
            }),
            topic: p.topic,
            payload: p.payload.to_vec(),
            response_topic: None,
            correlation_data: None,
            dup: p.dup,
        }),
        Event::Incoming(Packet::PubAck(a)) => LinkEvent::Acked {
            pkid: a.pkid,
            refused: None,
        },
        Event::Incoming(Packet::SubAck(s)) => LinkEvent::Subscribed {
            refused: s
                .return_codes
                .iter()
                .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                .count(),
        },
        Event::Outgoing(Outgoing::Publish(pkid)) => LinkEvent::Sent(pkid),
        Event::Outgoing(Outgoing::Disconnect) => LinkEvent::Closed,
        _ => return None,
    })
}

impl Poller for V311Loop {
    async fn next(&mut self, next_epoch: u64) -> Result<Option<LinkEvent>, String> {
        match self.0.poll().await {
            Ok(e @ rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                Ok(convert_v311(e, next_epoch))
            }
            Ok(e) => Ok(convert_v311(e, next_epoch - 1)),
            Err(e) => Err(e.to_string()),
        }
    }

    fn take_back(&mut self, epoch: u64) -> (Vec<LinkEvent>, usize) {
        let events = self
            .0
            .state
            .events
            .drain(..)
            .filter_map(|e| convert_v311(e, epoch))
            .collect();
        let mut taken = usize::from(self.0.state.collision.take().is_some());
        for request in self.0.pending.drain(..) {
            if matches!(request, rumqttc::Request::Publish(ref p) if p.pkid == 0) {
                taken += 1;
            }
        }
        (events, taken)
    }
}

struct V5Loop(rumqttc::v5::EventLoop);

fn convert_v5(event: rumqttc::v5::Event, epoch: u64) -> Option<LinkEvent> {
    use p5::Packet;
    use rumqttc::v5::Event;
    use rumqttc::Outgoing;
    Some(match event {
        Event::Incoming(Packet::ConnAck(c)) => LinkEvent::Connected {
            session_present: c.session_present,
            epoch,
        },
        Event::Incoming(Packet::Publish(p)) => {
            let props = p.properties.unwrap_or_default();
            LinkEvent::Message(InMessage {
                ack: (p.qos != QoS5::AtMostOnce).then_some(Ack {
                    epoch,
                    pkid: p.pkid,
                }),
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload.to_vec(),
                response_topic: props.response_topic,
                correlation_data: props.correlation_data.map(|c| c.to_vec()),
                dup: p.dup,
            })
        }
        Event::Incoming(Packet::PubAck(a)) => LinkEvent::Acked {
            pkid: a.pkid,
            refused: match a.reason {
                p5::PubAckReason::Success | p5::PubAckReason::NoMatchingSubscribers => None,
                other => Some(format!("{other:?}")),
            },
        },
        Event::Incoming(Packet::SubAck(s)) => LinkEvent::Subscribed {
            refused: s
                .return_codes
                .iter()
                .filter(|c| !matches!(c, p5::SubscribeReasonCode::Success(_)))
                .count(),
        },
        Event::Outgoing(Outgoing::Publish(pkid)) => LinkEvent::Sent(pkid),
        Event::Outgoing(Outgoing::Disconnect) => LinkEvent::Closed,
        _ => return None,
    })
}

impl Poller for V5Loop {
    async fn next(&mut self, next_epoch: u64) -> Result<Option<LinkEvent>, String> {
        match self.0.poll().await {
            Ok(e @ rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(_))) => {
                Ok(convert_v5(e, next_epoch))
            }
            Ok(e) => Ok(convert_v5(e, next_epoch - 1)),
            Err(e) => Err(e.to_string()),
        }
    }

    fn take_back(&mut self, epoch: u64) -> (Vec<LinkEvent>, usize) {
        let events = self
            .0
            .state
            .events
            .drain(..)
            .filter_map(|e| convert_v5(e, epoch))
            .collect();
        let mut taken = usize::from(self.0.state.collision.take().is_some());
        for request in self.0.pending.drain(..) {
            if matches!(request, rumqttc::v5::Request::Publish(ref p) if p.pkid == 0) {
                taken += 1;
            }
        }
        (events, taken)
    }
}
