//! Process and system figures for health reports and benchmarks: this process's memory here,
//! the machine's CPU, memory and Jetson facts in [`system`] (read through [`procfs`] and
//! [`jetson`], each under a root directory that tests replace with a fake tree).

pub mod jetson;
pub mod procfs;
pub mod system;

pub use system::{SystemFacts, SystemSampler};

/// Resident memory of this process, from `/proc/self/status` (0 where unavailable).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessMemory {
    pub rss_bytes: u64,
    /// High-water mark of the resident set (VmHWM).
    pub peak_rss_bytes: u64,
}

pub fn process_memory() -> ProcessMemory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    ProcessMemory {
        rss_bytes: kib("VmRSS:"),
        peak_rss_bytes: kib("VmHWM:"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_memory_on_linux() {
        let m = super::process_memory();
        if cfg!(target_os = "linux") {
            assert!(m.rss_bytes > 0 && m.peak_rss_bytes >= m.rss_bytes);
        }
    }
}
