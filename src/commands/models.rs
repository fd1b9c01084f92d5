//! `landfall models pull` and `landfall models pin`: the default model set from the Hugging Face
//! Hub (see [`crate::hub`]). Pull failures exit 1, a bad manifest or bad arguments exit 2.

use crate::cli::{ModelsPinArgs, ModelsPullArgs};
use crate::commands::CliError;
use crate::hub::download::{self, PullSummary};
use crate::hub::manifest::Manifest;
use crate::hub::{pin, Hub, HubError, Progress};

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
    Ok(())
}

/// Resolves revisions to commits and fills in sha256 and size of every file of the manifest.
pub fn pin(args: &ModelsPinArgs) -> Result<(), CliError> {
    let hub = Hub::from_env()?;
    let pinned = block_on(pin::pin(
        &hub,
        &args.manifest,
        &args.only,
        args.revision.as_deref(),
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
    println!("wrote {}", args.manifest.display());
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
