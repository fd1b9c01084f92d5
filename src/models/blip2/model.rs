//! The BLIP-2 model itself: loading the three parts and the projection, image features, the
//! prompt's ids, generation and choice scoring.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Module, Tensor};

use crate::models::linear::BaseLinear;
use crate::models::runtime::Quant;
use crate::models::source::WeightSource;
use crate::models::ModelError;

use super::config::Blip2Config;
use super::generate::{self, GenerationOptions};
use super::layers::{last_position, log_softmax, Loader};
use super::opt::{KvCache, Opt};
use super::qformer::QFormer;
use super::tokenizer::OptTokenizer;
use super::vision::VisionModel;

/// The architecture a BLIP-2 GGUF records (`general.architecture`).
pub const GGUF_ARCH: &str = "blip-2";

#[derive(Debug, Clone)]
pub struct Blip2LoadOptions {
    pub device: Device,
    pub dtype: DType,
    pub quant: Quant,
}

impl Default for Blip2LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            quant: Quant::None,
        }
    }
}

/// Rows from which the vision encoder's and Q-Former's quantized layers dequantize and run the
/// float GEMM on the CPU: one image's 257 tokens qualify; the decoder (1 token per step, 43 in
/// the prefill) keeps the quantized kernels.
const DENSE_FROM_ROWS: usize = 128;

/// What the image side produces, stage by stage (the tests compare each with transformers).
pub struct ImageFeatures {
    /// Vision encoder output `[b, patches + 1, vision_hidden]`.
    pub vision: Tensor,
    /// Q-Former output `[b, queries, qformer_hidden]` (f32).
    pub queries: Tensor,
    /// The queries projected into the language model, `[b, queries, text_hidden]`.
    pub language_inputs: Tensor,
}

impl ImageFeatures {
    /// One `ImageFeatures` per image of a batch, in order.
    pub fn split(&self) -> Result<Vec<ImageFeatures>, ModelError> {
        let images = self.vision.dim(0)?;
        (0..images)
            .map(|i| {
                Ok(ImageFeatures {
                    vision: self.vision.narrow(0, i, 1)?,
                    queries: self.queries.narrow(0, i, 1)?,
                    language_inputs: self.language_inputs.narrow(0, i, 1)?,
                })
            })
            .collect()
    }
}

/// Generated ids and where the time went.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated token ids: no image tokens, BOS or prompt, and no final EOS.
    pub tokens: Vec<u32>,
    pub stopped_at_eos: bool,
    /// Image queries + prompt through the decoder, up to the first token's logits.
    pub prefill: Duration,
    /// Every later decoder step and the search around it.
    pub decode: Duration,
}

/// One answer choice and how likely the model finds it after the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceScore {
    pub choice: String,
    /// Sum of the log-probabilities of the choice's tokens.
    pub log_likelihood: f32,
    /// Softmax of the log-likelihoods over the choices given.
    pub probability: f32,
}

impl ChoiceScore {
    /// The most likely choice (the first of equals), or `None` for no choices.
    pub fn best(scores: &[ChoiceScore]) -> Option<&ChoiceScore> {
        scores.iter().reduce(|best, s| {
            if s.probability > best.probability {
                s
            } else {
                best
            }
        })
    }
}

pub struct Blip2 {
    config: Blip2Config,
    vision: VisionModel,
    qformer: QFormer,
    language_projection: BaseLinear,
    opt: Opt,
    tokenizer: OptTokenizer,
    weights_file: PathBuf,
    quant: Quant,
}

impl Blip2 {
    /// Loads a model directory. With a quantization asked for and a matching
    /// `model-<quant>.gguf` in `dir`, the GGUF is read and the float checkpoint is not needed.
    pub fn load(dir: &Path, opts: &Blip2LoadOptions) -> Result<Self, ModelError> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(ModelError::Missing {
                dir: dir.to_path_buf(),
                what: "BLIP-2 config",
                looked_for: "config.json".into(),
            });
        }
        let config = Blip2Config::from_file(&config_path)?;
        let source = WeightSource::open_dir(dir, opts.quant, GGUF_ARCH)?;
        let tokenizer = OptTokenizer::from_dir(dir, config.text_config.bos_token_id)?;
        let loader = Loader::new(&source, opts.device.clone(), opts.dtype, opts.quant);
        // The image side multiplies 257 tokens per image (32 queries and 257 keys in the
        // Q-Former's cross-attention): float GEMM territory, where the decoder's one token is not.
        let image_side = loader.with_dense_from_rows(DENSE_FROM_ROWS);
        let vision = VisionModel::load(&image_side, &config.vision_config)?;
        let qformer = QFormer::load(
            &image_side,
            &config.qformer_config,
            config.num_query_tokens,
            config.encoder_hidden_size(),
        )?;
        let language_projection = loader.linear(
            "language_projection",
            config.text_config.hidden_size,
            config.qformer_config.hidden_size,
            true,
        )?;
        // The decoder multiplies one token per step: Q4_0 layers take the decoding layout.
        let opt = Opt::load(&loader.for_decoding(), &config.text_config)?;
        crate::models::heap::release_freed();
        Ok(Self {
            weights_file: source.origin().to_path_buf(),
            config,
            vision,
            qformer,
            language_projection,
            opt,
            tokenizer,
            quant: opts.quant,
        })
    }

    /// Bytes of all weights held in memory (linear layers and embeddings).
    pub fn weight_bytes(&self) -> usize {
        self.vision.weight_bytes()
            + self.qformer.weight_bytes()
            + self.language_projection.weight_bytes()
            + self.opt.weight_bytes()
    }

    /// Bytes of weights the decoder reads for each generated token (what bounds decoding speed
    /// on a memory-bound device).
    pub fn decoder_bytes_per_token(&self) -> usize {
        self.opt.bytes_per_token()
    }

    pub fn config(&self) -> &Blip2Config {
        &self.config
    }

    pub fn device(&self) -> &Device {
        self.opt.device()
    }

    pub fn dtype(&self) -> DType {
        self.opt.dtype()
    }

    pub fn quant(&self) -> Quant {
        self.quant
    }

    /// The file the weights were read from (a checkpoint or a GGUF).
    pub fn weights_file(&self) -> &Path {
        &self.weights_file
    }

    /// The square side, in pixels, the vision encoder takes.
    pub fn image_size(&self) -> usize {
        self.config.vision_config.image_size
    }

    /// Vision encoder, Q-Former and projection for `[b, 3, S, S]` pixel values.
    pub fn image_features(&self, pixel_values: &Tensor) -> Result<ImageFeatures, ModelError> {
        let pixel_values = pixel_values.to_device(self.device())?;
        let vision = self.vision.forward(&pixel_values)?;
        let queries = self.qformer.forward(&vision)?;
        let language_inputs = self
            .language_projection
            .forward(&queries.to_dtype(self.dtype())?)?;
        Ok(ImageFeatures {
            vision,
            queries,
            language_inputs,
        })
    }

    /// The prompt's ids as transformers' processor builds them: `num_query_tokens` image tokens
    /// (checkpoints with `image_token_index`), BOS, then the prompt's tokens.
    pub fn input_ids(&self, prompt: &str) -> Result<Vec<u32>, ModelError> {
        Ok(self.with_image_tokens(&self.text_ids(prompt)?))
    }

    /// `text_ids` (BOS + prompt) after the image tokens, if the checkpoint has them.
    fn with_image_tokens(&self, text_ids: &[u32]) -> Vec<u32> {
        let mut ids = match self.config.image_token_index {
            Some(image) => vec![image; self.config.num_query_tokens],
            None => Vec::new(),
        };
        ids.extend_from_slice(text_ids);
        ids
    }

    /// Runs the image queries and the prompt through OPT; returns the cache and the logits of the
    /// last position.
    fn prefill(
        &self,
        language_inputs: &Tensor,
        prompt_ids: &[u32],
    ) -> Result<(KvCache, Vec<f32>), ModelError> {
        let ids = Tensor::new(prompt_ids, self.device())?.unsqueeze(0)?;
        let text = self.opt.embed(&ids)?;
        let queries = language_inputs.to_dtype(text.dtype())?;
        // The same sequence transformers builds either way: query outputs in place of the image
        // tokens (new format) or in front of BOS + prompt (legacy).
        let embeds = Tensor::cat(&[&queries, &text], 1)?;
        let mut cache = KvCache::default();
        let hidden = self.opt.forward(&embeds, &mut cache)?;
        let logits = self.opt.logits(&last_position(&hidden)?)?;
        Ok((cache, logits.squeeze(0)?.to_vec1()?))
    }

    fn text_ids(&self, prompt: &str) -> Result<Vec<u32>, ModelError> {
        self.tokenizer.encode_prompt(prompt)
    }

    /// The longest prompt, in tokens, that leaves room for `new_tokens` more in the model's
    /// positions (after the image queries and BOS).
    pub fn max_prompt_tokens(&self, new_tokens: usize) -> usize {
        self.config
            .text_config
            .max_position_embeddings
            .saturating_sub(self.config.num_query_tokens + 1 + new_tokens)
    }

    /// Refuses a prompt (`text_ids`: BOS + prompt) that leaves fewer than `new_tokens` positions.
    fn check_room(&self, text_ids: &[u32], new_tokens: usize) -> Result<(), ModelError> {
        let positions = self.config.text_config.max_position_embeddings;
        let room = positions.saturating_sub(self.config.num_query_tokens + text_ids.len());
        if room >= new_tokens {
            return Ok(());
        }
        Err(ModelError::Usage(format!(
            "the prompt is {} tokens; with {} new tokens the captioner takes at most {} (its {positions} positions, less {} image queries and BOS)",
            text_ids.len().saturating_sub(1),
            new_tokens,
            self.max_prompt_tokens(new_tokens),
            self.config.num_query_tokens,
        )))
    }

    /// Logits of the next token after image + prompt (for tests and scoring).
    pub fn first_logits(
        &self,
        features: &ImageFeatures,
        prompt: &str,
    ) -> Result<Vec<f32>, ModelError> {
        let ids = self.text_ids(prompt)?;
        Ok(self.prefill(&self.one_image(features)?, &ids)?.1)
    }

    fn one_image(&self, features: &ImageFeatures) -> Result<Tensor, ModelError> {
        let b = features.language_inputs.dim(0)?;
        if b != 1 {
            return Err(ModelError::Usage(format!(
                "generation takes one image at a time, got a batch of {b}"
            )));
        }
        Ok(features.language_inputs.clone())
    }

    /// Generates a continuation of `prompt` for the image.
    pub fn generate(
        &self,
        features: &ImageFeatures,
        prompt: &str,
        opts: &GenerationOptions,
    ) -> Result<Generation, ModelError> {
        opts.validate().map_err(|e| ModelError::Usage(e.0))?;
        let text_ids = self.text_ids(prompt)?;
        self.check_room(&text_ids, opts.max_new_tokens)?;
        let context = self.with_image_tokens(&text_ids);
        let started = Instant::now();
        let (cache, logits) = self.prefill(&self.one_image(features)?, &text_ids)?;
        let prefill = started.elapsed();
        let mut session = Session {
            opt: &self.opt,
            cache,
        };
        let eos = self.config.text_config.eos_token_id.ids();
        let started = Instant::now();
        let generated = generate::generate(&mut session, logits, &context, &eos, opts)?;
        Ok(Generation {
            tokens: generated.tokens,
            stopped_at_eos: generated.stopped_at_eos,
            prefill,
            decode: started.elapsed(),
        })
    }

    /// How likely each of `choices` is as the continuation of `prompt` for the image.
    pub fn score_choices(
        &self,
        features: &ImageFeatures,
        prompt: &str,
        choices: &[String],
    ) -> Result<Vec<ChoiceScore>, ModelError> {
        if choices.is_empty() {
            return Err(ModelError::Usage("no choices to score".into()));
        }
        let text_ids = self.text_ids(prompt)?;
        let choice_tokens = choices
            .iter()
            .map(|c| self.tokenizer.encode_continuation(c))
            .collect::<Result<Vec<_>, _>>()?;
        let longest = choice_tokens.iter().map(Vec::len).max().unwrap_or(0);
        self.check_room(&text_ids, longest)?;
        let (cache, first) = self.prefill(&self.one_image(features)?, &text_ids)?;
        let first =
            log_softmax(&Tensor::new(first.as_slice(), self.device())?)?.to_vec1::<f32>()?;
        let mut sums = Vec::with_capacity(choices.len());
        for (choice, tokens) in choices.iter().zip(choice_tokens) {
            let Some((&head, _)) = tokens.split_first() else {
                return Err(ModelError::Usage(format!(
                    "choice {choice:?} has no tokens"
                )));
            };
            let mut total = first[head as usize];
            if tokens.len() > 1 {
                let mut cache = cache.clone();
                let ids = Tensor::new(&tokens[..tokens.len() - 1], self.device())?.unsqueeze(0)?;
                let hidden = self.opt.forward(&self.opt.embed(&ids)?, &mut cache)?;
                let lp = log_softmax(&self.opt.logits(&hidden)?.squeeze(0)?)?;
                let lp: Vec<Vec<f32>> = lp.to_vec2()?;
                for (row, &next) in lp.iter().zip(&tokens[1..]) {
                    total += row[next as usize];
                }
            }
            sums.push(total);
        }
        let max = sums.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z: f32 = sums.iter().map(|s| (s - max).exp()).sum();
        Ok(choices
            .iter()
            .zip(sums)
            .map(|(choice, s)| ChoiceScore {
                choice: choice.clone(),
                log_likelihood: s,
                probability: (s - max).exp() / z,
            })
            .collect())
    }

    /// Text of generated ids.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.tokenizer.decode(ids)
    }

    pub fn num_query_tokens(&self) -> usize {
        self.config.num_query_tokens
    }
}

/// The decoder during one generation: OPT plus its cache.
struct Session<'a> {
    opt: &'a Opt,
    cache: KvCache,
}

impl generate::StepModel for Session<'_> {
    fn step(&mut self, tokens: &[u32]) -> candle_core::Result<Vec<Vec<f32>>> {
        let ids = Tensor::new(tokens, self.opt.device())?.unsqueeze(1)?;
        let hidden = self.opt.forward(&self.opt.embed(&ids)?, &mut self.cache)?;
        self.opt.logits(&last_position(&hidden)?)?.to_vec2()
    }

    fn select_rows(&mut self, rows: &[u32]) -> candle_core::Result<()> {
        self.cache.select_rows(rows)
    }
}
