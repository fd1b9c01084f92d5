//! Generic Linux figures from `/proc`: CPU time counters (`/proc/stat`) and memory
//! (`/proc/meminfo`). Every reader takes the filesystem root, so tests can point it at a fake
//! tree; a missing or unreadable file, or contents that do not parse, give `None`.

use std::path::Path;

/// The aggregate `cpu` line of `/proc/stat`, in clock ticks since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// Every tick counted (user, nice, system, idle, iowait, irq, softirq, steal).
    pub total: u64,
    /// Ticks spent idle or waiting for I/O: time the CPUs could have worked.
    pub idle: u64,
}

impl CpuTimes {
    /// Busy share of the ticks between `earlier` and `self`, in percent; `None` when no tick
    /// passed or the counters went backwards (a different boot, or a bad read).
    pub fn busy_percent_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let idle = self.idle.checked_sub(earlier.idle)?;
        if total == 0 || idle > total {
            return None;
        }
        Some(100.0 * (total - idle) as f64 / total as f64)
    }
}

pub fn cpu_times(root: &Path) -> Option<CpuTimes> {
    parse_cpu_times(&std::fs::read_to_string(root.join("proc/stat")).ok()?)
}

/// Parses the first `cpu ` line. guest and guest_nice are left out: the kernel already counts
/// them in user and nice.
pub fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()?;
    // Kernels before 2.6.11 had no steal column; anything shorter than idle is not /proc/stat.
    if fields.len() < 4 {
        return None;
    }
    let idle = fields[3].saturating_add(fields.get(4).copied().unwrap_or(0));
    let total = fields.iter().fold(0u64, |a, &b| a.saturating_add(b));
    Some(CpuTimes { total, idle })
}

/// Physical memory, from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub total_bytes: u64,
    /// What new allocations could get without swapping (MemAvailable).
    pub available_bytes: u64,
}

impl Memory {
    pub fn used_bytes(&self) -> u64 {
        self.total_bytes.saturating_sub(self.available_bytes)
    }
}

pub fn memory(root: &Path) -> Option<Memory> {
    parse_meminfo(&std::fs::read_to_string(root.join("proc/meminfo")).ok()?)
}

pub fn parse_meminfo(text: &str) -> Option<Memory> {
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .map(|k| k.saturating_mul(1024))
    };
    let total_bytes = kib("MemTotal").filter(|&t| t > 0)?;
    // MemAvailable exists since Linux 3.14; older kernels get the classic estimate.
    let available_bytes = kib("MemAvailable")
        .or_else(|| {
            Some(kib("MemFree")? + kib("Buffers").unwrap_or(0) + kib("Cached").unwrap_or(0))
        })?
        .min(total_bytes);
    Some(Memory {
        total_bytes,
        available_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str =
        "cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 50 2 25 400 20 1 1 0 0 0\nintr 1 2 3\n";

    #[test]
    fn reads_the_aggregate_cpu_line() {
        let t = parse_cpu_times(STAT).unwrap();
        assert_eq!(t.total, 100 + 5 + 50 + 800 + 40 + 3 + 2);
        assert_eq!(t.idle, 840);
    }

    #[test]
    fn busy_percent_between_two_samples() {
        let a = CpuTimes {
            total: 1000,
            idle: 800,
        };
        let b = CpuTimes {
            total: 1400,
            idle: 1100,
        };
        assert_eq!(b.busy_percent_since(&a), Some(25.0));
        assert_eq!(a.busy_percent_since(&a), None, "no tick passed");
        assert_eq!(a.busy_percent_since(&b), None, "counters went backwards");
    }

    #[test]
    fn garbage_stat_is_none() {
        for text in [
            "",
            "cpu0 1 2 3 4\n",
            "cpu  a b c d\n",
            "cpu  1 2\n",
            "\u{0}\u{1}",
        ] {
            assert_eq!(parse_cpu_times(text), None, "{text:?}");
        }
    }

    #[test]
    fn meminfo_with_and_without_memavailable() {
        let m = parse_meminfo("MemTotal:  8000 kB\nMemFree: 1000 kB\nMemAvailable:  3000 kB\n")
            .unwrap();
        assert_eq!(m.total_bytes, 8000 * 1024);
        assert_eq!(m.used_bytes(), 5000 * 1024);
        let old = parse_meminfo(
            "MemTotal: 8000 kB\nMemFree: 1000 kB\nBuffers: 500 kB\nCached: 1500 kB\n",
        )
        .unwrap();
        assert_eq!(old.available_bytes, 3000 * 1024);
    }

    #[test]
    fn garbage_meminfo_is_none() {
        for text in [
            "",
            "MemTotal: lots\n",
            "MemTotal: 0 kB\nMemAvailable: 0 kB\n",
            "MemTotal: 100 kB\n",
            "MemTotalish: 100 kB\nMemAvailable: 5 kB\n",
        ] {
            assert_eq!(parse_meminfo(text), None, "{text:?}");
        }
    }

    #[test]
    fn missing_files_are_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cpu_times(dir.path()), None);
        assert_eq!(memory(dir.path()), None);
    }
}
