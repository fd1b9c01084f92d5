//! Durations in the config: whole seconds or a number with a unit, read and written back.

use std::time::Duration;

use crate::util::InvalidValue;

/// `"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, InvalidValue> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("{s:?} is not a duration: expected a whole number with ms, s, m, h or d")
    })?;
    let secs = |k: u64| Duration::from_secs(n.saturating_mul(k));
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(secs(1)),
        "m" => Ok(secs(60)),
        "h" => Ok(secs(3600)),
        "d" => Ok(secs(86400)),
        other => Err(InvalidValue(format!(
            "unknown unit {other:?} in {s:?}: use ms, s, m, h or d"
        ))),
    }
}

/// The shortest exact spelling, as the effective config prints it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match s {
        0 => "0s".to_string(),
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
