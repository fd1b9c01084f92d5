//! `landfall eval`: accuracy, macro-F1, per-class P/R/F1 and confusion on labelled data.

use std::io::Write;

use super::{load_classifier, CliError};
use crate::classifier::evaluate::{gold_ids, predict};
use crate::classifier::input::read_rows;
use crate::classifier::metrics::evaluate;
use crate::cli::EvalArgs;

pub fn run(args: &EvalArgs) -> Result<(), CliError> {
    let rows = read_rows(&args.data, true)?;
    if rows.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no rows to evaluate",
            args.data.display()
        )));
    }
    let classifier = load_classifier(&args.classifier)?;
    let labels = &classifier.labels;
    let gold = gold_ids(&rows, labels, &args.data)?;
    let predicted = predict(&classifier, &rows, args.classifier.batch_size as usize)?;
    let report = evaluate(&gold, &predicted, labels);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&report).map_err(|e| CliError::runtime(e.to_string()))?
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "n = {}  accuracy = {:.4}  macro-F1 = {:.4}",
        report.n, report.accuracy, report.macro_f1
    )?;
    writeln!(
        out,
        "{:<16} {:>9} {:>9} {:>9} {:>8}",
        "label", "precision", "recall", "f1", "support"
    )?;
    for (label, m) in &report.per_class {
        writeln!(
            out,
            "{:<16} {:>9.4} {:>9.4} {:>9.4} {:>8}",
            label,
            m["precision"].as_f64().unwrap_or(0.0),
            m["recall"].as_f64().unwrap_or(0.0),
            m["f1"].as_f64().unwrap_or(0.0),
            m["support"]
        )?;
    }
    writeln!(
        out,
        "confusion (rows = gold, columns = predicted, order: {})",
        labels.join(", ")
    )?;
    for row in &report.confusion {
        writeln!(
            out,
            "  {}",
            row.iter().map(|c| format!("{c:>6}")).collect::<String>()
        )?;
    }
    Ok(())
}
