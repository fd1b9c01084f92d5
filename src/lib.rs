//! landfall: a daemon that lands large models on the edge. It runs QLoRA-tuned BERT text
//! classifiers (and, as it lands, BLIP-2 captioning and VQA) with candle on Jetson-class devices
//! and answers over MQTT.
//!
//! # Layout
//! - [`cli`]: the command line (clap), parsing only.
//! - [`commands`]: one module per subcommand; maps failures to the contract's exit codes.
//! - [`models`]: device/dtype/quantization ([`models::runtime`]), checkpoint reading
//!   ([`models::weights`]), float-or-quantized linear layers ([`models::linear`]), BERT
//!   ([`models::bert`]), PEFT LoRA ([`models::lora`]), BLIP-2 ([`models::blip2`]) and GGUF
//!   files ([`models::gguf`]).
//! - [`prompts`]: named BLIP-2 prompt templates.
//! - [`classifier`]: a shared base + adapter + labels = a classifier; input readers and metrics.
//! - [`health`]: process and system figures: CPU, memory, and the Jetson facts (board, GPU
//!   load, EMC, thermal zones, power mode) for the health topic.
//! - [`logging`]: journald under systemd, else stderr.
//! - [`config`]: the daemon's TOML config, raw then validated.
//! - [`daemon`]: `landfall run`: the working loop, the engine thread, the scheduler.
//! - [`mqtt`]: the broker connection, delivery bookkeeping, offline queue, topics and payloads.
//! - [`imaging`]: image input for BLIP-2: decode (JPEG/PNG/WebP, EXIF, limits) and the
//!   transformers-exact resize/normalize into `pixel_values`.
//! - [`hub`]: `landfall models pull`/`pin`: the pinned model manifest, verified resumable
//!   downloads from the Hugging Face Hub.

pub mod camera;
pub mod classifier;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod health;
pub mod hub;
pub mod imaging;
pub mod logging;
pub mod models;
pub mod mqtt;
pub mod prompts;
pub mod util;
pub mod wire;
