//! `landfall classify`: texts in, labels out (plain `label<TAB>score<TAB>text` or `--json`).

use std::io::Write;

use serde::Serialize;

use super::{load_classifier, CliError};
use crate::classifier::input::read_rows;
use crate::cli::ClassifyArgs;
use crate::wire::LabelScores;

/// One `--json` line, as the contract lists its fields; a struct (not `json!`) so the scores keep
/// label-id order.
#[derive(Serialize)]
struct ClassifyLine<'a> {
    text: &'a str,
    label: &'a str,
    label_id: usize,
    scores: LabelScores,
    logits: &'a [f32],
    adapter: &'a str,
}

pub fn run(args: &ClassifyArgs) -> Result<(), CliError> {
    let mut texts = args.texts.clone();
    if let Some(path) = &args.input {
        texts.extend(read_rows(path, false)?.into_iter().map(|r| r.text));
    }
    if texts.is_empty() {
        return Err(CliError::usage(
            "nothing to classify: give --text T (repeatable) or --input FILE (.csv, .jsonl or - for stdin)",
        ));
    }
    let classifier = load_classifier(&args.classifier)?;
    let adapter = classifier.adapter_dir().display().to_string();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for chunk in texts.chunks(args.classifier.batch_size as usize) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let predictions = classifier.classify(&refs)?;
        for (text, p) in chunk.iter().zip(predictions) {
            if args.json {
                let line = ClassifyLine {
                    text,
                    label: &p.label,
                    label_id: p.label_id,
                    scores: LabelScores::new(&classifier.labels, &p.scores),
                    logits: &p.logits,
                    adapter: &adapter,
                };
                let line = serde_json::to_string(&line)
                    .map_err(|e| CliError::runtime(format!("encoding output: {e}")))?;
                writeln!(out, "{line}")?;
            } else {
                writeln!(out, "{}\t{:.4}\t{}", p.label, p.scores[p.label_id], text)?;
            }
        }
    }
    Ok(())
}
