//! One camera's capture thread: open the source, grab at the configured fps into the mailbox,
//! and on any failure report `retrying`, wait a capped, jittered, growing delay and open it
//! again. Nothing here can take the daemon down: errors become health states.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::error::CaptureError;
use super::frame::Mailbox;
use super::source::Source;
use super::spec::CameraConfig;
use crate::util::backoff::Backoff;

const RETRY_BASE: Duration = Duration::from_millis(500);
const RETRY_CAP: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraState {
    /// Not opened yet.
    Starting,
    Ok,
    /// The last attempt failed; another follows after a delay.
    Retrying {
        error: String,
        attempts: u32,
    },
    Stopped,
}

/// What the capture thread and the daemon share.
#[derive(Debug)]
pub struct Shared {
    pub mailbox: Mailbox,
    state: Mutex<CameraState>,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            mailbox: Mailbox::default(),
            state: Mutex::new(CameraState::Starting),
        }
    }

    pub fn state(&self) -> CameraState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, s: CameraState) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = s;
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

/// Waits `d`; `true` when the camera is being stopped instead.
fn wait_or_stop(stop: &Receiver<()>, d: Duration) -> bool {
    !matches!(stop.recv_timeout(d), Err(RecvTimeoutError::Timeout))
}

/// The thread body: runs until `stop` fires or its sender is dropped.
pub fn capture(cfg: &CameraConfig, shared: &Arc<Shared>, stop: &Receiver<()>) {
    let period = Duration::from_secs_f64(1.0 / cfg.fps);
    let mut backoff = Backoff::new(RETRY_BASE, RETRY_CAP);
    let mut source: Option<Source> = None;
    let mut attempts = 0u32;
    loop {
        let started = Instant::now();
        // A driver or decoder that panics is one more failure to retry, not a dead thread
        // with its state stuck.
        let result = catch_unwind(AssertUnwindSafe(|| match source.as_mut() {
            Some(s) => s.grab(),
            None => Source::open(cfg).and_then(|mut s| {
                let first = s.grab();
                source = Some(s);
                first
            }),
        }))
        .unwrap_or_else(|_| Err(CaptureError("the capture code panicked".to_string())));
        let delay = match result {
            Ok(image) => {
                if attempts > 0 {
                    tracing::info!("camera {:?}: capturing again from {}", cfg.name, cfg.source);
                } else if shared.state() == CameraState::Starting {
                    tracing::info!("camera {:?}: capturing from {}", cfg.name, cfg.source);
                }
                attempts = 0;
                backoff.reset();
                shared.set(CameraState::Ok);
                shared.mailbox.put(image, SystemTime::now());
                period.saturating_sub(started.elapsed())
            }
            Err(error) => {
                // Drop the source: the next attempt opens it afresh (a device that came back
                // under the same node, a folder that was recreated).
                source = None;
                attempts += 1;
                // Loud once, then quietly: a camera unplugged for hours must not flood the log.
                if attempts == 1 {
                    tracing::warn!(
                        "camera {:?} ({}): {error}; retrying with backoff",
                        cfg.name,
                        cfg.source
                    );
                } else {
                    tracing::debug!("camera {:?}: attempt {attempts}: {error}", cfg.name);
                }
                shared.set(CameraState::Retrying {
                    error: error.to_string(),
                    attempts,
                });
                backoff.next_delay()
            }
        };
        if wait_or_stop(stop, delay) {
            break;
        }
    }
    shared.set(CameraState::Stopped);
}
