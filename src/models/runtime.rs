//! Where and how a model runs: device, float dtype and weight quantization, as the command line
//! and the config name them (`--device auto|cpu|cuda[:N]`, `--dtype`, `--quant`).

use std::fmt;
use std::str::FromStr;

use crate::util::InvalidValue;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device};

/// `--device`: `auto` is CUDA when this binary was built with it and a GPU answers, else CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => Err(InvalidValue(format!(
                    "unknown device {other:?}: expected auto, cpu, cuda or cuda:N"
                ))),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Why a device could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("--device cuda:{0}: this landfall was built without CUDA; rebuild with `--features cuda` or use --device cpu")]
    NotBuilt(usize),
    #[error("--device cuda:{ordinal}: {reason}")]
    Open { ordinal: usize, reason: String },
}

impl DeviceChoice {
    /// Opens the device. Asking for CUDA from a CPU-only build is an error that says how to fix it.
    pub fn open(self) -> Result<Device, DeviceError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => {
                if candle_core::utils::cuda_is_available() {
                    Device::new_cuda(0).or(Ok(Device::Cpu))
                } else {
                    Ok(Device::Cpu)
                }
            }
            Self::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(DeviceError::NotBuilt(n));
                }
                Device::new_cuda(n).map_err(|e| DeviceError::Open {
                    ordinal: n,
                    reason: crate::models::first_line(&e.to_string()),
                })
            }
        }
    }
}

/// Where a model runs and in which float type: the one place the device is opened and the
/// dtype chosen, for the command line and the daemon alike.
#[derive(Debug, Clone)]
pub struct Placement {
    pub device: Device,
    pub dtype: FloatType,
}

impl Placement {
    /// Opens `device`; `dtype` `None` is f16 on CUDA, f32 on the CPU.
    pub fn open(device: DeviceChoice, dtype: Option<FloatType>) -> Result<Self, DeviceError> {
        let device = device.open()?;
        let dtype = dtype.unwrap_or_else(|| FloatType::default_for(&device));
        Ok(Self { device, dtype })
    }

    /// `cpu` or `cuda`, as health and `--json` output report it.
    pub fn device_name(&self) -> String {
        device_name(&self.device)
    }
}

/// A short name of an opened device, as health and `--json` output report it.
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(_) => "cuda".to_string(),
        Device::Metal(_) => "metal".to_string(),
    }
}

/// `--dtype`: the float type of activations and of the weights that stay unquantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatType {
    F32,
    F16,
    Bf16,
}

impl FromStr for FloatType {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "bf16" => Ok(Self::Bf16),
            other => Err(InvalidValue(format!(
                "unknown dtype {other:?}: expected f32, f16 or bf16"
            ))),
        }
    }
}

impl FloatType {
    /// The dtype when none is asked for: f16 on CUDA, f32 on the CPU.
    pub fn default_for(device: &Device) -> Self {
        if device.is_cuda() {
            Self::F16
        } else {
            Self::F32
        }
    }

    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }
}

/// `--quant`: how linear weights are stored. K-quants need the input dimension to divide 256;
/// layers where it does not fall back to a block-32 type (see [`Quant::ggml_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quant {
    #[default]
    None,
    Q8_0,
    Q4_0,
    Q4K,
}

impl FromStr for Quant {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "none" => Ok(Self::None),
            "q8_0" => Ok(Self::Q8_0),
            "q4_0" => Ok(Self::Q4_0),
            "q4k" | "q4_k" => Ok(Self::Q4K),
            other => Err(InvalidValue(format!(
                "unknown quantization {other:?}: expected none, q8_0, q4_0 or q4k"
            ))),
        }
    }
}

impl fmt::Display for Quant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4K => "q4k",
        })
    }
}

impl Quant {
    /// The GGML type for a weight whose rows have `in_dim` elements, or `None` to keep it float.
    /// Q4K falls back to Q4_0 when `in_dim` is not a multiple of 256 (ViT-g's 1408, MiniLM's 384);
    /// a dimension that is not even a multiple of 32 stays float.
    pub fn ggml_for(self, in_dim: usize) -> Option<GgmlDType> {
        let wanted = match self {
            Self::None => return None,
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4_0 => GgmlDType::Q4_0,
            Self::Q4K => GgmlDType::Q4K,
        };
        if in_dim.is_multiple_of(wanted.block_size()) {
            return Some(wanted);
        }
        let fallback = match wanted {
            GgmlDType::Q4K => GgmlDType::Q4_0,
            other => other,
        };
        in_dim
            .is_multiple_of(fallback.block_size())
            .then_some(fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("auto".parse::<DeviceChoice>(), Ok(DeviceChoice::Auto));
        assert_eq!("cuda:1".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(1)));
        assert!("gpu".parse::<DeviceChoice>().unwrap_err().0.contains("gpu"));
    }

    #[test]
    fn k_quants_fall_back_where_256_does_not_divide() {
        assert_eq!(Quant::Q4K.ggml_for(768), Some(GgmlDType::Q4K));
        assert_eq!(Quant::Q4K.ggml_for(1408), Some(GgmlDType::Q4_0));
        assert_eq!(Quant::Q4K.ggml_for(384), Some(GgmlDType::Q4_0));
        assert_eq!(Quant::Q8_0.ggml_for(40), None);
        assert_eq!(Quant::None.ggml_for(768), None);
    }
}
