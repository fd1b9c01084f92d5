//! Helpers for the adapter-update tests: a repository made and published by the `landfall`
//! binary itself, changes an operator (or an attacker) could make to it with tough, a second
//! adapter for the zh fixture (its head negated, so its answers are known), and a daemon config
//! that follows the repository.
#![allow(dead_code)]

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use tough::editor::signed::SignedRole;
use tough::editor::RepositoryEditor;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::{KeyHolder, Root, Signed, Timestamp};
use tough::{ExpirationEnforcement, FilesystemTransport, RepositoryLoader, TargetName};
use url::Url;

pub const BIN: &str = env!("CARGO_BIN_EXE_landfall");

pub fn classifier_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classifier")
}

pub fn zh_base() -> PathBuf {
    classifier_fixtures().join("bases/zh_prefixed")
}

pub fn zh_adapter() -> PathBuf {
    classifier_fixtures().join("cases/zh_qv/adapter")
}

/// Runs the binary; panics with its stderr unless it exits 0.
pub fn landfall(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run landfall");
    assert!(
        out.status.success(),
        "landfall {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository and its keys.
pub struct Repo {
    pub dir: PathBuf,
    pub keys: PathBuf,
}

impl Repo {
    /// `landfall adapter init-repo`.
    pub fn init(parent: &Path) -> Self {
        let repo = Self {
            dir: parent.join("repo"),
            keys: parent.join("keys"),
        };
        landfall(&[
            "adapter",
            "init-repo",
            "--repo",
            repo.dir.to_str().unwrap(),
            "--keys",
            repo.keys.to_str().unwrap(),
        ]);
        repo
    }

    pub fn root(&self) -> PathBuf {
        self.dir.join("metadata/1.root.json")
    }

    /// `landfall adapter publish` of `adapter` on the zh fixture base, with a canary.
    pub fn publish(&self, classifier: &str, adapter: &Path, canary: Option<(&Path, f64)>) {
        let mut args: Vec<String> = [
            "adapter",
            "publish",
            "--repo",
            self.dir.to_str().unwrap(),
            "--keys",
            self.keys.to_str().unwrap(),
            "--classifier",
            classifier,
            "--adapter",
            adapter.to_str().unwrap(),
            "--base",
            zh_base().to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some((file, min)) = canary {
            args.extend([
                "--canary".to_string(),
                file.display().to_string(),
                "--min-accuracy".to_string(),
                min.to_string(),
            ]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        landfall(&refs);
    }

    /// `landfall adapter timestamp --expires <e>`.
    pub fn timestamp(&self, expires: &str) {
        landfall(&[
            "adapter",
            "timestamp",
            "--repo",
            self.dir.to_str().unwrap(),
            "--keys",
            self.keys.to_str().unwrap(),
            "--expires",
            expires,
        ]);
    }

    pub fn target(&self, name: &str) -> PathBuf {
        self.dir.join("targets").join(name)
    }

    fn keys(&self) -> Vec<Box<dyn KeySource>> {
        ["root", "targets", "snapshot", "timestamp"]
            .iter()
            .map(|r| {
                Box::new(LocalKeySource {
                    path: self.keys.join(format!("{r}.pk8")),
                }) as Box<dyn KeySource>
            })
            .collect()
    }

    /// Re-signs the repository after `edit` changed its targets: what an operator (or someone
    /// with the keys) publishes. Target files must already be in place under `targets/`.
    pub async fn resign(&self, edit: impl FnOnce(&mut RepositoryEditor, &Path)) {
        let root = std::fs::read(self.root()).unwrap();
        let store = tempfile::tempdir().unwrap();
        let repo = RepositoryLoader::new(
            &root,
            Url::from_directory_path(self.dir.join("metadata")).unwrap(),
            Url::from_directory_path(self.dir.join("targets")).unwrap(),
        )
        .transport(FilesystemTransport)
        .datastore(store.path())
        .expiration_enforcement(ExpirationEnforcement::Unsafe)
        .load()
        .await
        .expect("the test repository loads");
        let v = |role: &str| -> NonZeroU64 {
            let text = std::fs::read(self.dir.join(format!("metadata/{role}.json"))).unwrap();
            let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
            NonZeroU64::new(json["signed"]["version"].as_u64().unwrap() + 1).unwrap()
        };
        let expires =
            jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 86_400).unwrap();
        let mut editor = RepositoryEditor::from_repo(self.root(), repo)
            .await
            .unwrap();
        edit(&mut editor, &self.dir.join("targets"));
        editor
            .targets_version(v("targets"))
            .unwrap()
            .targets_expires(expires)
            .unwrap()
            .snapshot_version(v("snapshot"))
            .snapshot_expires(expires)
            .timestamp_version(v("timestamp"))
            .timestamp_expires(expires);
        let signed = editor.sign(&self.keys()).await.unwrap();
        signed.write(self.dir.join("metadata")).await.unwrap();
    }

    /// Replaces target `name` with `bytes`, listed and signed as such.
    pub async fn replace_target(&self, name: &str, bytes: &[u8]) {
        let path = self.target(name);
        std::fs::write(&path, bytes).unwrap();
        let target = tough::schema::Target::from_path(&path).await.unwrap();
        let name = name.to_string();
        self.resign(move |e, _| {
            e.add_target(name.as_str(), target).unwrap();
        })
        .await;
    }

    /// Adds a target under a raw name (such as one with `..`), listed and signed.
    pub async fn add_raw_target(&self, raw: &str, file: &Path) {
        let target = tough::schema::Target::from_path(file).await.unwrap();
        let name = TargetName::new(raw).expect("tough takes the name");
        self.resign(move |e, _| {
            e.add_target(name, target).unwrap();
        })
        .await;
    }

    /// Drops every target of `prefix` from the listing (the files stay).
    pub async fn remove_targets(&self, prefix: &str) {
        let names: Vec<String> = walk(&self.dir.join("targets"))
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect();
        self.resign(move |e, _| {
            for n in names {
                e.remove_target(&TargetName::new(n).unwrap()).unwrap();
            }
        })
        .await;
    }

    /// Drops one target, named raw, from the listing.
    pub async fn remove_raw_target(&self, raw: &str) {
        let name = TargetName::new(raw).expect("tough takes the name");
        self.resign(move |e, _| {
            e.remove_target(&name).unwrap();
        })
        .await;
    }

    /// A timestamp signed by a key the root does not know.
    pub async fn rogue_timestamp(&self, parent: &Path) {
        let rogue = Repo::init(&parent.join("rogue"));
        let rogue_root: Signed<Root> =
            serde_json::from_slice(&std::fs::read(rogue.root()).unwrap()).unwrap();
        self.sign_timestamp_as(&rogue_root.signed, &rogue.keys())
            .await;
    }

    /// The current timestamp, re-signed with `keys` as `root` sees them.
    async fn sign_timestamp_as(&self, root: &Root, keys: &[Box<dyn KeySource>]) {
        let path = self.dir.join("metadata/timestamp.json");
        let old: Signed<Timestamp> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut ts = old.signed;
        ts.version = ts.version.checked_add(1).unwrap();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signed = SignedRole::new(ts, &KeyHolder::Root(root.clone()), keys, &rng)
            .await
            .unwrap();
        signed
            .write(self.dir.join("metadata"), false)
            .await
            .unwrap();
    }

    /// A new root (version 2, signed by the root key) that asks for two targets signatures,
    /// the second key of which nobody ever uses: every targets.json is then below threshold.
    pub async fn raise_targets_threshold(&self, parent: &Path) {
        let extra = parent.join("extra-keys");
        std::fs::create_dir_all(&extra).unwrap();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let key_path = extra.join("targets2.pk8");
        std::fs::write(&key_path, pkcs8.as_ref()).unwrap();
        let pair = tough::sign::parse_keypair(pkcs8.as_ref()).unwrap();
        let key = tough::sign::Sign::tuf_key(&pair);
        let id = key.key_id().unwrap();
        let old: Signed<Root> =
            serde_json::from_slice(&std::fs::read(self.root()).unwrap()).unwrap();
        let mut root = old.signed.clone();
        root.version = NonZeroU64::new(2).unwrap();
        root.keys.insert(id.clone(), key);
        let targets = root
            .roles
            .get_mut(&tough::schema::RoleType::Targets)
            .unwrap();
        targets.keyids.push(id);
        targets.threshold = NonZeroU64::new(2).unwrap();
        let signed = SignedRole::new(
            root.clone(),
            &KeyHolder::Root(old.signed),
            &self.keys(),
            &rng,
        )
        .await
        .unwrap();
        signed
            .write(self.dir.join("metadata"), false)
            .await
            .unwrap();
    }
}

/// Relative names of every file under `dir`.
pub fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// The zh fixture adapter with its classification head negated: its logits are the original's
/// negated, so it picks each text's least likely label.
pub fn negated_adapter(dst: &Path) -> PathBuf {
    std::fs::create_dir_all(dst).unwrap();
    for f in ["adapter_config.json", "config.json"] {
        std::fs::copy(zh_adapter().join(f), dst.join(f)).unwrap();
    }
    let tensors = candle_core::safetensors::load(
        zh_adapter().join("adapter_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let changed: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(name, t)| {
            let t = if name.contains("classifier") {
                t.neg().unwrap()
            } else {
                t
            };
            (name, t)
        })
        .collect();
    candle_core::safetensors::save(&changed, dst.join("adapter_model.safetensors")).unwrap();
    dst.to_path_buf()
}

/// The zh_qv reference texts with their labels under the fixture adapter (argmax of the
/// reference logits) and under [`negated_adapter`] (argmin).
pub fn zh_texts() -> Vec<(String, String, String)> {
    let path = classifier_fixtures().join("cases/zh_qv/reference.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let labels: Vec<String> = serde_json::from_value(v["labels"].clone()).unwrap();
    let texts: Vec<String> = serde_json::from_value(v["texts"].clone()).unwrap();
    let logits: Vec<Vec<f32>> = serde_json::from_value(v["logits_single"].clone()).unwrap();
    texts
        .into_iter()
        .zip(logits)
        .filter_map(|(t, l)| {
            let arg = |better: fn(f32, f32) -> bool| {
                (0..l.len()).fold(0, |b, i| if better(l[i], l[b]) { i } else { b })
            };
            let (max, min) = (arg(|a, b| a > b), arg(|a, b| a < b));
            // Texts whose two labels are the same tell the adapters apart poorly: skipped.
            (max != min).then(|| (t, labels[max].clone(), labels[min].clone()))
        })
        .collect()
}

/// A canary file: the texts with the labels of the negated adapter (`negated`) or the original.
pub fn canary(path: &Path, negated: bool) -> PathBuf {
    long_canary(path, negated, 1)
}

/// [`canary`] with its rows `times` over: one that takes a while to run.
pub fn long_canary(path: &Path, negated: bool, times: usize) -> PathBuf {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(["text", "label"]).unwrap();
    for _ in 0..times {
        for (text, orig, neg) in zh_texts() {
            w.write_record([text.as_str(), if negated { &neg } else { &orig }])
                .unwrap();
        }
    }
    w.flush().unwrap();
    path.to_path_buf()
}

/// The `[updates]` section of a device that follows `repository`.
pub fn updates_toml(repository: &str, root: &Path, dir: &Path, interval: &str) -> String {
    format!(
        "\n[updates]\nrepository = \"{repository}\"\nroot = \"{}\"\ninterval = \"{interval}\"\ndir = \"{}\"\n",
        root.display(),
        dir.display()
    )
}
