//! How the TUF client reaches a repository: `http(s)://` through the daemon's own HTTP client
//! (the same TLS setup as every other download), `file://` (or a plain directory) through
//! tough's file transport. A missing file is reported as such, which TUF needs to know when it
//! looks for a newer root.
//!
//! Consistent snapshots name a target file by its hash, and implementations disagree on where
//! the hash goes when the target name has directories: tough asks for
//! `<hash>.adapters/zh/1/bundle.json`, python-tuf (and go-tuf) write and ask for
//! `adapters/zh/1/<hash>.bundle.json`. A target tough's way does not find is asked for the other
//! way, so repositories written by either load; the hash is checked all the same.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tough::{FilesystemTransport, Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

use super::error::UpdateError;

/// Chunks read ahead of the TUF client; it stops reading (and so the download) as soon as a file
/// is longer than its metadata says.
const READ_AHEAD: usize = 4;

#[derive(Debug, Clone)]
pub struct RepoTransport {
    http: reqwest::Client,
    /// The repository's targets URL, to recognize hash-prefixed target names.
    targets: Url,
}

impl RepoTransport {
    pub fn new(targets: Url) -> Result<Self, UpdateError> {
        let http = crate::util::http::client_builder()
            .map_err(|e| UpdateError::local(format!("cannot set up TLS: {e}")))?
            .read_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| UpdateError::local(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self { http, targets })
    }
}

/// `<targets>/<hash>.<dir>/<file>` as `<targets>/<dir>/<hash>.<file>`; `None` for any other URL.
fn hash_on_the_file_name(targets: &Url, url: &Url) -> Option<Url> {
    let rest = url.as_str().strip_prefix(targets.as_str())?;
    let (hash, name) = rest.split_once('.')?;
    let (dir, file) = name.rsplit_once('/')?;
    let is_hash = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    is_hash
        .then(|| targets.join(&format!("{dir}/{hash}.{file}")).ok())
        .flatten()
}

#[async_trait]
impl Transport for RepoTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        match self.fetch_as_named(url.clone()).await {
            Err(e) if e.kind() == TransportErrorKind::FileNotFound => {
                match hash_on_the_file_name(&self.targets, &url) {
                    Some(other) => self.fetch_as_named(other).await,
                    None => Err(e),
                }
            }
            result => result,
        }
    }
}

impl RepoTransport {
    async fn fetch_as_named(&self, url: Url) -> Result<TransportStream, TransportError> {
        match url.scheme() {
            "file" => FilesystemTransport.fetch(url).await,
            "http" | "https" => self.fetch_http(url).await,
            _ => Err(TransportError::new(
                TransportErrorKind::UnsupportedUrlScheme,
                url,
            )),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_prefixed_name_moves_the_hash_onto_the_file_name() {
        let targets = Url::parse("https://repo.example/targets/").unwrap();
        let hash = "ab".repeat(32);
        let tough = targets
            .join(&format!("{hash}.adapters/zh/1/bundle.json"))
            .unwrap();
        assert_eq!(
            hash_on_the_file_name(&targets, &tough).unwrap().as_str(),
            format!("https://repo.example/targets/adapters/zh/1/{hash}.bundle.json")
        );
        // Not a hash, no directory, or not a target: left alone.
        for other in [
            "https://repo.example/targets/adapters/zh/1/bundle.json".to_string(),
            format!("https://repo.example/targets/{hash}.bundle.json"),
            format!("https://repo.example/metadata/{hash}.a/b.json"),
            "https://repo.example/targets/abc.adapters/zh/1/bundle.json".to_string(),
        ] {
            let url = Url::parse(&other).unwrap();
            assert_eq!(hash_on_the_file_name(&targets, &url), None, "{other}");
        }
    }
}
