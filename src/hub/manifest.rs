//! The model manifest (`models/manifest.toml`): which Hub repos make up the default model set, at
//! which commit, and the sha256 and size of every file, so that a pull is reproducible and
//! verified. Each `[[model]]` has `name` (its directory under the models dir), `repo`,
//! `revision`, `quant` (applied at load, recorded for the loader) and `[[model.file]]` tables
//! with `path`, `sha256` and `size`.
//!
//! A manifest may be written before anyone could look the hashes up: `sha256 = "unpinned"` (and
//! a branch or tag as `revision`). `pull` then verifies such a file against the content hash the
//! Hub reports for it, and `landfall models pin` writes the hashes in.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::HubError;
use crate::models::runtime::Quant;

/// The `sha256` of a file whose hash is not known yet.
pub const UNPINNED: &str = "unpinned";

/// The file `pull` writes next to a model's files; no manifest file may take its name.
pub const STATE_FILE: &str = "landfall-models.json";

/// The manifest built into the binary: `landfall models pull` without `--manifest`.
pub const BUILT_IN: &str = include_str!("../../models/manifest.toml");

/// How the built-in manifest is named in messages.
pub const BUILT_IN_NAME: &str = "<built-in models/manifest.toml>";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    model: Vec<RawModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    repo: String,
    revision: String,
    quant: String,
    #[serde(default)]
    file: Vec<RawFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: String,
    sha256: String,
    size: Option<u64>,
}

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file it came from, for messages.
    pub source: String,
    pub models: Vec<ModelEntry>,
}

#[derive(Debug, Clone)]
pub struct ModelEntry {
    /// The directory under the models dir; one plain path component.
    pub name: String,
    /// The Hub repo id, `owner/name`.
    pub repo: String,
    /// A commit sha once pinned; a branch or tag before.
    pub revision: String,
    /// The quantization the loader applies; `pull` records it in [`STATE_FILE`].
    pub quant: Quant,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone)]
pub struct FileEntry {
    /// Relative to the model directory, `/`-separated, as in the repo.
    pub path: String,
    /// Lowercase hex, or `None` while unpinned.
    pub sha256: Option<String>,
    /// In bytes; present whenever `sha256` is.
    pub size: Option<u64>,
}

/// A file whose expected content is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedFile {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// One entry as pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedModel {
    pub name: String,
    pub commit: String,
    pub files: Vec<PinnedFile>,
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, HubError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| HubError::Manifest {
            file: source.clone(),
            reason: format!("cannot read the manifest: {e}"),
        })?;
        Self::parse(&source, &text)
    }

    /// The manifest built into the binary.
    pub fn built_in() -> Result<Self, HubError> {
        Self::parse(BUILT_IN_NAME, BUILT_IN)
    }

    /// Validates manifest `text`; `source` names it in errors.
    pub fn parse(source: &str, text: &str) -> Result<Self, HubError> {
        let bad = |reason: String| HubError::Manifest {
            file: source.to_string(),
            reason,
        };
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| line_col(text, s.start))
                .unwrap_or_default();
            // serde lists alternatives over several lines; errors here are one line.
            let reason = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            HubError::Manifest {
                file: format!("{source}{at}"),
                reason,
            }
        })?;
        if raw.model.is_empty() {
            return Err(bad("no [[model]] entries".to_string()));
        }
        let mut names = HashSet::new();
        let mut models = Vec::with_capacity(raw.model.len());
        for model in raw.model {
            let entry = validate_model(model).map_err(bad)?;
            if !names.insert(entry.name.clone()) {
                return Err(bad(format!("model {:?} is listed twice", entry.name)));
            }
            models.push(entry);
        }
        Ok(Self {
            source: source.to_string(),
            models,
        })
    }

    /// The models `only` names (all when it is empty), in manifest order.
    pub fn select(&self, only: &[String]) -> Result<Vec<&ModelEntry>, HubError> {
        if let Some(unknown) = only
            .iter()
            .find(|n| !self.models.iter().any(|m| &m.name == *n))
        {
            let known: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
            return Err(HubError::Usage(format!(
                "--only {unknown}: {} has no model of that name (it has: {})",
                self.source,
                known.join(", ")
            )));
        }
        Ok(self
            .models
            .iter()
            .filter(|m| only.is_empty() || only.contains(&m.name))
            .collect())
    }
}

/// Whether `s` is a full commit sha, the only revision that cannot move under a pinned hash.
pub fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn validate_model(raw: RawModel) -> Result<ModelEntry, String> {
    let name = raw.name;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.starts_with('.') || !name.chars().all(plain) {
        return Err(format!(
            "model name {name:?} must be a plain directory name (letters, digits, - _ .; not \
             starting with .)"
        ));
    }
    let at = |field: &str| format!("model {name:?}: {field}");
    let segments: Vec<&str> = raw.repo.split('/').collect();
    if segments.len() > 2
        || segments
            .iter()
            .any(|s| s.is_empty() || !s.chars().all(plain))
    {
        return Err(format!(
            "{}: {:?} is not a Hub repo id such as google-bert/bert-base-chinese",
            at("repo"),
            raw.repo
        ));
    }
    let revision = raw.revision.trim().to_string();
    if revision.is_empty() || revision.contains(char::is_whitespace) || revision.contains("..") {
        return Err(format!(
            "{}: {:?} is not a commit sha, branch or tag",
            at("revision"),
            raw.revision
        ));
    }
    let quant: Quant = raw
        .quant
        .parse()
        .map_err(|e: crate::util::InvalidValue| format!("{}: {e}", at("quant")))?;
    if raw.file.is_empty() {
        return Err(format!("{}: no [[model.file]] entries", at("file")));
    }
    let mut paths = HashSet::new();
    let mut files = Vec::with_capacity(raw.file.len());
    for f in raw.file {
        check_path(&f.path).map_err(|r| format!("{}: {:?} {r}", at("file.path"), f.path))?;
        if !paths.insert(f.path.clone()) {
            return Err(format!("{}: {:?} is listed twice", at("file.path"), f.path));
        }
        let sha256 = match f.sha256.to_ascii_lowercase() {
            s if s == UNPINNED => None,
            s if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => Some(s),
            _ => {
                return Err(format!(
                    "{}: file {}: {:?} is neither 64 hex digits nor {UNPINNED:?}",
                    at("file.sha256"),
                    f.path,
                    f.sha256
                ))
            }
        };
        if sha256.is_some() && f.size.is_none() {
            return Err(format!(
                "{}: file {} has a sha256 but no size",
                at("file.size"),
                f.path
            ));
        }
        files.push(FileEntry {
            path: f.path,
            sha256,
            size: f.size,
        });
    }
    Ok(ModelEntry {
        name,
        repo: raw.repo,
        revision,
        quant,
        files,
    })
}

/// A file path must stay inside its model directory, whatever the manifest says.
fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.starts_with('/') || path.contains('\\') {
        return Err("must be a relative /-separated path");
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("must not contain empty, . or .. components");
    }
    if path == STATE_FILE {
        return Err("is the name landfall keeps its own state in");
    }
    Ok(())
}

/// `:LINE:COL` of byte `offset` in `text`, to follow the file name as editors expect.
fn line_col(text: &str, offset: usize) -> String {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(":{line}:{col}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const COMMIT: &str = "c30a6ed22ab4564dc1e3b2ecbf6e766b0611a33f";

    fn manifest(model_body: &str) -> String {
        format!(
            "[[model]]\nname = \"m\"\nrepo = \"org/m\"\n{model_body}\n\n[[model.file]]\npath = \
             \"config.json\"\nsha256 = \"{SHA}\"\nsize = 10\n"
        )
    }

    fn error(text: &str) -> String {
        match Manifest::parse("manifest.toml", text) {
            Ok(m) => panic!("accepted: {m:?}"),
            Err(e) => {
                assert!(e.is_bad_input(), "{e}");
                e.to_string()
            }
        }
    }

    #[test]
    fn a_pinned_manifest_loads() {
        let text = manifest(&format!("revision = \"{COMMIT}\"\nquant = \"q4k\""));
        let m = Manifest::parse("manifest.toml", &text).expect("valid");
        let entry = &m.models[0];
        assert_eq!(entry.quant, Quant::Q4K);
        assert_eq!(entry.files[0].path, "config.json");
        assert_eq!(entry.files[0].sha256.as_deref(), Some(SHA));
        assert_eq!(entry.files[0].size, Some(10));
    }

    #[test]
    fn the_built_in_manifest_is_valid() {
        let m = Manifest::built_in().expect("models/manifest.toml parses");
        let names: Vec<&str> = m.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "blip2-opt-2.7b",
                "bert-base-chinese",
                "roberta-base-finetuned-jd-binary-chinese"
            ]
        );
    }

    #[test]
    fn unknown_keys_are_named_with_line_and_column() {
        let text = manifest(&format!(
            "revision = \"{COMMIT}\"\nquant = \"none\"\nmirror = 1"
        ));
        let e = error(&text);
        assert!(e.starts_with("manifest.toml:"), "{e}");
        assert!(e.contains("unknown field `mirror`"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn unpinned_entries_load() {
        let text = "[[model]]\nname = \"m\"\nrepo = \"org/m\"\nrevision = \"main\"\nquant = \
                    \"none\"\n[[model.file]]\npath = \"a.json\"\nsha256 = \"unpinned\"\n";
        let m = Manifest::parse("manifest.toml", text).expect("unpinned is valid");
        assert_eq!(m.models[0].revision, "main");
        assert_eq!(m.models[0].files[0].sha256, None);
        assert_eq!(m.models[0].files[0].size, None);
    }

    #[test]
    fn bad_values_are_refused() {
        let pinned = |extra: &str| manifest(&format!("revision = \"{COMMIT}\"\n{extra}"));
        assert!(error(&pinned("quant = \"q3\"")).contains("quant"));
        let bad_path = pinned("quant = \"none\"").replace("config.json", "../etc/passwd");
        assert!(error(&bad_path).contains("file.path"));
        let bad_sha = pinned("quant = \"none\"").replace(SHA, "abc");
        assert!(error(&bad_sha).contains("file.sha256"));
        let no_size = pinned("quant = \"none\"").replace("size = 10\n", "");
        assert!(error(&no_size).contains("no size"));
        let bad_name = pinned("quant = \"none\"").replace("name = \"m\"", "name = \"../m\"");
        assert!(error(&bad_name).contains("plain directory name"));
        let bad_repo = pinned("quant = \"none\"").replace("org/m", "a/b/c");
        assert!(error(&bad_repo).contains("repo"));
        let state = pinned("quant = \"none\"").replace("config.json", STATE_FILE);
        assert!(error(&state).contains("state"));
        assert!(error("").contains("no [[model]]"));
    }

    #[test]
    fn duplicates_are_refused() {
        let one = manifest(&format!("revision = \"{COMMIT}\"\nquant = \"none\""));
        assert!(error(&format!("{one}\n{one}")).contains("listed twice"));
    }

    #[test]
    fn select_names_unknown_models() {
        let m = Manifest::built_in().expect("valid");
        assert_eq!(m.select(&[]).expect("all").len(), 3);
        let one = m.select(&["bert-base-chinese".into()]).expect("one");
        assert_eq!(one[0].repo, "google-bert/bert-base-chinese");
        let e = m.select(&["nope".into()]).unwrap_err();
        assert!(e.is_bad_input());
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn commits_are_40_lowercase_hex() {
        assert!(is_commit(COMMIT));
        assert!(!is_commit("main"));
        assert!(!is_commit(&COMMIT.to_uppercase()));
        assert!(!is_commit(&COMMIT[..39]));
    }
}
