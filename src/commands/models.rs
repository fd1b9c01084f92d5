//! `landfall models pull` and `landfall models pin`: the default model set from the Hugging Face
//! Hub (see [`crate::hub`]). Pull failures exit 1, a bad manifest or bad arguments exit 2.

use crate::cli::{ModelsPinArgs, ModelsPullArgs, QuantizeArgs};
use crate::commands::CliError;
use crate::hub::download::{self, PullSummary};
use crate::hub::manifest::Manifest;
use crate::hub::{pin, Hub, HubError, Progress};
use crate::models::blip2::gguf_path;
use crate::models::runtime::Quant;

impl From<HubError> for CliError {
    fn from(e: HubError) -> Self {
        if e.is_bad_input() {
            Self::usage(e.to_string())
        } else {
            Self::runtime(e.to_string())
        }
    }
}

/// Downloads and verifies the selected models of the manifest.
pub fn pull(args: &ModelsPullArgs) -> Result<(), CliError> {
    let manifest = match &args.manifest {
        Some(path) => Manifest::load(path)?,
        None => Manifest::built_in()?,
    };
    let hub = Hub::from_env()?;
    let summary = block_on(download::pull(
        &hub,
        &manifest,
        &args.only,
        &args.models_dir,
        Progress::auto(),
    ))??;
    println!(
        "{}",
        describe(&summary, &args.models_dir.display().to_string())
    );
    // BLIP-2 models are quantized once, here, into the GGUF the daemon then loads: a device never
    // has to hold the float checkpoint in memory.
    for model in manifest.select(&args.only)? {
        let dir = args.models_dir.join(&model.name);
        if model.quant == Quant::None || !is_blip2(&dir) || gguf_path(&dir, model.quant).is_file() {
            continue;
        }
        super::quantize::run(&QuantizeArgs {
            model: dir,
            quant: model.quant,
            out: None,
        })?;
    }
    Ok(())
}

/// Whether `dir` holds a BLIP-2 checkpoint (its config.json says `"model_type": "blip-2"`).
fn is_blip2(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["model_type"] == "blip-2")
}

/// Resolves revisions to commits and fills in sha256 and size of every file of the manifest.
pub fn pin(args: &ModelsPinArgs) -> Result<(), CliError> {
    let hub = Hub::from_env()?;
    let pinned = block_on(pin::pin(
        &hub,
        &args.manifest,
        &args.only,
        args.revision.as_deref(),
        &args.models_dir,
        Progress::auto(),
    ))??;
    for model in &pinned {
        let bytes: u64 = model.files.iter().map(|f| f.size).sum();
        println!(
            "pinned {} at {}: {} files, {bytes} bytes",
            model.name,
            model.commit,
            model.files.len()
        );
    }
    println!(
        "wrote {}; the files are installed in {}",
        args.manifest.display(),
        args.models_dir.display()
    );
    Ok(())
}

/// The one line a finished pull prints.
fn describe(summary: &PullSummary, models_dir: &str) -> String {
    format!(
        "{} model(s) in {models_dir}: {} file(s) downloaded ({} bytes), {} already present",
        summary.models, summary.downloaded, summary.downloaded_bytes, summary.present
    )
}

/// Runs a hub future on a runtime of its own: the commands are one-shot and need one thread.
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the async runtime: {e}")))?;
    Ok(runtime.block_on(future))
}
