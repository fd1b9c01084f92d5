//! The `landfall` binary: `run` with the embedded broker goes online, publishes health and stops
//! cleanly on SIGTERM; `check-config` prints the effective config or one positioned error line.

mod mqtt_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mqtt_support::*;

const BIN: &str = env!("CARGO_BIN_EXE_landfall");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_the_embedded_broker_goes_online_reports_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("landfall.toml");
    std::fs::write(
        &config,
        format!(
            "[mqtt]\nport = {port}\ndevice_id = \"emb\"\n\n[health]\ninterval = \"1s\"\n\n[queue]\ndir = \"{}\"\n",
            dir.path().join("queue").display()
        ),
    )
    .unwrap();
    // A stand-in for systemd's notify socket; WATCHDOG_PID must name the daemon, hence exec.
    let notify_path = dir.path().join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "WATCHDOG_PID=$$ exec {BIN} run --config {}",
            config.display()
        ))
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .spawn()
        .expect("start landfall run");
    // The embedded broker comes up with the daemon; retry connecting until it listens.
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the embedded broker never listened on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = Client5::connect(port, "emb-tester", false).await;
    client.subscribe("landfall/emb/status").await;
    client.subscribe("landfall/emb/health").await;
    let mut online = false;
    let mut health = None;
    while !(online && health.is_some()) {
        let m = client.next().await;
        match m.topic.as_str() {
            "landfall/emb/status" => online |= m.text() == "online",
            "landfall/emb/health" => health = Some(m.json()),
            _ => {}
        }
    }
    let health = health.unwrap();
    assert_eq!(health["device_id"], "emb");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["mqtt"]["connected"], true);
    // systemd heard READY once connected, and watchdog pings follow.
    let mut heard = String::new();
    while !(heard.contains("READY=1") && heard.contains("WATCHDOG=1")) {
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(WAIT, notify.recv(&mut buf))
            .await
            .expect("sd_notify message")
            .unwrap();
        heard.push_str(&String::from_utf8_lossy(&buf[..n]));
    }

    terminate(&child);
    let offline = loop {
        let m = client.next().await;
        if m.topic == "landfall/emb/status" {
            break m.text();
        }
    };
    assert_eq!(offline, "offline");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "landfall did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    let mut buf = [0u8; 512];
    while !heard.contains("STOPPING=1") {
        let n = tokio::time::timeout(WAIT, notify.recv(&mut buf))
            .await
            .expect("STOPPING=1")
            .unwrap();
        heard.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[test]
fn check_config_prints_the_effective_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ok.toml");
    std::fs::write(
        &file,
        "[mqtt]\nhost = \"broker.lan\"\n\n[scheduler]\nmax_batch = 4\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("host = \"broker.lan\""), "{text}");
    assert!(text.contains("max_batch = 4"), "{text}");
    assert!(text.contains("protocol = \"v5\""), "{text}");
    // What it prints is itself a valid config.
    landfall::config::Config::from_toml_str(&text, "printed").unwrap();
}

#[test]
fn check_config_reports_one_positioned_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[mqtt]\nhost = \"b\"\nport = \"many\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("{}:3:8: mqtt.port: ", file.display())),
        "{err}"
    );
}
