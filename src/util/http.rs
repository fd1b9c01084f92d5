//! HTTP(S) clients: one setup for every download (models from the Hub, adapter updates), with
//! rustls on aws-lc-rs (the provider rumqttc's TLS already uses; a second one would make rustls
//! refuse to choose) and Mozilla's root certificates built in.

use std::sync::Arc;
use std::time::Duration;

/// The TLS client config: Mozilla's roots, aws-lc-rs, TLS 1.2 and 1.3.
pub fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client builder with that TLS, landfall's user agent and a connect timeout; callers add
/// their own read timeouts.
pub fn client_builder() -> Result<reqwest::ClientBuilder, rustls::Error> {
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls_config()?)
        .user_agent(concat!("landfall/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15)))
}

/// An error and its causes on one line, without the URL reqwest repeats in its own message and
/// without hyper's wrappers that say nothing to a user ("client error (Connect)").
pub fn describe(e: &reqwest::Error) -> String {
    const WRAPPERS: [&str; 3] = [
        "error sending request",
        "client error (Connect)",
        "client error (SendRequest)",
    ];
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = next {
        let mut text = err.to_string();
        if let Some(url) = e.url() {
            text = text.replace(&format!(" for url ({url})"), "");
        }
        // A cause whose text the previous part already includes adds nothing.
        if !WRAPPERS.contains(&text.as_str()) && !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    if parts.is_empty() {
        return e.to_string();
    }
    parts.join(": ")
}
