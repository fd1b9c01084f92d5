//! What the Hub says a file's content is, before it is downloaded: for a file stored with Git LFS
//! (weights), the redirect to the CDN carries its sha256 in `X-Linked-Etag` and its size in
//! `X-Linked-Size`; for a small file kept in git itself, the `ETag` is its git blob id (sha1 of
//! `"blob <size>\0"` and the bytes) and `Content-Length` its size. This is what `huggingface_hub`
//! reads (`get_hf_file_metadata`), asked for with a HEAD that does not follow the redirect.
//! A manifest entry without a sha256 is verified against this.

use reqwest::header::{HeaderMap, CONTENT_LENGTH, ETAG, LOCATION};
use reqwest::StatusCode;
use sha1::{Digest, Sha1};

use super::transfer::refusal;
use super::{Hub, HubError};
use crate::util::hex;
use crate::util::http::describe;

/// Relative redirects to follow (a renamed repo) before the file's own answer.
const MAX_REDIRECTS: usize = 5;

/// The content a file must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentHash {
    /// Lowercase hex sha256 (the manifest's pin, or an LFS file's `X-Linked-Etag`).
    Sha256(String),
    /// Lowercase hex git blob id (a small file's `ETag`).
    GitBlob(String),
}

impl ContentHash {
    pub fn hex(&self) -> &str {
        match self {
            Self::Sha256(h) | Self::GitBlob(h) => h,
        }
    }

    pub fn is_git_blob(&self) -> bool {
        matches!(self, Self::GitBlob(_))
    }

    /// What kind of hash it is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sha256(_) => "sha256",
            Self::GitBlob(_) => "git blob id",
        }
    }
}

/// A file's size and content as the Hub reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub size: u64,
    pub hash: ContentHash,
}

/// The git blob id of `bytes`, as lowercase hex.
pub fn git_blob_id(bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex(&h.finalize())
}

/// `"abc"`, `W/"abc"` → `abc`, lowercased.
fn normalize_etag(value: &str) -> String {
    value
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_ascii_lowercase()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads the headers of one answer: `Ok(Some)` when they describe the file, `Ok(None)` for a
/// redirect without them (follow it), `Err` with the reason otherwise.
fn from_headers(status: StatusCode, headers: &HeaderMap) -> Result<Option<Reported>, String> {
    if let Some(linked) = header(headers, "x-linked-etag") {
        let sha = normalize_etag(linked);
        let size = header(headers, "x-linked-size").and_then(|s| s.trim().parse().ok());
        return match (is_hex(&sha, 64), size) {
            (true, Some(size)) => Ok(Some(Reported {
                size,
                hash: ContentHash::Sha256(sha),
            })),
            _ => Err(format!(
                "the Hub's X-Linked-Etag {linked:?} / X-Linked-Size are not a sha256 and a size"
            )),
        };
    }
    if status.is_redirection() {
        return Ok(None);
    }
    let etag = header(headers, ETAG.as_str()).map(normalize_etag);
    let size = header(headers, CONTENT_LENGTH.as_str()).and_then(|s| s.trim().parse().ok());
    match (etag, size) {
        (Some(e), Some(size)) if is_hex(&e, 40) => Ok(Some(Reported {
            size,
            hash: ContentHash::GitBlob(e),
        })),
        (Some(e), Some(size)) if is_hex(&e, 64) => Ok(Some(Reported {
            size,
            hash: ContentHash::Sha256(e),
        })),
        (etag, _) => Err(format!(
            "the server reports no content hash for it (ETag {etag:?}): is HF_ENDPOINT a \
             Hugging Face Hub? Pin the file's sha256 in the manifest to pull from elsewhere"
        )),
    }
}

/// What the Hub reports for `url` (a `resolve` URL at a commit), with the retry policy.
pub async fn reported(hub: &Hub, label: &str, url: &str) -> Result<Reported, HubError> {
    let fail = |url: &str, reason: String| HubError::Download {
        file: label.to_string(),
        url: url.to_string(),
        reason,
    };
    let policy = hub.retry();
    let mut failed = 0;
    let mut at = url.to_string();
    let mut redirects = 0;
    loop {
        let response = match hub.head(&at).send().await {
            Ok(r) => r,
            Err(e) => {
                failed += 1;
                if failed >= policy.attempts.max(1) {
                    let reason = describe(&e);
                    return Err(if e.is_connect() {
                        HubError::Offline {
                            file: label.to_string(),
                            url: at,
                            reason,
                        }
                    } else {
                        fail(&at, format!("{reason} (gave up after {failed} tries)"))
                    });
                }
                tokio::time::sleep(policy.delay(failed)).await;
                continue;
            }
        };
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            failed += 1;
            if failed >= policy.attempts.max(1) {
                return Err(fail(
                    &at,
                    format!("HTTP {status} (gave up after {failed} tries)"),
                ));
            }
            tokio::time::sleep(policy.delay(failed)).await;
            continue;
        }
        if !status.is_success() && !status.is_redirection() {
            return Err(fail(&at, refusal(status)));
        }
        match from_headers(status, response.headers()) {
            Ok(Some(r)) => return Ok(r),
            Err(why) => return Err(fail(&at, why)),
            Ok(None) => {
                let next = header(response.headers(), LOCATION.as_str())
                    .and_then(|l| reqwest::Url::parse(&at).ok()?.join(l).ok());
                redirects += 1;
                match next {
                    Some(next) if redirects <= MAX_REDIRECTS => at = next.to_string(),
                    _ => {
                        return Err(fail(
                            &at,
                            format!(
                                "HTTP {status} without the file's hash, and no redirect to follow"
                            ),
                        ))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn git_blob_ids_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_id(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // The empty blob.
        assert_eq!(git_blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    #[test]
    fn lfs_and_small_files_are_told_apart() {
        let sha = "ab".repeat(32);
        let lfs = headers(&[
            ("x-linked-etag", &format!("\"{sha}\"")),
            ("x-linked-size", "1234"),
            ("etag", "W/\"whatever\""),
        ]);
        assert_eq!(
            from_headers(StatusCode::FOUND, &lfs),
            Ok(Some(Reported {
                size: 1234,
                hash: ContentHash::Sha256(sha.clone())
            }))
        );
        let blob = "CE013625030BA8DBA906F756967F9E9CA394464A";
        let small = headers(&[("etag", &format!("W/\"{blob}\"")), ("content-length", "6")]);
        assert_eq!(
            from_headers(StatusCode::OK, &small),
            Ok(Some(Reported {
                size: 6,
                hash: ContentHash::GitBlob(blob.to_ascii_lowercase())
            }))
        );
        // A relative redirect (renamed repo): follow it.
        let moved = headers(&[("location", "/new/name/resolve/x/a.json")]);
        assert_eq!(
            from_headers(StatusCode::TEMPORARY_REDIRECT, &moved),
            Ok(None)
        );
        // A plain web server: no hash to check against.
        let plain = headers(&[("etag", "\"5f2b-12\""), ("content-length", "6")]);
        assert!(from_headers(StatusCode::OK, &plain).is_err());
        let bad_lfs = headers(&[("x-linked-etag", "\"nope\""), ("x-linked-size", "1")]);
        assert!(from_headers(StatusCode::FOUND, &bad_lfs).is_err());
    }
}
