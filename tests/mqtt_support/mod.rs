//! Helpers for the daemon's integration tests: a real mosquitto per test on a free port, the
//! daemon started through the library, MQTT test clients (v5 and v3.1.1), the reference texts.
//! Every wait is bounded.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use landfall::config::Config;
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

mod client311;
#[allow(unused_imports)] // Not every test file uses it.
pub use client311::Client311;

pub const WAIT: Duration = Duration::from_secs(30);

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A mosquitto of our own, with persistence in a temporary directory.
pub struct Mosquitto {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mosquitto {
    pub fn start() -> Self {
        Self::start_with(|_| String::new())
    }

    /// Starts it with more configuration, which `extra` may write files into its directory for.
    pub fn start_with(extra: impl FnOnce(&Path) -> String) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // Started as root, mosquitto drops to an unprivileged user, who must still be able to
        // write its persistence file here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
                 max_packet_size 20000000\nmax_queued_messages 10000\nmax_inflight_messages 20\n\
                 log_dest stderr\nlog_type error\n{}",
                dir.path().display(),
                extra(dir.path())
            ),
        )
        .expect("write mosquitto.conf");
        let mut m = Self {
            port,
            dir,
            child: None,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .spawn()
            .expect("start /usr/sbin/mosquitto");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (mosquitto saves its sessions and queued messages), waiting for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            let _ = child.wait();
        }
    }

    /// Starts it again after [`Self::stop`], on the same port and persistence file.
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A daemon binary (or any child), SIGKILLed and reaped if a test fails while it runs.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (at most [`WAIT`]) until something listens on 127.0.0.1:`port`, as the embedded broker
/// does once the daemon has started it.
pub fn wait_listening(port: u16) {
    let deadline = std::time::Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn terminate(child: &Child) {
    let pid = i32::try_from(child.id()).expect("pid fits i32");
    // SAFETY: kill(2) on a child we started and have not reaped.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classifier")
}

/// The zh_qv reference texts and their expected labels (argmax of the reference logits).
pub fn reference() -> Vec<(String, String)> {
    let path = fixtures().join("cases/zh_qv/reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).expect("reference.json");
    let labels: Vec<String> = serde_json::from_value(v["labels"].clone()).expect("labels");
    let texts: Vec<String> = serde_json::from_value(v["texts"].clone()).expect("texts");
    let logits: Vec<Vec<f32>> = serde_json::from_value(v["logits_single"].clone()).expect("logits");
    texts
        .into_iter()
        .zip(logits)
        .map(|(t, l)| {
            let best = (0..l.len()).fold(0, |b, i| if l[i] > l[b] { i } else { b });
            (t, labels[best].clone())
        })
        .collect()
}

/// A daemon config for tests: the zh_qv fixture as classifier "zh" (plus `extra` TOML).
pub fn config(port: u16, device: &str, state: &Path, extra_mqtt: &str, extra: &str) -> String {
    let f = fixtures();
    format!(
        r#"
[mqtt]
host = "127.0.0.1"
port = {port}
device_id = "{device}"
{extra_mqtt}

[health]
interval = "1s"

[queue]
dir = "{queue}"

[scheduler]
queue_capacity = 2000
max_batch = 16
max_wait_ms = 2

[[classifier]]
name = "zh"
base = "{base}"
adapter = "{adapter}"
{extra}
"#,
        queue = state.join("queue").display(),
        base = f.join("bases/zh_prefixed").display(),
        adapter = f.join("cases/zh_qv/adapter").display(),
    )
}

/// The daemon, run in-process through the library's entry point.
pub struct Daemon {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), landfall::daemon::DaemonError>>,
}

impl Daemon {
    pub fn start(toml: &str) -> Self {
        // LANDFALL_LOG=info shows what the daemon does during a test.
        if std::env::var_os("LANDFALL_LOG").is_some() {
            landfall::logging::init("warn");
        }
        let config = Config::from_toml_str(toml, "test.toml").expect("test config is valid");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(landfall::daemon::run(config, async {
            let _ = rx.await;
        }));
        Self {
            stop: Some(tx),
            task,
        }
    }

    /// Stops it as SIGTERM would and waits for a clean exit.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let result = timeout(WAIT, &mut self.task)
            .await
            .expect("the daemon stops in time");
        result.expect("daemon task").expect("daemon exits cleanly");
    }
}

#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub correlation: Option<Vec<u8>>,
    /// The broker's DUP flag: a redelivery on the broker-to-client hop.
    pub dup: bool,
}

impl Msg {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "{}: not JSON ({e}): {:?}",
                self.topic,
                String::from_utf8_lossy(&self.payload)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

#[derive(Debug)]
pub enum Ack {
    Sub,
}

/// An MQTT 5 test client; messages arrive on `msgs`.
pub struct Client5 {
    pub client: rumqttc::v5::AsyncClient,
    /// PUBACKs received: publishes the broker has taken.
    acked: Arc<AtomicUsize>,
    published: usize,
    pub msgs: mpsc::UnboundedReceiver<Msg>,
    acks: mpsc::UnboundedReceiver<Ack>,
    task: JoinHandle<()>,
}

impl Client5 {
    /// Connects; `session` keeps a persistent session (clean start off, 1 h expiry).
    pub async fn connect(port: u16, id: &str, session: bool) -> Self {
        let mut o = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(10))
            .set_clean_start(!session)
            .set_max_packet_size(Some(32 << 20));
        if session {
            o.set_session_expiry_interval(Some(3600));
            // A small window from the broker, so what it must resend after a crash stays small.
            o.set_receive_maximum(Some(10));
        }
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(o, 2000);
        let (msg_tx, msgs) = mpsc::unbounded_channel();
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (conn_tx, conn_rx) = oneshot::channel();
        let acked = Arc::new(AtomicUsize::new(0));
        let pubacks = acked.clone();
        let task = tokio::spawn(async move {
            let mut conn_tx = Some(conn_tx);
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(p5::Packet::PubAck(_))) => {
                        pubacks.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(_))) => {
                        if let Some(tx) = conn_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(rumqttc::v5::Event::Incoming(p5::Packet::Publish(p))) => {
                        let _ = msg_tx.send(Msg {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            dup: p.dup,
                            correlation: p
                                .properties
                                .and_then(|pr| pr.correlation_data)
                                .map(|c| c.to_vec()),
                        });
                    }
                    Ok(rumqttc::v5::Event::Incoming(p5::Packet::SubAck(_))) => {
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
            acked,
            published: 0,
            msgs,
            acks,
            task,
        }
    }

    /// Waits until the broker has acknowledged everything this client published.
    pub async fn wait_published(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.acked.load(Ordering::SeqCst) < self.published {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the broker did not take our publishes"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        timeout(WAIT, self.acks.recv())
            .await
            .expect("suback in time")
            .expect("suback");
    }

    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.published += 1;
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("publish");
    }

    /// Publishes a request asking for the answer on `response_topic` with `correlation`.
    pub async fn request(
        &mut self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        response_topic: &str,
        correlation: &[u8],
    ) {
        let props = p5::PublishProperties {
            response_topic: Some(response_topic.to_string()),
            correlation_data: Some(correlation.to_vec().into()),
            ..Default::default()
        };
        self.published += 1;
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, payload.into(), props)
            .await
            .expect("publish");
    }

    pub async fn next(&mut self) -> Msg {
        timeout(WAIT, self.msgs.recv())
            .await
            .expect("a message in time")
            .expect("client alive")
    }

    /// The next message on `topic`, skipping others.
    pub async fn next_on(&mut self, topic: &str) -> Msg {
        loop {
            let m = self.next().await;
            if m.topic == topic {
                return m;
            }
        }
    }

    /// Asks the daemon at `prefix` until it answers: its subscriptions are then in place. The
    /// probes have id "ready"; tests reading result topics skip them.
    pub async fn wait_ready(&mut self, prefix: &str) {
        let reply = format!("ready/{prefix}");
        self.subscribe(&reply).await;
        self.subscribe(&format!("{prefix}/classify/result")).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let body = request_body("ready", "ping", None);
            self.request(
                &format!("{prefix}/classify/request"),
                body,
                &reply,
                b"ready",
            )
            .await;
            let until = tokio::time::Instant::now() + Duration::from_millis(500);
            while let Ok(Some(m)) = tokio::time::timeout_at(until, self.msgs.recv()).await {
                if m.json()["id"] == "ready" {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{prefix} never answered"
            );
        }
    }
}

impl Drop for Client5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `{"id": id, "text": text}` (plus `"classifier"` when given).
pub fn request_body(id: &str, text: &str, classifier: Option<&str>) -> String {
    let mut v = serde_json::json!({"id": id, "text": text});
    if let Some(c) = classifier {
        v["classifier"] = Value::from(c);
    }
    v.to_string()
}
