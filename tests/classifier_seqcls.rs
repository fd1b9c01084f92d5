//! Fine-tuned `BertForSequenceClassification` checkpoints used as classifiers on their own (no
//! adapter), against transformers on the fixtures of tests/fixtures/generate_seqcls.py: one with
//! a torch-pickle `pytorch_model.bin` and `vocab.txt` only (as uer's Chinese review classifiers
//! ship), one with safetensors and `tokenizer.json` only. Logits within 1e-4 alone and batched,
//! label names from `config.json`, through the library and through `landfall classify --base`.

use std::path::{Path, PathBuf};
use std::process::Command;

use landfall::classifier::{BaseCache, Classifier, ClassifierOptions};
use serde::Deserialize;

const TOLERANCE: f32 = 1e-4;
const CASES: [&str; 2] = ["zh_bin", "en_safetensors"];

#[derive(Deserialize)]
struct Reference {
    labels: Vec<String>,
    texts: Vec<String>,
    logits_single: Vec<Vec<f32>>,
    logits_batched: Vec<Vec<f32>>,
}

fn dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/classifier/seqcls")
        .join(case)
}

fn reference(case: &str) -> Reference {
    let text = std::fs::read_to_string(dir(case).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

#[test]
fn a_fine_tuned_checkpoint_alone_matches_transformers() {
    for case in CASES {
        let r = reference(case);
        let mut cache = BaseCache::default();
        let c = Classifier::open(&dir(case), None, &ClassifierOptions::default(), &mut cache)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(c.adapter().is_none());
        assert_eq!(c.labels, r.labels, "{case}: labels from config.json");
        let single: Vec<Vec<f32>> = r
            .texts
            .iter()
            .map(|t| c.logits(&[t.as_str()]).unwrap().remove(0))
            .collect();
        let d = max_abs_diff(&single, &r.logits_single);
        assert!(d < TOLERANCE, "{case}: single-text logits differ by {d}");
        let texts: Vec<&str> = r.texts.iter().map(String::as_str).collect();
        let d = max_abs_diff(&c.logits(&texts).unwrap(), &r.logits_batched);
        assert!(d < TOLERANCE, "{case}: batched logits differ by {d}");
    }
}

#[test]
fn classify_base_without_an_adapter_names_the_checkpoints_labels() {
    for case in CASES {
        let r = reference(case);
        let base = dir(case);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_landfall"));
        cmd.args(["classify", "--base", base.to_str().unwrap(), "--json"]);
        for t in &r.texts[..4] {
            cmd.args(["--text", t]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        for (line, logits) in stdout.lines().zip(&r.logits_single) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let best = (0..logits.len())
                .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
                .unwrap();
            assert_eq!(v["label"], r.labels[best].as_str(), "{case}: {line}");
            let got: Vec<f32> = v["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            let d = max_abs_diff(&[got], std::slice::from_ref(logits));
            assert!(d < TOLERANCE, "{case}: {d}");
        }
        assert_eq!(stdout.lines().count(), 4);
    }
}

#[test]
fn a_plain_base_without_an_adapter_says_what_is_missing() {
    let base =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classifier/bases/zh_prefixed");
    let out = Command::new(env!("CARGO_BIN_EXE_landfall"))
        .args(["classify", "--base", base.to_str().unwrap(), "--text", "好"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("classifier.weight"), "{err}");
    assert!(err.contains("--adapter"), "{err}");
}
