//! `landfall bench caption` through the real binary on the tiny BLIP-2 fixture: the JSON line has
//! every figure, the logits file holds one finite f32 per vocabulary entry, and a bad model
//! directory is a one-line error with exit code 2.

use std::path::Path;
use std::process::{Command, Output};

fn landfall(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_landfall"))
        .args(args)
        .output()
        .expect("landfall starts")
}

fn fixture() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/blip2/modern"
    ))
}

#[test]
fn reports_every_figure_and_writes_the_logits() {
    let dir = tempfile::tempdir().unwrap();
    let logits = dir.path().join("logits.f32");
    let o = landfall(&[
        "bench",
        "caption",
        "--model",
        fixture().to_str().unwrap(),
        "--device",
        "cpu",
        "--quant",
        "q8_0",
        "--new-tokens",
        "3",
        "--repeats",
        "1",
        "--bandwidth-mib",
        "16",
        "--logits-out",
        logits.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "stderr: {stderr}");
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(line["quant"], "q8_0");
    // Forced decoding: EOS cannot end the run early.
    assert_eq!(line["new_tokens"], 3);
    // Four cameras' frames by default, timed as one batch.
    assert_eq!(line["cameras"], 4);
    for key in [
        "load_s",
        "peak_rss_mib",
        "weight_mib",
        "decoder_mib_per_token",
        "vision_qformer_ms",
        "prefill_ms",
        "decode_tokens_per_s",
        "bandwidth_gb_s",
        "decode_bound_tokens_per_s",
        "vision_images_per_s_1_camera",
        "vision_images_per_s_cameras",
    ] {
        let v = line[key].as_f64().unwrap_or(-1.0);
        assert!(v > 0.0 && v.is_finite(), "{key} = {}", line[key]);
    }
    // The peak resident set includes the weights the model holds.
    assert!(line["peak_rss_mib"].as_f64().unwrap() >= line["weight_mib"].as_f64().unwrap());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture().join("config.json")).unwrap()).unwrap();
    let vocab = config["text_config"]["vocab_size"].as_u64().unwrap() as usize;
    let bytes = std::fs::read(&logits).unwrap();
    assert_eq!(bytes.len(), vocab * 4);
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert!(values.iter().all(|v| v.is_finite()));
    assert!(values.iter().any(|v| *v != values[0]), "logits all equal");
}

#[test]
fn a_missing_model_directory_is_one_line_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let o = landfall(&["bench", "caption", "--model", missing.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("config.json"), "{err}");
}
