//! At-least-once from request to answer, with a real mosquitto (persistence on) and the daemon
//! binary: a SIGTERM in the middle of a request stream, and a restart in front of a backlog far
//! larger than the daemon's queue, each lose nothing and answer every request exactly once.

mod mqtt_support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mqtt_support::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_landfall");

/// The daemon binary, killed if a test fails while it runs.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The daemon binary on `config`.
fn spawn_daemon(config: &Path) -> Running {
    let child = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("LANDFALL_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start landfall run");
    Running(Some(child))
}

/// SIGTERM, then the exit (a clean one).
fn stop_daemon(mut running: Running) {
    let Some(mut child) = running.0.take() else {
        return;
    };
    terminate(&child);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "the daemon exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Answers on `landfall/<dev>/classify/result` by id, until `ids` are all answered (and a little
/// longer, to catch doubles).
async fn collect(client: &mut Client5, topic: &str, ids: &[String]) -> HashMap<String, Vec<Value>> {
    let mut got: HashMap<String, Vec<Value>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut settle: Option<tokio::time::Instant> = None;
    loop {
        let until = settle.unwrap_or(deadline);
        match tokio::time::timeout_at(until, client.msgs.recv()).await {
            Ok(Some(m)) if m.topic == topic => {
                let v = m.json();
                if let Some(id) = v["id"].as_str() {
                    if id != "ready" {
                        got.entry(id.to_string()).or_default().push(v);
                    }
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
        if settle.is_none() && ids.iter().all(|id| got.contains_key(id)) {
            settle = Some(tokio::time::Instant::now() + Duration::from_millis(500));
        }
    }
    got
}

fn check_exactly_once(got: &HashMap<String, Vec<Value>>, ids: &[String], what: &str) {
    let missing: Vec<&String> = ids.iter().filter(|id| !got.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{what}: never answered: {missing:?}");
    for id in ids {
        let answers = &got[id];
        assert_eq!(
            answers.len(),
            1,
            "{what}: {id} answered {} times: {answers:?}",
            answers.len()
        );
        assert!(
            answers[0].get("error").is_none(),
            "{what}: {id} got an error: {}",
            answers[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_the_middle_of_a_stream_loses_no_request() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let config_path = state.path().join("landfall.toml");
    std::fs::write(
        &config_path,
        config(broker.port, "atl", state.path(), "", ""),
    )
    .unwrap();
    let mut client = Client5::connect(broker.port, "atl-tester", false).await;
    let results = "landfall/atl/classify/result";
    let (text, _) = reference().into_iter().next().unwrap();
    let mut daemon = Some(spawn_daemon(&config_path));
    client.wait_ready("landfall/atl").await;
    let mut ids = Vec::new();
    for run in 0..8 {
        let mut run_ids = Vec::new();
        let mut stopped = None;
        // 50 requests a second; the daemon gets SIGTERM between the 20th and the 21st, ~40 ms
        // after the last one before it.
        for i in 0..40 {
            if let (20, Some(stopping)) = (i, daemon.take()) {
                stopped = Some(tokio::task::spawn_blocking(move || stop_daemon(stopping)));
            }
            let id = format!("r{run}-{i}");
            client
                .publish(
                    "landfall/atl/classify/request",
                    request_body(&id, &text, None),
                )
                .await;
            run_ids.push(id);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        client.wait_published().await;
        // The stop finishes (as a service manager waits for it), then the daemon starts again:
        // what the broker kept for it is answered now.
        if let Some(stop) = stopped {
            stop.await.expect("the daemon stopped cleanly");
        }
        daemon = Some(spawn_daemon(&config_path));
        let got = collect(&mut client, results, &run_ids).await;
        check_exactly_once(&got, &run_ids, &format!("run {run}"));
        ids.extend(run_ids);
    }
    stop_daemon(daemon.expect("the last run's daemon"));
    assert_eq!(ids.len(), 320);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_front_of_a_backlog_of_2000_answers_all_of_it() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    // A queue far smaller than the backlog: the broker's window must pace it, not refusals.
    let toml = config(broker.port, "backlog", state.path(), "", "")
        .replace("queue_capacity = 2000", "queue_capacity = 64");
    let config_path = state.path().join("landfall.toml");
    std::fs::write(&config_path, toml).unwrap();
    let mut client = Client5::connect(broker.port, "backlog-tester", false).await;
    let daemon = spawn_daemon(&config_path);
    client.wait_ready("landfall/backlog").await;
    stop_daemon(daemon);
    let texts: Vec<String> = reference().into_iter().map(|(t, _)| t).collect();
    let mut ids = Vec::new();
    for i in 0..2000 {
        let id = format!("b{i}");
        let body = request_body(&id, &texts[i % texts.len()], None);
        client
            .publish("landfall/backlog/classify/request", body)
            .await;
        ids.push(id);
    }
    client.wait_published().await;
    let daemon = spawn_daemon(&config_path);
    let got = collect(&mut client, "landfall/backlog/classify/result", &ids).await;
    check_exactly_once(&got, &ids, "backlog");
    stop_daemon(daemon);
}
