//! Adapter updates end to end: a TUF repository made by `landfall adapter init-repo`/`publish`,
//! served by a real HTTP server on 127.0.0.1, a real mosquitto, and the daemon following the
//! repository while classify requests keep coming. A good update goes live between two requests;
//! every bad one is refused with its code on `P/adapters/state` while the old adapter answers.

mod http_support;
mod mqtt_support;
mod updates_support;

use std::time::Duration;

use http_support::{Fault, FileServer};
use mqtt_support::*;
use serde_json::Value;
use updates_support::*;

const DEV: &str = "upd";

struct Setup {
    _broker: Mosquitto,
    state: tempfile::TempDir,
    repo: Repo,
    server: FileServer,
    client: Client5,
    daemon: Option<Daemon>,
    texts: Vec<(String, String, String)>,
    next_id: usize,
}

impl Setup {
    async fn new() -> Self {
        let broker = Mosquitto::start();
        let state = tempfile::tempdir().unwrap();
        let repo = Repo::init(state.path());
        let server = FileServer::start(repo.dir.clone()).await;
        let client = Client5::connect(broker.port, "upd-tester", false).await;
        let mut s = Self {
            _broker: broker,
            repo,
            server,
            client,
            daemon: None,
            texts: zh_texts(),
            next_id: 0,
            state,
        };
        s.start_daemon().await;
        s
    }

    fn config(&self) -> String {
        config(self._broker.port, DEV, self.state.path(), "", "")
            + &updates_toml(
                &self.server.url(),
                &self.repo.root(),
                &self.state.path().join("updates"),
                "1s",
            )
    }

    async fn start_daemon(&mut self) {
        self.daemon = Some(Daemon::start(&self.config()));
        self.client.wait_ready(&format!("landfall/{DEV}")).await;
        self.client
            .subscribe(&format!("landfall/{DEV}/adapters/state"))
            .await;
    }

    async fn restart_daemon(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
        self.start_daemon().await;
    }

    /// One classify request, answered: (adapter_version, label).
    async fn classify(&mut self, which: usize) -> (Value, String) {
        self.next_id += 1;
        let id = format!("q{}", self.next_id);
        let text = self.texts[which % self.texts.len()].0.clone();
        self.client
            .publish(
                &format!("landfall/{DEV}/classify/request"),
                request_body(&id, &text, None),
            )
            .await;
        let topic = format!("landfall/{DEV}/classify/result");
        loop {
            let m = self.client.next_on(&topic).await.json();
            if m["id"] == id.as_str() {
                assert!(m.get("error").is_none(), "{m}");
                return (
                    m["adapter_version"].clone(),
                    m["label"].as_str().unwrap().to_string(),
                );
            }
        }
    }

    /// Waits for a state report whose `last_attempt` for zh satisfies `done`.
    async fn wait_attempt(&mut self, done: impl Fn(&Value) -> bool) -> Value {
        let topic = format!("landfall/{DEV}/adapters/state");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let m = tokio::time::timeout_at(deadline, self.client.next_on(&topic))
                .await
                .expect("the expected update attempt in time");
            let v = m.json();
            if std::env::var_os("UPDATES_TEST_TRACE").is_some() {
                eprintln!("state: {}", v["zh"]["last_attempt"]);
            }
            if done(&v["zh"]["last_attempt"]) {
                return v["zh"].clone();
            }
        }
    }

    /// Takes the server away and waits until no attempt that could still reach it is in flight:
    /// two failed attempts in a row, so the second began after the server went.
    async fn go_down(&mut self) {
        self.server.set_down(true);
        for _ in 0..2 {
            self.wait_attempt(|a| a["outcome"] == "failed").await;
        }
    }

    /// Waits for a state report whose zh entry satisfies `done`.
    async fn wait_state(&mut self, done: impl Fn(&Value) -> bool) -> Value {
        let topic = format!("landfall/{DEV}/adapters/state");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let m = tokio::time::timeout_at(deadline, self.client.next_on(&topic))
                .await
                .expect("the expected update state in time");
            let v = m.json();
            if done(&v["zh"]) {
                return v["zh"].clone();
            }
        }
    }

    /// The old adapter still answers, correctly.
    async fn still_serving_the_configured_adapter(&mut self) {
        for i in 0..self.texts.len() {
            let (version, label) = self.classify(i).await;
            assert_eq!(version, Value::Null);
            assert_eq!(label, self.texts[i].1, "{}", self.texts[i].0);
        }
    }

    async fn publish_negated(&mut self, canary_negated: bool, min: f64) {
        let n = self.next_id;
        let adapter = negated_adapter(&self.state.path().join(format!("neg{n}")));
        let canary_file = canary(
            &self.state.path().join(format!("canary{n}.csv")),
            canary_negated,
        );
        self.repo.publish("zh", &adapter, Some((&canary_file, min)));
    }
}

fn outcome(code: &'static str) -> impl Fn(&Value) -> bool {
    move |a: &Value| a["outcome"] == "rejected" && a["code"] == code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_update_goes_live_between_two_requests() {
    let mut s = Setup::new().await;
    s.still_serving_the_configured_adapter().await;
    s.publish_negated(true, 0.9).await;
    // A steady stream of requests across the swap: none fails, and the answers switch from the
    // configured adapter to version 1 once, for good.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.last().map(|(v, _, _): &(Value, String, String)| v) != Some(&Value::from(1)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the update never went live"
        );
        let i = seen.len();
        let (version, label) = s.classify(i).await;
        seen.push((version, label, s.texts[i % s.texts.len()].clone().1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..20 {
        let i = seen.len();
        let (version, label) = s.classify(i).await;
        seen.push((version, label, String::new()));
    }
    let first_new = seen.iter().position(|(v, _, _)| *v == 1).unwrap();
    assert!(
        first_new > 0,
        "some answers came from the configured adapter first"
    );
    for (i, (version, label, _)) in seen.iter().enumerate() {
        let (_, orig, neg) = &s.texts[i % s.texts.len()];
        if i < first_new {
            assert_eq!((version, label), (&Value::Null, orig), "answer {i}");
        } else {
            assert_eq!((version, label), (&Value::from(1), neg), "answer {i}");
        }
    }
    let state = s
        .wait_attempt(|a| a["outcome"] == "up_to_date" || a["outcome"] == "activated")
        .await;
    assert_eq!(state["active"]["version"], 1);
    assert_eq!(state["previous"], Value::Null);
    // Health tells the same.
    let health_topic = format!("landfall/{DEV}/health");
    s.client.subscribe(&health_topic).await;
    loop {
        let h = s.client.next_on(&health_topic).await.json();
        if h["updates"]["zh"]["active"]["version"] == 1 {
            assert_eq!(h["models"]["zh"]["adapter_version"], 1, "{h}");
            break;
        }
    }
    // A restart keeps serving the accepted update.
    s.restart_daemon().await;
    let (version, label) = s.classify(0).await;
    assert_eq!((version, label), (Value::from(1), s.texts[0].2.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_below_its_minimum_is_refused() {
    let mut s = Setup::new().await;
    // The canary expects the configured adapter's labels: the negated one gets almost none.
    s.publish_negated(false, 0.9).await;
    let state = s.wait_attempt(outcome("canary_failed")).await;
    assert_eq!(state["last_attempt"]["version"], 1);
    assert_eq!(state["active"], Value::Null);
    s.still_serving_the_configured_adapter().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_targets_and_bundles_are_refused() {
    let mut s = Setup::new().await;
    let weights = "adapters/zh/1/adapter_model.safetensors";
    // Set up with the server away, so no good version is taken in between.
    s.go_down().await;
    s.publish_negated(true, 0.9).await;
    // Served bytes differ from the signed hash: one byte flipped on the server, in each target.
    for file in [
        "bundle.json",
        "adapter_config.json",
        "adapter_model.safetensors",
        "config.json",
        "canary.csv",
    ] {
        let path = s.repo.target(&format!("adapters/zh/1/{file}"));
        let original = std::fs::read(&path).unwrap();
        let mut bytes = original.clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        s.server.set_down(false);
        let state = s.wait_attempt(outcome("hash_mismatch")).await;
        let reason = state["last_attempt"]["reason"].as_str().unwrap();
        assert!(reason.contains(file), "{file}: {reason}");
        s.go_down().await;
        std::fs::write(&path, &original).unwrap();
    }
    // Longer than signed, and the server keeps sending.
    s.server
        .fault(&format!("/targets/{weights}"), Fault::Endless);
    s.server.set_down(false);
    s.wait_attempt(outcome("too_large")).await;
    s.still_serving_the_configured_adapter().await;
    // A bundle for another classifier, signed as such.
    s.go_down().await;
    s.server.clear_faults();
    let bundle = "adapters/zh/1/bundle.json";
    let text = std::fs::read_to_string(s.repo.target(bundle)).unwrap();
    let other = text.replace("\"classifier\": \"zh\"", "\"classifier\": \"en\"");
    assert_ne!(text, other);
    s.repo.replace_target(bundle, other.as_bytes()).await;
    s.server.set_down(false);
    s.wait_attempt(outcome("bad_bundle")).await;
    // Made for another base.
    let wrong_base = text.replace(
        &text.split("\"base_sha256\": \"").nth(1).unwrap()[..64],
        &"0".repeat(64),
    );
    s.go_down().await;
    s.repo.replace_target(bundle, wrong_base.as_bytes()).await;
    s.server.set_down(false);
    s.wait_attempt(outcome("base_mismatch")).await;
    // A name that climbs out of its bundle, beside a good bundle.
    s.go_down().await;
    s.repo.replace_target(bundle, text.as_bytes()).await;
    let escape = s.repo.target(bundle);
    s.repo
        .add_raw_target("adapters/zh/2/../../../zh/9/bundle.json", &escape)
        .await;
    s.server.set_down(false);
    let state = s.wait_attempt(outcome("bad_bundle")).await;
    assert!(state["last_attempt"]["reason"]
        .as_str()
        .unwrap()
        .contains(".."));
    // An absolute one.
    s.go_down().await;
    s.repo
        .remove_raw_target("adapters/zh/2/../../../zh/9/bundle.json")
        .await;
    s.repo
        .add_raw_target("/adapters/zh/2/bundle.json", &escape)
        .await;
    s.server.set_down(false);
    let state = s.wait_attempt(outcome("bad_bundle")).await;
    let reason = state["last_attempt"]["reason"].as_str().unwrap();
    assert!(reason.contains("/adapters/zh/2/bundle.json"), "{reason}");
    s.still_serving_the_configured_adapter().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_metadata_is_refused() {
    let mut s = Setup::new().await;
    s.publish_negated(true, 0.9).await;
    // Wait for the first attempt to go through, then make the metadata bad in turn.
    s.wait_attempt(|a| a["outcome"] == "activated").await;
    s.go_down().await;
    s.publish_negated(true, 0.9).await;
    let good = std::fs::read(s.repo.dir.join("metadata/timestamp.json")).unwrap();
    s.repo.rogue_timestamp(s.state.path()).await;
    s.server.set_down(false);
    let state = s.wait_attempt(outcome("metadata_invalid")).await;
    assert_eq!(state["active"]["version"], 1);
    s.go_down().await;
    std::fs::write(s.repo.dir.join("metadata/timestamp.json"), &good).unwrap();
    s.repo.timestamp("0s");
    s.server.set_down(false);
    s.wait_attempt(outcome("expired")).await;
    let (version, _) = s.classify(0).await;
    assert_eq!(version, Value::from(1), "version 1 serves on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_signatures_are_refused() {
    let mut s = Setup::new().await;
    s.go_down().await;
    s.publish_negated(true, 0.9).await;
    // A new root that wants two targets signatures; targets.json has one.
    s.repo.raise_targets_threshold(s.state.path()).await;
    s.server.set_down(false);
    s.wait_attempt(outcome("metadata_invalid")).await;
    s.still_serving_the_configured_adapter().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbacks_of_metadata_and_versions_are_refused_also_after_a_restart() {
    let mut s = Setup::new().await;
    let meta = s.repo.dir.join("metadata");
    let saved = s.state.path().join("saved-metadata");
    std::fs::create_dir_all(&saved).unwrap();
    s.publish_negated(true, 0.9).await;
    s.wait_attempt(|a| a["outcome"] == "activated").await;
    for f in ["targets.json", "snapshot.json", "timestamp.json"] {
        std::fs::copy(meta.join(f), saved.join(f)).unwrap();
    }
    s.publish_negated(true, 0.9).await;
    s.wait_attempt(|a| a["outcome"] == "activated" && a["version"] == 2)
        .await;
    // Older metadata served again, with a fresh timestamp over the old snapshot.
    for f in ["targets.json", "snapshot.json", "timestamp.json"] {
        std::fs::copy(saved.join(f), meta.join(f)).unwrap();
    }
    s.repo.timestamp("1d");
    s.wait_attempt(outcome("rollback")).await;
    s.restart_daemon().await;
    s.wait_attempt(outcome("rollback")).await;
    let (version, _) = s.classify(0).await;
    assert_eq!(version, Value::from(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_version_not_above_the_highest_accepted_is_refused() {
    let mut s = Setup::new().await;
    s.publish_negated(true, 0.9).await;
    s.wait_attempt(|a| a["outcome"] == "activated").await;
    s.publish_negated(true, 0.9).await;
    s.wait_attempt(|a| a["outcome"] == "activated" && a["version"] == 2)
        .await;
    s.repo.remove_targets("adapters/zh/2/").await;
    let state = s.wait_attempt(outcome("rollback")).await;
    assert_eq!(state["last_attempt"]["version"], 1);
    s.restart_daemon().await;
    s.wait_attempt(outcome("rollback")).await;
    let (version, _) = s.classify(0).await;
    assert_eq!(version, Value::from(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_download_is_retried_and_an_unreachable_repository_is_only_a_failure() {
    let mut s = Setup::new().await;
    s.go_down().await;
    s.publish_negated(true, 0.9).await;
    let state = s.wait_attempt(|a| a["outcome"] == "failed").await;
    assert_eq!(state["last_attempt"]["code"], "download_failed");
    s.still_serving_the_configured_adapter().await;
    let weights = "/targets/adapters/zh/1/adapter_model.safetensors";
    s.server.fault(weights, Fault::CutOnce(1000));
    s.server.set_down(false);
    s.wait_attempt(|a| a["outcome"] == "activated").await;
    assert!(s.server.requested(weights) >= 2, "{:?}", s.server.log());
    let (version, _) = s.classify(0).await;
    assert_eq!(version, Value::from(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_the_previous_version_which_is_not_pulled_again() {
    let mut s = Setup::new().await;
    s.publish_negated(true, 0.9).await;
    s.wait_attempt(|a| a["outcome"] == "activated").await;
    s.publish_negated(true, 0.9).await;
    s.wait_attempt(|a| a["outcome"] == "activated" && a["version"] == 2)
        .await;
    let config = s.state.path().join("device.toml");
    std::fs::write(&config, s.config()).unwrap();
    landfall(&[
        "adapter",
        "rollback",
        "--classifier",
        "zh",
        "--config",
        config.to_str().unwrap(),
    ]);
    let state = s.wait_state(|zh| zh["active"]["version"] == 1).await;
    assert!(
        state["blocked"]
            .as_array()
            .unwrap()
            .contains(&Value::from(2)),
        "{state}"
    );
    // Wait for the daemon to serve it, then for a check or two: version 2 stays out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while s.classify(0).await.0 != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rollback never served"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.classify(1).await.0, Value::from(1));
    // Down to the configured adapter.
    landfall(&[
        "adapter",
        "rollback",
        "--classifier",
        "zh",
        "--config",
        config.to_str().unwrap(),
    ]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while s.classify(0).await.0 != Value::Null {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second rollback never served"
        );
    }
    // A newer version is taken as usual.
    s.publish_negated(true, 0.9).await;
    s.wait_attempt(|a| a["outcome"] == "activated" && a["version"] == 3)
        .await;
}
