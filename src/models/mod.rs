//! The models landfall runs, written in candle the way candle-transformers writes them: a
//! `Config` that reads Hugging Face's `config.json`, one struct per HF module, weights found by
//! their checkpoint names.

#[cfg(target_arch = "x86_64")]
pub mod avx512_gemm;
pub mod bert;
pub mod blip2;
pub mod cpu;
pub mod decoding;
mod error;
pub mod float_gemm;
pub mod gelu;
pub mod gguf;
pub mod heap;
pub mod layers;
pub mod linear;
pub mod loader;
pub mod lora;
mod page_cache;
pub mod quantize;
pub mod quantized_rows;
pub mod quantizer;
pub mod runtime;
mod safetensors;
pub mod source;
pub mod status;
pub mod weight_rows;
pub mod weights;

pub use error::ModelError;
pub use safetensors::safetensors_header;

/// The first non-empty line of an error message: candle errors carry a backtrace after it when
/// `RUST_BACKTRACE` is set, which must not reach logs' single lines or answers.
pub fn first_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}
