//! The module tree of `BertForSequenceClassification` by name, as `model.named_modules()` lists
//! it: PEFT matches `target_modules` against these names, so landfall must know all of them to
//! match (and to refuse) exactly as PEFT does.

use crate::models::bert::LayerSite;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// A `torch.nn.Linear`: LoRA can adapt it.
    Linear,
    /// A `torch.nn.Embedding`: PEFT can adapt it, landfall does not.
    Embedding,
    /// Containers, norms, dropouts, activations: PEFT refuses LoRA on these.
    Other,
}

/// Where a linear module sits in the model, for the ones LoRA can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearPlace {
    Layer(usize, LayerSite),
    Pooler,
    Classifier,
}

#[derive(Debug, Clone)]
pub struct NamedModule {
    pub name: String,
    pub kind: ModuleKind,
    pub place: Option<LinearPlace>,
}

fn module(name: String, kind: ModuleKind) -> NamedModule {
    NamedModule {
        name,
        kind,
        place: None,
    }
}

fn linear(name: String, place: LinearPlace) -> NamedModule {
    NamedModule {
        name,
        kind: ModuleKind::Linear,
        place: Some(place),
    }
}

/// Every module of a `BertForSequenceClassification` with `layers` encoder layers.
pub fn bert_classifier_modules(layers: usize) -> Vec<NamedModule> {
    use ModuleKind::*;
    let mut out = vec![
        module("bert".into(), Other),
        module("bert.embeddings".into(), Other),
        module("bert.embeddings.word_embeddings".into(), Embedding),
        module("bert.embeddings.position_embeddings".into(), Embedding),
        module("bert.embeddings.token_type_embeddings".into(), Embedding),
        module("bert.embeddings.LayerNorm".into(), Other),
        module("bert.embeddings.dropout".into(), Other),
        module("bert.encoder".into(), Other),
        module("bert.encoder.layer".into(), Other),
    ];
    for i in 0..layers {
        let p = format!("bert.encoder.layer.{i}");
        for name in [
            "",
            ".attention",
            ".attention.self",
            ".attention.self.dropout",
            ".attention.output",
            ".attention.output.LayerNorm",
            ".attention.output.dropout",
            ".intermediate",
            ".intermediate.intermediate_act_fn",
            ".output",
            ".output.LayerNorm",
            ".output.dropout",
        ] {
            out.push(module(format!("{p}{name}"), Other));
        }
        for site in LayerSite::ALL {
            out.push(linear(
                format!("{p}.{}", site.module_path()),
                LinearPlace::Layer(i, site),
            ));
        }
    }
    out.push(module("bert.pooler".into(), Other));
    out.push(linear("bert.pooler.dense".into(), LinearPlace::Pooler));
    out.push(module("bert.pooler.activation".into(), Other));
    out.push(module("dropout".into(), Other));
    out.push(linear("classifier".into(), LinearPlace::Classifier));
    out
}
