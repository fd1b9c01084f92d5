//! PEFT LoRA adapters (`adapter_config.json` + `adapter_model.safetensors`, as
//! `PeftModel.save_pretrained` writes them) for the BERT classifier.
//!
//! The matching rules mirror peft 0.21: `tuners_utils.check_target_module_exists` for
//! `target_modules` / `layers_to_transform` / `exclude_modules` / `modules_to_save`, and
//! `utils.other.get_pattern_key` for `rank_pattern` / `alpha_pattern`.

mod adapter;
mod config;
mod modules;

pub use adapter::{LoraAdapter, LoraDelta};
pub use config::{LoraConfig, TargetModules};
pub use modules::{bert_classifier_modules, LinearPlace, ModuleKind, NamedModule};
