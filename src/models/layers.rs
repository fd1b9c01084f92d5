//! Pieces every model here is built from: layer norm and the activations Hugging Face configs
//! name.

use candle_core::{Result, Tensor};

use crate::util::InvalidValue;

/// `torch.nn.LayerNorm` with weight and bias.
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f32,
}

/// Bytes a float tensor holds (weight accounting for health and the benchmarks).
pub fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

impl LayerNorm {
    pub fn bytes(&self) -> usize {
        tensor_bytes(&self.weight) + tensor_bytes(&self.bias)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // candle's fused kernel accumulates in f32 whatever the input dtype.
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// The activations of `hidden_act` / `activation_function` in Hugging Face configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact, erf-based GELU.
    GeluErf,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`: the tanh approximation.
    GeluTanh,
    Relu,
    Silu,
}

impl Activation {
    pub fn parse(name: &str) -> std::result::Result<Self, InvalidValue> {
        match name {
            "gelu" => Ok(Self::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            "silu" | "swish" => Ok(Self::Silu),
            other => Err(InvalidValue(format!(
                "activation {other:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, silu)"
            ))),
        }
    }

    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::GeluErf => super::gelu::gelu_erf(x),
            Self::GeluTanh => x.gelu(),
            Self::Relu => x.relu(),
            Self::Silu => x.silu(),
        }
    }
}
