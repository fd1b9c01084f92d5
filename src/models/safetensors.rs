//! A safetensors reader that reads one tensor at a time with positioned reads.
//!
//! candle's mmap reader keeps every page it touched resident (and counted in RSS) until the
//! whole file is unmapped, so loading a 440 MB checkpoint to quantize it to 4 bits peaks at the
//! full float size. Reading tensor by tensor keeps the peak at one float tensor over the model.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Shape, Tensor};
use serde_json::Value;

use super::error::ModelError;
use super::page_cache::release_after_upload;

/// The header may not exceed this: real ones are kilobytes, a garbage length must not make us
/// allocate gigabytes.
const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: u64,
    end: u64,
}

/// One safetensors file: its parsed header and an open handle.
pub struct SafetensorsFile {
    path: PathBuf,
    file: File,
    tensors: HashMap<String, TensorInfo>,
}

impl SafetensorsFile {
    /// Opens and validates the header: JSON, known dtypes, offsets inside the file and sizes that
    /// match the shapes.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        Self::read_header(path).map_err(|reason| ModelError::Weights {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn read_header(path: &Path) -> Result<Self, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let file_len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut len_bytes = [0u8; 8];
        file.read_exact_at(&mut len_bytes, 0)
            .map_err(|_| "shorter than a safetensors header".to_string())?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
            return Err(format!(
                "header length {header_len} does not fit a {file_len}-byte file (truncated or not safetensors)"
            ));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact_at(&mut header, 8)
            .map_err(|e| e.to_string())?;
        let header: Value = serde_json::from_slice(&header)
            .map_err(|e| format!("header is not valid JSON ({e})"))?;
        let entries = header.as_object().ok_or("header is not a JSON object")?;
        let data_start = 8 + header_len;
        let mut tensors = HashMap::new();
        for (name, entry) in entries {
            if name == "__metadata__" {
                continue;
            }
            let info = parse_entry(entry, data_start, file_len)
                .map_err(|e| format!("tensor {name}: {e}"))?;
            tensors.insert(name.clone(), info);
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            tensors,
        })
    }

    pub fn tensors(&self) -> &HashMap<String, TensorInfo> {
        &self.tensors
    }

    /// Reads tensor `name` onto `device` in its stored dtype.
    pub fn load(&self, name: &str, device: &Device) -> Result<Tensor, ModelError> {
        self.read_tensor(name, device)
            .map_err(|reason| ModelError::Tensor {
                path: self.path.clone(),
                name: name.to_string(),
                reason,
            })
    }

    fn read_tensor(&self, name: &str, device: &Device) -> Result<Tensor, String> {
        let info = self
            .tensors
            .get(name)
            .ok_or("missing from the checkpoint")?;
        let mut bytes = vec![0u8; (info.end - info.start) as usize];
        self.file
            .read_exact_at(&mut bytes, info.start)
            .map_err(|e| format!("reading: {e}"))?;
        let tensor = Tensor::from_raw_buffer(&bytes, info.dtype, &info.shape, device)
            .map_err(|e| e.to_string())?;
        release_after_upload(&self.file, info.start, info.end - info.start, device);
        Ok(tensor)
    }
}

fn parse_entry(entry: &Value, data_start: u64, file_len: u64) -> Result<TensorInfo, String> {
    let dtype = match entry.get("dtype").and_then(Value::as_str) {
        Some("F32") => DType::F32,
        Some("F16") => DType::F16,
        Some("BF16") => DType::BF16,
        Some("F64") => DType::F64,
        Some("U8") => DType::U8,
        Some("U32") => DType::U32,
        Some("I64") => DType::I64,
        Some(other) => return Err(format!("dtype {other} is not supported")),
        None => return Err("no dtype".into()),
    };
    let shape: Vec<usize> = entry
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
        .ok_or("no valid shape")?;
    let offsets: Vec<u64> = entry
        .get("data_offsets")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(Value::as_u64).collect())
        .ok_or("no valid data_offsets")?;
    let [begin, end] = offsets[..] else {
        return Err("data_offsets must have two entries".into());
    };
    let (start, end) = (data_start + begin, data_start + end);
    if begin > end || end > file_len {
        return Err(format!(
            "data range {begin}..{end} lies outside the file (truncated?)"
        ));
    }
    let want = Shape::from(shape.clone()).elem_count() as u64 * dtype.size_in_bytes() as u64;
    if end - start != want {
        return Err(format!(
            "{} bytes stored for shape {shape:?} of {dtype:?}, which needs {want}",
            end - start
        ));
    }
    Ok(TensorInfo {
        dtype,
        shape,
        start,
        end,
    })
}

/// Checks that `path` is a safetensors file with a sound header (every tensor's dtype, shape and
/// byte range valid), without reading its tensors.
pub fn safetensors_header(path: &std::path::Path) -> Result<(), ModelError> {
    SafetensorsFile::open(path).map(|_| ())
}
