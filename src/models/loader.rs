//! Turns checkpoint names into layers, for every model here: `vb.pp("name")` the candle way, over
//! a [`WeightSource`] (float checkpoint or GGUF), with the device, float dtype and quantization
//! of the model being built.

use candle_core::{DType, Device, Tensor};

use super::layers::LayerNorm;
use super::linear::BaseLinear;
use super::runtime::Quant;
use super::source::WeightSource;
use super::ModelError;

/// A hook that may replace a float linear weight before it is quantized (LoRA merging). Receives
/// the module's name without the loader's prefix (`encoder.layer.0.attention.self.query`).
pub type WeightHook<'a> = &'a dyn Fn(&str, Tensor) -> Result<Tensor, ModelError>;

#[derive(Clone)]
pub struct Loader<'a> {
    pub source: &'a WeightSource,
    /// Prepended to every name (`bert.` for `BertFor*` checkpoints).
    pub prefix: String,
    pub device: Device,
    pub dtype: DType,
    pub quant: Quant,
    /// Quantized linears built by this loader run products of at least this many rows as
    /// dequantize-then-GEMM on the CPU (see [`BaseLinear::dense_from_rows`]).
    pub dense_from_rows: Option<usize>,
    /// Linears built by this loader are a decoder's, one token per step (see
    /// [`BaseLinear::for_decoding`]).
    pub decoding: bool,
}

impl<'a> Loader<'a> {
    pub fn new(source: &'a WeightSource, device: Device, dtype: DType, quant: Quant) -> Self {
        Self {
            source,
            prefix: String::new(),
            device,
            dtype,
            quant,
            dense_from_rows: None,
            decoding: false,
        }
    }

    /// The same loader under a name prefix.
    pub fn with_prefix(&self, prefix: &str) -> Loader<'a> {
        Loader {
            prefix: format!("{}{prefix}", self.prefix),
            ..self.clone()
        }
    }

    /// The same loader, its quantized linears dense from `rows` rows on (see
    /// [`BaseLinear::dense_from_rows`]).
    pub fn with_dense_from_rows(&self, rows: usize) -> Loader<'a> {
        Loader {
            dense_from_rows: Some(rows),
            ..self.clone()
        }
    }

    /// The same loader for a decoder's layers: products of one token per step (see
    /// [`BaseLinear::for_decoding`]).
    pub fn for_decoding(&self) -> Loader<'a> {
        Loader {
            decoding: true,
            ..self.clone()
        }
    }

    /// Applies this loader's per-layer choices to a layer it (or its caller) built.
    pub fn finish_linear(&self, linear: BaseLinear) -> candle_core::Result<BaseLinear> {
        let linear = match self.dense_from_rows {
            Some(rows) => linear.dense_from_rows(rows),
            None => linear,
        };
        if !self.decoding {
            return Ok(linear);
        }
        linear.for_decoding()
    }

    /// The same loader with another float dtype (the Q-Former stays f32, as in transformers).
    pub fn with_dtype(&self, dtype: DType) -> Loader<'a> {
        Loader {
            dtype,
            ..self.clone()
        }
    }

    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn has(&self, name: &str) -> bool {
        self.source.contains(&self.full(name))
    }

    pub fn tensor_error(&self, name: &str, reason: String) -> ModelError {
        self.source.tensor_error(&self.full(name), reason)
    }

    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor, ModelError> {
        self.source
            .float(&self.full(name), shape, self.dtype, &self.device)
    }

    /// LayerNorm weights under `weight`/`bias`, or the `gamma`/`beta` of old TF-converted files.
    pub fn layer_norm(&self, module: &str, size: usize, eps: f64) -> Result<LayerNorm, ModelError> {
        let (w, b) =
            if self.has(&format!("{module}.weight")) || !self.has(&format!("{module}.gamma")) {
                ("weight", "bias")
            } else {
                ("gamma", "beta")
            };
        Ok(LayerNorm {
            weight: self.tensor(&format!("{module}.{w}"), &[size])?,
            bias: self.tensor(&format!("{module}.{b}"), &[size])?,
            eps: eps as f32,
        })
    }

    /// A linear layer, quantized as `quant` asks when its input dimension allows.
    pub fn linear(
        &self,
        module: &str,
        out_dim: usize,
        in_dim: usize,
        bias: bool,
    ) -> Result<BaseLinear, ModelError> {
        self.linear_hooked(module, out_dim, in_dim, bias, None)
    }

    /// [`Self::linear`] with the float weight passed through `hook` first.
    pub fn linear_hooked(
        &self,
        module: &str,
        out_dim: usize,
        in_dim: usize,
        bias: bool,
        hook: Option<WeightHook>,
    ) -> Result<BaseLinear, ModelError> {
        let bias = if bias {
            Some(self.tensor(&format!("{module}.bias"), &[out_dim])?)
        } else {
            None
        };
        let named = hook.map(|h| move |w: Tensor| h(module, w));
        self.linear_inner(
            module,
            out_dim,
            in_dim,
            bias,
            named.as_ref().map(|f| f as _),
        )
    }

    /// A linear layer whose bias the caller assembled (ViT's `q_bias`/`v_bias`).
    pub fn linear_with_bias(
        &self,
        module: &str,
        out_dim: usize,
        in_dim: usize,
        bias: Option<Tensor>,
    ) -> Result<BaseLinear, ModelError> {
        self.linear_inner(module, out_dim, in_dim, bias, None)
    }

    fn linear_inner(
        &self,
        module: &str,
        out_dim: usize,
        in_dim: usize,
        bias: Option<Tensor>,
        hook: Option<&dyn Fn(Tensor) -> Result<Tensor, ModelError>>,
    ) -> Result<BaseLinear, ModelError> {
        let linear = self.source.linear(
            &self.full(&format!("{module}.weight")),
            out_dim,
            in_dim,
            bias,
            self.quant,
            self.dtype,
            &self.device,
            hook,
        )?;
        self.finish_linear(linear)
            .map_err(|err| self.tensor_error(&format!("{module}.weight"), err.to_string()))
    }
}
