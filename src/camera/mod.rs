//! Cameras: each `[[camera]]` runs on its own thread ([`worker`]) at its fps and leaves its
//! latest frame in a single-slot [`frame::Mailbox`]; the daemon takes frames from there for
//! periodic captions and for requests that send no image.
//!
//! Sources ([`source`]): `v4l2:/dev/videoN` ([`v4l2`], nokhwa), `file:` and `dir:` ([`files`]),
//! `pattern:bars` ([`pattern`]). [`scene`] decides whether a frame changed enough to caption.

pub mod decode;
pub mod error;
pub mod files;
pub mod frame;
pub mod pattern;
pub mod scene;
pub mod source;
pub mod spec;
#[cfg(feature = "v4l2")]
pub mod v4l2;
#[cfg(not(feature = "v4l2"))]
#[path = "v4l2_absent.rs"]
pub mod v4l2;
pub mod worker;

use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use frame::Frame;
pub use spec::CameraConfig;
pub use worker::{CameraState, Shared};

/// A running camera.
pub struct Camera {
    pub config: CameraConfig,
    pub shared: Arc<Shared>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Camera {
    /// Starts the capture thread. A thread that cannot be spawned leaves the camera `retrying`
    /// with the reason, like any other failure.
    pub fn start(config: CameraConfig) -> Self {
        let shared = Arc::new(Shared::new());
        let (stop, rx) = channel();
        let (cfg, sh) = (config.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("camera-{}", config.name))
            .spawn(move || worker::capture(&cfg, &sh, &rx));
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!("camera {:?}: cannot start its thread: {e}", config.name);
                None
            }
        };
        Self {
            config,
            shared,
            stop: Some(stop),
            thread,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Asks the thread to stop and waits for it (at most one grab).
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop();
    }
}
