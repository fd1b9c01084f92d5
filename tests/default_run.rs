//! `landfall run` with no config, as a newcomer runs it after `landfall models pull`: tiny fixture
//! models stand in for the default model set under `./models` (the fine-tuned Chinese review
//! classifier as `roberta-base-finetuned-jd-binary-chinese`, BLIP-2 as `blip2-opt-2.7b`), the
//! embedded broker listens on 127.0.0.1:1883, and the daemon answers `P/classify/request` with
//! the default classifier `sentiment-zh` and captions the `pattern` camera.

mod mqtt_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mqtt_support::*;

const BIN: &str = env!("CARGO_BIN_EXE_landfall");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_a_config_classifies_and_captions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    copy_dir(
        &root.join("classifier/seqcls/zh_bin"),
        &models.join("roberta-base-finetuned-jd-binary-chinese"),
    );
    copy_dir(&root.join("blip2/modern"), &models.join("blip2-opt-2.7b"));
    let child = Command::new(BIN)
        .arg("run")
        .current_dir(dir.path())
        .env_remove("STATE_DIRECTORY")
        .stdout(Stdio::null())
        .spawn()
        .expect("start landfall run");
    let _daemon = Running(child);
    wait_listening(1883);
    let mut client = Client5::connect(1883, "default-run-tester", false).await;
    client.subscribe("landfall/+/status").await;
    let device = loop {
        let m = client.next().await;
        if m.topic.ends_with("/status") && m.text() == "online" {
            break m.topic.trim_end_matches("/status").to_string();
        }
    };
    client.wait_ready(&device).await;

    // The default classifier answers, with the labels of the checkpoint's config.json.
    client
        .publish(
            &format!("{device}/classify/request"),
            request_body("first", "这个产品非常好用", None),
        )
        .await;
    let result = loop {
        let m = client
            .next_on(&format!("{device}/classify/result"))
            .await
            .json();
        if m["id"] == "first" {
            break m;
        }
    };
    assert!(result.get("error").is_none(), "{result}");
    assert_eq!(result["classifier"], "sentiment-zh");
    let label = result["label"].as_str().unwrap();
    assert!(
        label.starts_with("negative") || label.starts_with("positive"),
        "{result}"
    );

    // The pattern camera is captioned.
    let topic = format!("{device}/camera/pattern/caption");
    client.subscribe(&topic).await;
    let caption = tokio::time::timeout(Duration::from_secs(120), client.next_on(&topic))
        .await
        .expect("a caption of the pattern camera")
        .json();
    assert_eq!(caption["camera"], "pattern");
    assert!(caption["caption"].is_string(), "{caption}");
}
