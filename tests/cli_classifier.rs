//! `landfall classify` and `landfall eval` through the real binary: output formats, label
//! sources, and one-line errors with exit code 2 for bad inputs.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{case, copy_dir};

/// The binary this build made; under `LANDFALL_TEST_RUNNER` (an emulator such as
/// `qemu-aarch64-static`, set by cross/test-aarch64.sh) through that runner.
fn landfall_command() -> Command {
    let bin = env!("CARGO_BIN_EXE_landfall");
    match std::env::var_os("LANDFALL_TEST_RUNNER") {
        Some(runner) if !runner.is_empty() => {
            let mut cmd = Command::new(runner);
            cmd.arg(bin);
            cmd
        }
        _ => Command::new(bin),
    }
}

fn landfall(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = landfall_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("landfall starts");
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A bad-input failure: exit 2, exactly one line on stderr, containing `needle`, no panic.
fn assert_bad_input(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn classify_json_lines_follow_the_contract() {
    let c = case("zh_qv");
    let texts = &c.reference.texts[..3];
    let mut args = vec![
        "classify",
        "--base",
        s(&c.base_dir),
        "--adapter",
        s(&c.adapter_dir),
        "--json",
        "--device",
        "cpu",
    ];
    for t in texts {
        args.push("--text");
        args.push(t);
    }
    let o = landfall(&args, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let raw = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<serde_json::Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    // Scores are keyed in label-id order in the text itself (serde_json::Value would sort them).
    for line in raw.lines() {
        let scores = &line[line.find("\"scores\"").unwrap()..];
        let positions: Vec<usize> = c
            .reference
            .labels
            .iter()
            .map(|l| scores.find(&format!("\"{l}\"")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{line}");
    }
    for ((line, text), logits) in lines.iter().zip(texts).zip(&c.reference.logits_single) {
        assert_eq!(line["text"], text.as_str());
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        assert_eq!(line["label_id"], best);
        assert_eq!(line["label"], c.reference.labels[best].as_str());
        let scores = line["scores"].as_object().unwrap();
        assert_eq!(scores.len(), c.reference.labels.len());
        let total: f64 = scores.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert_eq!(line["logits"].as_array().unwrap().len(), logits.len());
        assert!(line["adapter"].as_str().unwrap().contains("zh_qv"));
    }
}

#[test]
fn classify_reads_stdin_csv_and_jsonl() {
    let c = case("en_wide_patterns");
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("in.csv");
    std::fs::write(&csv, "id,text\n1,\"good, really good\"\n2,bad\n").unwrap();
    let jsonl = dir.path().join("in.jsonl");
    std::fs::write(&jsonl, "{\"text\": \"good\"}\n\n{\"text\": \"bad\"}\n").unwrap();
    let base = [
        "classify",
        "--base",
        s(&c.base_dir),
        "--adapter",
        s(&c.adapter_dir),
    ];
    for (input, stdin, n) in [
        ("-", Some(&b"one\ntwo\nthree\n"[..]), 3),
        (s(&csv), None, 2),
        (s(&jsonl), None, 2),
    ] {
        let mut args = base.to_vec();
        args.extend(["--input", input]);
        let o = landfall(&args, stdin);
        assert!(o.status.success(), "{input}: {}", stderr(&o));
        let out = String::from_utf8(o.stdout).unwrap();
        assert_eq!(out.lines().count(), n, "{input}: {out}");
        // No config.json in this adapter dir: LABEL_i names.
        assert!(out.lines().all(|l| l.starts_with("LABEL_")), "{out}");
    }
    // --labels renames them.
    let mut args = base.to_vec();
    args.extend(["--labels", "neg,pos", "--text", "fine"]);
    let o = landfall(&args, None);
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.starts_with("neg\t") || out.starts_with("pos\t"),
        "{out}"
    );
}

#[test]
fn eval_reports_metrics_against_gold_labels() {
    let c = case("zh_qv");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gold.csv");
    // Gold = the reference's own argmax, given half by name and half by id: accuracy must be 1.
    let mut w = csv::Writer::from_path(&data).unwrap();
    w.write_record(["text", "label"]).unwrap();
    for (i, (text, logits)) in c
        .reference
        .texts
        .iter()
        .zip(&c.reference.logits_single)
        .enumerate()
    {
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        let label = if i % 2 == 0 {
            c.reference.labels[best].clone()
        } else {
            best.to_string()
        };
        w.write_record([text.as_str(), label.as_str()]).unwrap();
    }
    w.flush().unwrap();
    let o = landfall(
        &[
            "eval",
            "--base",
            s(&c.base_dir),
            "--adapter",
            s(&c.adapter_dir),
            "--data",
            s(&data),
            "--json",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["n"], c.reference.texts.len());
    assert_eq!(report["accuracy"], 1.0);
    let confusion = report["confusion"].as_array().unwrap();
    assert_eq!(confusion.len(), 3);
    assert!(report["per_class"]["正面"]["f1"].is_number());

    // A label that is neither name nor id names the file and line.
    std::fs::write(&data, "text,label\n好,满意\n").unwrap();
    let o = landfall(
        &[
            "eval",
            "--base",
            s(&c.base_dir),
            "--adapter",
            s(&c.adapter_dir),
            "--data",
            s(&data),
        ],
        None,
    );
    assert_bad_input(&o, "gold.csv:2");
}

#[test]
fn bad_inputs_fail_with_one_line_and_exit_2() {
    let c = case("zh_qv");
    let dir = tempfile::tempdir().unwrap();
    let classify = |base: &Path, adapter: &Path, extra: &[&str], stdin: Option<&[u8]>| {
        let mut args = vec!["classify", "--base", s(base), "--adapter", s(adapter)];
        args.extend_from_slice(extra);
        if !extra.contains(&"--input") {
            args.extend(["--text", "x"]);
        }
        landfall(&args, stdin)
    };

    // Missing directories and files.
    let o = classify(&dir.path().join("nope"), &c.adapter_dir, &[], None);
    assert_bad_input(&o, "nope");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = classify(&c.base_dir, &empty, &[], None);
    assert_bad_input(&o, "adapter_config.json");

    // Corrupt safetensors.
    let corrupt = dir.path().join("corrupt");
    copy_dir(&c.adapter_dir, &corrupt);
    std::fs::write(
        corrupt.join("adapter_model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json",
    )
    .unwrap();
    let o = classify(&c.base_dir, &corrupt, &[], None);
    assert_bad_input(&o, "adapter_model.safetensors");

    // Unknown target module.
    let unknown = dir.path().join("unknown");
    copy_dir(&c.adapter_dir, &unknown);
    let cfg_path = unknown.join("adapter_config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["target_modules"] = serde_json::json!(["query", "q_proj"]);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let o = classify(&c.base_dir, &unknown, &[], None);
    assert_bad_input(&o, "q_proj");

    // DoRA is refused by name.
    cfg["target_modules"] = serde_json::json!(["query", "value"]);
    cfg["use_dora"] = serde_json::json!(true);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let o = classify(&c.base_dir, &unknown, &[], None);
    assert_bad_input(&o, "use_dora");

    // A base whose shapes do not fit the adapter (another fixture base, other sizes or layers).
    let other = case("en_wide_patterns");
    let o = classify(&other.base_dir, &c.adapter_dir, &[], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // Non-UTF-8 input line.
    let o = classify(
        &c.base_dir,
        &c.adapter_dir,
        &["--input", "-"],
        Some(b"fine\n\xff\xfe\n"),
    );
    assert_bad_input(&o, "stdin:2");

    // Wrong number of --labels.
    let o = classify(&c.base_dir, &c.adapter_dir, &["--labels", "a,b"], None);
    assert_bad_input(&o, "--labels");

    // Unknown quantization is a usage error from the parser.
    let o = classify(&c.base_dir, &c.adapter_dir, &["--quant", "q3"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("q3"));
}
