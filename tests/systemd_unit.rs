//! The files under `systemd/` as systemd's own tools see them: the unit verifies cleanly and
//! scores at most 3.0 in `systemd-analyze security`, the sysusers and tmpfiles entries apply,
//! and the default config is accepted by `landfall check-config` and documents every key.
//! Needs systemd's tools (`apt-get install systemd`; `.ci/run` installs them).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_landfall");
/// The highest `systemd-analyze security` exposure the unit may have (0 = locked down, 10 = none).
const MAX_EXPOSURE: f64 = 3.0;

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.env("SYSTEMD_COLORS", "0").output().unwrap_or_else(|e| {
        panic!("{shown}: {e}; install systemd's tools (apt-get install systemd) or run .ci/run")
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The unit as installed, but starting the binary this build made (/usr/bin/landfall is not
/// installed here, and `verify` checks that ExecStart= is executable).
fn unit_copy(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(systemd_dir().join("landfall.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/landfall run --config /etc/landfall/landfall.toml"));
    let path = dir.join("landfall.service");
    std::fs::write(&path, unit.replace("/usr/bin/landfall", BIN)).unwrap();
    path
}

#[test]
fn the_default_config_is_accepted() {
    let out = run(Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(systemd_dir().join("landfall.toml")));
    assert!(out.status.success(), "{}", text(&out));
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(
        effective.contains("dir = \"/var/lib/landfall/queue\""),
        "{effective}"
    );
    assert!(
        effective.contains("dir = \"/var/lib/landfall/models\""),
        "{effective}"
    );
}

/// Uncommenting every example line gives a valid config, and every key that check-config then
/// prints (all of them, defaults filled in) is written in the file.
#[test]
fn the_default_config_documents_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(systemd_dir().join("landfall.toml")).unwrap();
    // TLS files must exist to be accepted; the example paths do not here.
    let pem = dir.path().join("any.pem");
    std::fs::write(&pem, "").unwrap();
    let mut written = BTreeSet::new();
    let uncommented: String = original
        .lines()
        .map(|line| {
            let Some(body) = line.strip_prefix('#') else {
                return line.to_string();
            };
            let is_key = body.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            });
            if body.starts_with('[') || is_key {
                // Port 8883 follows from TLS; an explicit 1883 would be at odds with it.
                if body.starts_with("port") {
                    return String::new();
                }
                if body.ends_with(".pem\"") || body.ends_with(".key\"") {
                    let key = body.split_once(" = ").map_or("", |(k, _)| k);
                    return format!("{key} = \"{}\"", pem.display());
                }
                body.to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    for line in original.lines() {
        let body = line.trim_start_matches('#');
        if let Some((key, _)) = body.split_once(" = ") {
            written.insert(key.trim().to_string());
        }
    }
    let full = dir.path().join("full.toml");
    std::fs::write(&full, &uncommented).unwrap();
    let out = run(Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&full));
    assert!(out.status.success(), "{}\n{uncommented}", text(&out));
    let printed: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim().to_string()))
        .collect();
    let missing: Vec<_> = printed.difference(&written).collect();
    assert!(
        missing.is_empty(),
        "keys not in systemd/landfall.toml: {missing:?}"
    );
    for key in ["port", "cert_file", "key_file"] {
        assert!(written.contains(key), "{key} is not documented");
    }
}

#[test]
fn the_unit_verifies_without_complaints() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(dir.path());
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
    let report = text(&out);
    // verify also reports on installed units it loads as dependencies; only ours must be clean.
    let ours: Vec<&str> = report.lines().filter(|l| l.contains("landfall")).collect();
    assert!(out.status.success() && ours.is_empty(), "{report}");
}

#[test]
fn the_unit_is_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(dir.path());
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit));
    let report = text(&out);
    let score = report
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")
        })
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{report}"));
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} is above {MAX_EXPOSURE}:\n{report}"
    );
    // The settings the README promises, whatever else changes around them.
    let unit = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=30s",
        "DevicePolicy=closed",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(line), "the unit lacks {line:?}");
    }
}

#[test]
fn sysusers_creates_the_user_in_its_groups() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let out = run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(systemd_dir().join("landfall.sysusers")));
    assert!(out.status.success(), "{}", text(&out));
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("landfall:"))
        .unwrap_or_else(|| panic!("no landfall user in:\n{passwd}"));
    assert!(
        user.ends_with(":/var/lib/landfall:/usr/sbin/nologin"),
        "{user}"
    );
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    for g in ["video", "render"] {
        let line = group
            .lines()
            .find(|l| l.starts_with(&format!("{g}:")))
            .unwrap_or_else(|| panic!("no {g} group in:\n{group}"));
        assert!(
            line.split(':')
                .nth(3)
                .unwrap_or("")
                .split(',')
                .any(|m| m == "landfall"),
            "{line}"
        );
    }

    // tmpfiles hands the directories to the user sysusers just made; only root may chown.
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let out = run(Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .arg(systemd_dir().join("landfall.tmpfiles")));
    assert!(out.status.success(), "{}", text(&out));
    let models = root.path().join("var/lib/landfall/models");
    assert!(models.is_dir(), "{}", text(&out));
}
