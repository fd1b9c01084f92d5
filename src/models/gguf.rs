//! GGUF files of quantized weights: what `landfall quantize` writes and the loaders read instead
//! of the float checkpoint, so a device never needs the full-precision weights.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::QTensor;
use candle_core::Device;

use super::page_cache::release_after_upload;
use super::ModelError;

/// The metadata key that records which `--quant` a file was written for.
pub const QUANT_KEY: &str = "landfall.quant";
/// The metadata key naming the architecture (`blip-2`).
pub const ARCH_KEY: &str = "general.architecture";

/// An open GGUF file; tensors are read on demand.
pub struct GgufStore {
    path: PathBuf,
    content: Content,
    file: Mutex<File>,
}

impl GgufStore {
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let mut file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        let content = Content::read(&mut file).map_err(|e| ModelError::Weights {
            path: path.to_path_buf(),
            reason: format!("not a GGUF file: {e}"),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            content,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// The shape of tensor `name`, in the usual row-major order.
    pub fn dims(&self, name: &str) -> Option<Vec<usize>> {
        self.content
            .tensor_infos
            .get(name)
            .map(|t| t.shape.dims().to_vec())
    }

    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.content
            .metadata
            .get(key)
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
    }

    pub fn qtensor(&self, name: &str, device: &Device) -> Result<QTensor, ModelError> {
        let error = |reason: String| ModelError::Tensor {
            path: self.path.clone(),
            name: name.to_string(),
            reason,
        };
        if !self.contains(name) {
            return Err(error("missing from the GGUF file".into()));
        }
        // A poisoned lock only means another read failed mid-way; the file handle is still usable.
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let tensor = self
            .content
            .tensor(&mut *file, name, device)
            .map_err(|e| error(e.to_string()))?;
        let start = self.content.tensor_data_offset + self.content.tensor_infos[name].offset;
        release_after_upload(&file, start, tensor.storage_size_in_bytes() as u64, device);
        Ok(tensor)
    }
}

/// Writes `tensors` and `metadata` to `path` atomically (a temporary file renamed into place), so
/// an interrupted run never leaves a truncated GGUF that a later load would pick up.
pub fn write_gguf(
    path: &Path,
    metadata: &HashMap<String, Value>,
    tensors: &[(String, QTensor)],
) -> Result<(), ModelError> {
    let tmp = path.with_extension("gguf.partial");
    let result = (|| -> Result<(), ModelError> {
        let file = File::create(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
        let mut writer = BufWriter::new(file);
        let mut keys: Vec<&String> = metadata.keys().collect();
        keys.sort();
        let meta: Vec<(&str, &Value)> = keys.iter().map(|k| (k.as_str(), &metadata[*k])).collect();
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        gguf_file::write(&mut writer, &meta, &refs).map_err(|e| ModelError::Weights {
            path: tmp.clone(),
            reason: format!("writing GGUF: {e}"),
        })?;
        writer.flush().map_err(|e| ModelError::io(&tmp, e))?;
        writer
            .get_mut()
            .sync_all()
            .map_err(|e| ModelError::io(&tmp, e))?;
        writer.rewind().map_err(|e| ModelError::io(&tmp, e))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}
