//! The embedded broker, for a device with no broker to talk to (`mqtt.host` unset): rumqttd on a
//! thread of its own, with an MQTT 3.1.1 listener and an MQTT 5 listener on loopback ports of its
//! own, behind one front on the configured address ([`front`]) that hands each connection to the
//! listener of its protocol. Both listeners share rumqttd's router, so retained messages, wills
//! and subscriptions cross protocols: `mosquitto_sub` at its default (3.1.1) sees what the
//! daemon publishes over MQTT 5.

mod front;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use super::MqttError;

/// The backends' address: loopback only; the front is the way in.
const BACKEND_HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Starts the broker with its front listening on `listen`. It lives until the process exits;
/// rumqttd has no way to stop it.
pub fn start(listen: SocketAddr, max_payload: usize) -> Result<(), MqttError> {
    let embedded = |reason: String| MqttError::Embedded { listen, reason };
    // Bound here, so a busy port is reported now rather than in rumqttd's log, from its thread.
    let front = TcpListener::bind(listen).map_err(|source| {
        embedded(format!(
            "cannot listen: {source} (another broker there? set mqtt.host to use it, or mqtt.port for another port)"
        ))
    })?;
    let v4 = free_loopback_port().map_err(|e| embedded(format!("no loopback port: {e}")))?;
    let v5 = free_loopback_port().map_err(|e| embedded(format!("no loopback port: {e}")))?;
    let config = rumqttd_config(v4, v5, max_payload)
        .map_err(|e| embedded(format!("building the broker config: {e}")))?;
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker on {listen} stopped: {e}");
            }
        })
        .map_err(|e| embedded(format!("starting its thread: {e}")))?;
    front::spawn(front, front::Backends { v4, v5 })
        .map_err(|e| embedded(format!("starting its front: {e}")))?;
    tracing::info!("embedded MQTT broker (3.1.1 and 5) listening on {listen}");
    Ok(())
}

/// A loopback port nobody listens on now. rumqttd binds its listeners itself, from a config.
fn free_loopback_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind((BACKEND_HOST, 0))?.local_addr()
}

fn rumqttd_config(
    v4: SocketAddr,
    v5: SocketAddr,
    max_payload: usize,
) -> Result<rumqttd::Config, toml::de::Error> {
    // Requests a little over the daemon's limit must still get through, to be answered
    // payload_too_large; rumqttd disconnects clients that send more than its own limit.
    let broker_payload = max_payload.saturating_mul(4).max(1 << 20);
    let listener = |version: &str, addr: SocketAddr| {
        format!(
            r#"
[{version}.1]
name = "landfall-{version}"
listen = "{addr}"
next_connection_delay_ms = 1
[{version}.1.connections]
connection_timeout_ms = 60000
max_payload_size = {broker_payload}
max_inflight_count = 100
dynamic_filters = true
"#
        )
    };
    let toml = format!(
        r#"
id = 0
[router]
max_connections = 1000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
{}{}"#,
        listener("v4", v4),
        listener("v5", v5)
    );
    toml::from_str(&toml)
}
