//! landfall: a daemon that lands large models on the edge. It runs BLIP-2 (captions and visual
//! question answering) and QLoRA-tuned BERT text classifiers with candle on Jetson-class devices
//! and answers over MQTT.
//!
//! # Layout
//! Leaves first: each module uses only those above it in this list (`tests/layering.rs` checks
//! that no two modules, and no two of these folders, import each other).
//! - [`util`]: retry delays, the error of values that do not parse.
//! - [`health`]: process and system figures: CPU, memory, and the Jetson facts (board, GPU
//!   load, EMC, thermal zones, power mode).
//! - [`wire`]: the JSON of requests, answers and health, shared by every transport.
//! - [`imaging`]: image input for BLIP-2: decode (JPEG/PNG/WebP, EXIF, limits) and the
//!   transformers-exact resize/normalize into `pixel_values`.
//! - [`prompts`]: named BLIP-2 prompt templates.
//! - [`models`]: where a model runs ([`models::runtime`]), where its weights come from
//!   ([`models::source`]: checkpoint or GGUF, read through one [`models::loader::Loader`]),
//!   float-or-quantized linear layers, BERT, PEFT LoRA, BLIP-2, `quantize`, and each model's
//!   load status ([`models::status`]).
//! - [`classifier`]: a shared base + adapter + labels = a classifier; input readers and metrics.
//! - [`updates`]: adapter updates over TUF: the device's client, bundle checks and state, and
//!   the operator's `init-repo`/`publish`/`timestamp`.
//! - [`camera`]: capture threads and their latest-frame mailboxes (V4L2, files, test pattern).
//! - [`config`]: the daemon's TOML config, raw then validated.
//! - [`mqtt`]: the broker connection, delivery bookkeeping and offline queue, topic names, Home
//!   Assistant discovery, the embedded broker.
//! - [`http`]: the HTTP API beside MQTT (the FastAPI service's endpoints, `/v1/...`,
//!   Prometheus `/metrics`): routes, token, CORS, answer shapes; its calls go to the daemon's
//!   loop.
//! - [`daemon`]: `landfall run`: the core (every decision, no I/O), the engine thread that owns
//!   the models, the scheduler, and the loop that carries out the core's actions.
//! - [`hub`]: `landfall models pull`/`pin`: the model manifest, verified resumable downloads from
//!   the Hugging Face Hub.
//! - [`logging`]: journald under systemd, else stderr.
//! - [`cli`]: the command line (clap), parsing only.
//! - [`commands`]: one module per subcommand; maps failures to exit codes 1 and 2.

pub mod camera;
pub mod classifier;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod health;
pub mod http;
pub mod hub;
pub mod imaging;
pub mod logging;
pub mod models;
pub mod mqtt;
pub mod prompts;
pub mod updates;
pub mod util;
pub mod wire;
