//! What each kind of request gets: answers, errors, routing, uploads, captions, health.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use crate::wire::requests::Upload;

use super::*;

#[test]
fn connecting_subscribes_says_online_and_is_ready_once() {
    let mut h = harness(false, true);
    h.event(Event::Disconnected);
    h.event(Event::Connected {
        session_present: true,
    });
    let a = h.actions();
    // The subscriptions of the first connection were never confirmed: subscribe again.
    assert!(a.iter().any(|a| matches!(a, Action::Subscribe(_))));
    assert!(!a.iter().any(|a| matches!(a, Action::Ready(_))));
    let s = sent(&a);
    assert_eq!(s[0].topic, format!("{P}/status"));
    h.event(Event::Subscribed { refused: 0 });
    h.event(Event::Connected {
        session_present: true,
    });
    assert!(!h
        .actions()
        .iter()
        .any(|a| matches!(a, Action::Subscribe(_))));
}

#[test]
fn a_classify_request_is_answered_once_with_its_ack() {
    let mut h = harness(false, true);
    let ack = h.request(
        "classify",
        r#"{"id": 18446744073709551616, "text": "good"}"#,
    );
    let a = h.actions();
    assert_eq!(submits(&a), 0, "a lone request waits max_wait for company");
    assert!(
        sent(&a).is_empty(),
        "nothing is answered before the model ran"
    );
    h.later(5);
    let a = h.step();
    let s = sent(&a);
    let r = results(&s, "classify");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].ack, Some(ack));
    assert_eq!(r[0].json["label"], "pos");
    assert_eq!(r[0].json["classifier"], "zh");
    assert_eq!(r[0].json["adapter_version"], Value::Null);
    // The id is echoed exactly, not as a float.
    let raw = match &a[0] {
        Action::Publish { msg, .. } => msg.payload.clone(),
        _ => unreachable!(),
    };
    assert!(raw.contains("\"id\":18446744073709551616"), "{raw}");
    assert!(h.core.is_drained());
}

#[test]
fn answers_go_to_the_response_topic_with_correlation_data() {
    let mut h = harness(false, true);
    h.event(Event::Message(InMessage {
        topic: format!("{P}/classify/request"),
        payload: br#"{"id":"r","text":"x"}"#.to_vec(),
        response_topic: Some("replies/me".into()),
        correlation_data: Some(b"c1".to_vec()),
        dup: false,
        ack: None,
    }));
    h.later(10);
    let a = h.step();
    let s = sent(&a);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].topic, "replies/me");
    assert_eq!(s[0].correlation.as_deref(), Some(&b"c1"[..]));
    // A response topic with wildcards is refused, on the result topic.
    h.event(Event::Message(InMessage {
        topic: format!("{P}/classify/request"),
        payload: br#"{"id":"w","text":"x"}"#.to_vec(),
        response_topic: Some("replies/#".into()),
        correlation_data: None,
        dup: false,
        ack: None,
    }));
    let s = sent(&h.actions());
    assert_eq!(s[0].topic, format!("{P}/classify/result"));
    assert_eq!(s[0].json["error"]["code"], "invalid_field");
}

#[test]
fn bad_requests_are_answered_at_once_without_the_engine() {
    let mut h = harness(false, true);
    let cases = [
        ("classify", "{nope", "invalid_json"),
        ("classify", r#"{"id":"1"}"#, "missing_field"),
        (
            "classify",
            r#"{"id":"2","text":"t","classifier":"fr"}"#,
            "unknown_classifier",
        ),
        (
            "classify",
            r#"{"id":"3","text":"t","classifier":"gone"}"#,
            "model_unavailable",
        ),
        (
            "vqa",
            r#"{"id":"4","question":"q","choices":["a","a"]}"#,
            "invalid_field",
        ),
        (
            "vqa",
            r#"{"id":"5","question":"q","camera":"attic"}"#,
            "unknown_camera",
        ),
        (
            "vqa",
            r#"{"id":"6","question":"q","template":"nope"}"#,
            "invalid_field",
        ),
        ("caption", r#"{"id":"7"}"#, "camera_unavailable"),
    ];
    for (task, payload, code) in cases {
        let ack = h.request(task, payload);
        let a = h.actions();
        assert_eq!(submits(&a), 0, "{payload}");
        let s = sent(&a);
        assert_eq!(s.len(), 1, "{payload}");
        assert_eq!(s[0].json["error"]["code"], code, "{payload}: {}", s[0].json);
        assert_eq!(s[0].ack, Some(ack), "{payload}");
    }
    assert!(h.core.is_drained());
    assert_eq!(h.core.metrics.errors, cases.len() as u64);
}

#[test]
fn prompts_that_cannot_fit_are_refused_before_any_work() {
    let mut h = harness(true, true);
    h.cameras[0]
        .mailbox
        .put(Arc::new(image::RgbImage::new(4, 4)), SystemTime::now());
    // 100 tokens at most, 16 bytes a token: half a MiB is refused by its length alone.
    let huge = "why ".repeat(1 << 17);
    let payload = serde_json::json!({"id": "long", "question": huge}).to_string();
    h.request("vqa", &payload);
    let payload = serde_json::json!({"id": "long2", "prompt": "x".repeat(1601)}).to_string();
    h.request("caption", &payload);
    let a = h.actions();
    assert_eq!(submits(&a), 0);
    let s = sent(&a);
    assert_eq!(s.len(), 2);
    for m in &s {
        assert_eq!(m.json["error"]["code"], "invalid_field", "{}", m.json);
        let message = m.json["error"]["message"].as_str().unwrap();
        assert!(message.contains("at most 100 tokens"), "{message}");
    }
}

#[test]
fn uploaded_images_are_decoded_off_the_loop() {
    let mut h = harness(true, true);
    h.request("caption", r#"{"id":"up","image_b64":"aGVsbG8="}"#);
    let a = h.actions();
    let job = match a.as_slice() {
        [Action::Decode { job, image }] => {
            assert_eq!(image, &Upload::Base64("aGVsbG8=".into()));
            *job
        }
        other => panic!("{other:?}"),
    };
    h.event(Event::Decoded {
        job,
        image: Err("image: not an image".into()),
    });
    let s = sent(&h.actions());
    assert_eq!(s[0].json["error"]["code"], "image_decode_failed");
    h.request("caption", r#"{"id":"ok","image_b64":"aGVsbG8="}"#);
    let Some(Action::Decode { job, .. }) = h.actions().pop() else {
        panic!("a decode");
    };
    h.event(Event::Decoded {
        job,
        image: Ok(image::RgbImage::new(2, 2)),
    });
    h.later(5);
    let s = sent(&h.step());
    assert_eq!(s[0].json["caption"], "a door");
    assert!(s[0].json.get("camera").is_none());
}

#[test]
fn without_a_captioner_vision_requests_are_model_unavailable() {
    let mut h = harness(false, true);
    h.cameras[0]
        .mailbox
        .put(Arc::new(image::RgbImage::new(4, 4)), SystemTime::now());
    h.request(
        "vqa",
        r#"{"id":"v","question":"is it on?","template":"yesno"}"#,
    );
    let a = h.actions();
    assert_eq!(submits(&a), 0);
    let s = sent(&a);
    assert_eq!(s[0].json["error"]["code"], "model_unavailable");
    assert!(s[0].json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("landfall models pull"));
}

#[test]
fn periodic_captions_are_published_retained() {
    let mut h = harness(true, true);
    h.cameras[0]
        .mailbox
        .put(Arc::new(image::RgbImage::new(4, 4)), SystemTime::now());
    assert!(h.core.next_deadline().is_some());
    h.later(9_000);
    assert_eq!(submits(&h.actions()), 0);
    h.later(1_000);
    // Due now; the periodic job then waits its max_wait like any other.
    h.later(5);
    let a = h.step();
    let s = sent(&a);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].topic, format!("{P}/camera/door/caption"));
    assert_eq!(s[0].json["caption"], "a door");
    assert_eq!(s[0].ack, None);
    let retained = a
        .iter()
        .any(|a| matches!(a, Action::Publish { msg, .. } if msg.retain));
    assert!(retained);
    // No new frame: the next interval passes without a caption.
    h.later(10_005);
    assert_eq!(submits(&h.actions()), 0);
}

#[test]
fn health_goes_out_only_while_connected() {
    let mut h = harness(false, true);
    h.event(Event::Health(HealthInputs::default()));
    let s = sent(&h.actions());
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].topic, format!("{P}/health"));
    assert_eq!(s[0].json["models"]["zh"]["state"], "loaded");
    assert_eq!(s[0].json["models"]["gone"]["state"], "missing");
    assert_eq!(s[0].json["cameras"]["door"]["captions_enabled"], true);
    h.event(Event::Disconnected);
    h.event(Event::Health(HealthInputs::default()));
    assert!(sent(&h.actions()).is_empty());
}

#[test]
fn camera_settings_change_from_mqtt_without_a_restart() {
    let mut h = harness(true, true);
    h.event(Event::Subscribed { refused: 0 });
    h.event(Event::Connected {
        session_present: false,
    });
    let a = h.actions();
    let subs = a.iter().find_map(|a| match a {
        Action::Subscribe(s) => Some(s.clone()),
        _ => None,
    });
    assert!(subs
        .unwrap()
        .contains(&format!("{P}/camera/+/captions/set")));
    let s = sent(&a);
    let state = |s: &[Sent], what: &str| {
        s.iter()
            .find(|m| m.topic == format!("{P}/camera/door/{what}"))
            .map(|m| m.json.clone())
    };
    assert_eq!(state(&s, "captions"), Some(Value::Null), "ON is not JSON");
    h.cameras[0]
        .mailbox
        .put(Arc::new(image::RgbImage::new(4, 4)), SystemTime::now());
    // Off: the due caption does not happen.
    let ack = Ack { epoch: 1, pkid: 77 };
    h.message(
        &format!("{P}/camera/door/captions/set"),
        "OFF",
        Some(ack),
        false,
    );
    let a = h.actions();
    assert!(a.iter().any(|a| matches!(a, Action::Ack(x) if *x == ack)));
    let off = a.iter().any(|a| {
        matches!(a, Action::Publish { msg, .. } if msg.topic.ends_with("/captions") && msg.payload == "OFF" && msg.retain)
    });
    assert!(off);
    h.later(10_005);
    assert_eq!(submits(&h.actions()), 0);
    assert_eq!(h.core.next_deadline(), None);
    // On again, every 2 s.
    h.message(&format!("{P}/camera/door/interval/set"), "2", None, false);
    h.message(&format!("{P}/camera/door/captions/set"), "ON", None, false);
    let s = sent(&h.actions());
    assert_eq!(state(&s, "interval").and_then(|v| v.as_f64()), Some(2.0));
    h.later(2_000);
    h.later(5);
    let s = sent(&h.step());
    assert_eq!(s[0].topic, format!("{P}/camera/door/caption"));
    // Nonsense changes nothing, and the state is said again.
    h.message(
        &format!("{P}/camera/door/interval/set"),
        "soon",
        None,
        false,
    );
    let s = sent(&h.actions());
    assert_eq!(state(&s, "interval").and_then(|v| v.as_f64()), Some(2.0));
}
