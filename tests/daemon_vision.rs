//! Caption and VQA requests over a real mosquitto, with no BLIP-2 installed: every bad request
//! gets the contract's error code (and the daemon keeps answering classify right after it),
//! well-formed ones reach the engine and come back `model_unavailable` naming the model directory
//! and `landfall models pull`, on the result topic, the v5 Response Topic and from the fleet's
//! shared subscription. No periodic caption is published without the model.

mod mqtt_support;

use base64::Engine as _;
use image::{Rgb, RgbImage};
use mqtt_support::*;
use serde_json::{json, Value};

fn png_b64() -> String {
    let mut bytes = Vec::new();
    RgbImage::from_pixel(16, 16, Rgb([200, 10, 10]))
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

const CAMERAS: &str = r#"
[[camera]]
name = "bars"
source = "pattern:bars"
fps = 10
resolution = "32x24"
interval = "100ms"

[[camera]]
name = "ghost"
source = "v4l2:/dev/video99"

[templates]
yesno = "Question: {question} Answer yes or no. Answer:"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vision_requests_get_error_codes_and_model_unavailable() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let models = state.path().join("models");
    let daemon = Daemon::start(&format!(
        "{}\n[models]\ndir = \"{}\"\n",
        config(
            broker.port,
            "visdev",
            state.path(),
            "max_payload_bytes = 1048576\nfleet_group = \"eyes\"",
            CAMERAS,
        ),
        models.display()
    ));
    let mut client = Client5::connect(broker.port, "vis-tester", false).await;
    client.wait_ready("landfall/visdev").await;
    client.subscribe("replies/vis").await;
    // A client that sees only camera captions: none may arrive without a captioner.
    let mut watcher = Client5::connect(broker.port, "vis-watcher", false).await;
    watcher.subscribe("landfall/visdev/camera/+/caption").await;
    // The pattern camera has frames before requests rely on them.
    client.subscribe("landfall/visdev/health").await;
    loop {
        let v = client.next_on("landfall/visdev/health").await.json();
        if v["cameras"]["bars"]["captured"].as_u64() >= Some(1) {
            break;
        }
    }
    let caption = "landfall/visdev/caption/request";
    let vqa = "landfall/visdev/vqa/request";
    let big = json!({"id": "big", "image_b64": "A".repeat(10_000_000)}).to_string();
    let b64 = png_b64();
    let cases: Vec<(&str, &str, Vec<u8>, &str, Value)> = vec![
        ("json", caption, b"{nope".to_vec(), "invalid_json", Value::Null),
        ("utf8", vqa, b"{\"id\":\"u\",\"question\":\"\xff\"}".to_vec(), "invalid_json", Value::Null),
        ("noid", caption, br#"{"camera":"bars"}"#.to_vec(), "missing_field", Value::Null),
        ("noq", vqa, br#"{"id":"q","camera":"bars"}"#.to_vec(), "missing_field", json!("q")),
        ("type", vqa, br#"{"id":"t","question":"why?","choices":"red"}"#.to_vec(), "invalid_field", json!("t")),
        ("cam", caption, br#"{"id":"c","camera":"attic"}"#.to_vec(), "unknown_camera", json!("c")),
        ("vcam", vqa, br#"{"id":"vc","question":"who?","camera":"attic"}"#.to_vec(), "unknown_camera", json!("vc")),
        ("big", caption, big.into_bytes(), "payload_too_large", Value::Null),
        ("notimg", caption, json!({"id": "n", "image_b64": "aGVsbG8gd29ybGQ="}).to_string().into_bytes(), "image_decode_failed", json!("n")),
        ("notb64", vqa, json!({"id": "b", "question": "q?", "image_b64": "%%%"}).to_string().into_bytes(), "image_decode_failed", json!("b")),
        ("tmpl", vqa, br#"{"id":"tm","question":"q?","template":"nope"}"#.to_vec(), "invalid_field", json!("tm")),
        ("noframe", caption, br#"{"id":"g","camera":"ghost"}"#.to_vec(), "camera_unavailable", json!("g")),
        // Well-formed: they reach the engine, which has no captioner.
        ("cap", caption, br#"{"id":"ok1","camera":"bars","prompt":"a photo of"}"#.to_vec(), "model_unavailable", json!("ok1")),
        ("default", caption, br#"{"id":"ok2"}"#.to_vec(), "model_unavailable", json!("ok2")),
        ("image", vqa, json!({"id": "ok3", "question": "what colour?", "image_b64": b64, "choices": ["red", "blue"]}).to_string().into_bytes(), "model_unavailable", json!("ok3")),
        ("tmplok", vqa, br#"{"id":"ok4","question":"is it on?","template":"yesno","camera":"bars"}"#.to_vec(), "model_unavailable", json!("ok4")),
    ];
    let (text, label) = reference().into_iter().next().unwrap();
    for (name, topic, payload, code, id) in &cases {
        client
            .request(topic, payload.clone(), "replies/vis", name.as_bytes())
            .await;
        let m = client.next_on("replies/vis").await;
        assert_eq!(m.correlation.as_deref(), Some(name.as_bytes()));
        let v = m.json();
        assert_eq!(v["error"]["code"], *code, "{name}: {v}");
        assert_eq!(v["id"], *id, "{name}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            !message.is_empty() && !message.contains('\n'),
            "{name}: {v}"
        );
        if *code == "model_unavailable" {
            assert!(message.contains("landfall models pull"), "{v}");
            assert!(
                message.contains(&*models.join("blip2-opt-2.7b").to_string_lossy()),
                "{v}"
            );
        }
        // Classify is still answered, and correctly, right after.
        client
            .request(
                "landfall/visdev/classify/request",
                request_body("after", &text, None),
                "replies/vis",
                b"after",
            )
            .await;
        let ok = client.next_on("replies/vis").await.json();
        assert_eq!(ok["label"], label.as_str(), "after {name}: {ok}");
    }

    // Without a Response Topic the answer goes to P/<task>/result; fleet requests too.
    client.subscribe("landfall/visdev/caption/result").await;
    client.subscribe("landfall/visdev/vqa/result").await;
    client
        .publish(caption, br#"{"id":"plain","camera":"bars"}"#.to_vec())
        .await;
    let v = client
        .next_on("landfall/visdev/caption/result")
        .await
        .json();
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!("plain"), json!("model_unavailable"))
    );
    client
        .publish(
            "landfall/fleet/vqa/request",
            br#"{"id":"fleet","question":"anyone there?"}"#.to_vec(),
        )
        .await;
    let v = client.next_on("landfall/visdev/vqa/result").await.json();
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!("fleet"), json!("model_unavailable"))
    );

    // Health: the captioner is missing, the requests were timed and counted as errors.
    let health = loop {
        let v = client.next_on("landfall/visdev/health").await.json();
        if v["counters"]["errors"].as_u64() >= Some(cases.len() as u64 + 2) {
            break v;
        }
    };
    assert_eq!(health["captioner"]["state"], "missing", "{health}");
    assert!(
        health["latency_ms"]["caption"]["n"].as_u64().unwrap() >= 3,
        "{health}"
    );
    assert!(
        health["latency_ms"]["vqa"]["n"].as_u64().unwrap() >= 3,
        "{health}"
    );
    assert_eq!(health["counters"]["captions"], 0);
    // The bars camera's interval passed many times over: still no caption was published.
    if let Ok(m) = watcher.msgs.try_recv() {
        panic!("a caption without a captioner: {}: {}", m.topic, m.text());
    }
    daemon.stop().await;
}
