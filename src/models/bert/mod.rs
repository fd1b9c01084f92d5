//! BERT (`transformers/models/bert/modeling_bert.py`) as a shared, optionally quantized base
//! encoder, with LoRA deltas and a sequence-classification head applied per classifier.

mod config;
mod model;
mod tokenizer;

pub use crate::models::layers::Activation;
pub use config::BertConfig;
pub use model::{BertBase, BertLoadOptions, LayerSite, LinearDeltas, GGUF_ARCH};
pub use tokenizer::{BertTokenizer, EncodedBatch};
