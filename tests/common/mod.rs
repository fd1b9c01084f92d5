//! Helpers shared by the integration tests: fixture paths and reference files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the fixtures run: `LANDFALL_TEST_DEVICE=cuda` on a GPU (with a `--features cuda`
/// build), else the CPU.
pub fn test_device() -> candle_core::Device {
    match std::env::var("LANDFALL_TEST_DEVICE").as_deref() {
        Ok("cuda") => candle_core::Device::new_cuda(0)
            .expect("LANDFALL_TEST_DEVICE=cuda needs a GPU and --features cuda"),
        _ => candle_core::Device::Cpu,
    }
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classifier")
}

/// `reference.json` of a tiny-model case, as tests/fixtures/generate_classifier.py writes it.
#[derive(Debug, Deserialize)]
pub struct CaseReference {
    pub base: String,
    pub labels: Vec<String>,
    pub max_length: usize,
    pub texts: Vec<String>,
    pub input_ids: Vec<Vec<u32>>,
    pub logits_single: Vec<Vec<f32>>,
    pub logits_batched: Vec<Vec<f32>>,
}

pub struct Case {
    pub name: &'static str,
    pub base_dir: PathBuf,
    pub adapter_dir: PathBuf,
    pub reference: CaseReference,
}

pub const CASES: [&str; 3] = ["zh_qv", "en_wide_patterns", "mixed_rslora_regex"];

pub fn case(name: &'static str) -> Case {
    let dir = fixtures().join("cases").join(name);
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run tests/fixtures/generate_classifier.py",
            dir.display()
        )
    });
    let reference: CaseReference = serde_json::from_str(&text).expect("reference.json parses");
    Case {
        name,
        base_dir: fixtures().join("bases").join(&reference.base),
        adapter_dir: dir.join("adapter"),
        reference,
    }
}

/// Largest absolute difference between two logit tables.
pub fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "row counts differ");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "label counts differ");
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

/// Copies a directory (one level) so a test can damage the copy.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}
