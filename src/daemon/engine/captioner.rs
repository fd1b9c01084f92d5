//! The captioner (BLIP-2) on the engine thread: loaded once, then asked for captions and answers.
//! A model directory that is absent leaves it `missing` (jobs are answered `model_unavailable`
//! with the command that installs it); one that fails to load is `failed` with the loader's error.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use crate::config::CaptionerConfig;
use crate::daemon::jobs::{Answer, JobError, JobId, VisionAnswer, VisionInput};
use crate::models::blip2::{Blip2LoadOptions, Captioner, ChoiceScore, GenerationOptions};
use crate::models::first_line;
use crate::models::runtime::Placement;
use crate::models::status::{ModelState, ModelStatus};
use crate::models::ModelError;

pub struct CaptionerSlot {
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
    let placement = Placement::open(cfg.device, cfg.dtype).map_err(|e| e.to_string())?;
    let opts = Blip2LoadOptions {
        device: placement.device.clone(),
        dtype: placement.dtype.dtype(),
        quant: cfg.quant,
    };
    let captioner = Captioner::load(&cfg.model, &opts).map_err(|e| first_line(&e.to_string()))?;
    Ok((captioner, placement.device_name()))
}

/// A model error on one input: a prompt that does not fit is the input's fault.
fn job_error(e: ModelError) -> JobError {
    match e {
        ModelError::Usage(why) => JobError::InvalidInput(first_line(&why)),
        other => JobError::Failed(first_line(&other.to_string())),
    }
}

impl CaptionerSlot {
    /// Loads the captioner and says how that went, for health.
    pub fn load(cfg: &CaptionerConfig) -> (Self, ModelStatus) {
        let mut status = ModelStatus::configured(
            &model_name(&cfg.model),
            cfg.quant.to_string(),
            cfg.device.to_string(),
        );
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
        let loaded = catch_unwind(AssertUnwindSafe(|| load(cfg)))
            .unwrap_or_else(|_| Err("the loader panicked".to_string()));
        match loaded {
            Ok((captioner, device)) => {
                tracing::info!(
                    "captioner: {} loaded on {device} ({})",
                    cfg.model.display(),
                    cfg.quant
                );
                status.device = device;
                status.max_prompt_tokens = captioner.model.max_prompt_tokens(cfg.max_new_tokens);
                (
                    Self {
                        loaded: Ok(captioner),
                    },
                    status,
                )
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

    /// Runs a batch, one input after the other.
    pub fn run(&self, items: Vec<(JobId, VisionInput)>) -> Vec<(JobId, Result<Answer, JobError>)> {
        items
            .into_iter()
            .map(|(id, input)| {
                let outcome = catch_unwind(AssertUnwindSafe(|| self.run_one(&input)))
                    .unwrap_or_else(|_| {
                        Err(JobError::Failed("the model panicked on this input".into()))
                    });
                (id, outcome.map(Answer::Vision))
            })
            .collect()
    }

    fn run_one(&self, input: &VisionInput) -> Result<VisionAnswer, JobError> {
        let loaded = self
            .loaded
            .as_ref()
            .map_err(|reason| JobError::Unavailable(reason.clone()))?;
        let features = loaded.features(&input.image).map_err(job_error)?;
        if let Some(choices) = &input.choices {
            let scores = loaded
                .model
                .score_choices(&features, &input.prompt, choices)
                .map_err(job_error)?;
            let best = ChoiceScore::best(&scores)
                .ok_or_else(|| JobError::Failed("the model scored no choices".into()))?;
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
            .map_err(job_error)?;
        let text = loaded.model.decode(&generation.tokens).map_err(job_error)?;
        Ok(VisionAnswer { text, scores: None })
    }
}
