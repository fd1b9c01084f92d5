//! `landfall bench classify`: texts/s at fixed batch sizes and sequence length, RSS after the
//! load and at the peak.
//! benches/classifier_vs_pytorch.py runs this beside transformers+peft and prints the ratios.

use std::io::Write;
use std::time::Instant;

use serde_json::json;

use super::{load_classifier, CliError};
use crate::cli::BenchClassifyArgs;
use crate::health::process_memory;

/// A text long enough to fill any `--seq-len`: truncation then makes every text exactly that long.
const FILLER: &str =
    "这个产品非常好用，质量也不错，物流很快，包装完好，客服态度热情，下次还会再来购买。";

pub fn run(args: &BenchClassifyArgs) -> Result<(), CliError> {
    let mut classifier = load_classifier(&args.classifier)?;
    // On CUDA this is what stays on the host once the weights are on the GPU (on a Jetson the
    // same DRAM): it should be the runtime's, not the model's.
    let after_load = process_memory();
    classifier.set_max_length(args.seq_len)?;
    let text = FILLER.repeat(args.seq_len / 8 + 4);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for &batch in &args.batch_sizes {
        let texts: Vec<&str> = vec![text.as_str(); batch.max(1)];
        classifier.logits(&texts)?; // warm-up: first-touch allocations, lazy init
        let start = Instant::now();
        let mut done = 0usize;
        while start.elapsed().as_secs_f64() < args.seconds {
            classifier.logits(&texts)?;
            done += texts.len();
        }
        let secs = start.elapsed().as_secs_f64();
        let mem = process_memory();
        let line = json!({
            "impl": "landfall",
            "quant": args.classifier.model.quant.to_string(),
            "merge": args.classifier.merge,
            "batch": batch,
            "seq_len": args.seq_len,
            "texts_per_s": done as f64 / secs,
            "rss_after_load_mib": after_load.rss_bytes as f64 / (1024.0 * 1024.0),
            "peak_rss_mib": mem.peak_rss_bytes as f64 / (1024.0 * 1024.0),
            "base_weight_mib": classifier.base().model.weight_bytes() as f64 / (1024.0 * 1024.0),
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}
