//! The command line (the README's "Commands" tables), clap derive. Parsing only: the work is in
//! [`crate::commands`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::models::runtime::{DeviceChoice, FloatType, Quant};

#[derive(Debug, Parser)]
#[command(
    name = "landfall",
    version,
    about = "Lands large models on the edge: BLIP-2 captions and LoRA text classifiers over MQTT"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify texts with a BERT base and a PEFT LoRA adapter.
    Classify(ClassifyArgs),
    /// Accuracy, macro-F1, per-class P/R/F1 and the confusion matrix on labelled data.
    Eval(EvalArgs),
    /// Caption an image with BLIP-2.
    Caption(CaptionArgs),
    /// Answer a question about an image with BLIP-2 (free text, or one of --choices).
    Ask(AskArgs),
    /// Write a GGUF of a BLIP-2 model's quantized weights (loads without the float checkpoint).
    Quantize(QuantizeArgs),
    /// Measure throughput and memory (compare with benches/, which runs PyTorch beside it).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The daemon: answer classify requests over MQTT until SIGTERM/SIGINT.
    Run(ConfigArgs),
    /// Validate the config and print it with every default filled in (exit 2 on error).
    CheckConfig(ConfigArgs),
    /// The default model set from the Hugging Face Hub (models/manifest.toml): pull or pin it.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Adapter updates over TUF: the operator's repository, the device's checks and rollback.
    #[command(subcommand)]
    Adapter(AdapterCommand),
}

#[derive(Debug, Subcommand)]
pub enum AdapterCommand {
    /// Make signing keys (one Ed25519 key per TUF role) and an empty signed repository.
    InitRepo(InitRepoArgs),
    /// Add a classifier's adapter as a new version: bundle, targets, snapshot and timestamp signed.
    Publish(PublishArgs),
    /// Re-sign the short-lived timestamp (run it from cron, daily).
    Timestamp(TimestampArgs),
    /// The device's checks without a daemon: TUF, the bundle, the base, the canary.
    Verify(VerifyArgs),
    /// On a device: go back to the previous accepted version, and never take this one again.
    Rollback(RollbackArgs),
}

#[derive(Debug, Args)]
pub struct RepoArgs {
    /// The repository directory (metadata/ and targets/), served as it is by any static server.
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
    /// The signing keys directory (root.pk8, targets.pk8, snapshot.pk8, timestamp.pk8).
    #[arg(long, value_name = "DIR")]
    pub keys: PathBuf,
}

#[derive(Debug, Args)]
pub struct InitRepoArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The classifier's name, as devices' configs name it.
    #[arg(long)]
    pub classifier: String,
    /// The PEFT adapter directory (adapter_config.json, adapter_model.safetensors, config.json).
    #[arg(long, value_name = "DIR")]
    pub adapter: PathBuf,
    /// The base it was trained on; its weights' sha256 goes into the bundle.
    #[arg(long, value_name = "DIR")]
    pub base: PathBuf,
    /// The version [default: one above the highest the repository has].
    #[arg(long)]
    pub version: Option<u64>,
    /// Labelled texts (text,label) the adapter must classify on the device before it serves.
    #[arg(long, value_name = "FILE", requires = "min_accuracy")]
    pub canary: Option<PathBuf>,
    /// The canary accuracy the adapter must reach (0 to 1).
    #[arg(long, requires = "canary")]
    pub min_accuracy: Option<f64>,
    /// Label names by id, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
}

#[derive(Debug, Args)]
pub struct TimestampArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// How long the new timestamp lasts: "7d", "24h", ... ("0s": expired at once).
    #[arg(long, default_value = "7d")]
    pub expires: String,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The repository: https://..., http://..., file://... or a directory.
    #[arg(long, value_name = "URL|DIR")]
    pub repository: String,
    /// The trusted root.json.
    #[arg(long, value_name = "FILE")]
    pub root: PathBuf,
    #[arg(long)]
    pub classifier: String,
    /// The base the device runs: its weights must be the bundle's, and the adapter must load on
    /// it and pass its canary.
    #[arg(long, value_name = "DIR")]
    pub base: Option<PathBuf>,
    /// One JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[arg(long)]
    pub classifier: String,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Which config file `run` and `check-config` read.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// TOML config [default: /etc/landfall/landfall.toml if present, else built-in defaults].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Where and how the model runs; shared by every model command.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// auto (CUDA when built with it and present), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Float type of activations and unquantized weights [default: f16 on CUDA, f32 on CPU].
    #[arg(long)]
    pub dtype: Option<FloatType>,
    /// Quantize the base's linear weights at load: none, q8_0, q4_0, q4k.
    #[arg(long, default_value = "none")]
    pub quant: Quant,
}

/// A BLIP-2 model directory and where it runs.
#[derive(Debug, Clone, Args)]
pub struct Blip2Args {
    /// BLIP-2 model directory (config.json, model.safetensors or shards, tokenizer.json,
    /// preprocessor_config.json; a model-<quant>.gguf from `landfall quantize` is used when present).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Image file: JPEG, PNG or WebP (EXIF orientation applied).
    #[arg(long, value_name = "FILE")]
    pub image: PathBuf,
    #[command(flatten)]
    pub runtime: ModelArgs,
    #[command(flatten)]
    pub generation: GenerationArgs,
    /// One JSON object with the text, token ids and timings.
    #[arg(long)]
    pub json: bool,
}

/// How text is generated: greedy by default, as transformers' `generate`.
#[derive(Debug, Clone, Args)]
pub struct GenerationArgs {
    /// Most tokens to generate.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_new_tokens: u32,
    /// Fewest tokens to generate before EOS may end the text.
    #[arg(long, default_value_t = 0)]
    pub min_new_tokens: u32,
    /// Beam search with this many beams (1 = greedy).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub num_beams: u32,
    /// Beam search: finished hypotheses are scored by log-probability / length^penalty.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub length_penalty: f32,
    /// Beam search stopping: heuristic (transformers' default), always (once num_beams are
    /// finished), never (only when no better hypothesis is possible).
    #[arg(long, default_value = "heuristic", value_parser = ["heuristic", "always", "never"])]
    pub early_stopping: String,
    /// Penalise tokens already in the prompt or the text (1.0 = off; 1.2–1.5 is typical).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Sample instead of picking the most likely token, at this temperature.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Sampling: keep the smallest set of tokens whose probability reaches P.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Sampling: keep the K most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sampling seed (the same seed, model and input give the same text).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct CaptionArgs {
    #[command(flatten)]
    pub blip2: Blip2Args,
    /// Text the caption continues, e.g. "a photo of" or "图片内容描述:" [default: none].
    #[arg(long, conflicts_with = "template")]
    pub prompt: Option<String>,
    /// A named prompt template instead of --prompt (caption, caption_zh, camera, ...).
    #[arg(long)]
    pub template: Option<String>,
}

#[derive(Debug, Args)]
pub struct AskArgs {
    #[command(flatten)]
    pub blip2: Blip2Args,
    /// The question.
    #[arg(long)]
    pub question: String,
    /// Prompt template by name: vqa (default: "Question: {question} Answer:"), vqa_zh, choices, ...
    #[arg(long)]
    pub template: Option<String>,
    /// A template text given inline, with {question}, {choices}, {camera} placeholders.
    #[arg(long, conflicts_with = "template")]
    pub template_text: Option<String>,
    /// Answer only with one of these (comma-separated), scored by likelihood, e.g. yes,no.
    #[arg(long, value_delimiter = ',')]
    pub choices: Option<Vec<String>>,
}

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// BLIP-2 model directory with a float checkpoint.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// q8_0, q4_0 or q4k (K-quants fall back to q4_0 where a layer's input dimension does not divide 256).
    #[arg(long)]
    pub quant: Quant,
    /// Output file [default: DIR/model-<quant>.gguf, which caption/ask/run pick up with --quant].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ClassifierArgs {
    /// BERT base model directory (config.json, model.safetensors, tokenizer.json or vocab.txt).
    #[arg(long, value_name = "DIR")]
    pub base: PathBuf,
    /// PEFT LoRA adapter directory (adapter_config.json, adapter_model.safetensors) [default:
    /// none: the base is a fine-tuned BertForSequenceClassification, used with its own head].
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Label names by id, comma-separated [default: id2label of the adapter dir's config.json, else LABEL_i].
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Merge LoRA into a private copy of the base instead of applying it unmerged.
    #[arg(long)]
    pub merge: bool,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch_size: u32,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub classifier: ClassifierArgs,
    /// A text to classify (repeatable).
    #[arg(long = "text", value_name = "T")]
    pub texts: Vec<String>,
    /// Texts from a .csv (text column), a .jsonl (text field) or - (stdin, one per line).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub classifier: ClassifierArgs,
    /// Labelled data: .csv with text,label columns (or .jsonl); label = id or name.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// One JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Texts/s of a classifier at fixed batch sizes and sequence length, and peak RSS.
    Classify(BenchClassifyArgs),
    /// BLIP-2 at one image: load time, peak RSS, vision+Q-Former, prefill and decode speed,
    /// against the machine's memory bandwidth.
    Caption(BenchCaptionArgs),
}

#[derive(Debug, Args)]
pub struct BenchCaptionArgs {
    /// BLIP-2 model directory (config.json, tokenizer.json, safetensors or model-<quant>.gguf).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    #[command(flatten)]
    pub runtime: ModelArgs,
    /// The prompt after the image.
    #[arg(long, default_value = "Question: what is in the picture? Answer:")]
    pub prompt: String,
    /// Tokens to generate; EOS is suppressed until then, so every run decodes this many.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(2..=1024))]
    pub new_tokens: u32,
    /// Timed passes of vision+Q-Former, prefill and generation; the fastest of each is reported.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeats: u32,
    /// Write the first-step logits here (f32 little-endian, vocab_size values).
    #[arg(long, value_name = "FILE")]
    pub logits_out: Option<PathBuf>,
    /// MiB streamed to measure memory bandwidth (after peak RSS is taken; 0 skips it).
    #[arg(long, default_value_t = 1024)]
    pub bandwidth_mib: usize,
    /// Also time vision+Q-Former for this many images as one batch (frames due together from
    /// that many cameras) and report images/s at 1 and at this many; 1 skips it.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub cameras: u32,
}

#[derive(Debug, Args)]
pub struct BenchClassifyArgs {
    #[command(flatten)]
    pub classifier: ClassifierArgs,
    /// Batch sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub batch_sizes: Vec<usize>,
    /// Tokens per text (including [CLS] and [SEP]).
    #[arg(long, default_value_t = 64)]
    pub seq_len: usize,
    /// Seconds to measure each batch size (after one warm-up pass).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download the manifest's models (pinned commits, sha256-verified, resumable).
    Pull(ModelsPullArgs),
    /// Resolve the manifest's revisions to commits, pull every file into the models dir
    /// (verified against the hashes the Hub reports) and write commit, sha256 and size into the
    /// manifest (needs the Hub or a mirror in HF_ENDPOINT).
    Pin(ModelsPinArgs),
}

#[derive(Debug, Args)]
pub struct ModelsPullArgs {
    /// Manifest to pull [default: the one built into landfall, models/manifest.toml of its source].
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Where the models go, one directory per model (the daemon's `models.dir`).
    #[arg(long, value_name = "DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Only this model (repeatable) [default: all of the manifest].
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ModelsPinArgs {
    /// Manifest to pin; rewritten in place, comments kept.
    #[arg(long, value_name = "FILE", default_value = "models/manifest.toml")]
    pub manifest: PathBuf,
    /// Only this model (repeatable) [default: all of the manifest].
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
    /// Pin this branch, tag or commit instead of each entry's own revision (e.g. main, to move
    /// a pinned manifest forward).
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// Where the pulled files stay, one directory per model (the daemon's `models.dir`).
    #[arg(long, value_name = "DIR", default_value = "models")]
    pub models_dir: PathBuf,
}
