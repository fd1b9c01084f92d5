//! `landfall caption`, `ask` and `quantize` through the real binary on the tiny BLIP-2 fixtures:
//! end to end from a PNG file (decode, resize, normalize, generate) to the ids transformers
//! generated, constrained answers, GGUF round trips, and one-line errors for bad inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blip2")
}

fn landfall(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_landfall"))
        .args(args)
        .output()
        .expect("landfall starts")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout_json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

/// A bad-input failure: exit 2, exactly one line on stderr, containing `needle`, no panic.
fn assert_bad_input(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The ids transformers generated for a case of a fixture model.
fn reference_ids(model: &str, case: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(fixtures().join(model).join("reference.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let case = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == case)
        .unwrap();
    case["new_token_ids"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

fn ids(out: &Value) -> Vec<u64> {
    out["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

fn caption(model: &Path, image: &str, extra: &[&str]) -> Output {
    let image = fixtures().join("images").join(image);
    let mut args = vec![
        "caption",
        "--model",
        s(model),
        "--image",
        s(&image),
        "--device",
        "cpu",
        "--max-new-tokens",
        "12",
        "--json",
    ];
    args.extend_from_slice(extra);
    landfall(&args)
}

#[test]
fn caption_from_a_png_matches_transformers() {
    let model = fixtures().join("modern");
    let out = stdout_json(&caption(&model, "square32.png", &[]));
    assert_eq!(ids(&out), reference_ids("modern", "caption_empty"));
    for key in ["text", "prompt", "device", "quant", "tokens_per_s"] {
        assert!(out.get(key).is_some(), "{key} missing: {out}");
    }
    for key in ["preprocess", "vision", "prefill", "decode", "total"] {
        assert!(out["timings_ms"][key].as_f64().unwrap() >= 0.0, "{key}");
    }
    assert_eq!(out["device"], "cpu");

    // A non-square image resized by the processor, with a prompt.
    let out = stdout_json(&caption(
        &model,
        "wide61x37.png",
        &["--prompt", "a photo of"],
    ));
    assert_eq!(ids(&out), reference_ids("modern", "caption_photo_wide"));
    assert_eq!(out["prompt"], "a photo of");

    // Beam search from the command line.
    let out = stdout_json(&caption(
        &model,
        "square32.png",
        &["--prompt", "a photo of", "--num-beams", "4"],
    ));
    assert_eq!(ids(&out), reference_ids("modern", "beam4_photo"));

    // Legacy layout: sharded weights, preprocessor_config.json, no image_token_index.
    let legacy = fixtures().join("legacy");
    let out = stdout_json(&caption(&legacy, "square24.png", &[]));
    assert!(out["text"].is_string());
}

#[test]
fn ask_answers_free_text_and_from_choices() {
    let model = fixtures().join("modern");
    let gray = fixtures().join("images/gray40x30.png");
    let out = stdout_json(&landfall(&[
        "ask",
        "--model",
        s(&model),
        "--image",
        s(&gray),
        "--question",
        "what is this?",
        "--max-new-tokens",
        "12",
        "--json",
    ]));
    assert_eq!(out["prompt"], "Question: what is this? Answer:");
    assert_eq!(ids(&out), reference_ids("modern", "vqa_gray"));

    let out = stdout_json(&landfall(&[
        "ask",
        "--model",
        s(&model),
        "--image",
        s(&gray),
        "--question",
        "is there a cat?",
        "--choices",
        "yes,no",
        "--template",
        "vqa",
        "--json",
    ]));
    assert_eq!(out["prompt"], "Question: is there a cat? Answer:");
    // transformers scored "no" above "yes" for this image and prompt (reference choice case).
    assert_eq!(out["text"], "no");
    let choices = out["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    let total: f64 = choices
        .iter()
        .map(|c| c["probability"].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-4);
}

#[test]
fn quantized_gguf_loads_without_the_checkpoint_and_matches_quantizing_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("modern");
    std::fs::create_dir(&model).unwrap();
    for entry in std::fs::read_dir(fixtures().join("modern")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
    }
    let at_load = stdout_json(&caption(&model, "square32.png", &["--quant", "q8_0"]));
    assert_eq!(at_load["quant"], "q8_0");

    let out = landfall(&["quantize", "--model", s(&model), "--quant", "q8_0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gguf = model.join("model-q8_0.gguf");
    assert!(gguf.is_file());
    assert!(String::from_utf8_lossy(&out.stdout).contains("quantized to q8_0"));
    // The float checkpoint is no longer needed.
    std::fs::remove_file(model.join("model.safetensors")).unwrap();
    let from_gguf = stdout_json(&caption(&model, "square32.png", &["--quant", "q8_0"]));
    assert_eq!(ids(&from_gguf), ids(&at_load));
    assert_eq!(from_gguf["text"], at_load["text"]);

    // Asking for another quantization than the GGUF holds, without a checkpoint: a clear error.
    let o = caption(&model, "square32.png", &["--quant", "q4_0"]);
    assert_bad_input(&o, "model.safetensors");
}

#[test]
fn bad_inputs_get_one_line_and_exit_2() {
    let model = fixtures().join("modern");
    let dir = tempfile::tempdir().unwrap();
    let not_image = dir.path().join("notes.png");
    std::fs::write(&not_image, b"this is not a picture").unwrap();
    let truncated = dir.path().join("cut.png");
    let png = std::fs::read(fixtures().join("images/square32.png")).unwrap();
    std::fs::write(&truncated, &png[..png.len() / 2]).unwrap();

    let run = |image: &Path, extra: &[&str]| {
        let mut args = vec!["caption", "--model", s(&model), "--image", s(image)];
        args.extend_from_slice(extra);
        landfall(&args)
    };
    assert_bad_input(&run(&dir.path().join("missing.jpg"), &[]), "missing.jpg");
    assert_bad_input(&run(&not_image, &[]), "notes.png");
    assert_bad_input(&run(&truncated, &[]), "cut.png");
    let square = fixtures().join("images/square32.png");
    assert_bad_input(&run(&square, &["--template", "nope"]), "unknown template");
    assert_bad_input(
        &run(
            &square,
            &["--min-new-tokens", "40", "--max-new-tokens", "5"],
        ),
        "--min-new-tokens",
    );
    assert_bad_input(
        &landfall(&["caption", "--model", s(dir.path()), "--image", s(&square)]),
        "config.json",
    );
    assert_bad_input(
        &landfall(&[
            "ask",
            "--model",
            s(&model),
            "--image",
            s(&square),
            "--question",
            "q?",
            "--choices",
            "yes",
        ]),
        "at least two",
    );
    assert_bad_input(
        &landfall(&["quantize", "--model", s(&model), "--quant", "none"]),
        "q8_0",
    );
}
