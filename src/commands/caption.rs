//! `landfall caption` and `landfall ask`: one image through BLIP-2, as text or one JSON object
//! with the token ids and where the time went.

use std::time::Instant;

use serde::Serialize;

use crate::cli::{AskArgs, Blip2Args, CaptionArgs, GenerationArgs};
use crate::imaging::{decode_image_file, DecodeLimits};
use crate::models::blip2::{
    Blip2, Blip2LoadOptions, Captioner, ChoiceScore, EarlyStopping, GenerationOptions,
    ImageFeatures, Sampling,
};
use crate::models::runtime::device_name;
use crate::prompts::{self, PromptVars, Templates};

use super::{runtime_options, CliError};

#[derive(Serialize)]
struct Timings {
    preprocess: f64,
    vision: f64,
    prefill: f64,
    decode: f64,
    total: f64,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    choice: &'a str,
    probability: f32,
    log_likelihood: f32,
}

/// The `--json` object of the contract (`choices` only for constrained answers).
#[derive(Serialize)]
struct Output<'a> {
    text: &'a str,
    token_ids: &'a [u32],
    prompt: &'a str,
    device: String,
    quant: String,
    timings_ms: Timings,
    tokens_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    choices: Option<Vec<ChoiceOut<'a>>>,
}

pub fn generation_options(args: &GenerationArgs) -> GenerationOptions {
    let sampling = (args.temperature.is_some() || args.top_p.is_some() || args.top_k.is_some())
        .then(|| Sampling {
            temperature: args.temperature.unwrap_or(1.0),
            top_p: args.top_p.unwrap_or(1.0),
            top_k: args.top_k.unwrap_or(0),
            seed: args.seed,
        });
    GenerationOptions {
        max_new_tokens: args.max_new_tokens as usize,
        min_new_tokens: args.min_new_tokens as usize,
        num_beams: args.num_beams as usize,
        length_penalty: args.length_penalty,
        early_stopping: match args.early_stopping.as_str() {
            "always" => EarlyStopping::Always,
            "never" => EarlyStopping::Never,
            _ => EarlyStopping::Heuristic,
        },
        repetition_penalty: args.repetition_penalty,
        sampling,
    }
}

/// The loaded model and the image's features, with the time each took.
struct Prepared {
    model: Blip2,
    features: ImageFeatures,
    preprocess_ms: f64,
    vision_ms: f64,
    started: Instant,
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn prepare(args: &Blip2Args) -> Result<Prepared, CliError> {
    generation_options(&args.generation)
        .validate()
        .map_err(|e| CliError::usage(e.0))?;
    let (device, dtype) = runtime_options(&args.runtime)?;
    // Decode first: a bad image is reported before seconds of model loading.
    let image = decode_image_file(&args.image, &DecodeLimits::default())
        .map_err(|e| CliError::usage(e.to_string()))?;
    let captioner = Captioner::load(
        &args.model,
        &Blip2LoadOptions {
            device,
            dtype: dtype.dtype(),
            quant: args.runtime.quant,
        },
    )?;
    let started = Instant::now();
    let pixel_values = captioner.pixel_values(&image)?;
    let preprocess_ms = ms(started.elapsed());
    let t = Instant::now();
    let features = captioner.model.image_features(&pixel_values)?;
    let vision_ms = ms(t.elapsed());
    let model = captioner.model;
    Ok(Prepared {
        model,
        features,
        preprocess_ms,
        vision_ms,
        started,
    })
}

fn generate_and_print(args: &Blip2Args, prepared: Prepared, prompt: &str) -> Result<(), CliError> {
    let opts = generation_options(&args.generation);
    let generation = prepared.model.generate(&prepared.features, prompt, &opts)?;
    let text = prepared.model.decode(&generation.tokens)?;
    if !args.json {
        println!("{text}");
        return Ok(());
    }
    let decode_s = generation.decode.as_secs_f64();
    let steps = generation.tokens.len().saturating_sub(1) + usize::from(generation.stopped_at_eos);
    let out = Output {
        text: &text,
        token_ids: &generation.tokens,
        prompt,
        device: device_name(prepared.model.device()),
        quant: prepared.model.quant().to_string(),
        timings_ms: Timings {
            preprocess: prepared.preprocess_ms,
            vision: prepared.vision_ms,
            prefill: ms(generation.prefill),
            decode: ms(generation.decode),
            total: ms(prepared.started.elapsed()),
        },
        // Tokens after the first (which the prefill produced) per second of decoding.
        tokens_per_s: if decode_s > 0.0 {
            steps as f64 / decode_s
        } else {
            0.0
        },
        choices: None,
    };
    println!(
        "{}",
        serde_json::to_string(&out).map_err(|e| CliError::runtime(e.to_string()))?
    );
    Ok(())
}

pub fn caption(args: &CaptionArgs) -> Result<(), CliError> {
    let prompt = match (&args.prompt, &args.template) {
        (Some(p), _) => p.clone(),
        (None, Some(name)) => Templates::default()
            .render(name, &PromptVars::default())
            .map_err(|e| CliError::usage(format!("--template: {e}")))?,
        (None, None) => String::new(),
    };
    let prepared = prepare(&args.blip2)?;
    generate_and_print(&args.blip2, prepared, &prompt)
}

pub fn ask(args: &AskArgs) -> Result<(), CliError> {
    let choices = args.choices.as_deref().map(clean_choices).transpose()?;
    let vars = PromptVars {
        question: Some(&args.question),
        camera: None,
        choices: choices.as_deref(),
    };
    let prompt = match (&args.template_text, &args.template) {
        (Some(text), _) => prompts::render("--template-text", text, &vars),
        (None, Some(name)) => Templates::default().render(name, &vars),
        // Choices go in a template that lists them, unless the user chose another.
        (None, None) if choices.is_some() => {
            Templates::default().render(prompts::DEFAULT_CHOICES, &vars)
        }
        (None, None) => Templates::default().render(prompts::DEFAULT_VQA, &vars),
    }
    .map_err(|e| CliError::usage(e.to_string()))?;
    let prepared = prepare(&args.blip2)?;
    let Some(choices) = choices else {
        return generate_and_print(&args.blip2, prepared, &prompt);
    };
    let t = Instant::now();
    let scores = prepared
        .model
        .score_choices(&prepared.features, &prompt, &choices)?;
    let scoring = t.elapsed();
    let best = ChoiceScore::best(&scores)
        .ok_or_else(|| CliError::runtime("the model scored no choices"))?;
    if !args.blip2.json {
        println!("{}", best.choice);
        return Ok(());
    }
    let out = Output {
        text: &best.choice,
        token_ids: &[],
        prompt: &prompt,
        device: device_name(prepared.model.device()),
        quant: prepared.model.quant().to_string(),
        timings_ms: Timings {
            preprocess: prepared.preprocess_ms,
            vision: prepared.vision_ms,
            prefill: ms(scoring),
            decode: 0.0,
            total: ms(prepared.started.elapsed()),
        },
        tokens_per_s: 0.0,
        choices: Some(
            scores
                .iter()
                .map(|s| ChoiceOut {
                    choice: &s.choice,
                    probability: s.probability,
                    log_likelihood: s.log_likelihood,
                })
                .collect(),
        ),
    };
    println!(
        "{}",
        serde_json::to_string(&out).map_err(|e| CliError::runtime(e.to_string()))?
    );
    Ok(())
}

/// Trimmed, non-empty, distinct choices.
fn clean_choices(raw: &[String]) -> Result<Vec<String>, CliError> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for c in raw {
        let c = c.trim();
        if c.is_empty() {
            return Err(CliError::usage("--choices: an empty choice"));
        }
        if out.iter().any(|o| o == c) {
            return Err(CliError::usage(format!("--choices: {c:?} is given twice")));
        }
        out.push(c.to_string());
    }
    if out.len() < 2 {
        return Err(CliError::usage("--choices needs at least two choices"));
    }
    Ok(out)
}
