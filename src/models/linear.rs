//! A linear layer whose weight is float or GGML-quantized, chosen per layer at load time.
//!
//! Quantized weights keep activations in f32 (candle's quantized matmul wants f32 input), so the
//! layer converts in and out of the model's float dtype around the product. A decoder's layers
//! (see [`BaseLinear::for_decoding`]) run their few-row products on the CPU kernels of
//! [`super::decoding`].

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Result, Tensor};

use super::cpu;
use super::decoding::{float_gemv, packed_q4::PackedQ4};
use super::float_gemm;
use super::layers::tensor_bytes;
use super::quantized_rows;
use super::quantizer;
use super::runtime::Quant;

/// Up to this many rows (tokens) a decoding layer's float product is a matrix-vector one.
pub const DECODING_ROWS: usize = 8;

/// `y = x W^T + b` with `W` of shape `[out, in]`, as `torch.nn.Linear` stores it.
#[derive(Debug)]
pub enum BaseLinear {
    Float {
        weight: Tensor,
        bias: Option<Tensor>,
        /// Products of at most [`DECODING_ROWS`] rows run [`float_gemv`] (set by
        /// [`BaseLinear::for_decoding`] where the weight and the CPU allow).
        decoding: bool,
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
    /// A Q4_0 weight in [`PackedQ4`]'s layout for the CPU's few-row products (see
    /// [`BaseLinear::for_decoding`]).
    Packed {
        weight: PackedQ4,
        bias: Option<Tensor>,
    },
}

impl BaseLinear {
    /// Builds the layer from a float weight, quantizing it when `quant` asks for it and the
    /// input dimension allows (see [`Quant::ggml_for`]).
    pub fn new(weight: Tensor, bias: Option<Tensor>, quant: Quant) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        match quant.ggml_for(in_dim) {
            None => Ok(Self::Float {
                weight,
                bias,
                decoding: false,
            }),
            Some(ggml) => {
                let qtensor = quantizer::quantize(&weight, ggml)?;
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

    /// Makes the layer a decoder's, whose products are one token per step: on an x86-64 CPU
    /// with AVX2/FMA/F16C, a Q4_0 weight moves into [`PackedQ4`]'s layout (the original
    /// blocks are dropped: the same bytes are held) and an f32 weight runs few-row products
    /// on [`float_gemv`]. Both stream the weight once per step, near the memory bound, where
    /// candle's Q4_0 kernels reach a fifth of it and its float GEMM half. Other layers,
    /// devices, CPUs and shapes come back as they were.
    pub fn for_decoding(self) -> Result<Self> {
        match self {
            Self::Float { weight, bias, .. } => {
                let (out_dim, in_dim) = weight.dims2()?;
                let decoding = weight.device().is_cpu()
                    && weight.dtype() == DType::F32
                    && weight.is_contiguous()
                    && float_gemv::supported(out_dim, in_dim);
                Ok(Self::Float {
                    weight,
                    bias,
                    decoding,
                })
            }
            Self::Quantized {
                weight: QMatMul::QTensor(q),
                bias,
                in_dim,
                out_dim,
                dense_from_rows,
            } => {
                let packed = if q.dtype() == GgmlDType::Q4_0
                    && q.device().is_cpu()
                    && PackedQ4::supported(out_dim, in_dim)
                {
                    PackedQ4::from_ggml(&q.data()?, out_dim, in_dim)
                } else {
                    None
                };
                Ok(match packed {
                    Some(weight) => Self::Packed { weight, bias },
                    None => Self::Quantized {
                        weight: QMatMul::QTensor(q),
                        bias,
                        in_dim,
                        out_dim,
                        dense_from_rows,
                    },
                })
            }
            other => Ok(other),
        }
    }

    /// Rows of the weight: the layer's output size.
    pub fn out_dim(&self) -> usize {
        match self {
            Self::Float { weight, .. } => weight.dims().first().copied().unwrap_or(0),
            Self::Quantized { out_dim, .. } => *out_dim,
            Self::Packed { weight, .. } => weight.out_dim(),
        }
    }

    /// Bytes the weight occupies in memory (for health and the benchmark's report).
    pub fn weight_bytes(&self) -> usize {
        match self {
            Self::Float { weight, bias, .. } => {
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
            Self::Packed { weight, bias } => {
                weight.bytes() + bias.as_ref().map_or(0, |b| b.elem_count() * 4)
            }
        }
    }
}

impl Module for BaseLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Float {
                weight,
                bias,
                decoding,
            } => {
                let rows = x.elem_count() / weight.dim(1)?.max(1);
                if *decoding && rows <= DECODING_ROWS && x.dtype() == DType::F32 {
                    add_bias(float_gemv_2d(weight, x, rows)?, bias.as_ref())
                } else {
                    linear_product(x, weight, bias.as_ref())
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
                        let in_place = float_gemm::available()
                            .then(|| quantized_rows::linear(&x, q, bias.as_ref()))
                            .flatten();
                        match in_place {
                            Some(y) => y?,
                            None => linear_product(&x, &q.dequantize(x.device())?, bias.as_ref())?,
                        }
                    }
                    _ => add_bias(weight.forward(&x)?, bias.as_ref())?,
                };
                y.to_dtype(dtype)
            }
            Self::Packed { weight, bias } => {
                let dtype = x.dtype();
                let rows = x.elem_count() / weight.in_dim();
                let values = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                let out_dims = cpu::with_last_dim(x, weight.out_dim());
                let y = Tensor::from_vec(weight.matmul(&values, rows), out_dims, x.device())?;
                add_bias(y, bias.as_ref())?.to_dtype(dtype)
            }
        }
    }
}

/// `x W^T` on [`float_gemv`] for a contiguous f32 CPU `weight` `[out, in]` (as
/// [`BaseLinear::for_decoding`] checked) and `rows` rows of `x`.
fn float_gemv_2d(weight: &Tensor, x: &Tensor, rows: usize) -> Result<Tensor> {
    let (out_dim, in_dim) = weight.dims2()?;
    let values = x.flatten_all()?.to_vec1::<f32>()?;
    let y = match cpu::f32_view(weight) {
        Some(w) => float_gemv::matmul(&w, out_dim, in_dim, &values, rows),
        None => candle_core::bail!("the decoding GEMV needs a contiguous f32 CPU weight"),
    };
    Tensor::from_vec(y, cpu::with_last_dim(x, out_dim), x.device())
}

/// `x W^T + bias` for a `weight` `[out, in]`: on [`float_gemm`] where it runs (the bias added
/// inside the product), else one `[tokens, in] x [in, out]` product (a single large GEMM
/// instead of one per batch item over a broadcast weight) and then the bias.
fn linear_product(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if float_gemm::available() {
        if let Some(y) = float_gemm::linear(x, weight, bias) {
            return y;
        }
    }
    add_bias(matmul_2d(x, &weight.t()?)?, bias)
}

/// `y + bias`, the bias broadcast over `y`'s rows.
fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(bias) => y.broadcast_add(bias),
        None => Ok(y),
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

    /// A decoder's layers: Q4_0 moves into the packed layout (same bytes, products as close to
    /// the dequantized weight's as candle's Q4_0 kernels) and f32 runs few-row products on the
    /// GEMV (the GEMM's result up to rounding), at one token and at a prompt's worth of rows.
    #[test]
    fn decoding_layers_keep_their_products() -> Result<()> {
        use crate::models::decoding::simd_available;
        let w = wave(64 * 256, &[64, 256], 0.37)?;
        let b = wave(64, &[64], 1.1)?;
        for shape in [[1usize, 1, 256], [1, 3, 256], [2, 9, 256]] {
            let x = wave(shape.iter().product(), &shape, 0.73)?;
            let kernels = BaseLinear::new(w.clone(), Some(b.clone()), Quant::Q4_0)?;
            let decoding =
                BaseLinear::new(w.clone(), Some(b.clone()), Quant::Q4_0)?.for_decoding()?;
            assert_eq!(
                matches!(decoding, BaseLinear::Packed { .. }),
                simd_available(),
                "packed exactly where the CPU runs the kernel"
            );
            assert_eq!(decoding.weight_bytes(), kernels.weight_bytes());
            // Both round activations to 8 bits: each is as far from the product of the
            // dequantized weight with the float activations as the other, give or take.
            let BaseLinear::Quantized {
                weight: QMatMul::QTensor(q),
                ..
            } = &kernels
            else {
                panic!("not a quantized layer");
            };
            let exact = matmul_2d(&x, &q.dequantize(&Device::Cpu)?.t()?)?.broadcast_add(&b)?;
            let err =
                |y: Tensor| -> Result<f32> { (y - &exact)?.abs()?.mean_all()?.to_scalar::<f32>() };
            let (ours, theirs) = (err(decoding.forward(&x)?)?, err(kernels.forward(&x)?)?);
            assert!(
                ours <= 1.25 * theirs + 1e-6,
                "{shape:?}: q4_0 mean error {ours}, candle's kernels {theirs}"
            );

            let gemm = BaseLinear::new(w.clone(), Some(b.clone()), Quant::None)?;
            let gemv = BaseLinear::new(w.clone(), Some(b.clone()), Quant::None)?.for_decoding()?;
            assert!(matches!(
                gemv,
                BaseLinear::Float { decoding, .. } if decoding == simd_available()
            ));
            let diff = (gemv.forward(&x)? - gemm.forward(&x)?)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-4, "{shape:?}: f32 {diff} from the GEMM");
        }
        // Shapes outside the layouts stay as they were.
        let odd = BaseLinear::new(wave(60 * 96, &[60, 96], 0.37)?, None, Quant::Q4_0)?;
        assert!(matches!(odd.for_decoding()?, BaseLinear::Quantized { .. }));
        Ok(())
    }
}
