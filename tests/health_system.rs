//! The health topic's `system` figures read from a fake Jetson filesystem: every file present
//! (as an Orin with JetPack 6 lays them out), every file absent, and garbage in every file.

use std::fs;
use std::path::Path;

use landfall::health::jetson;
use landfall::health::SystemSampler;
use serde_json::{json, Value};

fn write(root: &Path, rel: &str, contents: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

fn stat(busy: u64, idle: u64) -> String {
    format!("cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {busy} 0 0 {idle} 0 0 0 0 0 0\n")
}

/// An Orin Nano as the daemon's user sees it, plus the root-only EMC clock.
fn fake_orin(root: &Path) {
    write(root, "proc/stat", stat(1000, 9000).as_bytes());
    write(
        root,
        "proc/meminfo",
        b"MemTotal:        7800000 kB\nMemFree:          500000 kB\nMemAvailable:    5800000 kB\n",
    );
    write(
        root,
        "proc/device-tree/model",
        b"NVIDIA Jetson Orin Nano Developer Kit\0",
    );
    write(root, "sys/devices/platform/gpu.0/load", b"345\n");
    write(root, "sys/kernel/actmon_avg_activity/mc_all", b"62500000\n");
    write(
        root,
        "sys/kernel/debug/bpmp/debug/clk/emc/rate",
        b"2133000000\n",
    );
    for (n, kind, temp) in [
        (0, "cpu-thermal", "48500"),
        (1, "gpu-thermal", "47000"),
        (2, "cv0-thermal", "-256000"),
        (3, "cpu-thermal", "49000"),
        (4, "tj-thermal", "50250"),
    ] {
        write(
            root,
            &format!("sys/class/thermal/thermal_zone{n}/type"),
            kind.as_bytes(),
        );
        write(
            root,
            &format!("sys/class/thermal/thermal_zone{n}/temp"),
            temp.as_bytes(),
        );
    }
    // A zone without a readable temperature (as a disabled sensor answers EINVAL).
    write(root, "sys/class/thermal/thermal_zone5/type", b"PMIC-Die\n");
    // Not a zone: cooling devices live in the same directory.
    write(root, "sys/class/thermal/cooling_device0/type", b"pwm-fan\n");
    write(root, "var/lib/nvpmodel/status", b"pmode:0001 fmode:quiet\n");
    write(
        root,
        "etc/nvpmodel.conf",
        b"< POWER_MODEL ID=0 NAME=15W >\nCPU_ONLINE CORE_0 1\n< POWER_MODEL ID=1 NAME=7W >\n< PM_CONFIG DEFAULT=0 >\n",
    );
}

#[test]
fn a_jetson_reports_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fake_orin(root);
    let mut sampler = SystemSampler::new(root);
    // 300 more busy ticks out of 1200: 25 %.
    write(root, "proc/stat", stat(1300, 9900).as_bytes());
    let facts = serde_json::to_value(sampler.sample()).unwrap();
    assert_eq!(
        facts,
        json!({
            "device_model": "NVIDIA Jetson Orin Nano Developer Kit",
            "cpu_percent": 25.0,
            "mem_total_bytes": 7_800_000u64 * 1024,
            "mem_used_bytes": 2_000_000u64 * 1024,
            "mem_available_bytes": 5_800_000u64 * 1024,
            "temperatures_c": {
                "cpu-thermal": 48.5,
                "cpu-thermal-3": 49.0,
                "gpu-thermal": 47.0,
                "tj-thermal": 50.25
            },
            "gpu_load_percent": 34.5,
            "emc": {"rate_hz": 2_133_000_000u64, "actmon_mc_all": 62_500_000u64, "load_percent": 62500000.0 / 2133000.0},
            "power_mode": {"id": 1, "name": "7W"}
        })
    );
    // No tick between two samples: no CPU figure rather than a made-up one.
    let again = serde_json::to_value(sampler.sample()).unwrap();
    assert_eq!(again.get("cpu_percent"), None);
}

#[test]
fn a_bare_machine_reports_nothing_and_does_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let facts = serde_json::to_value(SystemSampler::new(dir.path()).sample()).unwrap();
    assert_eq!(facts, json!({}));
}

#[test]
fn garbage_in_every_file_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let junk: &[u8] = b"\xff\xfe not a number \0\n";
    for rel in [
        "proc/stat",
        "proc/meminfo",
        "proc/device-tree/model",
        "sys/devices/platform/gpu.0/load",
        "sys/kernel/actmon_avg_activity/mc_all",
        "sys/kernel/debug/bpmp/debug/clk/emc/rate",
        "sys/class/thermal/thermal_zone0/type",
        "sys/class/thermal/thermal_zone0/temp",
        "var/lib/nvpmodel/status",
        "etc/nvpmodel.conf",
    ] {
        write(root, rel, junk);
    }
    // Text that reads but does not fit: a load above 100 %, a negative clock, an unnamed mode.
    write(root, "sys/devices/gpu.0/load", b"4000\n");
    write(
        root,
        "sys/class/thermal/thermal_zone1/type",
        b"soc-thermal\n",
    );
    write(root, "sys/class/thermal/thermal_zone1/temp", b"hot\n");
    write(root, "sys/class/thermal/thermal_zonex/type", b"odd\n");
    let facts = serde_json::to_value(SystemSampler::new(root).sample()).unwrap();
    assert_eq!(facts, json!({}));
    write(root, "var/lib/nvpmodel/status", b"pmode:0003\n");
    assert_eq!(
        serde_json::to_value(jetson::power_mode(root)).unwrap(),
        json!({"id": 3})
    );
}

#[test]
fn the_gpu_is_found_through_devfreq_on_other_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Xavier with JetPack 5: the GPU is 17000000.gv11b; the EMC has a devfreq entry too.
    write(
        root,
        "sys/class/devfreq/17000000.gv11b/device/of_node/name",
        b"gv11b\0",
    );
    write(
        root,
        "sys/class/devfreq/17000000.gv11b/device/load",
        b"1000\n",
    );
    write(
        root,
        "sys/class/devfreq/2c60000.emc/device/of_node/name",
        b"emc\0",
    );
    write(root, "sys/class/devfreq/2c60000.emc/device/load", b"10\n");
    assert_eq!(jetson::gpu_load_percent(root), Some(100.0));
    // EMC activity without the root-only clock: reported raw, no percentage.
    write(root, "sys/kernel/actmon_avg_activity/mc_all", b"1200\n");
    let emc: Value = serde_json::to_value(jetson::emc(root)).unwrap();
    assert_eq!(emc, json!({"actmon_mc_all": 1200}));
}

#[test]
fn this_machine_reads_without_error() {
    // Whatever the build machine is, sampling the real root must not fail; on Linux the
    // generic figures are there.
    let facts = SystemSampler::default().sample();
    if cfg!(target_os = "linux") {
        assert!(facts.mem_total_bytes.is_some_and(|t| t > 0));
        assert!(facts.mem_used_bytes <= facts.mem_total_bytes);
    }
}
