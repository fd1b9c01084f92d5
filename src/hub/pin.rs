//! `landfall models pin`: on a machine that reaches the Hub, turn each selected manifest entry's
//! revision (a branch, tag or commit) into its commit sha, pull every file (verified against the
//! hash the Hub reports, and kept in the models dir), and write commit, sha256 and size back into
//! the manifest. The file is edited in place with
//! toml_edit, so comments and layout survive; it is replaced atomically, and only after every
//! file was hashed, so a failed pin leaves the manifest as it was.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use toml_edit::{DocumentMut, Item, TableLike, Value};

use super::download::{pull_entry, EntryOptions, PullSummary};
use super::manifest::{Manifest, PinnedFile, PinnedModel};
use super::progress::Progress;
use super::{Hub, HubError};

/// Pins the entries `only` names (all when empty) of the manifest at `path`, resolving
/// `revision` instead of each entry's own when given: pulls each into `models_dir`, verified
/// against what the Hub reports (so nothing is downloaded twice: the files stay installed), and
/// rewrites the manifest with the commit, sha256 and size of every file.
pub async fn pin(
    hub: &Hub,
    path: &Path,
    only: &[String],
    revision: Option<&str>,
    models_dir: &Path,
    progress: Progress,
) -> Result<Vec<PinnedModel>, HubError> {
    let source = path.display().to_string();
    let text = fs::read_to_string(path).map_err(|e| HubError::Manifest {
        file: source.clone(),
        reason: format!("cannot read the manifest: {e}"),
    })?;
    let manifest = Manifest::parse(&source, &text)?;
    if let Some(rev) = revision {
        if rev.trim().is_empty() || rev.contains(char::is_whitespace) {
            return Err(HubError::Usage(format!(
                "--revision {rev:?} is not a branch, tag or commit"
            )));
        }
    }
    let mut pinned = Vec::new();
    let mut summary = PullSummary::default();
    for model in manifest.select(only)? {
        let options = EntryOptions {
            revision: Some(revision.unwrap_or(&model.revision)),
            manifest_hashes: false,
        };
        pinned.push(pull_entry(hub, model, options, models_dir, progress, &mut summary).await?);
    }
    let updated = rewrite(&source, &text, &pinned)?;
    // Never write a manifest this very loader would refuse.
    Manifest::parse(&source, &updated)?;
    let staging = path.with_file_name(format!(
        "{}.landfall-tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    fs::write(&staging, updated).map_err(|e| HubError::io(&staging, e))?;
    fs::rename(&staging, path).map_err(|e| HubError::io(path, e))?;
    Ok(pinned)
}

/// `text` with the revision, sha256 and size of every pinned entry replaced.
fn rewrite(source: &str, text: &str, pinned: &[PinnedModel]) -> Result<String, HubError> {
    let bad = |reason: String| HubError::Manifest {
        file: source.to_string(),
        reason,
    };
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| bad(e.message().to_string()))?;
    let by_name: HashMap<&str, &PinnedModel> =
        pinned.iter().map(|p| (p.name.as_str(), p)).collect();
    let models = doc
        .get_mut("model")
        .ok_or_else(|| bad("no [[model]] entries".to_string()))?;
    for model in tables_mut(models) {
        let Some(p) = model
            .get("name")
            .and_then(Item::as_str)
            .and_then(|n| by_name.get(n))
        else {
            continue;
        };
        set(model, "revision", Value::from(p.commit.as_str()));
        let files: HashMap<&str, &PinnedFile> =
            p.files.iter().map(|f| (f.path.as_str(), f)).collect();
        let Some(file_item) = model.get_mut("file") else {
            continue;
        };
        for file in tables_mut(file_item) {
            let Some(f) = file
                .get("path")
                .and_then(Item::as_str)
                .and_then(|n| files.get(n))
            else {
                continue;
            };
            let size = i64::try_from(f.size)
                .map_err(|_| bad(format!("{}: size {} does not fit TOML", f.path, f.size)))?;
            set(file, "sha256", Value::from(f.sha256.as_str()));
            set(file, "size", Value::from(size));
        }
    }
    Ok(doc.to_string())
}

/// The tables of `[[key]]` or of an array of inline tables `key = [{..}, ..]`.
fn tables_mut(item: &mut Item) -> Vec<&mut dyn TableLike> {
    if item.is_array_of_tables() {
        return item
            .as_array_of_tables_mut()
            .map(|tables| tables.iter_mut().map(|t| t as &mut dyn TableLike).collect())
            .unwrap_or_default();
    }
    match item.as_array_mut() {
        Some(array) => array
            .iter_mut()
            .filter_map(Value::as_inline_table_mut)
            .map(|t| t as &mut dyn TableLike)
            .collect(),
        None => Vec::new(),
    }
}

/// Sets `key` to `value`, keeping the comment and spacing around an existing value.
fn set(table: &mut dyn TableLike, key: &str, mut value: Value) {
    match table.get_mut(key) {
        Some(Item::Value(old)) => {
            *value.decor_mut() = old.decor().clone();
            *old = value;
        }
        _ => {
            table.insert(key, Item::Value(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn pinned() -> Vec<PinnedModel> {
        vec![PinnedModel {
            name: "m".into(),
            commit: COMMIT.into(),
            files: vec![PinnedFile {
                path: "a.json".into(),
                sha256: "ab".repeat(32),
                size: 12,
            }],
        }]
    }

    fn pinned_files(m: &Manifest) -> Vec<PinnedFile> {
        m.models[0]
            .files
            .iter()
            .map(|f| PinnedFile {
                path: f.path.clone(),
                sha256: f.sha256.clone().expect("pinned"),
                size: f.size.expect("pinned"),
            })
            .collect()
    }

    #[test]
    fn rewrite_keeps_comments_and_fills_hashes() {
        let text = "# top\n[[model]]\nname = \"m\" # the dir\nrepo = \"o/m\"\nrevision = \"main\" \
                    # moves\nquant = \"none\"\n\n# the config\n[[model.file]]\npath = \
                    \"a.json\"\nsha256 = \"unpinned\"\n";
        let out = rewrite("m.toml", text, &pinned()).expect("rewrite");
        assert!(out.starts_with("# top\n"), "{out}");
        assert!(
            out.contains(&format!("revision = \"{COMMIT}\" # moves")),
            "{out}"
        );
        assert!(out.contains("# the config\n[[model.file]]"), "{out}");
        assert!(out.contains("size = 12"), "{out}");
        let m = Manifest::parse("m.toml", &out).expect("valid");
        assert_eq!(pinned_files(&m), pinned()[0].files);
    }

    #[test]
    fn rewrite_handles_inline_file_tables() {
        let text = "[[model]]\nname = \"m\"\nrepo = \"o/m\"\nrevision = \"main\"\nquant = \
                    \"none\"\nfile = [{ path = \"a.json\", sha256 = \"unpinned\" }]\n";
        let out = rewrite("m.toml", text, &pinned()).expect("rewrite");
        let m = Manifest::parse("m.toml", &out).expect("valid");
        assert_eq!(pinned_files(&m), pinned()[0].files);
    }
}
