//! Where a well-formed request goes, or the error it gets instead: which classifier, which
//! camera, which prompt, and whether the prompt can fit the captioner at all. Pure functions of
//! the request and what the device has; nothing here tokenizes or decodes (limits are checked
//! against the model's positions before any such work).

use std::collections::BTreeMap;

use crate::models::status::{ModelState, ModelStatus};
use crate::prompts::{self, PromptVars};
use crate::wire::requests::{Upload, VisionRequest};
use crate::wire::{ErrorCode, Task};

use super::cameras::Cameras;

/// Bytes per token a prompt may average before it is refused without tokenizing: GPT-2's
/// byte-level BPE takes at least one byte per token, and real text runs 2 to 4 bytes per token
/// (English ~4, Chinese ~2). A prompt under this bound whose tokens still do not fit is refused
/// by the engine, once tokenized (also `invalid_field`).
pub const MAX_BYTES_PER_TOKEN: usize = 16;

/// An error answer in the making: the code and the one-line message.
pub type Refusal = (ErrorCode, String);

/// The classifier a classify request is for: the one it names, else the first configured.
pub fn classifier_for(name: Option<&str>, classifiers: &[ModelStatus]) -> Result<usize, Refusal> {
    let index = match name {
        None if classifiers.is_empty() => {
            return Err((
                ErrorCode::UnknownClassifier,
                "this device has no classifiers configured; add a [[classifier]] to its config"
                    .into(),
            ))
        }
        None => 0,
        Some(name) => classifiers
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = classifiers.iter().map(|m| m.name.as_str()).collect();
                (
                    ErrorCode::UnknownClassifier,
                    format!("no classifier {name:?} here; this device has {known:?}"),
                )
            })?,
    };
    let model = &classifiers[index];
    match &model.state {
        ModelState::Loaded => Ok(index),
        ModelState::Missing(why) | ModelState::Failed(why) => Err((
            ErrorCode::ModelUnavailable,
            format!("classifier {:?} is not loaded: {why}", model.name),
        )),
    }
}

/// Where a vision request's image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageFrom {
    /// The request's own image (`image_b64`, or an HTTP upload), decoded on a worker.
    Upload(Upload),
    /// The latest frame of this camera.
    Camera(usize),
}

/// A vision request, routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisionPlan {
    pub image: ImageFrom,
    /// The camera the request is about (its frame, or its name in the prompt).
    pub camera: Option<usize>,
    pub prompt: String,
}

/// What the device knows to route vision requests.
pub struct VisionContext<'a> {
    pub cameras: &'a Cameras,
    pub templates: &'a BTreeMap<String, String>,
    /// The captioner's prompt for captions that give none.
    pub default_prompt: &'a str,
    /// The longest prompt the captioner takes, in tokens (0: unknown, not checked here).
    pub max_prompt_tokens: usize,
}

/// Routes a caption or VQA request: its camera, its image, its prompt within the model's limit.
pub fn plan_vision(req: VisionRequest, cx: &VisionContext) -> Result<VisionPlan, Refusal> {
    let camera = match &req.camera {
        Some(name) => Some(cx.cameras.index_of(name).ok_or_else(|| {
            (
                ErrorCode::UnknownCamera,
                format!(
                    "no camera {name:?} here; this device has {:?}",
                    cx.cameras.names()
                ),
            )
        })?),
        None if req.image.is_some() => None,
        None if cx.cameras.is_empty() => {
            return Err((
                ErrorCode::MissingField,
                "\"image_b64\" is required: this device has no cameras to take a frame from".into(),
            ))
        }
        // The first configured camera is the default.
        None => Some(0),
    };
    let limit_bytes = cx.max_prompt_tokens.saturating_mul(MAX_BYTES_PER_TOKEN);
    for (field, text) in [("question", &req.question), ("prompt", &req.prompt)] {
        if let Some(text) = text {
            check_length(field, text, cx.max_prompt_tokens, limit_bytes)?;
        }
    }
    let camera_name = camera.map(|i| cx.cameras.name(i));
    let prompt = match (&req.prompt, req.task) {
        (Some(p), _) => p.clone(),
        (None, Task::Vqa) => {
            let name = req.template.as_deref().unwrap_or(if req.choices.is_some() {
                prompts::DEFAULT_CHOICES
            } else {
                prompts::DEFAULT_VQA
            });
            let template = cx.templates.get(name).ok_or_else(|| {
                let known: Vec<&str> = cx.templates.keys().map(String::as_str).collect();
                (
                    ErrorCode::InvalidField,
                    format!("no template {name:?} here; this device has {known:?}"),
                )
            })?;
            let vars = PromptVars {
                question: req.question.as_deref(),
                camera: Some(camera_name.unwrap_or("image")),
                choices: req.choices.as_deref(),
            };
            let prompt = prompts::render(name, template, &vars)
                .map_err(|e| (ErrorCode::InvalidField, e.to_string()))?;
            check_length("prompt", &prompt, cx.max_prompt_tokens, limit_bytes)?;
            prompt
        }
        (None, _) => match camera {
            Some(i) => cx.cameras.prompt(i),
            None => cx.default_prompt.to_string(),
        },
    };
    let image = match (req.image, camera) {
        (Some(upload), _) => ImageFrom::Upload(upload),
        (None, Some(i)) => ImageFrom::Camera(i),
        // Unreachable by the camera choice above; answered rather than assumed.
        (None, None) => {
            return Err((
                ErrorCode::MissingField,
                "\"image_b64\" or \"camera\" is required".into(),
            ))
        }
    };
    Ok(VisionPlan {
        image,
        camera,
        prompt,
    })
}

/// Refuses a text that cannot fit `tokens` positions, judged by its length alone.
fn check_length(field: &str, text: &str, tokens: usize, bytes: usize) -> Result<(), Refusal> {
    if tokens == 0 || text.len() <= bytes {
        return Ok(());
    }
    Err((
        ErrorCode::InvalidField,
        format!(
            "\"{field}\" is {} bytes; the captioner takes prompts of at most {tokens} tokens (about {bytes} bytes)",
            text.len()
        ),
    ))
}
