//! `landfall models pull` and `landfall models pin` against a real HTTP server on 127.0.0.1 that
//! plays the Hugging Face Hub (HF_ENDPOINT points the binary at it): downloads, verification
//! against the manifest or against the hashes the Hub reports, skipping what is in place,
//! resuming with Range, offline and bad-manifest errors, pinning.

mod hub_support;

use std::net::TcpListener;

use hub_support::{
    assert_exit, content, entry, git_blob_id, no_partial_left, sha256, stderr, Hub, Run, COMMIT,
};

#[test]
fn pull_verifies_places_and_skips_what_is_in_place() {
    let hub = Hub::start();
    let (config, weights, nested) = (b"{\"a\": 1}".to_vec(), content(300_000, 7), content(10, 1));
    hub.file("org/blip", COMMIT, "config.json", &config);
    hub.file(
        "org/blip",
        COMMIT,
        "model-00001-of-00001.safetensors",
        &weights,
    );
    hub.file("bert", COMMIT, "sub/vocab.txt", &nested);
    let manifest = entry(
        "blip",
        "org/blip",
        COMMIT,
        "q4k",
        &[
            ("config.json", Some(&config)),
            ("model-00001-of-00001.safetensors", Some(&weights)),
        ],
    ) + &entry(
        "bert",
        "bert",
        COMMIT,
        "none",
        &[("sub/vocab.txt", Some(&nested))],
    );
    let run = Run::new(&manifest);

    let out = run.pull(&hub.url, &[]);
    assert_exit(&out, 0);
    let models = run.models();
    assert_eq!(
        std::fs::read(models.join("blip/config.json")).expect("config"),
        config
    );
    let got = std::fs::read(models.join("blip/model-00001-of-00001.safetensors")).expect("weights");
    assert_eq!(got, weights);
    assert_eq!(
        std::fs::read(models.join("bert/sub/vocab.txt")).expect("vocab"),
        nested
    );
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(models.join("blip/landfall-models.json")).expect("state file"),
    )
    .expect("json");
    assert_eq!(state["quant"], "q4k");
    assert_eq!(state["revision"], COMMIT);
    assert_eq!(state["files"][1]["sha256"], sha256(&weights));
    no_partial_left(&models);
    assert_eq!(hub.seen_files().len(), 3);

    // Everything is in place: nothing is fetched again.
    let out = run.pull(&hub.url, &[]);
    assert_exit(&out, 0);
    assert_eq!(hub.seen_files().len(), 3, "{:?}", hub.seen_files());
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 file(s) downloaded"));

    // A damaged file is noticed and fetched again; --only leaves the other model alone.
    std::fs::write(models.join("blip/config.json"), b"{\"a\": 2}").expect("damage");
    let out = run.pull(&hub.url, &["--only", "blip"]);
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read(models.join("blip/config.json")).expect("config"),
        config
    );
    assert_eq!(hub.seen_files().len(), 4);
}

#[test]
fn the_token_goes_with_every_request() {
    let hub = Hub::start();
    let body = content(100, 3);
    hub.file("org/m", COMMIT, "a.bin", &body);
    let run = Run::new(&entry(
        "m",
        "org/m",
        COMMIT,
        "none",
        &[("a.bin", Some(&body))],
    ));
    let manifest = run.manifest.to_str().expect("path").to_string();
    let models = run.models().to_str().expect("path").to_string();
    let out = run.landfall_env(
        &hub.url,
        &[
            "models",
            "pull",
            "--manifest",
            &manifest,
            "--models-dir",
            &models,
        ],
        &[("HF_TOKEN", "hf_secret")],
    );
    assert_exit(&out, 0);
    assert_eq!(hub.seen()[0].auth.as_deref(), Some("Bearer hf_secret"));
}

#[test]
fn a_tampered_file_fails_and_leaves_nothing() {
    let hub = Hub::start();
    let good = content(5000, 1);
    let mut bad = good.clone();
    bad[4000] ^= 0xff;
    hub.file("org/m", COMMIT, "weights.bin", &bad);
    let run = Run::new(&entry(
        "m",
        "org/m",
        COMMIT,
        "none",
        &[("weights.bin", Some(&good))],
    ));
    let out = run.pull(&hub.url, &[]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    let line = err.lines().last().unwrap_or_default();
    assert!(line.contains("m/weights.bin"), "{err}");
    assert!(
        line.contains(&format!("{}/org/m/resolve/{COMMIT}/weights.bin", hub.url)),
        "{err}"
    );
    assert!(line.contains("sha256 mismatch"), "{err}");
    assert!(!run.models().join("m/weights.bin").exists());
    assert!(!run.models().join("m/landfall-models.json").exists());
    no_partial_left(&run.models());
}

#[test]
fn an_interrupted_download_resumes_with_range() {
    let hub = Hub::start();
    let body = content(200_000, 9);
    hub.file("org/m", COMMIT, "big.bin", &body);
    let path = format!("/org/m/resolve/{COMMIT}/big.bin");
    hub.state
        .lock()
        .expect("lock")
        .cut_once
        .insert(path.clone(), 100_000);
    let run = Run::new(&entry(
        "m",
        "org/m",
        COMMIT,
        "none",
        &[("big.bin", Some(&body))],
    ));
    let out = run.pull(&hub.url, &[]);
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read(run.models().join("m/big.bin")).expect("file"),
        body
    );
    let ranges: Vec<_> = hub.seen_files().into_iter().map(|s| s.range).collect();
    assert_eq!(ranges, [None, Some("bytes=100000-".to_string())]);
}

#[test]
fn a_partial_file_from_an_earlier_run_is_resumed() {
    let hub = Hub::start();
    let body = content(50_000, 4);
    hub.file("org/m", COMMIT, "big.bin", &body);
    let run = Run::new(&entry(
        "m",
        "org/m",
        COMMIT,
        "none",
        &[("big.bin", Some(&body))],
    ));
    let partial = run.models().join(".partial");
    std::fs::create_dir_all(&partial).expect("mkdir");
    std::fs::write(partial.join(sha256(&body)), &body[..12_345]).expect("seed");
    let out = run.pull(&hub.url, &[]);
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read(run.models().join("m/big.bin")).expect("file"),
        body
    );
    let ranges: Vec<_> = hub.seen_files().into_iter().map(|s| s.range).collect();
    assert_eq!(ranges, [Some("bytes=12345-".to_string())]);
    no_partial_left(&run.models());
}

#[test]
fn a_server_that_ignores_range_gets_the_file_from_the_start() {
    let hub = Hub::start();
    let body = content(80_000, 5);
    hub.file("org/m", COMMIT, "big.bin", &body);
    {
        let mut state = hub.state.lock().expect("lock");
        state.ignore_range = true;
        state
            .cut_once
            .insert(format!("/org/m/resolve/{COMMIT}/big.bin"), 30_000);
    }
    let run = Run::new(&entry(
        "m",
        "org/m",
        COMMIT,
        "none",
        &[("big.bin", Some(&body))],
    ));
    let out = run.pull(&hub.url, &[]);
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read(run.models().join("m/big.bin")).expect("file"),
        body
    );
}

#[test]
fn a_missing_file_names_file_url_and_status() {
    let hub = Hub::start();
    let run = Run::new(&entry(
        "m",
        "org/m",
        COMMIT,
        "none",
        &[("gone.json", Some(b"{}"))],
    ));
    let out = run.pull(&hub.url, &[]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("m/gone.json") && err.contains("404"), "{err}");
}

#[test]
fn an_unreachable_endpoint_says_the_network_is_needed() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let run = Run::new(&entry(
        "m",
        "org/m",
        COMMIT,
        "none",
        &[("a.json", Some(b"{}"))],
    ));
    let out = run.pull(&format!("http://{closed}"), &[]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    let line = err.lines().last().unwrap_or_default();
    assert!(line.contains("m/a.json"), "{err}");
    assert!(line.contains("needs network access"), "{err}");
    assert!(line.contains("HF_ENDPOINT"), "{err}");
}

#[test]
fn bad_manifests_and_arguments_exit_2() {
    let hub = Hub::start();
    let good = entry("m", "org/m", COMMIT, "none", &[("a.json", Some(b"{}"))]);

    let run = Run::new(&good.replace("quant = \"none\"", "quant = \"none\"\ncolour = \"red\""));
    let out = run.pull(&hub.url, &[]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("unknown field `colour`"),
        "{}",
        stderr(&out)
    );

    let run = Run::new(&good);
    let out = run.pull(&hub.url, &["--only", "nope"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));

    assert!(hub.seen().is_empty(), "{:?}", hub.seen());
}

#[test]
fn pin_resolves_the_revision_and_fills_in_hashes_and_sizes() {
    let hub = Hub::start();
    let (config, weights) = (b"{\"b\": 2}".to_vec(), content(70_000, 2));
    hub.put(
        "/api/models/org/m/revision/main",
        format!("{{\"id\": \"org/m\", \"sha\": \"{COMMIT}\", \"siblings\": []}}").as_bytes(),
    );
    hub.file("org/m", COMMIT, "config.json", &config);
    hub.file("org/m", COMMIT, "weights.bin", &weights);
    let text = format!(
        "# the default set\n{}",
        entry(
            "m",
            "org/m",
            "main",
            "q8_0",
            &[("config.json", None), ("weights.bin", None)]
        )
    );
    let run = Run::new(&text);
    let manifest = run.manifest.to_str().expect("path").to_string();
    let out = run.landfall(&hub.url, &["models", "pin", "--manifest", &manifest]);
    assert_exit(&out, 0);

    let pinned = std::fs::read_to_string(&run.manifest).expect("read");
    assert!(pinned.starts_with("# the default set\n"), "{pinned}");
    let doc: toml::Value = toml::from_str(&pinned).expect("toml");
    let model = &doc["model"][0];
    assert_eq!(model["revision"].as_str(), Some(COMMIT));
    for (i, body) in [&config, &weights].into_iter().enumerate() {
        assert_eq!(
            model["file"][i]["sha256"].as_str(),
            Some(sha256(body).as_str())
        );
        assert_eq!(
            model["file"][i]["size"].as_integer(),
            Some(body.len() as i64)
        );
    }

    // The pinned manifest pulls.
    let out = run.pull(&hub.url, &[]);
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read(run.models().join("m/weights.bin")).expect("file"),
        weights
    );
}

#[test]
fn pin_of_an_unknown_revision_leaves_the_manifest_alone() {
    let hub = Hub::start();
    let text = entry("m", "org/m", "nosuchbranch", "none", &[("a.json", None)]);
    let run = Run::new(&text);
    let manifest = run.manifest.to_str().expect("path").to_string();
    let out = run.landfall(&hub.url, &["models", "pin", "--manifest", &manifest]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("revision nosuchbranch"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&run.manifest).expect("read"), text);
}

/// The Hub's answer for a branch.
fn main_is(hub: &Hub, repo: &str) {
    hub.put(
        &format!("/api/models/{repo}/revision/main"),
        format!("{{\"id\": \"{repo}\", \"sha\": \"{COMMIT}\", \"siblings\": []}}").as_bytes(),
    );
}

#[test]
fn an_unpinned_manifest_pulls_verified_against_what_the_hub_reports() {
    let hub = Hub::start();
    main_is(&hub, "org/m");
    let (config, weights) = (b"{\"c\": 3}".to_vec(), content(200_000, 5));
    hub.file("org/m", COMMIT, "config.json", &config);
    hub.lfs("org/m", COMMIT, "model.safetensors", &weights);
    let run = Run::new(&entry(
        "m",
        "org/m",
        "main",
        "none",
        &[("config.json", None), ("model.safetensors", None)],
    ));
    let out = run.pull(&hub.url, &[]);
    assert_exit(&out, 0);
    let models = run.models();
    assert_eq!(std::fs::read(models.join("m/config.json")).unwrap(), config);
    assert_eq!(
        std::fs::read(models.join("m/model.safetensors")).unwrap(),
        weights
    );
    no_partial_left(&models);
    // Asked about first (HEAD, the redirect not followed), then fetched through the CDN once.
    let resolve = format!("/org/m/resolve/{COMMIT}/model.safetensors");
    assert_eq!(hub.count("HEAD", &resolve), 1);
    assert_eq!(hub.count("GET", &format!("/cdn/{}", sha256(&weights))), 1);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(models.join("m/landfall-models.json")).unwrap())
            .unwrap();
    assert_eq!(state["revision"], COMMIT);
    assert_eq!(state["requested_revision"], "main");
    assert_eq!(state["files"][0]["sha256"], sha256(&config));
    assert_eq!(state["files"][1]["sha256"], sha256(&weights));
    assert_eq!(state["files"][1]["size"], weights.len());

    // Again: the branch is not resolved again, nothing is asked or fetched, the recorded hashes
    // vouch for the files in place.
    let before = hub.seen().len();
    let out = run.pull(&hub.url, &[]);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 file(s) downloaded"));
    assert_eq!(hub.seen().len(), before, "{:?}", &hub.seen()[before..]);
}

#[test]
fn a_file_whose_bytes_differ_from_the_reported_hash_is_refused() {
    for lfs in [true, false] {
        let hub = Hub::start();
        let body = content(5_000, 9);
        let name = "model.safetensors";
        if lfs {
            hub.lfs_reporting("org/m", COMMIT, name, &body, &"0".repeat(64));
        } else {
            hub.file_reporting("org/m", COMMIT, name, &body, &git_blob_id(b"other"));
        }
        let run = Run::new(&entry("m", "org/m", COMMIT, "none", &[(name, None)]));
        let out = run.pull(&hub.url, &[]);
        assert_exit(&out, 1);
        let err = stderr(&out);
        // Progress notes come first; the error is one line of its own.
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("landfall:")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        let line = errors[0];
        assert!(line.contains("m/model.safetensors"), "{err}");
        let kind = if lfs {
            "sha256 mismatch"
        } else {
            "git blob id mismatch"
        };
        assert!(line.contains(kind), "{err}");
        assert!(line.contains("the Hub says"), "{err}");
        assert!(!run.models().join("m").join(name).exists(), "lfs={lfs}");
        no_partial_left(&run.models());
    }
}

#[test]
fn a_hash_in_the_manifest_wins_over_the_hub() {
    let hub = Hub::start();
    let body = content(4_000, 3);
    // The Hub would report a wrong hash; the manifest's pin is what counts, and no HEAD is made.
    hub.lfs_reporting("org/m", COMMIT, "w.bin", &body, &"0".repeat(64));
    let run = Run::new(&entry(
        "m",
        "org/m",
        COMMIT,
        "none",
        &[("w.bin", Some(&body))],
    ));
    let out = run.pull(&hub.url, &[]);
    assert_exit(&out, 0);
    assert!(
        hub.seen().iter().all(|s| s.method == "GET"),
        "{:?}",
        hub.seen()
    );
    // And a pin that differs from the bytes is refused even though the Hub would agree.
    let hub = Hub::start();
    hub.lfs("org/m", COMMIT, "w.bin", &body);
    let other = content(4_000, 4);
    let run = Run::new(&entry(
        "m",
        "org/m",
        COMMIT,
        "none",
        &[("w.bin", Some(&other))],
    ));
    let out = run.pull(&hub.url, &[]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("the manifest says"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pin_keeps_what_it_downloaded() {
    let hub = Hub::start();
    main_is(&hub, "org/m");
    let weights = content(150_000, 8);
    hub.lfs("org/m", COMMIT, "w.bin", &weights);
    let run = Run::new(&entry("m", "org/m", "main", "none", &[("w.bin", None)]));
    let manifest = run.manifest.to_str().unwrap().to_string();
    let out = run.landfall(&hub.url, &["models", "pin", "--manifest", &manifest]);
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read(run.models().join("m/w.bin")).unwrap(),
        weights
    );
    // The pinned manifest pulls without a second download.
    let out = run.pull(&hub.url, &[]);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 file(s) downloaded"));
    assert_eq!(hub.count("GET", &format!("/cdn/{}", sha256(&weights))), 1);
}
