//! A static HTTP/1.1 file server on 127.0.0.1 for the tests, with faults a real network has: a
//! response cut halfway (once), a file that never ends, the server refusing everyone for a while.
//! Every request is logged, so a test can tell which files a client fetched.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does to requests for one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Send this many bytes of the file, then drop the connection (once; later requests are
    /// served whole).
    CutOnce(usize),
    /// Send the file, then keep sending zeros, forever.
    Endless,
    /// Answer 503.
    Unavailable,
    /// Send the headers and half the file, then hold the connection open without a byte more.
    Stall,
}

#[derive(Default)]
struct State {
    faults: HashMap<String, Fault>,
    /// Refuse every request (answer 503) while set.
    down: bool,
    log: Vec<String>,
}

#[derive(Clone)]
pub struct FileServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl FileServer {
    /// Serves `root` on a free port.
    pub async fn start(root: PathBuf) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (root, st) = (root.clone(), st.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &root, &st).await;
                });
            }
        });
        Self {
            port,
            state,
            task: Arc::new(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn fault(&self, path: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .insert(path.to_string(), fault);
    }

    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// The paths requested so far.
    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn requested(&self, path: &str) -> usize {
        self.log().iter().filter(|p| p.as_str() == path).count()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

async fn serve(mut stream: TcpStream, root: &Path, st: &Mutex<State>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let path = head
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("/")
                .to_string();
            let (fault, down) = {
                let mut s = st.lock().unwrap();
                s.log.push(path.clone());
                let fault = s.faults.get(&path).copied();
                if let Some(Fault::CutOnce(_)) = fault {
                    s.faults.remove(&path);
                }
                (fault, s.down)
            };
            if down || fault == Some(Fault::Unavailable) {
                respond(&mut stream, "503 Service Unavailable", b"down\n").await?;
                continue;
            }
            let rel = percent_decode(path.trim_start_matches('/'));
            let file = root.join(rel);
            let Ok(body) = tokio::fs::read(&file).await else {
                respond(&mut stream, "404 Not Found", b"not found\n").await?;
                continue;
            };
            match fault {
                Some(Fault::CutOnce(at)) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    stream.write_all(head.as_bytes()).await?;
                    stream.write_all(&body[..at.min(body.len())]).await?;
                    stream.flush().await?;
                    return Ok(());
                }
                Some(Fault::Stall) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    stream.write_all(head.as_bytes()).await?;
                    stream.write_all(&body[..body.len() / 2]).await?;
                    stream.flush().await?;
                    std::future::pending::<()>().await;
                }
                Some(Fault::Endless) => {
                    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
                    stream.write_all(head.as_bytes()).await?;
                    stream.write_all(&body).await?;
                    let zeros = vec![0u8; 64 << 10];
                    // Until the client hangs up (or a bound no client should reach).
                    for _ in 0..(1 << 16) {
                        stream.write_all(&zeros).await?;
                    }
                    return Ok(());
                }
                _ => respond(&mut stream, "200 OK", &body).await?,
            }
        }
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
