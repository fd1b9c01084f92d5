//! How the TUF client reaches a repository: `http(s)://` through the daemon's own HTTP client
//! (the same TLS setup as every other download), `file://` (or a plain directory) through
//! tough's file transport. A missing file is reported as such, which TUF needs to know when it
//! looks for a newer root.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tough::{FilesystemTransport, Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

/// Chunks read ahead of the TUF client; it stops reading (and so the download) as soon as a file
/// is longer than its metadata says.
const READ_AHEAD: usize = 4;

#[derive(Debug, Clone)]
pub struct RepoTransport {
    http: reqwest::Client,
}

impl RepoTransport {
    pub fn new() -> Result<Self, String> {
        let http = crate::util::http::client_builder()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .read_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Self { http })
    }
}

#[async_trait]
impl Transport for RepoTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        match url.scheme() {
            "file" => FilesystemTransport.fetch(url).await,
            "http" | "https" => self.fetch_http(url).await,
            _ => Err(TransportError::new(
                TransportErrorKind::UnsupportedUrlScheme,
                url,
            )),
        }
    }
}

impl RepoTransport {
    async fn fetch_http(&self, url: Url) -> Result<TransportStream, TransportError> {
        let other = |url: &Url, why: String| {
            TransportError::new_with_cause(TransportErrorKind::Other, url, why)
        };
        let mut response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| other(&url, crate::util::http::describe(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Err(TransportError::new(TransportErrorKind::FileNotFound, url));
        }
        if !status.is_success() {
            return Err(other(&url, format!("HTTP {status}")));
        }
        // The body is pumped through a small channel: the stream tough reads must be Sync, and
        // when tough stops reading (a file too long, a hash gone wrong) the pump stops too.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, TransportError>>(READ_AHEAD);
        tokio::spawn(async move {
            loop {
                let next = match response.chunk().await {
                    Ok(Some(bytes)) => Ok(bytes),
                    Ok(None) => return,
                    Err(e) => Err(other(&url, crate::util::http::describe(&e))),
                };
                let failed = next.is_err();
                if tx.send(next).await.is_err() || failed {
                    return;
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Box::pin(stream))
    }
}
