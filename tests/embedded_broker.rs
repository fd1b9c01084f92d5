//! The embedded broker serves MQTT 3.1.1 and MQTT 5 clients on one port: `mosquitto_sub` and
//! `mosquitto_pub` at their default protocol (3.1.1) and with `-V mqttv5` see the daemon's
//! retained status, its health and its answers, and its will; an MQTT 5 client gets answers on its
//! response topic with its correlation data. The daemon binary runs with the embedded broker and
//! the zh fixture classifier.

mod mqtt_support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mqtt_support::*;

const BIN: &str = env!("CARGO_BIN_EXE_landfall");

fn start(dir: &Path, port: u16) -> Running {
    let f = fixtures();
    let config = dir.join("landfall.toml");
    std::fs::write(
        &config,
        format!(
            "[mqtt]\nport = {port}\ndevice_id = \"emb\"\n\n[health]\ninterval = \"1s\"\n\n\
             [queue]\ndir = \"{}\"\n\n[[classifier]]\nname = \"zh\"\nbase = \"{}\"\nadapter = \"{}\"\n",
            dir.join("queue").display(),
            f.join("bases/zh_prefixed").display(),
            f.join("cases/zh_qv/adapter").display(),
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .spawn()
        .expect("start landfall run");
    wait_listening(port);
    Running(child)
}

/// `mosquitto_sub` with `args`, waiting for `count` messages (at most 20 s).
fn sub(port: u16, args: &[&str], count: usize) -> Output {
    Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .args(["-C", &count.to_string(), "-W", "20"])
        .output()
        .expect("mosquitto_sub (install mosquitto-clients)")
}

fn lines(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "mosquitto_sub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_311_and_5_clients_share_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut daemon = start(dir.path(), port);

    // The README's line, at mosquitto_sub's default protocol (3.1.1): the retained status, and
    // health within its interval.
    for protocol in [None, Some("mqttv5")] {
        let mut args = vec!["-t", "landfall/#", "-v"];
        if let Some(p) = protocol {
            args.extend(["-V", p]);
        }
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        while !(seen
            .iter()
            .any(|l: &String| l == "landfall/emb/status online")
            && seen.iter().any(|l| l.starts_with("landfall/emb/health {")))
        {
            assert!(Instant::now() < deadline, "{protocol:?}: {seen:?}");
            seen.extend(lines(&sub(port, &args, 3)));
        }
    }

    // A 3.1.1 request from mosquitto_pub, answered to a 3.1.1 subscriber.
    let (text, label) = reference().remove(0);
    let listener =
        std::thread::spawn(move || sub(port, &["-t", "landfall/emb/classify/result"], 1));
    let body = request_body("v311", &text, None);
    let deadline = Instant::now() + WAIT;
    let answer = loop {
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
            .args(["-t", "landfall/emb/classify/request", "-m", &body])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
        if listener.is_finished() {
            break lines(&listener.join().unwrap());
        }
        assert!(Instant::now() < deadline, "no answer for mosquitto_sub");
    };
    let v: serde_json::Value = serde_json::from_str(&answer[0]).unwrap();
    assert_eq!(v["id"], "v311");
    assert_eq!(v["label"], label.as_str());

    // An MQTT 5 client: its answer on its response topic, with its correlation data.
    let mut client = Client5::connect(port, "emb-v5", false).await;
    client.wait_ready("landfall/emb").await;
    client.subscribe("replies/v5").await;
    client
        .request(
            "landfall/emb/classify/request",
            request_body("v5", &text, None),
            "replies/v5",
            b"corr-42",
        )
        .await;
    let m = client.next_on("replies/v5").await;
    assert_eq!(m.correlation.as_deref(), Some(&b"corr-42"[..]));
    assert_eq!(m.json()["label"], label.as_str());

    // Retained messages and wills cross protocols both ways.
    for (from, to) in [(None, Some("mqttv5")), (Some("mqttv5"), None)] {
        let tag = format!("{from:?}-to-{to:?}");
        let version =
            |p: Option<&str>| p.map_or_else(Vec::new, |p| vec!["-V".to_string(), p.to_string()]);
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-r"])
            .args(version(from))
            .args(["-t", &format!("cross/retained/{tag}"), "-m", &tag])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let to_args = version(to);
        let mut args: Vec<&str> = to_args.iter().map(String::as_str).collect();
        let topic = format!("cross/retained/{tag}");
        args.extend(["-t", &topic]);
        assert_eq!(
            lines(&sub(port, &args, 1)),
            vec![tag.clone()],
            "retained {tag}"
        );

        // A client of one protocol with a will, killed; a subscriber of the other gets the will.
        let will_topic = format!("cross/will/{tag}");
        let mut will_args = vec!["-t".to_string(), will_topic.clone()];
        will_args.extend(to_args.iter().cloned());
        let will_args_ref: Vec<String> = will_args.clone();
        let waiter = std::thread::spawn(move || {
            let a: Vec<&str> = will_args_ref.iter().map(String::as_str).collect();
            sub(port, &a, 1)
        });
        std::thread::sleep(Duration::from_millis(500));
        let mut doomed = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-l"])
            .args(version(from))
            .args(["-t", "cross/lines", "--will-topic", &will_topic])
            .args(["--will-payload", "gone", "--will-qos", "1"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        doomed.kill().unwrap();
        doomed.wait().unwrap();
        assert_eq!(lines(&waiter.join().unwrap()), ["gone"], "will {tag}");
    }

    terminate(&daemon.0);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
