//! What each subcommand does. Every command returns a [`CliError`] that carries the exit code of
//! the contract: 1 runtime failure, 2 bad usage, config or input.

pub mod adapter;
pub mod bench;
pub mod bench_caption;
pub mod caption;
pub mod classify;
pub mod eval;
pub mod models;
pub mod quantize;
pub mod run;

use std::fmt;

use crate::classifier::input::InputError;
use crate::classifier::{BaseCache, Classifier, ClassifierOptions};
use crate::cli::{ClassifierArgs, ModelArgs};
use crate::models::runtime::{FloatType, Placement};
use crate::models::ModelError;

#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ModelError> for CliError {
    fn from(e: ModelError) -> Self {
        let code = if e.is_bad_input() { 2 } else { 1 };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

impl From<InputError> for CliError {
    fn from(e: InputError) -> Self {
        Self::usage(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::runtime(format!("writing output: {e}"))
    }
}

/// Device, dtype and quantization from the common model flags.
pub fn runtime_options(args: &ModelArgs) -> Result<(candle_core::Device, FloatType), CliError> {
    let placement =
        Placement::open(args.device, args.dtype).map_err(|e| CliError::usage(e.to_string()))?;
    Ok((placement.device, placement.dtype))
}

/// Loads the classifier the `--base`/`--adapter` flags name.
pub fn load_classifier(args: &ClassifierArgs) -> Result<Classifier, CliError> {
    let (device, dtype) = runtime_options(&args.model)?;
    let opts = ClassifierOptions {
        device,
        dtype: dtype.dtype(),
        quant: args.model.quant,
        merge: args.merge,
        labels: args.labels.clone(),
    };
    let mut cache = BaseCache::default();
    Ok(Classifier::open(
        &args.base,
        args.adapter.as_deref(),
        &opts,
        &mut cache,
    )?)
}
