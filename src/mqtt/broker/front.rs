//! The embedded broker's front door: one TCP listener that reads the start of each connection's
//! CONNECT packet, finds the protocol level in it (4: MQTT 3.1.1, 5: MQTT 5; 3, MQTT 3.1, goes to
//! the 3.1.1 listener, which refuses it properly), and from then on only copies bytes between the
//! client and the rumqttd listener of that protocol.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a client may take to send the first bytes of its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Fixed header (1), remaining length (≤ 4), protocol name ("MQTT" or "MQIsdp", with its 2-byte
/// length) and the level byte: the level is within these.
const MAX_PEEK: usize = 1 + 4 + 2 + 6 + 1;

#[derive(Debug, Clone, Copy)]
pub struct Backends {
    pub v4: SocketAddr,
    pub v5: SocketAddr,
}

/// Serves `listener` from a thread of its own (the broker outlives any runtime of the caller).
pub fn spawn(listener: std::net::TcpListener, backends: Backends) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("mqtt-front".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!("embedded MQTT broker front: {e}"),
                };
                loop {
                    match listener.accept().await {
                        Ok((client, peer)) => {
                            tokio::spawn(async move {
                                if let Err(e) = serve(client, backends).await {
                                    tracing::debug!("embedded MQTT broker: {peer}: {e}");
                                }
                            });
                        }
                        // Out of file descriptors, say: wait rather than spin.
                        Err(e) => {
                            tracing::warn!("embedded MQTT broker: accept: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        })?;
    Ok(())
}

async fn serve(mut client: TcpStream, backends: Backends) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut head = Vec::with_capacity(MAX_PEEK);
    let level = tokio::time::timeout(CONNECT_TIMEOUT, read_level(&mut client, &mut head))
        .await
        .map_err(|_| std::io::Error::other("no CONNECT in time"))??;
    let backend = if level == 5 { backends.v5 } else { backends.v4 };
    let mut upstream = TcpStream::connect(backend).await?;
    upstream.set_nodelay(true)?;
    upstream.write_all(&head).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Reads from `client` into `head` until the CONNECT's protocol level can be read.
async fn read_level(client: &mut TcpStream, head: &mut Vec<u8>) -> std::io::Result<u8> {
    // What is read past the level is forwarded with the rest of `head`.
    let mut buf = [0u8; 256];
    loop {
        match protocol_level(head) {
            Parse::Level(level) => return Ok(level),
            Parse::NotMqtt(why) => return Err(std::io::Error::other(why)),
            Parse::More => {}
        }
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before its CONNECT"));
        }
        head.extend_from_slice(&buf[..n]);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Parse {
    Level(u8),
    More,
    NotMqtt(&'static str),
}

/// The protocol level of the CONNECT packet `bytes` begins with.
fn protocol_level(bytes: &[u8]) -> Parse {
    let Some(&first) = bytes.first() else {
        return Parse::More;
    };
    if first != 0x10 {
        return Parse::NotMqtt("the first packet is not a CONNECT");
    }
    // Remaining length: 1 to 4 bytes, 7 bits each, high bit = more.
    let mut at = 1;
    loop {
        let Some(&b) = bytes.get(at) else {
            return Parse::More;
        };
        at += 1;
        if b & 0x80 == 0 {
            break;
        }
        if at == 5 {
            return Parse::NotMqtt("a malformed remaining length");
        }
    }
    let (Some(&hi), Some(&lo)) = (bytes.get(at), bytes.get(at + 1)) else {
        return Parse::More;
    };
    let name_len = usize::from(u16::from_be_bytes([hi, lo]));
    if name_len != 4 && name_len != 6 {
        return Parse::NotMqtt("not an MQTT protocol name");
    }
    match bytes.get(at + 2 + name_len) {
        Some(&level) => Parse::Level(level),
        None => Parse::More,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(level: u8, name: &[u8]) -> Vec<u8> {
        let mut v = vec![0x10, 0x8c, 0x01];
        v.extend_from_slice(&(name.len() as u16).to_be_bytes());
        v.extend_from_slice(name);
        v.push(level);
        v.extend_from_slice(&[0x02, 0x00, 0x3c]);
        v
    }

    #[test]
    fn the_level_is_read_from_any_prefix_long_enough() {
        for (level, name) in [(4, &b"MQTT"[..]), (5, b"MQTT"), (3, b"MQIsdp")] {
            let packet = connect(level, name);
            let needed = 3 + 2 + name.len() + 1;
            for cut in 0..needed {
                assert_eq!(protocol_level(&packet[..cut]), Parse::More, "{cut}");
            }
            assert_eq!(protocol_level(&packet[..needed]), Parse::Level(level));
            assert_eq!(protocol_level(&packet), Parse::Level(level));
        }
    }

    #[test]
    fn what_is_not_a_connect_is_refused() {
        assert!(matches!(
            protocol_level(b"GET / HTTP/1.1\r\n"),
            Parse::NotMqtt(_)
        ));
        assert!(matches!(
            protocol_level(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x00]),
            Parse::NotMqtt(_)
        ));
        assert!(matches!(
            protocol_level(&[0x10, 0x05, 0x00, 0x09, b'x']),
            Parse::NotMqtt(_)
        ));
    }
}
