//! BLIP-2 (vision encoder → Q-Former → language projection → OPT) in candle, for captions and
//! visual question answering. Loads `save_pretrained` directories with or without
//! `image_token_index`, float checkpoints quantized at load, or a GGUF from `landfall quantize`.

mod config;
pub mod generate;
mod layers;
mod model;
mod opt;
mod pipeline;
mod qformer;
mod tokenizer;
mod vision;

pub use crate::models::source::gguf_path;
pub use config::Blip2Config;
pub use generate::{EarlyStopping, GenerationOptions, Sampling};
pub use model::{Blip2, Blip2LoadOptions, ChoiceScore, Generation, ImageFeatures, GGUF_ARCH};
pub use pipeline::Captioner;
