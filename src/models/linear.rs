//! A linear layer whose weight is float or GGML-quantized, chosen per layer at load time.
//!
//! Quantized weights keep activations in f32 (candle's quantized matmul wants f32 input), so the
//! layer converts in and out of the model's float dtype around the product.

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Module, Result, Tensor};

use super::layers::tensor_bytes;
use super::runtime::Quant;

/// `y = x W^T + b` with `W` of shape `[out, in]`, as `torch.nn.Linear` stores it.
#[derive(Debug)]
pub enum BaseLinear {
    Float {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    Quantized {
        weight: QMatMul,
        bias: Option<Tensor>,
        in_dim: usize,
        out_dim: usize,
        /// On the CPU, products of at least this many rows dequantize the weight (one layer's
        /// worth, transient) and run the float GEMM; `None`: always the quantized kernels.
        dense_from_rows: Option<usize>,
    },
}

impl BaseLinear {
    /// Builds the layer from a float weight, quantizing it when `quant` asks for it and the
    /// input dimension allows (see [`Quant::ggml_for`]).
    pub fn new(weight: Tensor, bias: Option<Tensor>, quant: Quant) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        match quant.ggml_for(in_dim) {
            None => Ok(Self::Float { weight, bias }),
            Some(ggml) => {
                let qtensor = QTensor::quantize(&weight.to_dtype(DType::F32)?, ggml)?;
                let bias = bias.map(|b| b.to_dtype(DType::F32)).transpose()?;
                Ok(Self::Quantized {
                    weight: QMatMul::from_qtensor(qtensor)?,
                    bias,
                    in_dim,
                    out_dim,
                    dense_from_rows: None,
                })
            }
        }
    }

    /// A layer over an already quantized weight (read from a GGUF).
    pub fn from_qtensor(weight: QTensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_dim, in_dim) = weight.shape().dims2()?;
        let bias = bias.map(|b| b.to_dtype(DType::F32)).transpose()?;
        Ok(Self::Quantized {
            weight: QMatMul::from_qtensor(weight)?,
            bias,
            in_dim,
            out_dim,
            dense_from_rows: None,
        })
    }

    /// Makes a quantized layer run products of at least `rows` rows on the CPU as
    /// dequantize-then-GEMM. Where many rows share a weight (BLIP-2's 257 image tokens per
    /// image) the float GEMM beats candle's quantized CPU kernels, which work one row at a time
    /// (generic vec-dot for the 1408-wide ViT-g layers): measured at the 2.7B shape, q4k's
    /// vision+Q-Former went from 9.6 s to 5.9 s per image. Not for BERT: at its shapes the
    /// repacked quantized kernels win even at 1024 rows (batch 16 fell from 19.0 to 10.6
    /// texts/s with it). A float layer is returned as it is.
    pub fn dense_from_rows(mut self, rows: usize) -> Self {
        if let Self::Quantized {
            dense_from_rows, ..
        } = &mut self
        {
            *dense_from_rows = Some(rows);
        }
        self
    }

    /// Rows of the weight: the layer's output size.
    pub fn out_dim(&self) -> usize {
        match self {
            Self::Float { weight, .. } => weight.dims().first().copied().unwrap_or(0),
            Self::Quantized { out_dim, .. } => *out_dim,
        }
    }

    /// Bytes the weight occupies in memory (for health and the benchmark's report).
    pub fn weight_bytes(&self) -> usize {
        match self {
            Self::Float { weight, bias } => {
                tensor_bytes(weight) + bias.as_ref().map_or(0, tensor_bytes)
            }
            Self::Quantized {
                weight,
                bias,
                in_dim,
                out_dim,
                ..
            } => {
                let b = bias.as_ref().map_or(0, |b| b.elem_count() * 4);
                let w = match weight {
                    QMatMul::QTensor(q) => q.storage_size_in_bytes(),
                    _ => in_dim * out_dim * 4,
                };
                w + b
            }
        }
    }
}

impl Module for BaseLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Float { weight, bias } => {
                // One [tokens, in] x [in, out] product: a single large GEMM instead of one per
                // batch item over a broadcast weight.
                let y = matmul_2d(x, &weight.t()?)?;
                match bias {
                    Some(bias) => y.broadcast_add(bias),
                    None => Ok(y),
                }
            }
            Self::Quantized {
                weight,
                bias,
                dense_from_rows,
                ..
            } => {
                let dtype = x.dtype();
                let x = x.to_dtype(DType::F32)?.contiguous()?;
                let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?.max(1);
                let y = match (weight, dense_from_rows) {
                    (QMatMul::QTensor(q), Some(min)) if rows >= *min && x.device().is_cpu() => {
                        matmul_2d(&x, &q.dequantize(x.device())?.t()?)?
                    }
                    _ => weight.forward(&x)?,
                };
                let y = match bias {
                    Some(bias) => y.broadcast_add(bias)?,
                    None => y,
                };
                y.to_dtype(dtype)
            }
        }
    }
}

/// `x @ rhs` for `x` of shape `[..., in]` and a 2-D `rhs` of shape `[in, out]`, computed as one
/// 2-D product over all leading dimensions.
pub fn matmul_2d(x: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let in_dim = dims[dims.len() - 1];
    let rows = x.elem_count() / in_dim.max(1);
    let y = x.reshape((rows, in_dim))?.matmul(rhs)?;
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().unwrap_or(&mut 0) = rhs.dim(1)?;
    y.reshape(out_dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// `n` fixed values shaped `shape`: `sin(step * i + 0.3)`. Not randn: an unseeded draw made
    /// the error bounds fail now and then.
    fn wave(n: usize, shape: &[usize], step: f64) -> Result<Tensor> {
        Tensor::arange(0u32, n as u32, &Device::Cpu)?
            .to_dtype(DType::F32)?
            .affine(step, 0.3)?
            .sin()?
            .reshape(shape)
    }

    #[test]
    fn quantized_q8_is_close_to_float() -> Result<()> {
        let w = wave(64 * 256, &[64, 256], 0.37)?;
        let b = wave(64, &[64], 1.1)?;
        let x = wave(2 * 3 * 256, &[2, 3, 256], 0.73)?;
        let float = BaseLinear::new(w.clone(), Some(b.clone()), Quant::None)?;
        let q8 = BaseLinear::new(w, Some(b), Quant::Q8_0)?;
        assert!(matches!(q8, BaseLinear::Quantized { .. }));
        let a = float.forward(&x)?;
        let c = q8.forward(&x)?;
        let err = (a - c)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 0.5, "q8_0 error {err}");
        assert!(q8.weight_bytes() < float.weight_bytes() / 3);
        Ok(())
    }

    /// From `dense_from_rows` rows on, the product is exactly the float GEMM with the
    /// dequantized weight (activations stay f32, where the quantized kernels round them to 8
    /// bits); below it, the quantized kernels' result is unchanged.
    #[test]
    fn dense_from_rows_runs_the_dequantized_weight_through_the_float_gemm() -> Result<()> {
        let dev = Device::Cpu;
        let w = wave(64 * 256, &[64, 256], 0.37)?;
        let b = wave(64, &[64], 1.1)?;
        let many = wave(2 * 5 * 256, &[2, 5, 256], 0.73)?;
        let few = wave(3 * 256, &[1, 3, 256], 0.61)?;
        let kernels = BaseLinear::new(w.clone(), Some(b.clone()), Quant::Q4K)?;
        let dense = BaseLinear::new(w, Some(b.clone()), Quant::Q4K)?.dense_from_rows(8);
        let BaseLinear::Quantized {
            weight: QMatMul::QTensor(q),
            ..
        } = &dense
        else {
            panic!("not a quantized layer");
        };
        let expected = matmul_2d(&many, &q.dequantize(&dev)?.t()?)?.broadcast_add(&b)?;
        let got = dense.forward(&many)?;
        let exact = (&got - &expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(exact < 1e-4, "10 rows: {exact} from the dequantized GEMM");
        let beside = (&got - kernels.forward(&many)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(beside < 1.0, "10 rows: {beside} from the quantized kernels");
        let below = (dense.forward(&few)? - kernels.forward(&few)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert_eq!(below, 0.0, "3 rows must stay on the quantized kernels");
        Ok(())
    }
}
