//! The default model set from the Hugging Face Hub: the manifest (`models/manifest.toml`,
//! [`manifest`]), resumable verified downloads into a models directory ([`download`]) — against
//! the manifest's sha256 where it has one, else against the content hash the Hub reports
//! ([`reported`]) — and writing those hashes into a manifest ([`pin`]).
//!
//! The Hub is reached at `HF_ENDPOINT` (default `https://huggingface.co`, or a mirror that serves
//! the same `/{repo}/resolve/{revision}/{path}` and `/api/models/{repo}/revision/{rev}` routes),
//! with `Authorization: Bearer $HF_TOKEN` when a token is set, as `huggingface_hub` does.

pub mod download;
mod installed;
pub mod manifest;
mod partial;
pub mod pin;
mod progress;
pub mod reported;
mod revision;
mod transfer;

use std::path::PathBuf;
use std::time::Duration;

pub use progress::Progress;

/// The public Hub; `HF_ENDPOINT` replaces it.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The manifest cannot be read or is not valid: bad input, exit 2.
    #[error("{file}: {reason}")]
    Manifest { file: String, reason: String },
    /// An argument or setting that cannot work (`--only` naming no model, a bad `HF_ENDPOINT`).
    #[error("{0}")]
    Usage(String),
    /// The server answered, but not with the file (status, size or sha256 wrong).
    #[error("{file}: GET {url}: {reason}")]
    Download {
        file: String,
        url: String,
        reason: String,
    },
    /// No connection at all: the machine is offline or the endpoint is wrong.
    #[error(
        "{file}: GET {url}: cannot connect ({reason}); `landfall models` needs network access to \
         the Hugging Face Hub, or to a mirror named by HF_ENDPOINT"
    )]
    Offline {
        file: String,
        url: String,
        reason: String,
    },
    /// Local disk trouble: the models directory or the manifest cannot be written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl HubError {
    /// Bad manifest or arguments (exit code 2) as opposed to a failed download (1).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Self::Manifest { .. } | Self::Usage(_))
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// How often and how patiently a failed request is tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries per request, the first one included.
    pub attempts: u32,
    /// Wait before the second try; it doubles for each further one.
    pub first_delay: Duration,
    /// The doubling stops here, so a long outage is not waited out for minutes per file.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed try number `failed` (1-based), with up to 25% jitter so that a fleet
    /// pulling from one mirror does not retry in lockstep.
    pub fn delay(&self, failed: u32) -> Duration {
        let doubled = self
            .first_delay
            .saturating_mul(1u32 << failed.saturating_sub(1).min(16));
        let capped = doubled.min(self.max_delay);
        capped + capped.mul_f64(fastrand::f64() * 0.25)
    }
}

/// A client for one Hub endpoint.
#[derive(Debug, Clone)]
pub struct Hub {
    /// Without a trailing slash, so URLs are `format!`ed from it.
    endpoint: String,
    token: Option<String>,
    client: reqwest::Client,
    /// The same, not following redirects: the Hub's redirect itself carries an LFS file's hash.
    no_redirect: reqwest::Client,
    retry: RetryPolicy,
}

impl Hub {
    /// A client for `endpoint` (an `http://` or `https://` URL), sending `token` as a bearer token.
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Self, HubError> {
        let endpoint = endpoint.trim().trim_end_matches('/').to_string();
        let rest = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"));
        if rest.is_none_or(str::is_empty) {
            return Err(HubError::Usage(format!(
                "HF_ENDPOINT {endpoint:?} is not an http:// or https:// URL (e.g. {DEFAULT_ENDPOINT})"
            )));
        }
        let builder = || {
            crate::util::http::client_builder()
                .map_err(|e| HubError::Usage(format!("cannot set up TLS for the Hub: {e}")))
                // An idle timeout, not a total one: a 10 GB shard may take an hour, but a
                // connection that sends nothing for a minute has stalled and is retried with
                // Range.
                .map(|b| b.read_timeout(Duration::from_secs(60)))
        };
        let built = |b: reqwest::ClientBuilder| {
            b.build()
                .map_err(|e| HubError::Usage(format!("cannot set up the HTTP client: {e}")))
        };
        let client = built(builder()?)?;
        let no_redirect = built(builder()?.redirect(reqwest::redirect::Policy::none()))?;
        Ok(Self {
            endpoint,
            // A token pasted from a file often ends in a newline, which no header may contain.
            token: token
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
            client,
            no_redirect,
            retry: RetryPolicy::default(),
        })
    }

    /// The endpoint and token of `HF_ENDPOINT` and `HF_TOKEN`, as the Hub's own tools read them.
    pub fn from_env() -> Result<Self, HubError> {
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Self::new(&endpoint, std::env::var("HF_TOKEN").ok())
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// Where the Hub serves `path` of `repo` at `revision`.
    pub fn file_url(&self, repo: &str, revision: &str, path: &str) -> String {
        let path = path
            .split('/')
            .map(encode_segment)
            .collect::<Vec<_>>()
            .join("/");
        format!(
            "{}/{repo}/resolve/{}/{path}",
            self.endpoint,
            encode_segment(revision)
        )
    }

    /// The API route that names the commit a branch, tag or commit of `repo` stands for.
    pub fn revision_url(&self, repo: &str, revision: &str) -> String {
        format!(
            "{}/api/models/{repo}/revision/{}",
            self.endpoint,
            encode_segment(revision)
        )
    }

    /// A HEAD of `url` that does not follow redirects, with the token; `Accept-Encoding:
    /// identity`, so the size is the file's and not a compressed one's.
    pub(crate) fn head(&self, url: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .no_redirect
            .head(url)
            .header(reqwest::header::ACCEPT_ENCODING, "identity");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// A GET of `url`, with the token and, from byte `from` on, a Range header.
    pub(crate) fn get(&self, url: &str, from: u64) -> reqwest::RequestBuilder {
        let mut request = self.client.get(url);
        if let Some(token) = &self.token {
            // reqwest drops this header when a redirect leaves the host (the Hub sends LFS files
            // to a CDN with signed URLs), so the token only ever goes to the endpoint.
            request = request.bearer_auth(token);
        }
        if from > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        request
    }
}

/// rustls with the aws-lc-rs provider that rumqttc's rustls already uses, and Mozilla's roots
/// (built in, so a Jetson image without a CA bundle can still reach the Hub).
/// Percent-encodes one URL path segment (revision names such as `refs/pr/1` contain slashes).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_revisions_and_path_segments() {
        let hub = Hub::new("http://mirror.lan:8080/", None).expect("client");
        assert_eq!(
            hub.file_url("org/m", "refs/pr/1", "sub dir/a.json"),
            "http://mirror.lan:8080/org/m/resolve/refs%2Fpr%2F1/sub%20dir/a.json"
        );
        assert_eq!(
            hub.revision_url("org/m", "main"),
            "http://mirror.lan:8080/api/models/org/m/revision/main"
        );
    }

    #[test]
    fn endpoint_must_be_http() {
        for bad in ["", "huggingface.co", "ftp://x", "https://"] {
            assert!(Hub::new(bad, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            attempts: 10,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
        };
        let d1 = policy.delay(1);
        assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(125));
        let d2 = policy.delay(2);
        assert!(d2 >= Duration::from_millis(200) && d2 <= Duration::from_millis(250));
        let d9 = policy.delay(9);
        assert!(d9 >= Duration::from_millis(400) && d9 <= Duration::from_millis(500));
    }
}
