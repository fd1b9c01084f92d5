//! The one place where caption and VQA jobs call the model (BLIP-2), on the engine thread.
//!
//! The daemon hands [`VisionModel::run`] a decoded RGB frame and the full prompt text and takes
//! back the generated text, or, for a question with choices, the most likely choice and every
//! choice's probability. A model directory that is absent leaves the captioner `missing` (jobs
//! are answered `model_unavailable` with the command that installs it); one that fails to load
//! is `failed` with the loader's error.

use std::path::Path;
use std::sync::Arc;

use image::RgbImage;

use super::engine::{ModelState, ModelStatus};
use crate::config::CaptionerConfig;
use crate::models::blip2::{Blip2LoadOptions, Captioner, ChoiceScore, GenerationOptions};
use crate::models::runtime::{device_name, FloatType};

/// One caption or question.
#[derive(Debug, Clone)]
pub struct VisionInput {
    pub image: Arc<RgbImage>,
    /// The full prompt: empty for a plain caption, a filled-in template for VQA.
    pub prompt: String,
    pub max_new_tokens: usize,
    /// VQA with choices: answer with the most likely one instead of free text.
    pub choices: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VisionAnswer {
    pub text: String,
    /// With choices: each choice and its probability, in the order asked.
    pub scores: Option<Vec<(String, f32)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisionError {
    /// No model to run: answered `model_unavailable`.
    Unavailable(String),
    /// The model failed on this input: answered `internal`.
    Failed(String),
}

pub struct VisionModel {
    /// The model, or why jobs cannot run.
    loaded: Result<Captioner, String>,
}

/// The model's name in results and health: its directory's name.
pub fn model_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn load(cfg: &CaptionerConfig) -> Result<(Captioner, String), String> {
    let device = cfg.device.open()?;
    let dtype = cfg.dtype.unwrap_or_else(|| FloatType::default_for(&device));
    let opts = Blip2LoadOptions {
        device: device.clone(),
        dtype: dtype.dtype(),
        quant: cfg.quant,
    };
    let captioner = Captioner::load(&cfg.model, &opts).map_err(|e| e.to_string())?;
    Ok((captioner, device_name(&device)))
}

impl VisionModel {
    /// Loads the captioner (on the engine thread) and says how that went, for health.
    pub fn load(cfg: &CaptionerConfig) -> (Self, ModelStatus) {
        let mut status = ModelStatus {
            name: model_name(&cfg.model),
            state: ModelState::Loaded,
            quant: cfg.quant.to_string(),
            device: cfg.device.to_string(),
            adapter: String::new(),
            labels: Vec::new(),
        };
        let config = cfg.model.join("config.json");
        if !config.is_file() {
            let reason = format!(
                "{} not found (the BLIP-2 model); run `landfall models pull` or set [captioner] model",
                config.display()
            );
            tracing::warn!("captioner: {reason}");
            status.state = ModelState::Missing(reason.clone());
            return (
                Self {
                    loaded: Err(reason),
                },
                status,
            );
        }
        match load(cfg) {
            Ok((loaded, device)) => {
                tracing::info!(
                    "captioner: {} loaded on {device} ({})",
                    cfg.model.display(),
                    cfg.quant
                );
                status.device = device;
                (Self { loaded: Ok(loaded) }, status)
            }
            Err(reason) => {
                tracing::error!("captioner: {reason}");
                status.state = ModelState::Failed(reason.clone());
                (
                    Self {
                        loaded: Err(reason),
                    },
                    status,
                )
            }
        }
    }

    /// Runs one job.
    pub fn run(&self, input: &VisionInput) -> Result<VisionAnswer, VisionError> {
        let loaded = self
            .loaded
            .as_ref()
            .map_err(|reason| VisionError::Unavailable(reason.clone()))?;
        let failed = |e: &dyn std::fmt::Display| VisionError::Failed(e.to_string());
        let features = loaded.features(&input.image).map_err(|e| failed(&e))?;
        if let Some(choices) = &input.choices {
            let scores = loaded
                .model
                .score_choices(&features, &input.prompt, choices)
                .map_err(|e| failed(&e))?;
            let best =
                ChoiceScore::best(&scores).ok_or_else(|| failed(&"the model scored no choices"))?;
            return Ok(VisionAnswer {
                text: best.choice.clone(),
                scores: Some(
                    scores
                        .iter()
                        .map(|s| (s.choice.clone(), s.probability))
                        .collect(),
                ),
            });
        }
        let opts = GenerationOptions {
            max_new_tokens: input.max_new_tokens,
            ..Default::default()
        };
        let generation = loaded
            .model
            .generate(&features, &input.prompt, &opts)
            .map_err(|e| failed(&e))?;
        let text = loaded
            .model
            .decode(&generation.tokens)
            .map_err(|e| failed(&e))?;
        Ok(VisionAnswer { text, scores: None })
    }
}
