//! Home Assistant discovery over a real mosquitto, checked by Home Assistant's own code: the
//! daemon moves the per-entity configs of earlier versions (left retained in the broker by
//! `mosquitto_pub -r`) to one retained device message, in the order Home Assistant's migration
//! asks for; the `homeassistant` package's discovery code and platform schemas accept every
//! component (and refuse a tampered one); its template engine renders the classifier sensor from
//! real results; the switch and number entities' command topics turn captions off, change the
//! interval and turn them on again, without a restart; Home Assistant's birth message brings the
//! device message again.
//!
//! The Python side is `tests/interop/ha_discovery.py`, run with `$LANDFALL_HA_PYTHON`: a Python
//! with `homeassistant` installed, which `tests/interop/ha-env.sh` makes (`.ci/run` does that).

mod mqtt_support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mqtt_support::*;
use serde_json::{json, Value};

const DEV: &str = "hadev";
const P: &str = "landfall/hadev";
const DEVICE_TOPIC: &str = "homeassistant/device/landfall_hadev/config";

fn old_topic(object: &str) -> String {
    format!("homeassistant/sensor/landfall_{DEV}/{object}/config")
}

fn ha_python() -> String {
    std::env::var("LANDFALL_HA_PYTHON").unwrap_or_else(|_| {
        panic!(
            "set LANDFALL_HA_PYTHON to a Python with Home Assistant installed: \
             LANDFALL_HA_PYTHON=\"$(tests/interop/ha-env.sh /var/cache/landfall/ha-root)\""
        )
    })
}

/// Runs Home Assistant's discovery code on `messages` (and its templates on `samples`, lines of
/// `{"state_topic", "payload"}`).
fn ha_check(messages: &[Value], samples: &[Value], dir: &Path) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/ha_discovery.py");
    let samples_file = dir.join("samples.jsonl");
    let lines: Vec<String> = samples.iter().map(Value::to_string).collect();
    std::fs::write(&samples_file, lines.join("\n")).unwrap();
    let mut child = Command::new(ha_python())
        .arg(&script)
        .arg("homeassistant")
        .arg("--render")
        .arg(&samples_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", ha_python()));
    let mut stdin = child.stdin.take().unwrap();
    for m in messages {
        writeln!(stdin, "{m}").unwrap();
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn as_line(m: &Msg) -> Value {
    json!({"topic": m.topic, "payload": m.text(), "retain": m.retain})
}

/// A `dir:` camera over two BLIP-2 fixture images, captioned every second by the tiny fixture.
fn camera_config(state: &Path) -> String {
    let blip2 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blip2");
    let frames = state.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for name in ["square32.png", "wide61x37.png"] {
        std::fs::copy(blip2.join("images").join(name), frames.join(name)).unwrap();
    }
    format!(
        r#"
[captioner]
model = "{model}"
quant = "none"
max_new_tokens = 6

[homeassistant]
enabled = true

[[camera]]
name = "door"
source = "dir:{frames}"
fps = 4
interval = "1s"
"#,
        model = blip2.join("modern").display(),
        frames = frames.display(),
    )
}

fn retain_old_config(port: u16, object: &str) {
    let config = json!({"name": object, "unique_id": format!("landfall_{DEV}_{object}"),
        "state_topic": format!("{P}/health"), "device": {"identifiers": [format!("landfall_{DEV}")]}});
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-r"])
        .args(["-t", &old_topic(object), "-m", &config.to_string()])
        .status()
        .expect("mosquitto_pub (mosquitto-clients)");
    assert!(status.success());
}

/// Messages until `done` says the collection is complete.
async fn collect(client: &mut Client5, mut done: impl FnMut(&[Msg]) -> bool) -> Vec<Msg> {
    let mut seen = Vec::new();
    while !done(&seen) {
        seen.push(client.next().await);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_discovery_is_what_home_assistant_reads_and_its_controls_work() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    // What an earlier version left in the broker.
    retain_old_config(broker.port, "cpu");
    retain_old_config(broker.port, "camera_door_caption");

    let mut watcher = Client5::connect(broker.port, "ha-watcher", false).await;
    watcher.subscribe("homeassistant/#").await;
    let daemon = Daemon::start(&config(
        broker.port,
        DEV,
        state.path(),
        "",
        &camera_config(state.path()),
    ));
    let mut asker = Client5::connect(broker.port, "ha-asker", false).await;
    asker.wait_ready(P).await;

    // Migration markers, then the device message, then the empty retained payloads.
    let olds = [old_topic("cpu"), old_topic("camera_door_caption")];
    let seen = collect(&mut watcher, |seen| {
        olds.iter()
            .all(|t| seen.iter().any(|m| &m.topic == t && m.payload.is_empty()))
            && seen.iter().any(|m| m.topic == DEVICE_TOPIC)
    })
    .await;
    let live: Vec<(usize, &Msg)> = seen
        .iter()
        .enumerate()
        .filter(|(_, m)| !(m.retain && !m.payload.is_empty() && m.topic != DEVICE_TOPIC))
        .collect();
    let index = |pred: &dyn Fn(&Msg) -> bool| {
        live.iter()
            .find(|(_, m)| pred(m))
            .map(|(i, _)| *i)
            .expect("message seen")
    };
    let device_at = index(&|m| m.topic == DEVICE_TOPIC);
    for t in &olds {
        let migrate = index(&|m| &m.topic == t && m.text() == r#"{"migrate_discovery":true}"#);
        let empty = index(&|m| &m.topic == t && m.payload.is_empty());
        assert!(
            migrate < device_at && device_at < empty,
            "{t}: {migrate} {device_at} {empty}"
        );
        assert!(
            !seen[migrate].retain,
            "the migration marker is not retained"
        );
    }
    let device = seen[device_at].json();
    assert_eq!(device["o"]["name"], "landfall");
    assert_eq!(device["o"]["sw"], env!("CARGO_PKG_VERSION"));
    assert_eq!(device["availability_topic"], format!("{P}/status"));
    let cmps = device["cmps"].as_object().unwrap();
    for id in [
        "camera_door_caption",
        "camera_door_captions",
        "camera_door_interval",
        "classifier_zh_result",
        "cpu",
        "uptime",
    ] {
        assert!(cmps.contains_key(id), "{id} missing: {device}");
    }
    // Same unique ids as the old per-entity configs: Home Assistant keeps the entities.
    assert_eq!(cmps["cpu"]["unique_id"], format!("landfall_{DEV}_cpu"));

    // A new subscriber finds only the device message retained.
    let mut fresh = Client5::connect(broker.port, "ha-fresh", false).await;
    fresh.subscribe("homeassistant/#").await;
    fresh.publish("homeassistant/zz_end", "end").await;
    let retained = collect(&mut fresh, |s| {
        s.last().is_some_and(|m| m.topic == "homeassistant/zz_end")
    })
    .await;
    let retained: Vec<&Msg> = retained.iter().filter(|m| m.retain).collect();
    let topics: Vec<&str> = retained.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(topics, [DEVICE_TOPIC]);
    assert_eq!(retained[0].json(), device);

    // Real results for the classifier sensor's template: one of `zh`, then an error.
    let (text, label) = reference().remove(0);
    watcher.subscribe(&format!("{P}/classify/result")).await;
    watcher
        .publish(
            &format!("{P}/classify/request"),
            request_body("r1", &text, None),
        )
        .await;
    watcher
        .publish(
            &format!("{P}/classify/request"),
            request_body("r2", "x", Some("nope")),
        )
        .await;
    let mut samples = Vec::new();
    while samples.len() < 2 {
        let m = watcher.next_on(&format!("{P}/classify/result")).await;
        samples.push(json!({"state_topic": m.topic, "payload": m.text()}));
    }
    // What Home Assistant would read: the old topics' messages as they went by, the device
    // message as retained.
    let mut ha_lines: Vec<Value> = live
        .iter()
        .filter(|(_, m)| m.topic != DEVICE_TOPIC)
        .map(|(_, m)| as_line(m))
        .collect();
    ha_lines.push(as_line(retained[0]));
    let out = ha_check(&ha_lines, &samples, state.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ok number camera_door_interval"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok switch camera_door_captions"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("ok {} components", cmps.len())),
        "{stdout}"
    );
    let rendered: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("rendered classifier_zh_result"))
        .collect();
    // The error result keeps the last label.
    let want = format!("-> '{label}'");
    assert_eq!(rendered.len(), 2, "{stdout}");
    assert!(rendered.iter().all(|l| l.ends_with(&want)), "{stdout}");

    // A key Home Assistant would ignore is caught.
    let mut tampered = device.clone();
    tampered["cmps"]["camera_door_interval"]["colour"] = "red".into();
    let line = json!({"topic": DEVICE_TOPIC, "payload": tampered.to_string(), "retain": true});
    let out = ha_check(&[line], &samples, state.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("'colour'"), "{stdout}");

    // The switch and the number, through the command topics the device message names.
    let command = |id: &str| cmps[id]["command_topic"].as_str().unwrap().to_string();
    let state_of = |id: &str| cmps[id]["state_topic"].as_str().unwrap().to_string();
    let caption_topic = state_of("camera_door_caption");
    watcher.subscribe(&state_of("camera_door_captions")).await;
    watcher.subscribe(&state_of("camera_door_interval")).await;
    watcher.subscribe(&caption_topic).await;
    watcher
        .publish(&command("camera_door_captions"), "OFF")
        .await;
    wait_text(&mut watcher, &state_of("camera_door_captions"), "OFF").await;
    // A caption already in the engine may still arrive; after that, none.
    drain(&mut watcher, Duration::from_millis(1500)).await;
    let during_off = drain(&mut watcher, Duration::from_millis(2500)).await;
    assert!(
        !during_off.iter().any(|m| m.topic == caption_topic),
        "captions while switched off"
    );
    watcher.publish(&command("camera_door_interval"), "2").await;
    wait_text(&mut watcher, &state_of("camera_door_interval"), "2").await;
    watcher
        .publish(&command("camera_door_captions"), "ON")
        .await;
    wait_text(&mut watcher, &state_of("camera_door_captions"), "ON").await;
    let first = watcher.next_on(&caption_topic).await;
    let started = tokio::time::Instant::now();
    let second = watcher.next_on(&caption_topic).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "captions {:?} apart after the interval was set to 2 s",
        started.elapsed()
    );
    assert!(second.json()["seq"].as_u64() > first.json()["seq"].as_u64());

    // Home Assistant restarts and announces itself: the device message again, and nothing else
    // under the discovery prefix (the migration was once).
    let mut ha = Client5::connect(broker.port, "ha-birth", false).await;
    ha.subscribe("homeassistant/#").await;
    ha.publish("homeassistant/status", "online").await;
    let again = collect(&mut ha, |s| {
        s.iter().any(|m| m.topic == DEVICE_TOPIC && !m.retain)
    })
    .await;
    let live: BTreeMap<&str, &Msg> = again
        .iter()
        .filter(|m| !m.retain && m.topic != "homeassistant/status")
        .map(|m| (m.topic.as_str(), m))
        .collect();
    assert_eq!(live.keys().copied().collect::<Vec<_>>(), [DEVICE_TOPIC]);
    assert_eq!(live[DEVICE_TOPIC].json(), device);
    daemon.stop().await;
}

async fn wait_text(client: &mut Client5, topic: &str, want: &str) {
    loop {
        if client.next_on(topic).await.text() == want {
            return;
        }
    }
}

/// Whatever arrives within `d`.
async fn drain(client: &mut Client5, d: Duration) -> Vec<Msg> {
    let until = tokio::time::Instant::now() + d;
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout_at(until, client.msgs.recv()).await {
        out.push(m);
    }
    out
}
