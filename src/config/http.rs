//! `[http]`: the HTTP API's address, token, CORS origins and body limit, checked with the same
//! positioned errors as the rest of the config.

use std::net::SocketAddr;

use super::ctx::{span_of, Ctx};
use super::raw::{sp, RawHttp};
use super::settings::{ConfigError, HttpConfig};

/// Where the API listens when `enabled = true` names no address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

pub(super) fn http(cx: &Ctx, h: &RawHttp, max_payload: usize) -> Result<HttpConfig, ConfigError> {
    let enabled = h.enabled.as_ref().map(|b| *b.get_ref());
    let listen = match (&h.listen, enabled) {
        (_, Some(false)) => None,
        (Some(l), _) => Some(l.get_ref().trim().parse::<SocketAddr>().map_err(|_| {
            cx.err(
                l.span(),
                "http.listen",
                format!(
                    "{:?} is not an address and port, e.g. \"{DEFAULT_LISTEN}\"",
                    l.get_ref()
                ),
            )
        })?),
        (None, Some(true)) => Some(DEFAULT_LISTEN.parse().expect("a valid default")),
        (None, None) => None,
    };
    let token = cx.string(&h.token, "http.token")?;
    if let Some(t) = &token {
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(cx.err(
                span_of(&h.token),
                "http.token",
                "must not contain spaces or control characters",
            ));
        }
    }
    if let Some(addr) = listen {
        if !addr.ip().is_loopback() && token.is_none() {
            return Err(cx.err(
                span_of(&h.listen),
                "http.listen",
                format!(
                    "{addr} is reachable from other machines: set http.token (clients then send \
                     `Authorization: Bearer <token>`), or listen on 127.0.0.1"
                ),
            ));
        }
    }
    let mut cors_origins = Vec::new();
    for (i, o) in h.cors_origins.iter().enumerate() {
        let origin = o.get_ref().trim_end_matches('/');
        let ok = origin == "*"
            || ((origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin[origin.find("//").map_or(0, |p| p + 2)..].contains('/'));
        if !ok {
            return Err(cx.err(
                o.span(),
                &format!("http.cors_origins[{i}]"),
                format!(
                    "{:?} is not an origin such as \"https://dashboard.example\" (or \"*\")",
                    o.get_ref()
                ),
            ));
        }
        cors_origins.push(origin.to_string());
    }
    let max_body_bytes = match &h.max_body_bytes {
        None => max_payload,
        Some(n) => usize::try_from(*n.get_ref())
            .ok()
            .filter(|&n| (1024..=1 << 30).contains(&n))
            .ok_or_else(|| {
                cx.err(
                    n.span(),
                    "http.max_body_bytes",
                    "must be between 1024 and 1073741824",
                )
            })?,
    };
    Ok(HttpConfig {
        listen,
        token,
        cors_origins,
        max_body_bytes,
    })
}

/// The effective `[http]`, for `check-config` (the token shown only as set).
pub(super) fn to_raw(c: &HttpConfig) -> RawHttp {
    RawHttp {
        enabled: sp(c.listen.is_some()),
        listen: c.listen.map(|a| a.to_string()).and_then(sp),
        token: c.token.as_ref().map(|_| "(set)".to_string()).and_then(sp),
        cors_origins: c
            .cors_origins
            .iter()
            .map(|o| toml::Spanned::new(0..0, o.clone()))
            .collect(),
        max_body_bytes: i64::try_from(c.max_body_bytes).ok().and_then(sp),
    }
}
