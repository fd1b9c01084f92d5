//! The captioner (BLIP-2) on the engine thread: loaded once, then asked for captions and answers.
//! A model directory that is absent leaves it `missing` (jobs are answered `model_unavailable`
//! with the command that installs it); one that fails to load is `failed` with the loader's error.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use image::RgbImage;

use crate::config::CaptionerConfig;
use crate::daemon::jobs::{Answer, JobError, JobId, VisionAnswer, VisionInput};
use crate::models::blip2::{
    Blip2LoadOptions, Captioner, ChoiceScore, GenerationOptions, ImageFeatures,
};
use crate::models::first_line;
use crate::models::runtime::Placement;
use crate::models::status::{ModelState, ModelStatus};
use crate::models::ModelError;

/// The most images one pass of the vision encoder takes: frames due together from a few cameras,
/// without a scheduler batch of 16 holding 16 images' activations at once (on a Jetson, in the
/// memory the language model needs too).
pub const VISION_BATCH: usize = 4;

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

    /// Runs a batch: the images through the vision encoder and Q-Former together (up to
    /// [`VISION_BATCH`] at a time), then each input's prompt through the language model.
    pub fn run(&self, items: Vec<(JobId, VisionInput)>) -> Vec<(JobId, Result<Answer, JobError>)> {
        let mut features = catch_unwind(AssertUnwindSafe(|| self.batch_features(&items)))
            .unwrap_or_default()
            .into_iter();
        items
            .into_iter()
            .map(|(id, input)| {
                let ready = features.next().flatten();
                let outcome = catch_unwind(AssertUnwindSafe(|| self.run_one(&input, ready)))
                    .unwrap_or_else(|_| {
                        Err(JobError::Failed("the model panicked on this input".into()))
                    });
                (id, outcome.map(Answer::Vision))
            })
            .collect()
    }

    /// Image features for every item, batched; a chunk whose batch fails leaves its items
    /// `None`, so each is run on its own and answered with its own error.
    fn batch_features(&self, items: &[(JobId, VisionInput)]) -> Vec<Option<ImageFeatures>> {
        let Ok(loaded) = &self.loaded else {
            return Vec::new();
        };
        if items.len() < 2 {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(VISION_BATCH) {
            let images: Vec<&RgbImage> = chunk.iter().map(|(_, input)| &*input.image).collect();
            match loaded.features_batch(&images) {
                Ok(features) => out.extend(features.into_iter().map(Some)),
                Err(e) => {
                    tracing::warn!(
                        "captioner: a batch of {} images failed ({e}); running them one by one",
                        chunk.len()
                    );
                    out.extend(chunk.iter().map(|_| None));
                }
            }
        }
        out
    }

    fn run_one(
        &self,
        input: &VisionInput,
        ready: Option<ImageFeatures>,
    ) -> Result<VisionAnswer, JobError> {
        let loaded = self
            .loaded
            .as_ref()
            .map_err(|reason| JobError::Unavailable(reason.clone()))?;
        let features = match ready {
            Some(features) => features,
            None => loaded.features(&input.image).map_err(job_error)?,
        };
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::models::runtime::{DeviceChoice, Quant};

    fn slot() -> CaptionerSlot {
        let cfg = CaptionerConfig {
            model: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blip2/modern"),
            quant: Quant::None,
            device: DeviceChoice::Cpu,
            dtype: None,
            max_new_tokens: 6,
            prompt: String::new(),
        };
        let (slot, status) = CaptionerSlot::load(&cfg);
        assert!(slot.loaded.is_ok(), "{status:?}");
        slot
    }

    fn input(image: &str, prompt: &str, choices: Option<&[&str]>) -> VisionInput {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/blip2/images")
            .join(image);
        VisionInput {
            image: Arc::new(image::open(path).unwrap().to_rgb8()),
            prompt: prompt.into(),
            max_new_tokens: 6,
            choices: choices.map(|c| c.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn answers(slot: &CaptionerSlot, items: Vec<(JobId, VisionInput)>) -> Vec<VisionAnswer> {
        slot.run(items)
            .into_iter()
            .map(|(_, outcome)| match outcome.unwrap() {
                Answer::Vision(v) => v,
                other => panic!("not a vision answer: {other:?}"),
            })
            .collect()
    }

    /// Five inputs, more than one vision batch (`VISION_BATCH`): each answer equals the one the
    /// input gets on its own, captions and choices alike, in order.
    #[test]
    fn a_batch_answers_as_one_input_at_a_time() {
        let slot = slot();
        let inputs = vec![
            input("square32.png", "", None),
            input("wide61x37.png", "Question: what is it? Answer:", None),
            input(
                "gray40x30.png",
                "Question: which? Answer:",
                Some(&["red", "blue"]),
            ),
            input("rgba29.png", "", None),
            input("small13x20.png", "", None),
        ];
        assert!(inputs.len() > VISION_BATCH);
        let batched = answers(
            &slot,
            inputs
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, x)| (JobId(i as u64), x))
                .collect(),
        );
        for (i, x) in inputs.into_iter().enumerate() {
            let alone = answers(&slot, vec![(JobId(0), x)]);
            assert_eq!(batched[i].text, alone[0].text, "input {i}");
            match (&batched[i].scores, &alone[0].scores) {
                (Some(a), Some(b)) => {
                    for ((ca, pa), (cb, pb)) in a.iter().zip(b) {
                        assert_eq!(ca, cb);
                        assert!((pa - pb).abs() < 1e-5, "input {i}: {pa} vs {pb}");
                    }
                }
                (None, None) => {}
                other => panic!("input {i}: scores differ: {other:?}"),
            }
        }
    }
}
