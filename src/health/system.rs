//! The machine's figures for the health topic's `system` object: CPU and memory use plus the
//! Jetson facts of [`super::jetson`]. CPU use needs two `/proc/stat` samples, so the sampler keeps
//! the previous one and each report covers the time since the one before.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::jetson::{self, Emc, PowerMode};
use super::procfs::{self, CpuTimes};

/// What this machine exposes; an absent figure is left out of the JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SystemFacts {
    /// The board, from the device tree (e.g. `NVIDIA Jetson AGX Orin Developer Kit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_model: Option<String>,
    /// All CPUs together, busy share since the previous sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_total_bytes: Option<u64>,
    /// Total minus available. On a Jetson the GPU allocates from this same memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_used_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_available_bytes: Option<u64>,
    /// °C by thermal zone type.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub temperatures_c: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_load_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emc: Option<Emc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_mode: Option<PowerMode>,
}

/// Reads [`SystemFacts`] under a root directory (`/` on a real machine).
#[derive(Debug, Clone)]
pub struct SystemSampler {
    root: PathBuf,
    last_cpu: Option<CpuTimes>,
    /// What the last [`SystemSampler::sample`] read.
    latest: SystemFacts,
}

impl Default for SystemSampler {
    fn default() -> Self {
        Self::new("/")
    }
}

impl SystemSampler {
    /// Takes the first CPU sample now, so the first report already has a CPU figure.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let last_cpu = procfs::cpu_times(&root);
        Self {
            root,
            last_cpu,
            latest: SystemFacts::default(),
        }
    }

    /// The last sample, without reading anything: for reports between the periodic ones, whose
    /// CPU figure must keep spanning the whole interval.
    pub fn latest(&self) -> &SystemFacts {
        &self.latest
    }

    pub fn sample(&mut self) -> SystemFacts {
        let root = self.root.as_path();
        let cpu = procfs::cpu_times(root);
        let cpu_percent = match (cpu, self.last_cpu) {
            (Some(now), Some(before)) => now.busy_percent_since(&before).map(round1),
            _ => None,
        };
        // Keep the old sample when this read failed, so the next figure spans both intervals.
        if cpu.is_some() {
            self.last_cpu = cpu;
        }
        let memory = procfs::memory(root);
        self.latest = SystemFacts {
            device_model: jetson::device_model(root),
            cpu_percent,
            mem_total_bytes: memory.map(|m| m.total_bytes),
            mem_used_bytes: memory.map(|m| m.used_bytes()),
            mem_available_bytes: memory.map(|m| m.available_bytes),
            temperatures_c: jetson::temperatures_c(root),
            gpu_load_percent: jetson::gpu_load_percent(root),
            emc: jetson::emc(root),
            power_mode: jetson::power_mode(root),
        };
        self.latest.clone()
    }
}

/// One decimal is all a dashboard shows, and it keeps the retained payload short.
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
