//! Validation of the vision sections: `[captioner]`, `[templates]`, `[[camera]]` and
//! `[homeassistant]`, with the same positioned errors as the rest of the config.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::ctx::{span_of, Ctx};
use super::raw::{RawCamera, RawCaptioner, RawHomeAssistant};
use super::settings::{CameraConfig, CaptionerConfig, ConfigError, HomeAssistantConfig};

/// The BLIP-2 directory under `models.dir` when `[captioner] model` is not set.
pub const DEFAULT_CAPTIONER: &str = "blip2-opt-2.7b";
const DEFAULT_FPS: f64 = 5.0;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_SCENE_THRESHOLD: f64 = 0.1;

pub(super) fn captioner(
    cx: &Ctx,
    c: &RawCaptioner,
    models: &Path,
) -> Result<CaptionerConfig, ConfigError> {
    let model = cx
        .string(&c.model, "captioner.model")?
        .unwrap_or_else(|| DEFAULT_CAPTIONER.to_string());
    let joined = models.join(model);
    let max_new_tokens = cx.count(&c.max_new_tokens, "captioner.max_new_tokens", 30, 512)?;
    Ok(CaptionerConfig {
        model: std::path::absolute(&joined).unwrap_or(joined),
        // q4_0 by default: blip2-opt-2.7b in f32 (~15.5 GB) does not fit a Jetson; q4_0 (~2.5 GB)
        // does, and on the CPU its decoder runs the packed kernel (src/models/decoding) without
        // the second copy candle keeps of q4k weights.
        quant: cx
            .parsed(&c.quant, "captioner.quant")?
            .unwrap_or(crate::models::runtime::Quant::Q4_0),
        device: cx
            .parsed(&c.device, "captioner.device")?
            .unwrap_or_default(),
        dtype: cx.parsed(&c.dtype, "captioner.dtype")?,
        max_new_tokens: max_new_tokens.get(),
        // Empty is meaningful here: an unprompted caption.
        prompt: c
            .prompt
            .as_ref()
            .map_or_else(String::new, |p| p.get_ref().clone()),
    })
}

pub(super) fn templates(
    cx: &Ctx,
    raw: &BTreeMap<String, Spanned<String>>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = crate::prompts::Templates::default();
    for (name, text) in raw {
        let field = format!("templates.{name}");
        if text.get_ref().trim().is_empty() {
            return Err(cx.err(text.span(), &field, "must not be empty"));
        }
        out.insert(name, text.get_ref())
            .map_err(|e| cx.err(text.span(), &field, e.to_string()))?;
    }
    Ok(out
        .names()
        .map(|n| (n.to_string(), out.get(n).unwrap_or_default().to_string()))
        .collect())
}

pub(super) fn cameras(
    cx: &Ctx,
    raw: &[Spanned<RawCamera>],
) -> Result<Vec<CameraConfig>, ConfigError> {
    let mut out: Vec<CameraConfig> = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let c = camera(cx, entry, i)?;
        if out.iter().any(|other| other.name == c.name) {
            let field = format!("camera[{i}].name");
            return Err(cx.err(
                span_of(&entry.get_ref().name),
                &field,
                format!("{:?} is already the name of another camera", c.name),
            ));
        }
        out.push(c);
    }
    Ok(out)
}

fn camera(cx: &Ctx, entry: &Spanned<RawCamera>, i: usize) -> Result<CameraConfig, ConfigError> {
    let c = entry.get_ref();
    let f = |name: &str| format!("camera[{i}].{name}");
    // The name becomes a topic level: P/camera/<name>/caption.
    let name = cx.topic_part(&c.name, &f("name"), false)?.ok_or_else(|| {
        cx.err(
            entry.span(),
            &f("name"),
            "required: the name requests use in \"camera\" and the caption topic's level",
        )
    })?;
    let source = cx.parsed(&c.source, &f("source"))?.ok_or_else(|| {
        cx.err(
            entry.span(),
            &f("source"),
            "required: \"v4l2:/dev/videoN\", \"file:PATH\", \"dir:PATH\" or \"pattern:bars\"",
        )
    })?;
    let fps = match &c.fps {
        None => DEFAULT_FPS,
        Some(v) if v.get_ref().is_finite() && *v.get_ref() > 0.0 && *v.get_ref() <= 240.0 => {
            *v.get_ref()
        }
        Some(v) => {
            return Err(cx.err(
                v.span(),
                &f("fps"),
                format!("must be above 0 and at most 240, got {}", v.get_ref()),
            ))
        }
    };
    let interval = cx.duration(&c.interval, &f("interval"), DEFAULT_INTERVAL)?;
    let scene_threshold = match &c.scene_threshold {
        None => DEFAULT_SCENE_THRESHOLD,
        Some(v) if (0.0..=1.0).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => {
            return Err(cx.err(
                v.span(),
                &f("scene_threshold"),
                format!("must be between 0 and 1, got {}", v.get_ref()),
            ))
        }
    };
    Ok(CameraConfig {
        name,
        source,
        fps,
        resolution: cx.parsed(&c.resolution, &f("resolution"))?,
        pixel_format: cx.parsed(&c.pixel_format, &f("pixel_format"))?,
        // 0 turns periodic captions off.
        interval: (!interval.is_zero()).then_some(interval),
        caption_on_change: c.caption_on_change.as_ref().is_some_and(|b| *b.get_ref()),
        scene_threshold,
        prompt: c.prompt.as_ref().map(|p| p.get_ref().clone()),
    })
}

pub(super) fn homeassistant(
    cx: &Ctx,
    h: &RawHomeAssistant,
) -> Result<HomeAssistantConfig, ConfigError> {
    Ok(HomeAssistantConfig {
        enabled: h.enabled.as_ref().is_some_and(|b| *b.get_ref()),
        discovery_prefix: cx
            .topic_part(&h.discovery_prefix, "homeassistant.discovery_prefix", true)?
            .unwrap_or_else(|| "homeassistant".to_string()),
    })
}
