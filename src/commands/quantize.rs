//! `landfall quantize`: a GGUF of a BLIP-2 or BERT model's quantized weights, with a progress bar.

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::QuantizeArgs;
use crate::models::quantize::quantize_dir;

use super::CliError;

pub fn run(args: &QuantizeArgs) -> Result<(), CliError> {
    // Hidden when stderr is not a terminal (indicatif's default), so scripts see only the summary.
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tensors {elapsed} {wide_msg}")
            .map_err(|e| CliError::runtime(e.to_string()))?,
    );
    let report = quantize_dir(
        &args.model,
        args.quant,
        args.out.as_deref(),
        &mut |done, total, name| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(name.to_string());
        },
    )?;
    bar.finish_and_clear();
    println!(
        "{}: {} tensors, {} quantized to {}; {:.1} MiB of f32 weights -> {:.1} MiB",
        report.path.display(),
        report.tensors,
        report.quantized,
        args.quant,
        report.float_bytes as f64 / (1u64 << 20) as f64,
        report.gguf_bytes as f64 / (1u64 << 20) as f64,
    );
    Ok(())
}
