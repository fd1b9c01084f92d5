//! The MQTT 3.1.1 test client.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::{Ack, Msg, WAIT};

/// An MQTT 3.1.1 test client.
pub struct Client311 {
    pub client: rumqttc::AsyncClient,
    pub msgs: mpsc::UnboundedReceiver<Msg>,
    acks: mpsc::UnboundedReceiver<Ack>,
    task: JoinHandle<()>,
}

impl Client311 {
    pub async fn connect(port: u16, id: &str) -> Self {
        let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(10))
            .set_max_packet_size(32 << 20, 32 << 20);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 2000);
        let (msg_tx, msgs) = mpsc::unbounded_channel();
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (conn_tx, conn_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut conn_tx = Some(conn_tx);
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        if let Some(tx) = conn_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        let _ = msg_tx.send(Msg {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            correlation: None,
                            dup: p.dup,
                        });
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = ack_tx.send(Ack::Sub);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        timeout(WAIT, conn_rx)
            .await
            .expect("test client connects")
            .expect("connack");
        Self {
            client,
            msgs,
            acks,
            task,
        }
    }

    pub async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        timeout(WAIT, self.acks.recv())
            .await
            .expect("suback in time")
            .expect("suback");
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("publish");
    }

    pub async fn next(&mut self) -> Msg {
        timeout(WAIT, self.msgs.recv())
            .await
            .expect("a message in time")
            .expect("client alive")
    }
}

impl Drop for Client311 {
    fn drop(&mut self) {
        self.task.abort();
    }
}
