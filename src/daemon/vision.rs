//! The one place where caption and VQA jobs call the model (BLIP-2), on the engine thread.
//!
//! The daemon hands [`VisionModel::run`] a decoded RGB frame and the full prompt text and takes
//! back the generated text. Until the BLIP-2 runtime is part of this build, [`VisionModel::load`]
//! reports the captioner `missing` and every job is answered `model_unavailable` with the model
//! directory and the command that installs it. Plugging the model in changes this file only.

use std::path::Path;
use std::sync::Arc;

use image::RgbImage;

use super::engine::{ModelState, ModelStatus};
use crate::config::CaptionerConfig;

/// One caption or question.
#[derive(Debug, Clone)]
pub struct VisionInput {
    pub image: Arc<RgbImage>,
    /// The full prompt: empty for a plain caption, a filled-in template for VQA.
    pub prompt: String,
    pub max_new_tokens: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisionAnswer {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisionError {
    /// No model to run: answered `model_unavailable`.
    Unavailable(String),
    /// The model failed on this input: answered `internal`.
    Failed(String),
}

pub struct VisionModel {
    /// Why jobs cannot run; `None` once a model is loaded.
    unavailable: Option<String>,
}

/// The model's name in results and health: its directory's name.
pub fn model_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn missing_reason(dir: &Path) -> String {
    let config = dir.join("config.json");
    if config.is_file() {
        format!(
            "{}: BLIP-2 inference is not part of this build of landfall yet; captions and VQA are answered model_unavailable",
            dir.display()
        )
    } else {
        format!(
            "{} not found (the BLIP-2 model); run `landfall models pull` or set [captioner] model",
            config.display()
        )
    }
}

impl VisionModel {
    /// Loads the captioner (on the engine thread) and says how that went, for health.
    pub fn load(cfg: &CaptionerConfig) -> (Self, ModelStatus) {
        let reason = missing_reason(&cfg.model);
        tracing::warn!("captioner: {reason}");
        let status = ModelStatus {
            name: model_name(&cfg.model),
            state: ModelState::Missing(reason.clone()),
            quant: cfg.quant.to_string(),
            device: cfg.device.to_string(),
            adapter: String::new(),
            labels: Vec::new(),
        };
        (
            Self {
                unavailable: Some(reason),
            },
            status,
        )
    }

    /// Runs one job.
    pub fn run(&self, input: &VisionInput) -> Result<VisionAnswer, VisionError> {
        if let Some(reason) = &self.unavailable {
            return Err(VisionError::Unavailable(reason.clone()));
        }
        Err(VisionError::Failed(format!(
            "no BLIP-2 runtime for a {}x{} image",
            input.image.width(),
            input.image.height()
        )))
    }
}
