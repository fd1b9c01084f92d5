//! Finding and reading checkpoint tensors: `model.safetensors`, sharded safetensors with
//! `model.safetensors.index.json`, or a PyTorch `pytorch_model.bin`, with errors that name the file
//! and tensor at fault (candle's VarBuilder reports neither).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::safetensors::SafetensorsFile;
use super::ModelError;

enum Backing {
    /// Shards, and which shard holds each tensor.
    Safetensors {
        files: Vec<SafetensorsFile>,
        index: HashMap<String, usize>,
    },
    Loaded(HashMap<String, Tensor>),
}

/// The tensors of one checkpoint, by name.
pub struct WeightStore {
    /// What the errors name: the file, or the index of a sharded checkpoint.
    origin: PathBuf,
    backing: Backing,
    names: Vec<String>,
}

impl WeightStore {
    /// Opens the checkpoint in a Hugging Face model directory.
    pub fn open_dir(dir: &Path) -> Result<Self, ModelError> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let pth = dir.join("pytorch_model.bin");
        if single.is_file() {
            Self::open_safetensors(&single, std::slice::from_ref(&single))
        } else if index.is_file() {
            let shards = shard_paths(&index)?;
            Self::open_safetensors(&index, &shards)
        } else if pth.is_file() {
            Self::open_pth(&pth)
        } else {
            Err(ModelError::Missing {
                dir: dir.to_path_buf(),
                what: "weights",
                looked_for: "model.safetensors, model.safetensors.index.json, pytorch_model.bin"
                    .into(),
            })
        }
    }

    /// Opens one safetensors file.
    pub fn open_file(path: &Path) -> Result<Self, ModelError> {
        if !path.is_file() {
            return Err(ModelError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        Self::open_safetensors(path, &[path.to_path_buf()])
    }

    fn open_safetensors(origin: &Path, paths: &[PathBuf]) -> Result<Self, ModelError> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        let mut names = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let file = SafetensorsFile::open(path)?;
            for name in file.tensors().keys() {
                index.insert(name.clone(), i);
                names.push(name.clone());
            }
            files.push(file);
        }
        names.sort();
        Ok(Self {
            origin: origin.to_path_buf(),
            backing: Backing::Safetensors { files, index },
            names,
        })
    }

    fn open_pth(path: &Path) -> Result<Self, ModelError> {
        let tensors = candle_core::pickle::read_all(path).map_err(|e| ModelError::Weights {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let names = tensors.iter().map(|(n, _)| n.clone()).collect();
        Ok(Self {
            origin: path.to_path_buf(),
            backing: Backing::Loaded(tensors.into_iter().collect()),
            names,
        })
    }

    pub fn origin(&self) -> &Path {
        &self.origin
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn contains(&self, name: &str) -> bool {
        match &self.backing {
            Backing::Safetensors { index, .. } => index.contains_key(name),
            Backing::Loaded(map) => map.contains_key(name),
        }
    }

    /// The shape of tensor `name`, if the checkpoint has it.
    pub fn dims(&self, name: &str) -> Option<Vec<usize>> {
        match &self.backing {
            Backing::Safetensors { files, index } => index
                .get(name)
                .and_then(|&i| files[i].tensors().get(name))
                .map(|t| t.shape.clone()),
            Backing::Loaded(map) => map.get(name).map(|t| t.dims().to_vec()),
        }
    }

    /// Reads `name`, checks its shape and converts it to `dtype` on `device`.
    pub fn get(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, ModelError> {
        let tensor = self.get_any_shape(name, dtype, device)?;
        check_shape(&self.origin, name, tensor.dims(), shape)?;
        Ok(tensor)
    }

    /// Reads `name` whatever its shape (the caller checks it).
    pub fn get_any_shape(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, ModelError> {
        let tensor = match &self.backing {
            Backing::Safetensors { files, index } => {
                let file = index
                    .get(name)
                    .map(|&i| &files[i])
                    .ok_or_else(|| self.tensor_error(name, "missing from the checkpoint".into()))?;
                file.load(name, device)?
            }
            Backing::Loaded(map) => map
                .get(name)
                .ok_or_else(|| self.tensor_error(name, "missing from the checkpoint".into()))?
                .to_device(device)
                .map_err(|e| self.tensor_error(name, e.to_string()))?,
        };
        tensor
            .to_dtype(dtype)
            .map_err(|e| self.tensor_error(name, e.to_string()))
    }

    pub fn tensor_error(&self, name: &str, reason: String) -> ModelError {
        ModelError::Tensor {
            path: self.origin.clone(),
            name: name.to_string(),
            reason,
        }
    }
}

/// A checkpoint tensor whose shape is not the one the model expects is an error naming both.
pub(crate) fn check_shape(
    origin: &Path,
    name: &str,
    got: &[usize],
    want: &[usize],
) -> Result<(), ModelError> {
    if got == want {
        return Ok(());
    }
    Err(ModelError::Tensor {
        path: origin.to_path_buf(),
        name: name.to_string(),
        reason: format!("shape {got:?} does not fit this model, which expects {want:?}"),
    })
}

/// The distinct shard files named by a `model.safetensors.index.json`.
fn shard_paths(index: &Path) -> Result<Vec<PathBuf>, ModelError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| ModelError::io(index, e))?;
    let parsed: Index = serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: index.to_path_buf(),
        reason: e.to_string(),
    })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<String> = parsed.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        return Err(ModelError::Config {
            path: index.to_path_buf(),
            reason: format!("names shard {} which does not exist", missing.display()),
        });
    }
    Ok(paths)
}
