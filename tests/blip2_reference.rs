//! BLIP-2 against transformers on the tiny fixtures of tests/fixtures/generate_blip2.py: every
//! stage's output (vision, Q-Former, projection, first-step logits) within 1e-4, and generated
//! token ids identical for greedy, beam search, penalties and minimum lengths, in both
//! checkpoint formats (with `image_token_index`, and the legacy layout with sharded weights).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use landfall::models::blip2::{
    Blip2, Blip2LoadOptions, EarlyStopping, GenerationOptions, ImageFeatures,
};
use landfall::models::weights::WeightStore;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blip2")
}

struct Reference {
    dir: PathBuf,
    json: Value,
    tensors: WeightStore,
}

fn reference(model: &str) -> Reference {
    let dir = fixtures().join(model);
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    Reference {
        json: serde_json::from_str(&text).unwrap(),
        tensors: WeightStore::open_file(&dir.join("reference.safetensors")).unwrap(),
        dir,
    }
}

impl Reference {
    /// The processor's pixel values of `image`, from any generation case that used it alone.
    fn pixel_values_of(&self, image: &str) -> Tensor {
        let case = self.json["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["images"].as_array().unwrap() == &[Value::from(image)])
            .unwrap_or_else(|| panic!("no case has the pixel values of {image}"));
        self.tensor(case["name"].as_str().unwrap(), "pixel_values")
    }

    fn tensor(&self, case: &str, what: &str) -> Tensor {
        self.tensors
            .get_any_shape(&format!("{case}.{what}"), DType::F32, &Device::Cpu)
            .unwrap()
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn load(dir: &Path) -> Blip2 {
    let opts = Blip2LoadOptions {
        device: test_device(),
        ..Default::default()
    };
    Blip2::load(dir, &opts).unwrap()
}

fn options(generation: &Value) -> GenerationOptions {
    let early_stopping = match &generation["early_stopping"] {
        Value::Bool(true) => EarlyStopping::Always,
        Value::String(s) if s == "never" => EarlyStopping::Never,
        _ => EarlyStopping::Heuristic,
    };
    GenerationOptions {
        max_new_tokens: generation["max_new_tokens"].as_u64().unwrap() as usize,
        min_new_tokens: generation["min_new_tokens"].as_u64().unwrap_or(0) as usize,
        num_beams: generation["num_beams"].as_u64().unwrap_or(1) as usize,
        length_penalty: generation["length_penalty"].as_f64().unwrap_or(1.0) as f32,
        early_stopping,
        repetition_penalty: generation["repetition_penalty"].as_f64().unwrap_or(1.0) as f32,
        sampling: None,
    }
}

/// One image's slice of a (possibly batched) stage output.
fn row(t: &Tensor, i: usize) -> Tensor {
    t.narrow(0, i, 1).unwrap()
}

fn features_of_row(model: &Blip2, pixel_values: &Tensor, i: usize) -> ImageFeatures {
    model.image_features(&row(pixel_values, i)).unwrap()
}

/// Token ids from a JSON array.
fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// Each image-side stage of `features` against row `i` of the reference's, within 1e-4.
fn check_stages(r: &Reference, label: &str, case_name: &str, i: usize, features: &ImageFeatures) {
    let stages = [
        ("vision_last_hidden", &features.vision),
        ("qformer_last_hidden", &features.queries),
        ("language_inputs", &features.language_inputs),
    ];
    for (what, ours) in stages {
        let d = max_diff(ours, &row(&r.tensor(case_name, what), i));
        assert!(d < 1e-4, "{label}/{case_name}[{i}] {what}: max |Δ| {d}");
    }
}

fn check_model(name: &str) {
    let r = reference(name);
    let model = load(&r.dir);
    let cases = r.json["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let case_name = case["name"].as_str().unwrap();
        let prompt = case["prompt"].as_str().unwrap();
        let pixel_values = r.tensor(case_name, "pixel_values");
        let images = case["images"].as_array().unwrap().len();
        for i in 0..images {
            let features = features_of_row(&model, &pixel_values, i);
            check_stages(&r, name, case_name, i, &features);
            let logits = model.first_logits(&features, prompt).unwrap();
            let logits = Tensor::new(logits.as_slice(), &Device::Cpu).unwrap();
            let expected = row(&r.tensor(case_name, "first_logits"), i)
                .squeeze(0)
                .unwrap();
            let d = max_diff(&logits, &expected);
            assert!(
                d < 1e-4,
                "{name}/{case_name}[{i}] first logits: max |Δ| {d}"
            );

            let expected_ids = ids(&case["new_token_ids"][i]);
            let generated = model
                .generate(&features, prompt, &options(&case["generation"]))
                .unwrap();
            assert_eq!(
                generated.tokens, expected_ids,
                "{name}/{case_name}[{i}]: generated ids differ from transformers"
            );
            assert_eq!(
                generated.stopped_at_eos,
                case["stopped_at_eos"][i].as_bool().unwrap(),
                "{name}/{case_name}[{i}]: stopped_at_eos"
            );
        }
        // The prompt's ids as the processor built them.
        let expected_input = ids(&case["input_ids"][0]);
        let ours = model.input_ids(prompt).unwrap();
        if r.json["image_token_index"].is_null() {
            assert!(
                expected_input.ends_with(&ours),
                "{name}/{case_name}: input ids"
            );
        } else {
            assert_eq!(ours, expected_input, "{name}/{case_name}: input ids");
        }
    }
}

fn check_choices(name: &str) {
    let r = reference(name);
    let model = load(&r.dir);
    let Some(cases) = r.json["choice_cases"].as_array() else {
        return;
    };
    for case in cases {
        let case_name = case["name"].as_str().unwrap();
        let pixel_values = r.pixel_values_of(case["image"].as_str().unwrap());
        let features = model.image_features(&pixel_values).unwrap();
        let choices: Vec<String> = case["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["choice"].as_str().unwrap().to_string())
            .collect();
        let scores = model
            .score_choices(&features, case["prompt"].as_str().unwrap(), &choices)
            .unwrap();
        for (ours, expected) in scores.iter().zip(case["choices"].as_array().unwrap()) {
            let want = expected["log_prob_sum"].as_f64().unwrap() as f32;
            assert!(
                (ours.log_likelihood - want).abs() < 1e-4,
                "{name}/{case_name} {}: {} vs {want}",
                ours.choice,
                ours.log_likelihood
            );
        }
        let best = scores
            .iter()
            .max_by(|a, b| a.probability.total_cmp(&b.probability))
            .unwrap();
        assert_eq!(best.choice, case["best"].as_str().unwrap());
        let total: f32 = scores.iter().map(|s| s.probability).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }
}

#[test]
fn modern_checkpoint_matches_transformers() {
    check_model("modern");
}

#[test]
fn modern_choices_match_transformers() {
    check_choices("modern");
}

/// The daemon runs frames due together (several cameras, queued requests) through the vision
/// encoder and Q-Former as one batch: each image's slice of the batched features must match
/// transformers as the single-image run does, and generate the same ids.
#[test]
fn batched_vision_matches_transformers_per_image() {
    let mut batched_cases = 0;
    for name in ["modern", "legacy"] {
        let r = reference(name);
        let model = load(&r.dir);
        for case in r.json["cases"].as_array().unwrap() {
            let images = case["images"].as_array().unwrap().len();
            if images < 2 {
                continue;
            }
            batched_cases += 1;
            let case_name = case["name"].as_str().unwrap();
            let pixel_values = r.tensor(case_name, "pixel_values");
            let all = model
                .image_features(&pixel_values)
                .unwrap()
                .split()
                .unwrap();
            assert_eq!(all.len(), images);
            for (i, features) in all.iter().enumerate() {
                check_stages(&r, &format!("{name} batched"), case_name, i, features);
                let expected_ids = ids(&case["new_token_ids"][i]);
                let prompt = case["prompt"].as_str().unwrap();
                let generated = model
                    .generate(features, prompt, &options(&case["generation"]))
                    .unwrap();
                assert_eq!(
                    generated.tokens, expected_ids,
                    "{name}/{case_name}[{i}] batched"
                );
            }
        }
    }
    assert!(batched_cases > 0, "no fixture case has two or more images");
}

#[test]
fn legacy_checkpoint_matches_transformers() {
    if !fixtures().join("legacy/reference.json").is_file() {
        panic!("tests/fixtures/blip2/legacy/reference.json is missing: run tests/fixtures/generate_blip2.py");
    }
    check_model("legacy");
}

/// Where the fixtures run: `LANDFALL_TEST_DEVICE=cuda` runs the same comparisons on a GPU (with
/// a `--features cuda` build); the default is the CPU.
fn test_device() -> Device {
    match std::env::var("LANDFALL_TEST_DEVICE").as_deref() {
        Ok("cuda") => {
            Device::new_cuda(0).expect("LANDFALL_TEST_DEVICE=cuda needs a GPU and --features cuda")
        }
        _ => Device::Cpu,
    }
}

/// Half precision: first-step logits stay close to the f32 reference and the greedy caption's
/// first tokens agree. The bound is what half precision gives on these fixtures (measured
/// max |Δ| is printed), not a correctness claim at 1e-4.
#[test]
fn half_precision_stays_close_to_the_reference() {
    let r = reference("modern");
    let device = test_device();
    for (dtype, bound) in [(DType::F16, 0.02f32), (DType::BF16, 0.1f32)] {
        let model = Blip2::load(
            &r.dir,
            &Blip2LoadOptions {
                device: device.clone(),
                dtype,
                quant: landfall::models::runtime::Quant::None,
            },
        )
        .unwrap();
        let mut worst = 0f32;
        for case in ["caption_empty", "vqa_gray", "caption_photo_wide"] {
            let json = r.json["cases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == case)
                .unwrap();
            let features = model
                .image_features(&r.tensor(case, "pixel_values"))
                .unwrap();
            let logits = model
                .first_logits(&features, json["prompt"].as_str().unwrap())
                .unwrap();
            assert!(logits.iter().all(|x| x.is_finite()), "{dtype:?} {case}");
            let ours = Tensor::new(logits.as_slice(), &Device::Cpu).unwrap();
            let expected = r.tensor(case, "first_logits").squeeze(0).unwrap();
            let d = max_diff(&ours, &expected);
            worst = worst.max(d);
            assert!(
                d < bound,
                "{dtype:?} {case}: first logits max |Δ| {d} ≥ {bound}"
            );
        }
        eprintln!("{dtype:?}: first-step logits max |Δ| vs transformers f32 = {worst}");
    }
}
