//! Jobs over time: batching, one answer per requester, a lost engine, a backlog, redelivery
//! and stopping.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use super::*;

#[test]
fn batches_hold_one_model_and_start_full_or_after_max_wait() {
    let mut h = harness(true, true);
    h.cameras[0]
        .mailbox
        .put(Arc::new(image::RgbImage::new(4, 4)), SystemTime::now());
    h.request("classify", r#"{"id":1,"text":"good"}"#);
    h.request("vqa", r#"{"id":2,"question":"what?"}"#);
    h.request("classify", r#"{"id":3,"text":"bad"}"#);
    // Two classify jobs fill a batch at once; the vqa job waits for its max_wait.
    let a = h.actions();
    let works: Vec<&Work> = a
        .iter()
        .filter_map(|a| match a {
            Action::Submit(w) => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(works.len(), 1);
    assert!(matches!(works[0], Work::Classify { items, .. } if items.len() == 2));
    let s = sent(&h.run_engine(a));
    let labels: Vec<(&Value, &Value)> = results(&s, "classify")
        .iter()
        .map(|m| (&m.json["id"], &m.json["label"]))
        .collect();
    assert_eq!(labels.len(), 2);
    assert!(labels.contains(&(&Value::from(1), &Value::from("pos"))));
    assert!(labels.contains(&(&Value::from(3), &Value::from("neg"))));
    h.later(5);
    let s = sent(&h.step());
    let r = results(&s, "vqa");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].json["answer"], "a door");
    assert_eq!(r[0].json["camera"], "door");
    assert!(h.core.is_drained());
}

#[test]
fn an_answer_can_only_reach_its_own_requester() {
    let mut h = harness(false, true);
    let a1 = h.request("classify", r#"{"id":"a","text":"good"}"#);
    let a2 = h.request("classify", r#"{"id":"b","text":"bad"}"#);
    let mut actions = h.actions();
    let Some(Action::Submit(Work::Classify { batch, items, .. })) = actions.pop() else {
        panic!("one full batch expected");
    };
    // The engine answers only the second job, and one that was never in the batch.
    let mut done = engine_answers(Work::Classify {
        batch,
        classifier: 0,
        items: vec![items[1].clone()],
    });
    done.outcomes.push((
        JobId(999),
        Err(JobError::Failed("not a job of this batch".into())),
    ));
    h.event(Event::BatchDone(done));
    let s = sent(&h.actions());
    assert_eq!(s.len(), 2);
    let by_id: HashMap<String, &Sent> = s
        .iter()
        .map(|m| (m.json["id"].as_str().unwrap().to_string(), m))
        .collect();
    assert_eq!(by_id["b"].json["label"], "neg");
    assert_eq!(by_id["b"].ack, Some(a2));
    // The job the engine left out is still answered, with its own ack.
    assert_eq!(by_id["a"].json["error"]["code"], "internal");
    assert_eq!(by_id["a"].ack, Some(a1));
    assert!(h.core.is_drained());
}

#[test]
fn a_lost_engine_answers_everything_it_held() {
    let mut h = harness(false, true);
    h.request("classify", r#"{"id":1,"text":"x"}"#);
    h.request("classify", r#"{"id":2,"text":"y"}"#);
    h.request("classify", r#"{"id":3,"text":"z"}"#);
    h.actions();
    h.event(Event::EngineGone);
    h.later(10);
    let s = sent(&h.actions());
    assert_eq!(s.len(), 3);
    assert!(s.iter().all(|m| m.json["error"]["code"] == "internal"));
    assert!(h.core.is_drained());
}

#[test]
fn a_backlog_larger_than_the_queue_waits_instead_of_being_refused() {
    let mut h = harness(false, true);
    // Capacity 4, two batches in the engine at once: 20 requests from the broker at once.
    let acks: Vec<Ack> = (0..20)
        .map(|i| h.request("classify", &format!(r#"{{"id":{i},"text":"t"}}"#)))
        .collect();
    let mut answered = Vec::new();
    let mut pending = h.actions();
    for _ in 0..50 {
        if pending.is_empty() {
            h.later(5);
            pending = h.actions();
        }
        let mut next = Vec::new();
        for a in pending {
            match a {
                Action::Submit(w) => {
                    h.event(Event::BatchDone(engine_answers(w)));
                    next.extend(h.actions());
                }
                Action::Publish { msg, ack } => answered.push((msg, ack)),
                _ => {}
            }
        }
        pending = next;
        if h.core.is_drained() {
            break;
        }
    }
    for a in pending {
        if let Action::Publish { msg, ack } = a {
            answered.push((msg, ack));
        }
    }
    assert!(h.core.is_drained());
    assert_eq!(answered.len(), 20);
    assert!(answered
        .iter()
        .all(|(m, _)| !m.payload.contains("overloaded")));
    let mut got: Vec<Ack> = answered.iter().filter_map(|(_, a)| *a).collect();
    got.sort_by_key(|a| a.pkid);
    assert_eq!(got, acks);
    assert_eq!(h.core.metrics.overloaded, 0);
}

#[test]
fn a_redelivered_request_in_progress_is_not_run_twice_and_takes_the_new_ack() {
    let mut h = harness(false, true);
    let payload = r#"{"id":"once","text":"good"}"#;
    h.request("classify", payload);
    h.actions();
    // The connection drops and comes back; the broker sends the request again.
    h.event(Event::Disconnected);
    h.event(Event::Connected {
        session_present: true,
    });
    h.actions();
    let new_ack = Ack { epoch: 2, pkid: 1 };
    h.message(
        &format!("{P}/classify/request"),
        payload,
        Some(new_ack),
        true,
    );
    assert!(h.actions().is_empty());
    h.later(5);
    let s = sent(&h.step());
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].ack, Some(new_ack));
    assert_eq!(h.core.metrics.redeliveries, 1);
    // Delivered once more after it was answered: acknowledged at once, not answered again.
    let third = Ack { epoch: 3, pkid: 9 };
    h.message(&format!("{P}/classify/request"), payload, Some(third), true);
    let a = h.actions();
    assert!(sent(&a).is_empty());
    assert!(matches!(a.as_slice(), [Action::Ack(x)] if *x == third));
    // Sent again on purpose (no DUP flag): a new request, answered again.
    h.request("classify", payload);
    h.later(5);
    assert_eq!(sent(&h.step()).len(), 1);
}

#[test]
fn a_stop_finishes_work_in_hand_and_leaves_new_requests_to_the_broker() {
    let mut h = harness(false, true);
    h.request("classify", r#"{"id":"before","text":"x"}"#);
    h.event(Event::Stop);
    let a = h.actions();
    assert!(a.iter().any(|a| matches!(a, Action::Stopping)));
    // Draining: what is queued is due at once.
    assert_eq!(submits(&a), 1);
    // A request arriving now is neither answered nor acknowledged: the broker keeps it.
    h.request("classify", r#"{"id":"after","text":"x"}"#);
    let after = h.actions();
    assert!(after.is_empty(), "{after:?}");
    let s = sent(&h.run_engine(a));
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].json["id"], "before");
    assert!(h.core.is_drained());
}

#[test]
fn a_stop_out_of_time_leaves_broker_requests_unacknowledged() {
    let mut h = harness(false, true);
    for i in 0..3 {
        h.request("classify", &format!(r#"{{"id":{i},"text":"x"}}"#));
    }
    h.event(Event::Stop);
    h.actions();
    h.core.abandon_unfinished();
    assert!(sent(&h.actions()).is_empty());
    assert!(h.core.is_drained());
    // Without a persistent session the broker would forget them: they are told to retry.
    let mut h = harness(false, false);
    for i in 0..3 {
        h.request("classify", &format!(r#"{{"id":{i},"text":"x"}}"#));
    }
    h.event(Event::Stop);
    h.request("classify", r#"{"id":"late","text":"x"}"#);
    let late = sent(&h.actions());
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].json["error"]["code"], "overloaded");
    h.core.abandon_unfinished();
    let s = sent(&h.actions());
    assert_eq!(s.len(), 3);
    assert!(s.iter().all(|m| m.json["error"]["code"] == "overloaded"));
}
