//! One file over HTTP, hashed as it streams: the retry loop shared by `pull` (into a partial file)
//! and `pin` (hashing only). What has arrived survives a failed try, so the next try asks for
//! the rest with `Range: bytes=N-` instead of starting over; a server that ignores Range (200)
//! or cannot serve it (416) makes the transfer start again from byte 0.

use reqwest::header::CONTENT_RANGE;
use reqwest::{Response, StatusCode};
use sha2::{Digest, Sha256};

use super::progress::FileProgress;
use super::{Hub, HubError};
use crate::util::hex;
use crate::util::http::describe;

/// Where received bytes go.
pub(crate) trait Sink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), HubError>;
    /// Forget everything written so far: the server sends the file from its start again.
    fn restart(&mut self) -> Result<(), HubError>;
    /// Push buffered bytes down before a retry or the end, so the length on disk is `len`.
    fn flush(&mut self) -> Result<(), HubError>;
}

/// The bytes that have arrived: their count and running sha256.
#[derive(Debug, Clone, Default)]
pub(crate) struct Received {
    pub hasher: Sha256,
    pub len: u64,
}

impl Received {
    pub fn add(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// The sha256 so far, as lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }
}

/// Lowercase hex of `bytes`.
/// Why a try failed, when another try may do better.
struct Retry {
    reason: String,
    /// No connection could be made (refused, DNS, TLS handshake): maybe offline.
    connect: bool,
}

impl Retry {
    fn because(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            connect: false,
        }
    }
}

/// One file to fetch; `label` names it in messages (`model/path`).
pub(crate) struct Fetch<'a> {
    pub hub: &'a Hub,
    pub label: &'a str,
    pub url: &'a str,
    /// The size the manifest promises; `None` when pinning, where the server's word is taken.
    pub expected_size: Option<u64>,
}

impl Fetch<'_> {
    fn fail(&self, reason: impl Into<String>) -> HubError {
        HubError::Download {
            file: self.label.to_string(),
            url: self.url.to_string(),
            reason: reason.into(),
        }
    }

    /// Fetches the rest of the file after `received` into `sink`, retrying transient failures
    /// with capped backoff. Checks the length, not the hash: that is the caller's to judge.
    pub async fn run(
        &self,
        received: &mut Received,
        sink: &mut dyn Sink,
        progress: &mut FileProgress,
    ) -> Result<(), HubError> {
        let policy = self.hub.retry();
        let mut failed = 0;
        loop {
            progress.restart_at(received.len);
            let retry = match self.attempt(received, sink, progress).await? {
                None => return Ok(()),
                Some(retry) => retry,
            };
            sink.flush()?;
            failed += 1;
            if failed >= policy.attempts.max(1) {
                return Err(if retry.connect {
                    HubError::Offline {
                        file: self.label.to_string(),
                        url: self.url.to_string(),
                        reason: retry.reason,
                    }
                } else {
                    self.fail(format!("{} (gave up after {failed} tries)", retry.reason))
                });
            }
            let delay = policy.delay(failed);
            progress.retrying(&retry.reason, delay);
            tokio::time::sleep(delay).await;
        }
    }

    /// One request: `Ok(None)` when the file is complete, `Ok(Some)` to try again, `Err` to stop.
    async fn attempt(
        &self,
        received: &mut Received,
        sink: &mut dyn Sink,
        progress: &mut FileProgress,
    ) -> Result<Option<Retry>, HubError> {
        if let Some(size) = self.expected_size {
            if received.len == size && size > 0 {
                return Ok(None);
            }
            if received.len > size {
                self.start_over(received, sink, progress)?;
            }
        }
        let from = received.len;
        let mut response = match self.hub.get(self.url, from).send().await {
            Ok(r) => r,
            // A certificate the roots do not vouch for will not change on a retry.
            Err(e) if is_tls(&e) => {
                return Err(self.fail(format!("TLS handshake failed: {}", describe(&e))))
            }
            Err(e) => {
                return Ok(Some(Retry {
                    reason: describe(&e),
                    connect: e.is_connect(),
                }))
            }
        };
        let status = response.status();
        let total = match status {
            StatusCode::OK => {
                if from > 0 {
                    // The server ignored Range and sends the whole file.
                    self.start_over(received, sink, progress)?;
                }
                response.content_length()
            }
            StatusCode::PARTIAL_CONTENT => match content_range(&response) {
                Some((start, total)) if start == from => total,
                _ => {
                    self.start_over(received, sink, progress)?;
                    return Ok(Some(Retry::because(
                        "the server answered Range with another part of the file",
                    )));
                }
            },
            StatusCode::RANGE_NOT_SATISFIABLE => {
                self.start_over(received, sink, progress)?;
                return Ok(Some(Retry::because(
                    "the partial download is longer than the file",
                )));
            }
            s if s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT
                || s.is_server_error() =>
            {
                return Ok(Some(Retry::because(format!("HTTP {s}"))));
            }
            s => return Err(self.fail(refusal(s))),
        };
        if let (Some(expected), Some(total)) = (self.expected_size, total) {
            if total != expected {
                return Err(self.fail(format!(
                    "the server has {total} bytes, the manifest says {expected}: the file \
                     changed or the manifest is wrong"
                )));
            }
        }
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => return Ok(Some(Retry::because(describe(&e)))),
            };
            if let Some(expected) = self.expected_size {
                if received.len + chunk.len() as u64 > expected {
                    self.start_over(received, sink, progress)?;
                    return Err(self.fail(format!(
                        "the server sent more than the manifest's {expected} bytes"
                    )));
                }
            }
            sink.write(&chunk)?;
            received.add(&chunk);
            progress.advance(chunk.len() as u64);
        }
        sink.flush()?;
        match total.or(self.expected_size) {
            Some(total) if received.len < total => Ok(Some(Retry::because(format!(
                "the connection closed after {} of {total} bytes",
                received.len
            )))),
            _ => Ok(None),
        }
    }

    fn start_over(
        &self,
        received: &mut Received,
        sink: &mut dyn Sink,
        progress: &mut FileProgress,
    ) -> Result<(), HubError> {
        sink.restart()?;
        *received = Received::default();
        progress.restart_at(0);
        Ok(())
    }
}

/// Why the Hub refused a request with `status`, for the one-line error.
pub(crate) fn refusal(status: StatusCode) -> String {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
            "HTTP {status}: the repo does not exist, or is gated or private and needs HF_TOKEN \
             set to a token with access"
        ),
        StatusCode::NOT_FOUND => format!(
            "HTTP {status}: the Hub has no such repo, revision or file (check the manifest entry)"
        ),
        s => format!("HTTP {s}"),
    }
}

/// Whether rustls refused the connection. tokio-rustls wraps its error in an `io::Error`, and
/// the connector wraps that in another; `io::Error::source` skips the wrapped error, so each
/// link of the chain is unwrapped through `get_ref` as well.
fn is_tls(e: &reqwest::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        let mut current: &(dyn std::error::Error + 'static) = err;
        loop {
            if current.is::<rustls::Error>() {
                return true;
            }
            match current
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
            {
                Some(inner) => current = inner,
                None => break,
            }
        }
        next = err.source();
    }
    false
}

/// `(first byte, total size)` of a 206's `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`).
fn content_range(response: &Response) -> Option<(u64, Option<u64>)> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

/// A sink that keeps the bytes in memory, for small API answers; `limit` guards against a
/// misconfigured endpoint streaming something huge.
pub(crate) struct MemorySink<'a> {
    pub bytes: Vec<u8>,
    pub limit: usize,
    pub label: &'a str,
    pub url: &'a str,
}

impl Sink for MemorySink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), HubError> {
        if self.bytes.len() + bytes.len() > self.limit {
            return Err(HubError::Download {
                file: self.label.to_string(),
                url: self.url.to_string(),
                reason: format!(
                    "the answer is larger than {} bytes: is HF_ENDPOINT a Hugging Face Hub?",
                    self.limit
                ),
            });
        }
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn restart(&mut self) -> Result<(), HubError> {
        self.bytes.clear();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), HubError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_hash_of_known_input() {
        let mut r = Received::default();
        r.add(b"ab");
        r.add(b"c");
        assert_eq!(r.len, 3);
        assert_eq!(
            r.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
