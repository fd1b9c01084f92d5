//! Cameras in the daemon, over a real mosquitto: `dir:` and `pattern:` cameras capture and report
//! their counts in health (frames dropped when nothing consumes them); cameras whose source does
//! not exist are reported `retrying` while the daemon keeps answering; with no BLIP-2 installed no
//! caption is published. Also `landfall run` on the built-in defaults (the pattern camera)
//! through the real binary. (Home Assistant discovery: `tests/homeassistant.rs`.)

mod mqtt_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use image::{Rgb, RgbImage};
use mqtt_support::*;

const BIN: &str = env!("CARGO_BIN_EXE_landfall");

/// A folder of three small PNGs.
fn frames_dir(root: &std::path::Path) -> std::path::PathBuf {
    let dir = root.join("frames");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, v) in [10u8, 120, 240].iter().enumerate() {
        RgbImage::from_pixel(32, 24, Rgb([*v, 0, 255 - *v]))
            .save(dir.join(format!("{i:03}.png")))
            .unwrap();
    }
    dir
}

fn cameras(frames: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[[camera]]
name = "frames"
source = "dir:{frames}"
fps = 20
interval = "200ms"

[[camera]]
name = "bars"
source = "pattern:bars"
fps = 20
resolution = "64x48"
interval = "200ms"
caption_on_change = true

[[camera]]
name = "ghost"
source = "v4l2:/dev/video99"

[[camera]]
name = "gone"
source = "dir:{frames}/missing"
{extra}
"#,
        frames = frames.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cameras_capture_report_health_and_failures_do_not_stop_the_daemon() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let frames = frames_dir(state.path());
    let daemon = Daemon::start(&config(
        broker.port,
        "camdev",
        state.path(),
        "",
        &cameras(&frames, ""),
    ));
    let mut client = Client5::connect(broker.port, "cam-tester", false).await;
    client.subscribe("landfall/camdev/health").await;
    client.subscribe("landfall/camdev/camera/+/caption").await;
    // Classify is answered while two cameras fail.
    client.wait_ready("landfall/camdev").await;
    let health = loop {
        let m = client.next().await;
        assert!(
            !m.topic.ends_with("/caption"),
            "a caption was published without a captioner: {}",
            m.text()
        );
        if m.topic != "landfall/camdev/health" {
            continue;
        }
        let v = m.json();
        let cams = &v["cameras"];
        let busy = |c: &str| cams[c]["captured"].as_u64().unwrap_or(0) >= 10;
        let failing =
            |c: &str| cams[c]["state"] == "retrying" && cams[c]["attempts"].as_u64() >= Some(2);
        if busy("frames") && busy("bars") && failing("ghost") && failing("gone") {
            break v;
        }
    };
    let cams = &health["cameras"];
    for name in ["frames", "bars"] {
        let c = &cams[name];
        assert_eq!(c["state"], "ok", "{name}: {c}");
        // Nothing consumes frames (no captioner): all but the latest were overwritten unused.
        let (captured, dropped) = (
            c["captured"].as_u64().unwrap(),
            c["dropped"].as_u64().unwrap(),
        );
        assert!(dropped > 0 && dropped < captured, "{name}: {c}");
        assert!(c["last_frame_ts"].as_f64().unwrap() > 1.6e9, "{c}");
        assert_eq!(c["captions"], 0);
    }
    assert_eq!(
        cams["frames"]["source"],
        format!("dir:{}", frames.display())
    );
    assert!(
        cams["ghost"]["error"].as_str().unwrap().contains("video99"),
        "{}",
        cams["ghost"]
    );
    assert!(
        cams["gone"]["error"].as_str().unwrap().contains("missing"),
        "{}",
        cams["gone"]
    );
    let counters = &health["counters"];
    assert!(
        counters["frames_captured"].as_u64().unwrap()
            >= cams["frames"]["captured"].as_u64().unwrap()
    );
    assert!(counters["frames_dropped"].as_u64().unwrap() > 0);
    assert_eq!(health["captioner"]["state"], "missing", "{health}");
    assert!(health["captioner"]["reason"]
        .as_str()
        .unwrap()
        .contains("landfall models pull"));

    // A folder that appears later is picked up by the retries.
    std::fs::create_dir_all(frames.join("missing")).unwrap();
    RgbImage::from_pixel(8, 8, Rgb([1, 2, 3]))
        .save(frames.join("missing/late.png"))
        .unwrap();
    loop {
        let m = client.next_on("landfall/camdev/health").await.json();
        if m["cameras"]["gone"]["state"] == "ok" {
            assert!(m["cameras"]["gone"]["captured"].as_u64().unwrap() >= 1);
            break;
        }
    }
    daemon.stop().await;
}

/// The built-in defaults' camera through the real binary: `check-config` with no file shows it,
/// and `run` on those defaults (own port and queue) captures from it and reports health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_pattern_camera_runs_in_the_binary() {
    if !std::path::Path::new(landfall::config::DEFAULT_PATH).exists() {
        let out = Command::new(BIN).arg("check-config").output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("source = \"pattern:bars\""), "{text}");
        assert!(text.contains("[[camera]]"), "{text}");
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = dir.path().join("landfall.toml");
    std::fs::write(
        &file,
        format!(
            "{}\n[mqtt]\nport = {port}\ndevice_id = \"pat\"\n\n[health]\ninterval = \"1s\"\n\n[queue]\ndir = \"{}\"\n\n[models]\ndir = \"{}\"\n",
            landfall::config::BUILTIN,
            dir.path().join("queue").display(),
            dir.path().join("models").display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&file)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the embedded broker never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = Client5::connect(port, "pat-tester", false).await;
    client.subscribe("landfall/pat/health").await;
    let health = loop {
        let v = client.next_on("landfall/pat/health").await.json();
        if v["cameras"]["pattern"]["captured"].as_u64() >= Some(3) {
            break v;
        }
    };
    assert_eq!(health["cameras"]["pattern"]["state"], "ok");
    assert_eq!(health["captioner"]["state"], "missing");
    assert!(health["captioner"]["reason"]
        .as_str()
        .unwrap()
        .contains("blip2-opt-2.7b"));
    terminate(&child);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "landfall did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
}
