//! TUF interop with python-tuf, the reference implementation, both ways: a repository python-tuf
//! writes (consistent snapshots, its own key ids) is followed by the daemon and passes
//! `landfall adapter verify`; one `landfall adapter publish` writes is downloaded and verified by
//! python-tuf's client, which also refuses it once a byte is flipped.
//!
//! The Python side is `tests/interop/python_tuf.py`, run with `$LANDFALL_PYTHON` (default
//! `python3`), which needs `tuf` and `cryptography` installed (`.ci/run` does that).

mod http_support;
mod mqtt_support;
mod updates_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use http_support::FileServer;
use mqtt_support::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use updates_support::*;

fn python() -> String {
    std::env::var("LANDFALL_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn interop(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python_tuf.py");
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (set LANDFALL_PYTHON)", python()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "{} lacks python-tuf: pip install tuf cryptography (or set LANDFALL_PYTHON): {stderr}",
        python()
    );
    out
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The negated adapter as a bundle directory for version 1 of "zh", with its bundle.json.
fn bundle_dir(dir: &Path) -> PathBuf {
    let adapter = negated_adapter(dir);
    let base_sha = landfall::updates::base_sha256(&zh_base()).unwrap();
    let bundle = serde_json::json!({"classifier": "zh", "version": 1, "base_sha256": base_sha});
    std::fs::write(adapter.join("bundle.json"), bundle.to_string()).unwrap();
    adapter
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_python_tuf_writes_is_followed_by_the_daemon() {
    let state = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(&state.path().join("bundle"));
    let repo = state.path().join("pyrepo");
    let mut args = vec!["make-repo".to_string(), repo.display().to_string()];
    for f in [
        "bundle.json",
        "adapter_config.json",
        "adapter_model.safetensors",
        "config.json",
    ] {
        args.push(format!("adapters/zh/1/{f}={}", bundle.join(f).display()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = interop(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = repo.join("root.json");
    let server = FileServer::start(repo.clone()).await;

    // The operator's check, without a daemon.
    let verified = landfall(&[
        "adapter",
        "verify",
        "--repository",
        &server.url(),
        "--root",
        root.to_str().unwrap(),
        "--classifier",
        "zh",
        "--base",
        zh_base().to_str().unwrap(),
    ]);
    assert!(verified.contains("version 1"), "{verified}");
    // Consistent snapshots: files were asked for by hash-prefixed names.
    let weights_sha = sha256(&bundle.join("adapter_model.safetensors"));
    assert!(
        server.log().contains(&format!(
            "/targets/adapters/zh/1/{weights_sha}.adapter_model.safetensors"
        )),
        "{:?}",
        server.log()
    );

    // A device that follows it takes version 1 and answers with it.
    let broker = Mosquitto::start();
    let toml = config(broker.port, "pytuf", state.path(), "", "")
        + &updates_toml(&server.url(), &root, &state.path().join("updates"), "1s");
    let daemon = Daemon::start(&toml);
    let mut client = Client5::connect(broker.port, "pytuf-tester", false).await;
    client.wait_ready("landfall/pytuf").await;
    client.subscribe("landfall/pytuf/adapters/state").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = tokio::time::timeout_at(deadline, client.next_on("landfall/pytuf/adapters/state"))
            .await
            .expect("version 1 activated in time")
            .json();
        if m["zh"]["active"]["version"] == 1 {
            assert_eq!(m["zh"]["active"]["sha256"], weights_sha.as_str());
            break;
        }
        assert_ne!(m["zh"]["last_attempt"]["outcome"], "rejected", "{m}");
    }
    let (text, _, negated) = zh_texts().remove(0);
    client
        .publish(
            "landfall/pytuf/classify/request",
            request_body("after", &text, None),
        )
        .await;
    loop {
        let m = client
            .next_on("landfall/pytuf/classify/result")
            .await
            .json();
        if m["id"] == "after" {
            assert_eq!(m["adapter_version"], 1, "{m}");
            assert_eq!(m["label"], negated.as_str(), "{m}");
            break;
        }
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_landfall_publishes_verifies_with_python_tuf() {
    let state = tempfile::tempdir().unwrap();
    let repo = Repo::init(state.path());
    let adapter = negated_adapter(&state.path().join("negated"));
    let canary_file = canary(&state.path().join("canary.csv"), true);
    repo.publish("zh", &adapter, Some((&canary_file, 0.9)));
    let server = FileServer::start(repo.dir.clone()).await;
    let names: Vec<String> = walk(&repo.dir.join("targets"));
    assert!(
        names.contains(&"adapters/zh/1/bundle.json".to_string()),
        "{names:?}"
    );

    let download = |work: &str| {
        let mut args = vec![
            "download".to_string(),
            server.url(),
            repo.root().display().to_string(),
            state.path().join(work).display().to_string(),
        ];
        args.extend(names.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        interop(&args)
    };
    let out = download("py-client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    for name in &names {
        assert_eq!(got[name], sha256(&repo.target(name)).as_str(), "{name}");
    }

    // One byte flipped on the server: python-tuf refuses it too.
    let weights = repo.target("adapters/zh/1/adapter_model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&weights, &bytes).unwrap();
    let out = download("py-client-2");
    assert!(!out.status.success(), "python-tuf took a tampered target");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(stderr.to_lowercase().contains("hash"), "{stderr}");
}
