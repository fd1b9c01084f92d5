//! Classification metrics as `landfall eval` reports them: accuracy, macro-F1, per-class
//! precision/recall/F1/support (scikit-learn's definitions, 0 where undefined) and the confusion
//! matrix (rows = gold, columns = predicted).

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub n: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    /// By label name, in label id order (serde_json keeps insertion order).
    pub per_class: serde_json::Map<String, serde_json::Value>,
    /// `confusion[gold][predicted]` counts, by label id.
    pub confusion: Vec<Vec<usize>>,
}

/// Computes the report for gold and predicted label ids over `labels`.
pub fn evaluate(gold: &[usize], predicted: &[usize], labels: &[String]) -> EvalReport {
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&g, &p) in gold.iter().zip(predicted) {
        confusion[g][p] += 1;
    }
    let n = gold.len();
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let mut per_class = BTreeMap::new();
    let mut f1_sum = 0.0;
    for (i, _) in labels.iter().enumerate() {
        let tp = confusion[i][i] as f64;
        let predicted_i: usize = (0..k).map(|g| confusion[g][i]).sum();
        let support: usize = confusion[i].iter().sum();
        let precision = ratio(tp, predicted_i as f64);
        let recall = ratio(tp, support as f64);
        let f1 = ratio(2.0 * precision * recall, precision + recall);
        f1_sum += f1;
        per_class.insert(
            i,
            ClassMetrics {
                precision,
                recall,
                f1,
                support,
            },
        );
    }
    let per_class = per_class
        .into_iter()
        .map(|(i, m)| {
            (
                labels[i].clone(),
                serde_json::to_value(m).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect();
    EvalReport {
        n,
        accuracy: ratio(correct as f64, n as f64),
        macro_f1: if k == 0 { 0.0 } else { f1_sum / k as f64 },
        per_class,
        confusion,
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_values() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // gold a a b b c c ; pred a b b b a c
        let r = evaluate(&[0, 0, 1, 1, 2, 2], &[0, 1, 1, 1, 0, 2], &labels);
        assert_eq!(r.n, 6);
        assert!((r.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(
            r.confusion,
            vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 1]]
        );
        // a: p=1/2 r=1/2 f=1/2; b: p=2/3 r=1 f=0.8; c: p=1 r=1/2 f=2/3
        let macro_f1 = (0.5 + 0.8 + 2.0 / 3.0) / 3.0;
        assert!((r.macro_f1 - macro_f1).abs() < 1e-12);
        assert_eq!(r.per_class["b"]["support"], 2);
    }

    #[test]
    fn absent_class_scores_zero_not_nan() {
        let labels = vec!["x".to_string(), "y".to_string()];
        let r = evaluate(&[0, 0], &[0, 0], &labels);
        assert_eq!(r.per_class["y"]["f1"], 0.0);
        assert_eq!(r.accuracy, 1.0);
    }
}
