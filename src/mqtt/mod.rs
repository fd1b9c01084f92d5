//! MQTT: the connection ([`link`]), what is owed to the broker ([`outbox`], [`spool`]), topic
//! names ([`topics`]), Home Assistant discovery ([`homeassistant`]) and the embedded broker
//! ([`broker`]). Payloads are in [`crate::wire`].

pub mod broker;
pub mod homeassistant;
pub mod link;
pub mod outbox;
pub mod spool;
pub mod topics;

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("mqtt.tls: {path}: {source}")]
    Tls {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("embedded MQTT broker on {listen}: {reason}")]
    Embedded { listen: SocketAddr, reason: String },
    #[error("the MQTT event loop refused a request: {0}")]
    Request(String),
}
