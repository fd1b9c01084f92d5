//! The models landfall runs, written in candle the way candle-transformers writes them: a
//! `Config` that reads Hugging Face's `config.json`, one struct per HF module, weights found by
//! their checkpoint names.

pub mod bert;
pub mod blip2;
mod error;
pub mod gguf;
pub mod layers;
pub mod linear;
pub mod lora;
pub mod runtime;
mod safetensors;
pub mod weights;

pub use error::ModelError;
