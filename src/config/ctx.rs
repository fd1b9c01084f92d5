//! The context every validation step shares: the file's text and name, and errors positioned at
//! the value at fault (line, column, dotted field).

use std::num::NonZeroUsize;
use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use toml::Spanned;

use super::duration::parse_duration;
use super::raw::{DurationText, Sp};
use super::settings::ConfigError;
use crate::util::InvalidValue;

/// An error at `span` of `text`; without `field`, the key written at that position.
pub fn positioned(
    file: &str,
    text: &str,
    span: Range<usize>,
    field: Option<&str>,
    reason: &str,
) -> ConfigError {
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let field = field.map_or_else(|| field_at(text, start), str::to_string);
    // Keep the report on one line: serde messages sometimes list alternatives over several.
    let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    ConfigError::Invalid {
        file: file.to_string(),
        line,
        col,
        field,
        reason,
    }
}

/// The dotted key at byte `offset`: the last `[table]` header above it plus the key of its line.
fn field_at(text: &str, offset: usize) -> String {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let header = |l: &str| {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    };
    if let Some(h) = header(line) {
        return h;
    }
    let table = text[..line_start].lines().rev().find_map(header);
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .unwrap_or_default();
    match (table, key.is_empty()) {
        (Some(t), false) => format!("{t}.{key}"),
        (Some(t), true) => t,
        (None, false) => key,
        (None, true) => "(top level)".to_string(),
    }
}

pub struct Ctx<'a> {
    pub text: &'a str,
    pub file: &'a str,
}

impl Ctx<'_> {
    pub fn err(&self, span: Range<usize>, field: &str, reason: impl AsRef<str>) -> ConfigError {
        positioned(self.file, self.text, span, Some(field), reason.as_ref())
    }

    /// A string value, checked to be non-empty.
    pub fn string(&self, v: &Sp<String>, field: &str) -> Result<Option<String>, ConfigError> {
        match v {
            Some(s) if s.get_ref().trim().is_empty() => {
                Err(self.err(s.span(), field, "must not be empty"))
            }
            Some(s) => Ok(Some(s.get_ref().clone())),
            None => Ok(None),
        }
    }

    /// A string that becomes one MQTT topic level (or several, with `slashes`).
    pub fn topic_part(
        &self,
        v: &Sp<String>,
        field: &str,
        slashes: bool,
    ) -> Result<Option<String>, ConfigError> {
        let Some(s) = self.string(v, field)? else {
            return Ok(None);
        };
        let bad = |c: char| c == '+' || c == '#' || c == '\0' || (!slashes && c == '/');
        if s.chars().any(bad) || s.starts_with('$') || s.starts_with('/') || s.ends_with('/') {
            let allowed = if slashes { "" } else { " or /" };
            return Err(self.err(
                span_of(v),
                field,
                format!("{s:?} is not usable in a topic: no + or #{allowed}, no leading $ or /, no trailing /"),
            ));
        }
        Ok(Some(s))
    }

    pub fn count(
        &self,
        v: &Sp<i64>,
        field: &str,
        default: usize,
        max: usize,
    ) -> Result<NonZeroUsize, ConfigError> {
        let n = match v {
            None => return Ok(NonZeroUsize::new(default).unwrap_or(NonZeroUsize::MIN)),
            Some(n) => n,
        };
        usize::try_from(*n.get_ref())
            .ok()
            .filter(|&x| x <= max)
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| {
                self.err(
                    n.span(),
                    field,
                    format!("must be between 1 and {max}, got {}", n.get_ref()),
                )
            })
    }

    pub fn duration(
        &self,
        v: &Sp<DurationText>,
        field: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(d) => parse_duration(&d.get_ref().0).map_err(|r| self.err(d.span(), field, r.0)),
        }
    }

    pub fn parsed<T: FromStr<Err = InvalidValue>>(
        &self,
        v: &Sp<String>,
        field: &str,
    ) -> Result<Option<T>, ConfigError> {
        v.as_ref()
            .map(|s| {
                s.get_ref()
                    .parse::<T>()
                    .map_err(|r| self.err(s.span(), field, r.0))
            })
            .transpose()
    }
}

pub fn span_of<T>(v: &Sp<T>) -> Range<usize> {
    v.as_ref().map_or(0..0, Spanned::span)
}
