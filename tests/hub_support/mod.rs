//! A stand-in for the Hugging Face Hub on 127.0.0.1 (port 0) for the `landfall models` tests,
//! answering as the Hub does: a small file with its git blob id as `ETag`; an LFS file with a
//! redirect to a CDN path that carries `X-Linked-Etag` (sha256) and `X-Linked-Size`; HEAD as GET
//! without the body; `X-Repo-Commit` on both. It can cut a response short, ignore Range, and
//! records every request (method, path, Range, Authorization). Plus manifest builders and a
//! runner for the binary.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub auth: Option<String>,
}

#[derive(Default)]
pub struct State {
    /// URL path -> body.
    pub files: HashMap<String, Vec<u8>>,
    /// URL path -> headers sent with it (after the status line).
    pub headers: HashMap<String, Vec<String>>,
    /// URL path -> (Location, headers) of a 302.
    pub redirects: HashMap<String, (String, Vec<String>)>,
    /// URL path -> bytes to send of the first response before closing the connection.
    pub cut_once: HashMap<String, usize>,
    /// Answer Range requests with the whole file, as some mirrors do.
    pub ignore_range: bool,
    pub seen: Vec<Seen>,
}

pub struct Hub {
    pub url: String,
    pub state: Arc<Mutex<State>>,
}

impl Hub {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Self { url, state }
    }

    pub fn put(&self, path: &str, body: &[u8]) {
        let mut state = self.state.lock().expect("lock");
        state.files.insert(path.to_string(), body.to_vec());
    }

    /// A file kept in git: served at its `resolve` URL with its git blob id as ETag.
    pub fn file(&self, repo: &str, rev: &str, name: &str, body: &[u8]) {
        self.file_reporting(repo, rev, name, body, &git_blob_id(body));
    }

    /// [`Hub::file`] with another ETag than the bytes have.
    pub fn file_reporting(&self, repo: &str, rev: &str, name: &str, body: &[u8], etag: &str) {
        let path = format!("/{repo}/resolve/{rev}/{name}");
        self.put(&path, body);
        let mut state = self.state.lock().expect("lock");
        state.headers.insert(
            path,
            vec![
                format!("ETag: \"{etag}\""),
                format!("X-Repo-Commit: {COMMIT}"),
            ],
        );
    }

    /// A file stored with LFS: its `resolve` URL redirects to `/cdn/<sha256>`, reporting the
    /// sha256 and size.
    pub fn lfs(&self, repo: &str, rev: &str, name: &str, body: &[u8]) {
        self.lfs_reporting(repo, rev, name, body, &sha256(body));
    }

    /// [`Hub::lfs`] reporting `reported` as the sha256 (the CDN path is still the true one's).
    pub fn lfs_reporting(&self, repo: &str, rev: &str, name: &str, body: &[u8], reported: &str) {
        let cdn = format!("/cdn/{}", sha256(body));
        self.put(&cdn, body);
        let mut state = self.state.lock().expect("lock");
        state.redirects.insert(
            format!("/{repo}/resolve/{rev}/{name}"),
            (
                cdn,
                vec![
                    format!("X-Linked-Etag: \"{reported}\""),
                    format!("X-Linked-Size: {}", body.len()),
                    format!("X-Repo-Commit: {COMMIT}"),
                    "ETag: W/\"not-the-content\"".to_string(),
                ],
            ),
        );
    }

    /// Requests of `method` for `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .count()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("lock").seen.clone()
    }

    pub fn seen_files(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.contains("/resolve/"))
            .collect()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let method = line.split_whitespace().next().unwrap_or("GET").to_string();
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let seen = Seen {
        method: method.clone(),
        path: path.clone(),
        range: headers.get("range").cloned(),
        auth: headers.get("authorization").cloned(),
    };
    let head_only = method == "HEAD";
    let (body, cut, ignore_range, extra_headers, redirect) = {
        let mut s = state.lock().expect("lock");
        s.seen.push(seen.clone());
        let cut = if head_only {
            None
        } else {
            s.cut_once.remove(&path)
        };
        (
            s.files.get(&path).cloned(),
            cut,
            s.ignore_range,
            s.headers.get(&path).cloned().unwrap_or_default(),
            s.redirects.get(&path).cloned(),
        )
    };
    let mut out = stream;
    if let Some((location, headers)) = redirect {
        let mut head = format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\n");
        for h in headers {
            head.push_str(&h);
            head.push_str("\r\n");
        }
        head.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = out.write_all(head.as_bytes());
        return;
    }
    let Some(body) = body else {
        let _ = out
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let from = seen
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
        .filter(|_| !ignore_range);
    let (status, extra, part) = match from {
        Some(from) if from >= body.len() => {
            let head = format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", body.len());
            let _ = out.write_all(head.as_bytes());
            return;
        }
        Some(from) => (
            "206 Partial Content",
            format!(
                "Content-Range: bytes {from}-{}/{}\r\n",
                body.len() - 1,
                body.len()
            ),
            &body[from..],
        ),
        None => ("200 OK", String::new(), &body[..]),
    };
    let extra_headers: String = extra_headers.iter().map(|h| format!("{h}\r\n")).collect();
    let head = format!(
        "HTTP/1.1 {status}\r\n{extra}{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        part.len()
    );
    let _ = out.write_all(head.as_bytes());
    if head_only {
        return;
    }
    // A cut response promises the whole length, sends less and closes: a dropped connection.
    let _ = out.write_all(&part[..cut.unwrap_or(part.len()).min(part.len())]);
    let _ = out.flush();
}

/// git's id of a blob with `bytes`: sha1 of `"blob <len>\0"` and the bytes.
pub fn git_blob_id(bytes: &[u8]) -> String {
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic bytes that are not all alike, so a shifted resume would change the hash.
pub fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// A manifest entry: (path, bytes it should have); `None` hash writes "unpinned".
pub fn entry(
    name: &str,
    repo: &str,
    rev: &str,
    quant: &str,
    files: &[(&str, Option<&[u8]>)],
) -> String {
    let mut s = format!(
        "[[model]]\nname = \"{name}\"\nrepo = \"{repo}\"\nrevision = \"{rev}\"\nquant = \"{quant}\"\n"
    );
    for (path, bytes) in files {
        match bytes {
            Some(b) => s.push_str(&format!(
                "\n[[model.file]]\npath = \"{path}\"\nsha256 = \"{}\"\nsize = {}\n",
                sha256(b),
                b.len()
            )),
            None => s.push_str(&format!(
                "\n[[model.file]]\npath = \"{path}\"\nsha256 = \"unpinned\"\n"
            )),
        }
    }
    s.push('\n');
    s
}

pub struct Run {
    pub dir: tempfile::TempDir,
    pub manifest: PathBuf,
}

impl Run {
    pub fn new(manifest_text: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = dir.path().join("manifest.toml");
        std::fs::write(&manifest, manifest_text).expect("write manifest");
        Self { dir, manifest }
    }

    pub fn models(&self) -> PathBuf {
        self.dir.path().join("models")
    }

    pub fn landfall(&self, endpoint: &str, args: &[&str]) -> Output {
        self.landfall_env(endpoint, args, &[])
    }

    pub fn landfall_env(&self, endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_landfall"));
        cmd.args(args)
            .env("HF_ENDPOINT", endpoint)
            .env_remove("HF_TOKEN")
            .envs(env.iter().copied())
            .current_dir(self.dir.path());
        // The server is on 127.0.0.1: a proxy from the environment must not be asked for it.
        for proxy in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            cmd.env_remove(proxy);
        }
        cmd.output().expect("run landfall")
    }

    pub fn pull(&self, endpoint: &str, extra: &[&str]) -> Output {
        let manifest = self.manifest.to_str().expect("utf-8 path");
        let models = self.models();
        let mut args = vec!["models", "pull", "--manifest", manifest, "--models-dir"];
        args.push(models.to_str().expect("utf-8 path"));
        args.extend_from_slice(extra);
        self.landfall(endpoint, &args)
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

pub fn no_partial_left(models: &Path) {
    let partial = models.join(".partial");
    let left: Vec<_> = std::fs::read_dir(&partial)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in .partial: {left:?}");
}
