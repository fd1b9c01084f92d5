//! The embedded broker: rumqttd on a thread of its own, for a device with no broker to talk to
//! (`mqtt.host` unset). It speaks the protocol version the daemon is configured for.

use std::net::{SocketAddr, TcpListener};

use super::MqttError;
use crate::config::Protocol;

/// Starts rumqttd listening on `listen`. The broker lives until the process exits; rumqttd has
/// no way to stop it.
pub fn start(listen: SocketAddr, protocol: Protocol, max_payload: usize) -> Result<(), MqttError> {
    // rumqttd reports a busy port only in its log, from its own thread; find out here instead.
    TcpListener::bind(listen).map_err(|source| MqttError::Embedded {
        listen,
        reason: format!(
            "cannot listen: {source} (another broker there? set mqtt.host to use it, or mqtt.port for another port)"
        ),
    })?;
    let version = match protocol {
        Protocol::V311 => "v4",
        Protocol::V5 => "v5",
    };
    // Requests a little over the daemon's limit must still get through, to be answered
    // payload_too_large; rumqttd disconnects clients that send more than its own limit.
    let broker_payload = max_payload.saturating_mul(4).max(1 << 20);
    let toml = format!(
        r#"
id = 0
[router]
max_connections = 1000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[{version}.1]
name = "landfall-{version}"
listen = "{listen}"
next_connection_delay_ms = 1
[{version}.1.connections]
connection_timeout_ms = 60000
max_payload_size = {broker_payload}
max_inflight_count = 100
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = toml::from_str(&toml).map_err(|e| MqttError::Embedded {
        listen,
        reason: format!("building the broker config: {e}"),
    })?;
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker on {listen} stopped: {e}");
            }
        })
        .map_err(|e| MqttError::Embedded {
            listen,
            reason: format!("starting its thread: {e}"),
        })?;
    tracing::info!("embedded MQTT broker ({version}) listening on {listen}");
    Ok(())
}
