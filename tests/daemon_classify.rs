//! The daemon answers classify requests over a real mosquitto: right labels on MQTT 3.1.1 and 5,
//! answers on the v5 Response Topic with Correlation Data, the contract's error codes for bad
//! requests (after which it keeps answering), and `model_unavailable` for missing model files.

mod mqtt_support;

use std::collections::HashMap;

use mqtt_support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifies_over_mqtt_3_1_1() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(
        broker.port,
        "v311dev",
        state.path(),
        "protocol = \"v311\"",
        "",
    ));
    let mut client = Client311::connect(broker.port, "tester311").await;
    client.subscribe("landfall/v311dev/classify/result").await;
    client.subscribe("landfall/v311dev/status").await;
    // The retained status says the daemon is up; then probe until its subscription answers.
    let status = loop {
        let m = client.next().await;
        if m.topic.ends_with("/status") {
            break m;
        }
    };
    assert_eq!(status.text(), "online");
    // Retained: a client that subscribes later still learns it.
    let mut late = Client311::connect(broker.port, "late311").await;
    late.subscribe("landfall/v311dev/status").await;
    let retained = late.next().await;
    assert_eq!(
        (retained.text().as_str(), retained.retain),
        ("online", true)
    );
    let reference = reference();
    let mut answered: HashMap<String, (Value, String)> = HashMap::new();
    let mut probe = 0;
    while answered.len() < reference.len() {
        // Requests sent before the daemon's SUBACK are lost by MQTT's rules; resend until answered.
        probe += 1;
        for (i, (text, _)) in reference.iter().enumerate() {
            if !answered.contains_key(&i.to_string()) {
                client
                    .publish(
                        "landfall/v311dev/classify/request",
                        request_body(&i.to_string(), text, None),
                    )
                    .await;
            }
        }
        let until = tokio::time::Instant::now() + std::time::Duration::from_millis(700);
        while let Ok(Some(m)) = tokio::time::timeout_at(until, client.msgs.recv()).await {
            if m.topic.ends_with("/classify/result") {
                let v = m.json();
                answered.insert(v["id"].as_str().unwrap().to_string(), (v, m.text()));
            }
        }
        assert!(probe < 40, "the daemon did not answer in time");
    }
    for (i, (_, label)) in reference.iter().enumerate() {
        let (v, raw) = &answered[&i.to_string()];
        assert_eq!(v["label"], label.as_str(), "text {i}: {v}");
        assert_eq!(v["classifier"], "zh");
        assert_eq!(v["adapter"], "adapter");
        let scores = v["scores"].as_object().unwrap();
        // Labels appear in id order in the payload itself.
        let at = |l: &str| raw.find(&format!("\"{l}\":")).unwrap();
        assert!(at("负面") < at("中性") && at("中性") < at("正面"), "{raw}");
        let sum: f64 = scores.values().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "{v}");
        assert!(v["latency_ms"].as_f64().unwrap() >= 0.0);
        assert_eq!(
            v["label_id"].as_u64().unwrap() as usize,
            ["负面", "中性", "正面"]
                .iter()
                .position(|l| *l == label)
                .unwrap()
        );
    }
    daemon.stop().await;
    let last = loop {
        let m = client.next().await;
        if m.topic.ends_with("/status") {
            break m;
        }
    };
    assert_eq!(last.text(), "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_on_the_v5_response_topic_with_correlation_data() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(
        broker.port,
        "v5dev",
        state.path(),
        "protocol = \"v5\"",
        "",
    ));
    let mut client = Client5::connect(broker.port, "tester5", false).await;
    client.wait_ready("landfall/v5dev").await;
    client.subscribe("replies/me").await;
    let reference = reference();
    for (i, (text, _)) in reference.iter().enumerate() {
        let corr = format!("corr-{i}\u{0}\u{ff}").into_bytes();
        client
            .request(
                "landfall/v5dev/classify/request",
                request_body(&format!("r{i}"), text, Some("zh")),
                "replies/me",
                &corr,
            )
            .await;
    }
    let mut seen = 0;
    while seen < reference.len() {
        let m = client.next().await;
        if m.topic != "replies/me" {
            continue;
        }
        let v = m.json();
        let i: usize = v["id"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(
            m.correlation.as_deref(),
            Some(format!("corr-{i}\u{0}\u{ff}").as_bytes())
        );
        assert_eq!(v["label"], reference[i].1.as_str(), "{v}");
        seen += 1;
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_error_codes_and_the_daemon_keeps_answering() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let ghost = "\n[[classifier]]\nname = \"ghost\"\nbase = \"/nonexistent/base\"\nadapter = \"/nonexistent/adapter\"\n";
    let daemon = Daemon::start(&config(
        broker.port,
        "errdev",
        state.path(),
        "max_payload_bytes = 1048576",
        ghost,
    ));
    let mut client = Client5::connect(broker.port, "tester-err", false).await;
    client.wait_ready("landfall/errdev").await;
    client.subscribe("replies/err").await;
    client.subscribe("landfall/errdev/health").await;
    let topic = "landfall/errdev/classify/request";
    let big = format!(r#"{{"id":"big","text":"{}"}}"#, "x".repeat(10_000_000));
    let cases: Vec<(&str, Vec<u8>, &str, Value)> = vec![
        ("json", b"{not json".to_vec(), "invalid_json", Value::Null),
        ("big", big.into_bytes(), "payload_too_large", Value::Null),
        (
            "utf8",
            b"{\"id\":\"u\",\"text\":\"\xff\xfe\xfd\"}".to_vec(),
            "invalid_json",
            Value::Null,
        ),
        (
            "unknown",
            request_body("k", "t", Some("nope")).into_bytes(),
            "unknown_classifier",
            Value::from("k"),
        ),
        (
            "missing",
            br#"{"id":"m"}"#.to_vec(),
            "missing_field",
            Value::from("m"),
        ),
        (
            "field",
            br#"{"id":"f","text":42}"#.to_vec(),
            "invalid_field",
            Value::from("f"),
        ),
        (
            "ghost",
            request_body("g", "t", Some("ghost")).into_bytes(),
            "model_unavailable",
            Value::from("g"),
        ),
    ];
    for (name, payload, code, id) in &cases {
        client
            .request(topic, payload.clone(), "replies/err", name.as_bytes())
            .await;
        let m = client.next_on("replies/err").await;
        assert_eq!(m.correlation.as_deref(), Some(name.as_bytes()));
        let v = m.json();
        assert_eq!(v["error"]["code"], *code, "{name}: {v}");
        assert_eq!(v["id"], *id, "{name}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        // A good request right after each bad one is still answered, and correctly.
        let (text, label) = &reference()[0];
        client
            .request(topic, request_body("ok", text, None), "replies/err", b"ok")
            .await;
        let ok = client.next_on("replies/err").await.json();
        assert_eq!(ok["label"], label.as_str(), "after {name}: {ok}");
    }
    // Health reports the missing model and counts the errors.
    let health = loop {
        let v = client.next_on("landfall/errdev/health").await.json();
        if v["counters"]["errors"].as_u64() >= Some(cases.len() as u64) {
            break v;
        }
    };
    assert_eq!(health["models"]["ghost"]["state"], "missing", "{health}");
    assert!(health["models"]["ghost"]["reason"]
        .as_str()
        .unwrap()
        .contains("landfall models pull"));
    assert_eq!(health["models"]["zh"]["state"], "loaded");
    assert!(health["system"]["rss_bytes"].as_u64().unwrap() > 0);
    assert!(health["latency_ms"]["classify"]["n"].as_u64().unwrap() >= 1);
    daemon.stop().await;
}
