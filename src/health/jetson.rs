//! Jetson (and generic SoC) facts from sysfs, procfs and L4T's nvpmodel files: the board model,
//! GPU load, memory-controller (EMC) activity, thermal zones and the power mode. Every reader
//! takes the filesystem root, so tests can point it at a fake tree. Each fact is optional: on a
//! PC, in a container, or without root (debugfs) the file is absent or unreadable and the reader
//! gives `None` or an empty map, never an error.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

/// Thermal zones that are switched off read this (-256 °C, in millidegrees) or less.
const THERMAL_OFFLINE_MILLI_C: i64 = -256_000;

fn read_trimmed(root: &Path, rel: &str) -> Option<String> {
    let text = std::fs::read_to_string(root.join(rel)).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!text.is_empty()).then(|| text.to_string())
}

fn read_number<T: std::str::FromStr>(root: &Path, rel: &str) -> Option<T> {
    read_trimmed(root, rel)?.parse().ok()
}

/// The board, e.g. `NVIDIA Jetson Orin Nano Developer Kit`. The device tree stores it
/// NUL-terminated; `/proc/device-tree` is a link to the firmware copy, read directly as a
/// fallback.
pub fn device_model(root: &Path) -> Option<String> {
    [
        "proc/device-tree/model",
        "sys/firmware/devicetree/base/model",
    ]
    .iter()
    .find_map(|rel| read_trimmed(root, rel))
    .filter(|m| !m.chars().any(char::is_control))
}

/// Where nvgpu puts its load file: `platform/gpu.0` on Orin with JetPack 6, `gpu.0` on older
/// releases. Other layouts are found through devfreq below.
const GPU_LOAD_FILES: [&str; 2] = ["sys/devices/platform/gpu.0/load", "sys/devices/gpu.0/load"];
/// Device-tree node names of Jetson integrated GPUs (Nano `gpu`, TX2 `gp10b`, Xavier `gv11b`,
/// Orin `ga10b`), as devfreq lists them.
const GPU_NODE_NAMES: [&str; 4] = ["gpu", "gp10b", "gv11b", "ga10b"];

/// Integrated GPU load in percent (nvgpu reports per mille, averaged over its sampling window).
pub fn gpu_load_percent(root: &Path) -> Option<f64> {
    let per_mille = GPU_LOAD_FILES
        .iter()
        .find_map(|rel| read_number::<u32>(root, rel))
        .or_else(|| devfreq_gpu_load(root))?;
    (per_mille <= 1000).then(|| f64::from(per_mille) / 10.0)
}

/// The first devfreq device whose device-tree node is a Jetson GPU, e.g.
/// `/sys/class/devfreq/17000000.ga10b/device/load`.
fn devfreq_gpu_load(root: &Path) -> Option<u32> {
    let mut entries: Vec<String> = std::fs::read_dir(root.join("sys/class/devfreq"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    entries.sort();
    entries.iter().find_map(|name| {
        let node = read_trimmed(
            root,
            &format!("sys/class/devfreq/{name}/device/of_node/name"),
        )?;
        if !GPU_NODE_NAMES.contains(&node.as_str()) {
            return None;
        }
        read_number(root, &format!("sys/class/devfreq/{name}/device/load"))
    })
}

/// External memory controller: its clock and how busy it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Emc {
    /// Current EMC clock. Only in debugfs, so only when the daemon runs as root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_hz: Option<u64>,
    /// The activity monitor's average for all memory clients, as the kernel reports it:
    /// divided by the EMC clock in kHz it is the load in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actmon_mc_all: Option<u64>,
    /// Busy share of the EMC clock, when both figures above are known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_percent: Option<f64>,
}

/// Orin and Xavier (`bpmp`), then TX2/Nano (`clk/emc`): both debugfs, so root-only.
const EMC_RATE_FILES: [&str; 2] = [
    "sys/kernel/debug/bpmp/debug/clk/emc/rate",
    "sys/kernel/debug/clk/emc/clk_rate",
];

pub fn emc(root: &Path) -> Option<Emc> {
    let rate_hz = EMC_RATE_FILES
        .iter()
        .find_map(|rel| read_number::<u64>(root, rel))
        .filter(|&r| r > 0);
    let actmon_mc_all = read_number::<u64>(root, "sys/kernel/actmon_avg_activity/mc_all");
    let load_percent = match (rate_hz, actmon_mc_all) {
        (Some(rate), Some(activity)) if rate >= 1000 => {
            Some((activity as f64 / (rate / 1000) as f64).min(100.0))
        }
        _ => None,
    };
    (rate_hz.is_some() || actmon_mc_all.is_some()).then_some(Emc {
        rate_hz,
        actmon_mc_all,
        load_percent,
    })
}

/// Every readable, switched-on thermal zone, in °C, by its type (`cpu-thermal`, `gpu-thermal`,
/// `tj-thermal`, ...). A type seen twice gets the zone number appended to stay a distinct key.
pub fn temperatures_c(root: &Path) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(root.join("sys/class/thermal")) else {
        return out;
    };
    let mut zones: Vec<(u32, String)> = dir
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let n = name.strip_prefix("thermal_zone")?.parse().ok()?;
            Some((n, name))
        })
        .collect();
    zones.sort();
    for (n, zone) in zones {
        let Some(kind) = read_trimmed(root, &format!("sys/class/thermal/{zone}/type")) else {
            continue;
        };
        // Disabled zones fail the read (EINVAL/ENODATA) or report the offline value.
        let Some(milli) = read_number::<i64>(root, &format!("sys/class/thermal/{zone}/temp"))
            .filter(|&t| t > THERMAL_OFFLINE_MILLI_C)
        else {
            continue;
        };
        let key = if out.contains_key(&kind) {
            format!("{kind}-{n}")
        } else {
            kind
        };
        out.insert(key, milli as f64 / 1000.0);
    }
    out
}

/// The nvpmodel power mode in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PowerMode {
    pub id: u32,
    /// Its name in `/etc/nvpmodel.conf`, e.g. `MAXN` or `15W`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// nvpmodel records the mode it applied in `/var/lib/nvpmodel/status` (`pmode:0002 ...`) and
/// names the modes in `/etc/nvpmodel.conf` (`< POWER_MODEL ID=2 NAME=15W >`).
pub fn power_mode(root: &Path) -> Option<PowerMode> {
    let status = std::fs::read_to_string(root.join("var/lib/nvpmodel/status")).ok()?;
    let id = parse_pmode(&status)?;
    let name = std::fs::read_to_string(root.join("etc/nvpmodel.conf"))
        .ok()
        .and_then(|conf| mode_name(&conf, id));
    Some(PowerMode { id, name })
}

fn parse_pmode(status: &str) -> Option<u32> {
    status
        .split_whitespace()
        .find_map(|t| t.strip_prefix("pmode:"))
        .and_then(|n| n.parse().ok())
}

fn mode_name(conf: &str, id: u32) -> Option<String> {
    conf.lines().find_map(|line| {
        let inner = line.trim().strip_prefix('<')?.strip_suffix('>')?;
        let mut words = inner.split_whitespace();
        if words.next()? != "POWER_MODEL" {
            return None;
        }
        let mut found_id = None;
        let mut name = None;
        for w in words {
            if let Some(v) = w.strip_prefix("ID=") {
                found_id = v.parse::<u32>().ok();
            } else if let Some(v) = w.strip_prefix("NAME=") {
                name = Some(v.to_string()).filter(|n| !n.is_empty());
            }
        }
        (found_id == Some(id)).then_some(name).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmode_and_names() {
        assert_eq!(parse_pmode("pmode:0002 fmode:quiet\n"), Some(2));
        assert_eq!(parse_pmode("pmode:0000\n"), Some(0));
        assert_eq!(parse_pmode("pmode:\n"), None);
        assert_eq!(parse_pmode("fmode:quiet\n"), None);
        assert_eq!(parse_pmode("pmode:x2\n"), None);
        let conf = "< POWER_MODEL ID=0 NAME=MAXN >\nCPU_ONLINE CORE_0 1\n< POWER_MODEL ID=1 NAME=15W >\n< PM_CONFIG DEFAULT=1 >\n";
        assert_eq!(mode_name(conf, 1).as_deref(), Some("15W"));
        assert_eq!(mode_name(conf, 0).as_deref(), Some("MAXN"));
        assert_eq!(mode_name(conf, 7), None);
        assert_eq!(mode_name("< POWER_MODEL ID=3 NAME= >", 3), None);
        assert_eq!(mode_name("<<>>\u{0}", 0), None);
    }

    #[test]
    fn empty_root_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(device_model(root), None);
        assert_eq!(gpu_load_percent(root), None);
        assert_eq!(emc(root), None);
        assert!(temperatures_c(root).is_empty());
        assert_eq!(power_mode(root), None);
    }
}
