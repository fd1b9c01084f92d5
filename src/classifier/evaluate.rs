//! Scoring a classifier on labelled rows: the gold label ids of the rows (a label written as its
//! name or its id), and the predictions in batches. `landfall eval` and an adapter update's
//! canary both score this way.

use std::path::Path;

use super::input::{InputError, Row};
use super::Classifier;
use crate::models::ModelError;

/// The gold label id of every row; a label that is neither a name nor an id is an error naming
/// the file and line.
pub fn gold_ids(rows: &[Row], labels: &[String], file: &Path) -> Result<Vec<usize>, InputError> {
    rows.iter()
        .map(|row| {
            let raw = row.label.as_deref().unwrap_or_default().trim();
            labels
                .iter()
                .position(|l| l == raw)
                .or_else(|| raw.parse::<usize>().ok().filter(|i| *i < labels.len()))
                .ok_or_else(|| InputError {
                    source_name: file.display().to_string(),
                    line: row.line,
                    reason: format!(
                        "label {raw:?} is neither a label name ({}) nor an id below {}",
                        labels.join(", "),
                        labels.len()
                    ),
                })
        })
        .collect()
}

/// The predicted label id of every row, `batch` texts at a time.
pub fn predict(
    classifier: &Classifier,
    rows: &[Row],
    batch: usize,
) -> Result<Vec<usize>, ModelError> {
    let mut predicted = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
        predicted.extend(classifier.classify(&texts)?.into_iter().map(|p| p.label_id));
    }
    Ok(predicted)
}

/// The share of `gold` that `predicted` gets right (0 for no rows).
pub fn accuracy(gold: &[usize], predicted: &[usize]) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    let right = gold.iter().zip(predicted).filter(|(g, p)| g == p).count();
    right as f64 / gold.len() as f64
}
