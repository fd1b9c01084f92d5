//! The HTTP API against the running daemon (tiny fixture models, a real mosquitto), called by a
//! real HTTP client: Python's `requests`, as the FastAPI service's own client code calls it
//! (`tests/interop/http_client.py`). The seed's three calls get the seed's JSON; classify and
//! VQA-with-choices answers equal the MQTT answers for the same input; bad inputs get the right
//! status and a one-line `detail`; `/metrics` parses with `prometheus_client`'s parser and its
//! counters move; the bearer token is required when set.
//!
//! Runs with `$LANDFALL_PYTHON` (default `python3`), which needs `requests` and
//! `prometheus_client` (`.ci/run` installs them).

mod mqtt_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use mqtt_support::*;
use serde_json::{json, Value};

fn python() -> String {
    std::env::var("LANDFALL_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn blip2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blip2")
}

/// Runs the client script; its lines by name.
fn client(args: &[&str]) -> BTreeMap<String, Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/http_client.py");
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (set LANDFALL_PYTHON)", python()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} lacks requests/prometheus_client or a call failed:\n{stdout}\n{stderr}",
        python()
    );
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (v["name"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

fn http_config(port: u16, extra: &str) -> String {
    format!("\n[http]\nlisten = \"127.0.0.1:{port}\"\nmax_body_bytes = 65536\n{extra}\n")
}

/// An answer without what differs between two runs of the same input.
fn comparable(mut v: Value) -> Value {
    let o = v.as_object_mut().unwrap();
    o.remove("latency_ms");
    o.remove("id");
    v
}

fn detail(v: &Value) -> &str {
    let d = v["body"]["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail: {v}"));
    assert!(!d.contains('\n'), "detail is one line: {d:?}");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_calls_v1_and_metrics_over_http() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let extra = format!(
        r#"
[captioner]
model = "{model}"
quant = "none"
max_new_tokens = 8
{http}"#,
        model = blip2().join("modern").display(),
        http = http_config(http_port, ""),
    );
    let daemon = Daemon::start(&config(broker.port, "web", state.path(), "", &extra));
    let mut mqtt = Client5::connect(broker.port, "web-tester", false).await;
    mqtt.wait_ready("landfall/web").await;
    wait_listening(http_port);

    let cases = reference();
    let (t1, l1) = &cases[0];
    let (t2, l2) = &cases[1];
    let base = format!("http://127.0.0.1:{http_port}");
    let images = blip2().join("images");
    let images = images.to_str().unwrap();
    let calls = tokio::task::spawn_blocking({
        let (base, images, t1, t2) = (base.clone(), images.to_string(), t1.clone(), t2.clone());
        move || client(&["seed", &base, &images, &t1, &t2])
    })
    .await
    .unwrap();

    // The seed's JSON.
    let health = &calls["seed_health"];
    assert_eq!(health["status"], 200, "{health}");
    assert_eq!(
        health["body"],
        json!({"status": "healthy", "model": "modern"})
    );
    let cap = &calls["seed_caption"];
    assert_eq!(cap["status"], 200, "{cap}");
    assert_eq!(cap["body"]["filename"], "square32.png");
    assert!(cap["body"]["caption"].is_string(), "{cap}");
    assert_eq!(
        cap["body"], calls["seed_caption_form_prompt"]["body"],
        "the prompt as a form field = as a query parameter"
    );
    let vqa = &calls["seed_vqa"];
    assert_eq!(vqa["status"], 200, "{vqa}");
    assert_eq!(vqa["body"]["question"], "what is this?");
    assert!(vqa["body"]["answer"].is_string(), "{vqa}");
    assert_eq!(
        vqa["body"].as_object().unwrap().len(),
        2,
        "exactly the seed's keys"
    );

    // The same answers as over MQTT.
    mqtt.subscribe("replies/web").await;
    let ask = |topic: &'static str, body: Value| (topic, body);
    let gray = std::fs::read(blip2().join("images/gray40x30.png")).unwrap();
    let square = std::fs::read(blip2().join("images/square32.png")).unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut mqtt_answers = Vec::new();
    for (i, (topic, body)) in [
        ask("classify", json!({"id": "m1", "text": t1})),
        ask("classify", json!({"id": "m2", "text": t2})),
        ask(
            "vqa",
            json!({"id": "m3", "question": "is there a cat?", "image_b64": b64(&gray),
                   "choices": ["yes", "no"], "template": "vqa"}),
        ),
        ask(
            "caption",
            json!({"id": "m4", "image_b64": b64(&square), "prompt": "a photo of"}),
        ),
        ask(
            "vqa",
            json!({"id": "m5", "image_b64": b64(&gray), "question": "what is this?"}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let corr = format!("c{i}");
        mqtt.request(
            &format!("landfall/web/{topic}/request"),
            body.to_string(),
            "replies/web",
            corr.as_bytes(),
        )
        .await;
        mqtt_answers.push(mqtt.next_on("replies/web").await.json());
    }
    let classify = &calls["v1_classify"];
    assert_eq!(classify["status"], 200, "{classify}");
    assert_eq!(classify["body"]["id"], "h1");
    assert_eq!(classify["body"]["label"], l1.as_str());
    assert_eq!(
        comparable(classify["body"].clone()),
        comparable(mqtt_answers[0].clone())
    );
    let texts = calls["v1_classify_texts"]["body"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(texts.len(), 2);
    assert_eq!(texts[1]["label"], l2.as_str());
    assert_eq!(
        comparable(texts[0].clone()),
        comparable(mqtt_answers[0].clone())
    );
    assert_eq!(
        comparable(texts[1].clone()),
        comparable(mqtt_answers[1].clone())
    );
    let choices = &calls["v1_vqa_choices"];
    assert_eq!(choices["status"], 200, "{choices}");
    assert_eq!(choices["body"]["id"], "q2");
    assert_eq!(
        comparable(choices["body"].clone()),
        comparable(mqtt_answers[2].clone())
    );
    assert_eq!(cap["body"]["caption"], mqtt_answers[3]["caption"]);
    assert_eq!(vqa["body"]["answer"], mqtt_answers[4]["answer"]);
    // Ids echoed exactly, of any size.
    let big = &calls["v1_classify_big_id"];
    assert_eq!(big["status"], 200, "{big}");

    // The full health report.
    let h = &calls["v1_health"];
    assert_eq!(h["status"], 200);
    assert_eq!(h["body"]["device_id"], "web");
    assert_eq!(h["body"]["captioner"]["state"], "loaded");

    // Bad inputs: status and a one-line detail naming the code.
    for (name, status, code) in [
        ("bad_not_image", 400, "image_decode_failed"),
        ("bad_huge_header", 400, "image_decode_failed"),
        ("bad_empty_file", 400, "image_decode_failed"),
        ("bad_missing_file", 400, "missing_field"),
        ("bad_missing_question", 400, "missing_field"),
        ("bad_oversized_upload", 413, "payload_too_large"),
        ("bad_oversized_json", 413, "payload_too_large"),
        ("bad_json", 400, "invalid_json"),
        ("bad_unknown_classifier", 400, "unknown_classifier"),
    ] {
        let v = &calls[name];
        assert_eq!(v["status"], status, "{name}: {v}");
        assert!(detail(v).starts_with(&format!("{code}: ")), "{name}: {v}");
    }
    assert!(
        detail(&calls["bad_huge_header"]).contains("20000"),
        "{}",
        calls["bad_huge_header"]
    );
    assert_eq!(calls["bad_route"]["status"], 404);
    assert_eq!(detail(&calls["bad_route"]), "Not Found");
    assert_eq!(calls["bad_method"]["status"], 405);
    assert_eq!(detail(&calls["bad_method"]), "Method Not Allowed");

    // /metrics parsed by prometheus_client; its counters moved with the calls in between.
    let before = &calls["metrics_before"]["samples"];
    let after = &calls["metrics_after"]["samples"];
    assert!(calls["metrics_after"]["content_type"]
        .as_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let n = |s: &Value, key: &str| {
        s[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {s}"))
    };
    assert!(n(after, "landfall_requests_total{}") >= n(before, "landfall_requests_total{}") + 8.0);
    assert!(
        n(after, "landfall_errors_total{code=image_decode_failed}")
            >= n(before, "landfall_errors_total{code=image_decode_failed}") + 3.0
    );
    assert!(
        n(after, "landfall_errors_total{code=unknown_classifier}")
            > n(before, "landfall_errors_total{code=unknown_classifier}")
    );
    assert!(
        n(
            after,
            "landfall_request_duration_seconds_count{task=classify}"
        ) >= n(
            before,
            "landfall_request_duration_seconds_count{task=classify}"
        ) + 3.0
    );
    assert!(n(after, "landfall_request_duration_seconds_count{task=vqa}") >= 2.0);
    assert_eq!(
        n(
            after,
            "landfall_request_duration_seconds_bucket{le=+Inf,task=caption}"
        ),
        n(
            after,
            "landfall_request_duration_seconds_count{task=caption}"
        )
    );
    assert_eq!(
        n(after, "landfall_model_loaded{model=zh,role=classifier}"),
        1.0
    );
    assert_eq!(n(after, "landfall_adapter_version{classifier=zh}"), 0.0);
    assert!(n(after, "landfall_queue_depth{queue=interactive}") >= 0.0);
    assert!(
        n(
            after,
            "landfall_http_requests_total{route=/image-caption,status=200}"
        ) >= 3.0
    );
    assert!(
        n(
            after,
            "landfall_http_requests_total{route=/image-caption,status=400}"
        ) >= 4.0
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_when_set_and_a_full_queue_answers_503() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let http_port = free_port();
    // A queue of one job, batches of one: a burst overflows it.
    let toml = config(
        broker.port,
        "locked",
        state.path(),
        "",
        &http_config(http_port, "token = \"s3cret-token\""),
    )
    .replace("queue_capacity = 2000", "queue_capacity = 1")
    .replace("max_batch = 16", "max_batch = 1");
    let daemon = Daemon::start(&toml);
    let mut mqtt = Client5::connect(broker.port, "locked-tester", false).await;
    mqtt.wait_ready("landfall/locked").await;
    wait_listening(http_port);
    let base = format!("http://127.0.0.1:{http_port}");
    let calls = tokio::task::spawn_blocking(move || client(&["auth", &base, "s3cret-token"]))
        .await
        .unwrap();
    for name in ["no_token", "wrong_token"] {
        let v = &calls[name];
        assert_eq!(v["status"], 401, "{v}");
        assert!(detail(v).starts_with("unauthorized: "), "{v}");
    }
    assert_eq!(calls["right_token"]["status"], 200);
    let classify = &calls["right_token_classify"];
    assert_eq!(classify["status"], 200, "{classify}");
    assert!(classify["body"]["id"]
        .as_str()
        .unwrap()
        .starts_with("http-"));
    // The captioner is not installed here: /health says so.
    let h = &calls["health_degraded"];
    assert_eq!(h["status"], 503, "{h}");
    assert_eq!(h["body"]["status"], "degraded");
    assert!(h["body"]["reason"].is_string(), "{h}");
    let full = &calls["full_queue"];
    assert_eq!(full["status"], 503, "{full}");
    assert_eq!(full["retry_after"], "1");
    assert!(detail(full).starts_with("overloaded: "), "{full}");
    let samples = &calls["metrics_auth"]["samples"];
    assert!(samples["landfall_overloaded_total{}"].as_f64().unwrap() >= 1.0);
    assert_eq!(
        samples["landfall_model_loaded{model=captioner,role=captioner}"],
        0.0
    );
    daemon.stop().await;
}
