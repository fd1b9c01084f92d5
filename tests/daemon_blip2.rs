//! The daemon with a real BLIP-2 (the tiny `modern` fixture) over a real mosquitto: a `dir:`
//! camera's frames are captioned on `P/camera/<cam>/caption` (retained, the contract's fields),
//! caption and VQA requests are answered with what the model says for that image (the same text
//! the library gives in-process), VQA with choices answers with one of them and its scores, and
//! health reports the captioner loaded.

mod mqtt_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use landfall::imaging::{decode_image_file, DecodeLimits, ImageProcessorConfig};
use landfall::models::blip2::{Blip2, Blip2LoadOptions, GenerationOptions};
use mqtt_support::*;
use serde_json::json;

fn blip2_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blip2")
}

/// What the model says for `image` after `prompt`, computed in-process.
fn expected_caption(model_dir: &Path, image: &Path, prompt: &str, max_new_tokens: usize) -> String {
    let model = Blip2::load(model_dir, &Blip2LoadOptions::default()).unwrap();
    let processor = ImageProcessorConfig::from_model_dir(model_dir).unwrap();
    let img = decode_image_file(image, &DecodeLimits::default()).unwrap();
    let pixels = processor
        .to_tensor(&img, &candle_core::Device::Cpu)
        .unwrap();
    let features = model.image_features(&pixels).unwrap();
    let opts = GenerationOptions {
        max_new_tokens,
        ..Default::default()
    };
    let generation = model.generate(&features, prompt, &opts).unwrap();
    model.decode(&generation.tokens).unwrap()
}

fn b64_of(path: &Path) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captions_and_answers_come_from_blip2() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let model_dir = blip2_fixtures().join("modern");
    let images = blip2_fixtures().join("images");
    // A dir: camera over two of the fixture images.
    let frames = state.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for name in ["square32.png", "wide61x37.png"] {
        std::fs::copy(images.join(name), frames.join(name)).unwrap();
    }
    let extra = format!(
        r#"
[captioner]
model = "{model}"
# f32 weights, as the in-process expectation below (the default is q4_0).
quant = "none"
max_new_tokens = 12

[[camera]]
name = "door"
source = "dir:{frames}"
fps = 4
interval = "200ms"
"#,
        model = model_dir.display(),
        frames = frames.display(),
    );
    let daemon = Daemon::start(&config(broker.port, "eyes", state.path(), "", &extra));
    let mut client = Client5::connect(broker.port, "eyes-tester", false).await;
    client.wait_ready("landfall/eyes").await;

    let expected: HashMap<String, String> = ["square32.png", "wide61x37.png"]
        .iter()
        .map(|n| {
            (
                expected_caption(&model_dir, &images.join(n), "", 12),
                n.to_string(),
            )
        })
        .collect();

    // Periodic captions of the camera's frames.
    client.subscribe("landfall/eyes/camera/door/caption").await;
    let mut seen = 0;
    while seen < 3 {
        let m = client.next_on("landfall/eyes/camera/door/caption").await;
        let v = m.json();
        for key in ["camera", "seq", "ts", "caption", "latency_ms", "model"] {
            assert!(v.get(key).is_some(), "{key} missing: {v}");
        }
        assert_eq!(v["camera"], "door");
        assert_eq!(v["model"], "modern");
        let caption = v["caption"].as_str().unwrap();
        assert!(
            expected.contains_key(caption),
            "caption {caption:?} is not what the model says for either frame: {expected:?}"
        );
        seen += 1;
    }

    // A caption request with an image of its own.
    client.subscribe("replies/eyes").await;
    let square = images.join("square32.png");
    let body = json!({"id": "c1", "image_b64": b64_of(&square), "prompt": "a photo of"});
    client
        .request(
            "landfall/eyes/caption/request",
            body.to_string(),
            "replies/eyes",
            b"c1",
        )
        .await;
    let v = client.next_on("replies/eyes").await.json();
    assert_eq!(v["id"], "c1", "{v}");
    assert_eq!(
        v["caption"].as_str().unwrap(),
        expected_caption(&model_dir, &square, "a photo of", 12),
        "{v}"
    );

    // VQA on the camera's latest frame, free text.
    let body = json!({"id": "q1", "question": "what is this?", "camera": "door"});
    client
        .request(
            "landfall/eyes/vqa/request",
            body.to_string(),
            "replies/eyes",
            b"q1",
        )
        .await;
    let v = client.next_on("replies/eyes").await.json();
    assert_eq!(v["id"], "q1", "{v}");
    assert_eq!(v["prompt"], "Question: what is this? Answer:");
    assert!(v["answer"].is_string(), "{v}");

    // VQA with choices: one of them, with every choice's probability.
    let gray = images.join("gray40x30.png");
    let body = json!({
        "id": "q2",
        "question": "is there a cat?",
        "image_b64": b64_of(&gray),
        "choices": ["yes", "no"],
        "template": "vqa",
    });
    client
        .request(
            "landfall/eyes/vqa/request",
            body.to_string(),
            "replies/eyes",
            b"q2",
        )
        .await;
    let v = client.next_on("replies/eyes").await.json();
    assert_eq!(v["id"], "q2", "{v}");
    // transformers scores "no" above "yes" for this image after this prompt (fixture reference).
    assert_eq!(v["answer"], "no", "{v}");
    let p_yes = v["scores"]["yes"].as_f64().unwrap();
    let p_no = v["scores"]["no"].as_f64().unwrap();
    assert!(p_no > p_yes && (p_yes + p_no - 1.0).abs() < 1e-4, "{v}");

    // Health: the captioner is loaded.
    client.subscribe("landfall/eyes/health").await;
    let h = client.next_on("landfall/eyes/health").await.json();
    assert_eq!(h["captioner"]["state"], "loaded", "{h}");
    assert!(h["counters"]["captions"].as_u64().unwrap() >= 3, "{h}");
    daemon.stop().await;
}
