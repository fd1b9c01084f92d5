//! The daemon's TOML config, in two stages: [`raw::RawConfig`] is the file as serde reads it
//! (unknown keys rejected, every value spanned), [`Config`] ([`settings`]) is what the daemon
//! uses. Errors name the file, line, column and field: `FILE:LINE:COL: field: reason`.

mod ctx;
mod duration;
mod effective;
mod http;
pub mod raw;
pub mod settings;
mod validate;
mod vision;

use std::path::Path;

pub use duration::parse_duration;
pub use settings::*;

impl Config {
    /// Parses and validates a config file's text; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Self, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ctx::positioned(file, text, span, None, e.message().trim())
        })?;
        validate::from_raw(raw, text, file)
    }

    /// Reads `path`, or with `None` the default path if that file exists, else built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let default = Path::new(DEFAULT_PATH);
        let path = match path {
            Some(p) => p,
            None if default.is_file() => default,
            None => return Self::from_toml_str(BUILTIN, "(built-in defaults)"),
        };
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::from_toml_str(&text, &file)
    }

    /// The effective config as TOML: every default filled in, paths resolved.
    pub fn to_toml(&self) -> String {
        let raw = effective::to_raw(self);
        // Serializing our own plain structs cannot fail; an empty string would still be valid TOML.
        toml::to_string(&raw).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
