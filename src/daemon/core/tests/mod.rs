//! The core driven event by event: routing, batching, drain, redelivery, errors and the rule that
//! every accepted request gets exactly one answer, acknowledged with (never before) it. This file
//! is the harness (a device with two classifiers, a camera and a stand-in engine); the cases are
//! in [`requests`] (what each request gets) and [`lifecycle`] (batches, backlog, redelivery, stop).

mod lifecycle;
mod requests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::camera::Shared;
use crate::classifier::Prediction;
use crate::config::Config;
use crate::daemon::jobs::{Answer, Labelled, VisionAnswer, Work};
use crate::models::status::ModelState;
use crate::models::status::ModelStatus;
use crate::mqtt::link::{Ack, InMessage};
use crate::mqtt::topics::Topics;

pub(super) const P: &str = "landfall/dev";

pub(super) struct Harness {
    pub(super) core: Core,
    pub(super) now: Instant,
    pub(super) next_pkid: u16,
    pub(super) cameras: Vec<Arc<Shared>>,
}

/// A device with classifiers `zh` (loaded) and `gone` (missing), camera `door`, a captioner
/// (loaded or not) taking prompts of up to 100 tokens, queue capacity 4, batches of 2.
pub(super) fn harness(captioner_loaded: bool, persistent: bool) -> Harness {
    let config = Config::from_toml_str(
        "[[camera]]\nname = \"door\"\nsource = \"pattern:bars\"\ninterval = \"10s\"\n\
         [templates]\nyesno = \"Q: {question} yes or no?\"\n",
        "(test)",
    )
    .unwrap();
    let now = Instant::now();
    let status = |name: &str, state: ModelState| {
        let mut s = ModelStatus::configured(name, "none".into(), "cpu".into());
        s.state = state;
        s.labels = vec!["neg".into(), "pos".into()];
        s.adapter = format!("{name}-adapter");
        s
    };
    let mut captioner = status(
        "blip2",
        if captioner_loaded {
            ModelState::Loaded
        } else {
            ModelState::Missing("run `landfall models pull`".into())
        },
    );
    captioner.max_prompt_tokens = 100;
    let shared = Arc::new(Shared::new());
    let cameras = config
        .cameras
        .iter()
        .map(|c| CameraView {
            config: c.clone(),
            shared: shared.clone(),
        })
        .collect();
    let core = Core::new(
        CoreSetup {
            topics: Topics::new("landfall", "dev", None),
            device_id: "dev".into(),
            max_payload: 1 << 20,
            persistent_session: persistent,
            queue_capacity: 4,
            max_batch: 2,
            max_wait: Duration::from_millis(5),
            engine_slots: 2,
            classifiers: vec![
                status("zh", ModelState::Loaded),
                status("gone", ModelState::Missing("no files".into())),
            ],
            captioner,
            captioner_config: config.captioner.clone(),
            templates: config.templates.clone(),
            cameras,
            homeassistant: config.homeassistant.clone(),
            adapter_versions: vec![None, None],
            updates: true,
        },
        now,
    );
    let mut h = Harness {
        core,
        now,
        next_pkid: 0,
        cameras: vec![shared],
    };
    h.event(Event::Connected {
        session_present: false,
    });
    h.actions();
    h
}

/// One published message, parsed.
#[derive(Debug)]
pub(super) struct Sent {
    pub(super) topic: String,
    pub(super) json: Value,
    pub(super) correlation: Option<Vec<u8>>,
    pub(super) ack: Option<Ack>,
}

impl Harness {
    pub(super) fn event(&mut self, e: Event) {
        self.core.handle(e, self.now);
    }

    pub(super) fn later(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        self.event(Event::Tick);
    }

    pub(super) fn actions(&mut self) -> Vec<Action> {
        self.core.take_actions()
    }

    /// Sends a QoS 1 request on `P/<task>/request`; returns its ack.
    pub(super) fn request(&mut self, task: &str, payload: &str) -> Ack {
        self.next_pkid += 1;
        let ack = Ack {
            epoch: 1,
            pkid: self.next_pkid,
        };
        self.message(&format!("{P}/{task}/request"), payload, Some(ack), false);
        ack
    }

    pub(super) fn message(&mut self, topic: &str, payload: &str, ack: Option<Ack>, dup: bool) {
        self.event(Event::Message(InMessage {
            topic: topic.into(),
            payload: payload.as_bytes().to_vec(),
            response_topic: None,
            correlation_data: None,
            dup,
            ack,
        }));
    }

    /// The actions so far, with every submitted batch run through the stand-in engine.
    pub(super) fn step(&mut self) -> Vec<Action> {
        let a = self.actions();
        self.run_engine(a)
    }

    /// Runs every submitted batch through a stand-in engine and feeds the outcomes back.
    pub(super) fn run_engine(&mut self, actions: Vec<Action>) -> Vec<Action> {
        let mut rest = Vec::new();
        for a in actions {
            match a {
                Action::Submit(work) => {
                    let done = engine_answers(work);
                    self.event(Event::BatchDone(done));
                    rest.extend(self.actions());
                }
                other => rest.push(other),
            }
        }
        rest
    }
}

/// What a working model would say: label `pos` for texts with "good", captions "a door".
pub(super) fn engine_answers(work: Work) -> Done {
    match work {
        Work::Classify { batch, items, .. } => Done {
            batch,
            outcomes: items
                .into_iter()
                .map(|(id, text)| {
                    let good = text.contains("good");
                    let prediction = Prediction {
                        label: if good { "pos" } else { "neg" }.into(),
                        label_id: usize::from(good),
                        scores: if good { vec![0.1, 0.9] } else { vec![0.9, 0.1] },
                        logits: vec![0.0, 0.0],
                    };
                    let label = Labelled {
                        prediction,
                        adapter: "zh-adapter".into(),
                        adapter_version: None,
                    };
                    (id, Ok(Answer::Label(label)))
                })
                .collect(),
        },
        Work::Adapter {
            batch, job, change, ..
        } => Done {
            batch,
            outcomes: vec![(
                job,
                Ok(Answer::Adapter(Ok(crate::daemon::jobs::Swapped {
                    version: change.version,
                    canary: None,
                }))),
            )],
        },
        Work::Vision { batch, items } => Done {
            batch,
            outcomes: items
                .into_iter()
                .map(|(id, input)| {
                    let text = match &input.choices {
                        Some(c) => c[0].clone(),
                        None => "a door".into(),
                    };
                    (id, Ok(Answer::Vision(VisionAnswer { text, scores: None })))
                })
                .collect(),
        },
    }
}

pub(super) fn sent(actions: &[Action]) -> Vec<Sent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish { msg, ack } => Some(Sent {
                topic: msg.topic.clone(),
                json: serde_json::from_str(&msg.payload).unwrap_or(Value::Null),
                correlation: msg.correlation_data.clone(),
                ack: *ack,
            }),
            _ => None,
        })
        .collect()
}

pub(super) fn submits(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Submit(_)))
        .count()
}

pub(super) fn results<'a>(s: &'a [Sent], task: &str) -> Vec<&'a Sent> {
    let topic = format!("{P}/{task}/result");
    s.iter().filter(|m| m.topic == topic).collect()
}
