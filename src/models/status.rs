//! Whether a model the daemon was asked to run is there: what request routing and health need to
//! know about each classifier and the captioner, decided once when the engine loads them.

/// A model's state after loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    Loaded,
    /// Files absent; the string says which and how to get them.
    Missing(String),
    /// Files present but not loadable; the string is the loader's error.
    Failed(String),
}

impl ModelState {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Loaded => "loaded",
            Self::Missing(_) => "missing",
            Self::Failed(_) => "failed",
        }
    }

    /// Why it is not loaded, if it is not.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Loaded => None,
            Self::Missing(r) | Self::Failed(r) => Some(r),
        }
    }
}

/// One model as the engine reports it.
#[derive(Debug, Clone)]
pub struct ModelStatus {
    pub name: String,
    pub state: ModelState,
    pub quant: String,
    /// The device it runs on once loaded (`cpu`, `cuda`), else the one asked for.
    pub device: String,
    /// The adapter's name: its directory's name (empty for the captioner).
    pub adapter: String,
    /// Label names by id (classifiers).
    pub labels: Vec<String>,
    /// Longest prompt, in tokens, the model can take (the captioner; 0 when unknown).
    pub max_prompt_tokens: usize,
}

impl ModelStatus {
    /// A model not loaded yet, as configured.
    pub fn configured(name: &str, quant: String, device: String) -> Self {
        Self {
            name: name.to_string(),
            state: ModelState::Loaded,
            quant,
            device,
            adapter: String::new(),
            labels: Vec::new(),
            max_prompt_tokens: 0,
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.state == ModelState::Loaded
    }
}
