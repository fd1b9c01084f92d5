//! The daemon binary killed with SIGKILL at each stage of an adapter update (downloading, staged,
//! canary, switching) restarts serving either the old adapter or the new one, whole — never a
//! mix — and then completes the update.

mod http_support;
mod mqtt_support;
mod updates_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use http_support::{Fault, FileServer};
use mqtt_support::*;
use serde_json::Value;
use updates_support::*;

const DEV: &str = "crash";
const WEIGHTS: &str = "/targets/adapters/zh/1/adapter_model.safetensors";

/// Where the kill lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The weights half received, the server holding the rest.
    Downloading,
    /// The bundle moved into place, not yet tested.
    Staged,
    /// The canary running.
    Canary,
    /// Swapped in by the engine, the state file being committed.
    Switching,
}

fn spawn_daemon(config: &Path, log: &Path) -> Running {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("LANDFALL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start landfall run");
    Running(child)
}

/// SIGKILL (what `Child::kill` sends on Unix), and the exit.
fn kill(mut running: Running) {
    running.0.kill().unwrap();
    running.0.wait().unwrap();
}

/// Polls until `done` holds, for at most a minute.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn log_has(log: &Path, needle: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.contains(needle))
}

struct Device {
    client: Client5,
    next_id: usize,
    texts: Vec<(String, String, String)>,
}

impl Device {
    /// The one adapter version that answers every test text.
    async fn serving(&mut self) -> Value {
        let mut versions = self.answers().await;
        versions.dedup();
        assert_eq!(versions.len(), 1, "one adapter answered: {versions:?}");
        versions.remove(0)
    }

    /// Asks every test text; returns the adapter version of each answer, after checking each
    /// label is that version's.
    async fn answers(&mut self) -> Vec<Value> {
        let topic = format!("landfall/{DEV}/classify/result");
        let mut versions = Vec::new();
        for (text, orig, neg) in self.texts.clone() {
            self.next_id += 1;
            let id = format!("c{}", self.next_id);
            self.client
                .publish(
                    &format!("landfall/{DEV}/classify/request"),
                    request_body(&id, &text, None),
                )
                .await;
            let m = loop {
                let m = self.client.next_on(&topic).await.json();
                if m["id"] == id.as_str() {
                    break m;
                }
            };
            assert!(m.get("error").is_none(), "{m}");
            let version = m["adapter_version"].clone();
            let want = if version == Value::Null { &orig } else { &neg };
            assert_eq!(m["label"], want.as_str(), "{text}: version {version}");
            versions.push(version);
        }
        versions
    }
}

/// What the state file says serves `zh`, after checking its directory is whole.
fn committed(updates: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(updates.join("state.json")).ok()?;
    let v: Value = serde_json::from_str(&text).expect("the state file is whole JSON");
    let active = v["classifiers"]["zh"]["installed"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|i| i["version"].as_u64())?;
    let dir = updates.join(format!("adapters/zh/{active}"));
    for f in [
        "bundle.json",
        "adapter_config.json",
        "adapter_model.safetensors",
    ] {
        assert!(dir.join(f).is_file(), "{} lacks {f}", dir.display());
    }
    Some(active)
}

async fn crash_at(stage: Stage) {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let repo = Repo::init(state.path());
    let server = FileServer::start(repo.dir.clone()).await;
    let updates: PathBuf = state.path().join("updates");
    let toml = config(broker.port, DEV, state.path(), "", "")
        + &updates_toml(&server.url(), &repo.root(), &updates, "1s");
    let config_path = state.path().join("device.toml");
    std::fs::write(&config_path, toml).unwrap();
    let log = state.path().join("daemon.log");

    let daemon = spawn_daemon(&config_path, &log);
    let mut client = Client5::connect(broker.port, "crash-tester", false).await;
    client.wait_ready(&format!("landfall/{DEV}")).await;
    let mut device = Device {
        client,
        next_id: 0,
        texts: zh_texts(),
    };
    assert_eq!(device.serving().await, Value::Null);

    if stage == Stage::Downloading {
        server.fault(WEIGHTS, Fault::Stall);
    }
    let adapter = negated_adapter(&state.path().join("negated"));
    // Long enough to be caught running.
    let canary = long_canary(&state.path().join("canary.csv"), true, 40);
    repo.publish("zh", &adapter, Some((&canary, 0.9)));

    match stage {
        Stage::Downloading => {
            until("the weights are being sent", || {
                server.requested(WEIGHTS) > 0
            })
            .await;
            until("the daemon reports downloading", || {
                log_has(&log, "adapter update 1: downloading")
            })
            .await;
        }
        Stage::Staged => {
            let dir = updates.join("adapters/zh/1");
            until("the bundle is staged", || dir.exists()).await;
        }
        Stage::Canary => until("the canary runs", || log_has(&log, "canary: ")).await,
        Stage::Switching => {
            until("the switch", || {
                log_has(&log, "adapter update 1: switching")
            })
            .await
        }
    }
    kill(daemon);

    // Restart with the repository away: what serves is what the crash left.
    server.clear_faults();
    server.set_down(true);
    let daemon = spawn_daemon(&config_path, &log);
    let serving = device.serving().await;
    assert_eq!(
        serving.as_u64(),
        committed(&updates),
        "what serves is what the state file committed"
    );
    if stage != Stage::Switching {
        assert_eq!(
            serving,
            Value::Null,
            "killed before the commit: the old adapter"
        );
    }
    assert!(
        !updates.join("staging").exists()
            || std::fs::read_dir(updates.join("staging"))
                .unwrap()
                .next()
                .is_none(),
        "staging left by the crash is cleared"
    );

    // And the update completes.
    server.set_down(false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while device.answers().await.last() != Some(&Value::from(1)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the update never completed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(committed(&updates), Some(1));
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_downloading() {
    crash_at(Stage::Downloading).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_once_staged() {
    crash_at(Stage::Staged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_the_canary() {
    crash_at(Stage::Canary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_switching() {
    crash_at(Stage::Switching).await;
}
