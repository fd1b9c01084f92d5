//! The cameras as the core sees them: each one's latest frame (read from the mailbox its capture
//! thread writes), whether and how often it is captioned, and its health. Pure bookkeeping: the
//! core decides, the capture threads capture.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::camera::scene::SceneDetector;
use crate::camera::{CameraConfig, CameraState, Frame, Shared};
use crate::wire::health::CameraHealth;

/// The interval a camera gets when captions are switched on for one configured without them.
const FALLBACK_INTERVAL: Duration = Duration::from_secs(10);

/// A running camera's config and what its capture thread shares.
#[derive(Debug, Clone)]
pub struct CameraView {
    pub config: CameraConfig,
    pub shared: Arc<Shared>,
}

#[derive(Debug)]
struct Slot {
    view: CameraView,
    /// Periodic captions on (configured by `interval`, switched from MQTT).
    enabled: bool,
    interval: Duration,
    next_caption: Option<Instant>,
    scene: Option<SceneDetector>,
    /// A caption of this camera waits or runs: the next one is not queued behind it.
    busy: bool,
    captions: u64,
    /// A caption failed; later failures are logged quietly.
    failed_before: bool,
}

/// A periodic caption that is due.
#[derive(Debug)]
pub struct DueCaption {
    pub camera: usize,
    pub frame: Frame,
    pub prompt: String,
}

/// Totals over all cameras, for the health counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CameraTotals {
    pub captured: u64,
    pub dropped: u64,
    pub captions: u64,
}

#[derive(Debug)]
pub struct Cameras {
    slots: Vec<Slot>,
    /// The captioner's prompt, for cameras without one of their own.
    default_prompt: String,
}

impl Cameras {
    pub fn new(views: Vec<CameraView>, default_prompt: String, now: Instant) -> Self {
        let slots = views
            .into_iter()
            .map(|view| {
                let interval = view.config.interval;
                Slot {
                    enabled: interval.is_some(),
                    interval: interval.unwrap_or(FALLBACK_INTERVAL),
                    next_caption: interval.map(|i| now + i),
                    scene: view
                        .config
                        .caption_on_change
                        .then(|| SceneDetector::new(view.config.scene_threshold)),
                    view,
                    busy: false,
                    captions: 0,
                    failed_before: false,
                }
            })
            .collect();
        Self {
            slots,
            default_prompt,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn names(&self) -> Vec<&str> {
        self.slots
            .iter()
            .map(|s| s.view.config.name.as_str())
            .collect()
    }

    pub fn name(&self, i: usize) -> &str {
        &self.slots[i].view.config.name
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.view.config.name == name)
    }

    /// How many cameras are captioned periodically.
    pub fn periodic(&self) -> usize {
        self.slots.iter().filter(|s| s.enabled).count()
    }

    /// The caption prompt of camera `i`: its own, else the captioner's.
    pub fn prompt(&self, i: usize) -> String {
        self.slots[i]
            .view
            .config
            .prompt
            .clone()
            .unwrap_or_else(|| self.default_prompt.clone())
    }

    /// The latest frame of camera `i` for a request (see [`Self::why_no_frame`] if none).
    pub fn latest_frame(&self, i: usize) -> Option<Frame> {
        self.slots[i].view.shared.mailbox.latest()
    }

    /// Why camera `i` has no frame, as the requester is told.
    pub fn why_no_frame(&self, i: usize) -> String {
        let why = match self.slots[i].view.shared.state() {
            CameraState::Retrying { error, .. } => format!("it is retrying: {error}"),
            CameraState::Stopped => "it is stopped".to_string(),
            _ => "it is starting".to_string(),
        };
        format!(
            "camera {:?} has no frame yet ({why}); send \"image_b64\" or try again",
            self.name(i)
        )
    }

    /// When the next periodic caption is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|s| s.enabled)
            .filter_map(|s| s.next_caption)
            .min()
    }

    /// The captions due at `now`: each camera's newest unused frame, if it changed enough (with
    /// `caption_on_change`) and no caption of that camera is already waiting. Those returned are
    /// marked busy until [`Self::release`].
    pub fn take_due(&mut self, now: Instant) -> Vec<DueCaption> {
        let mut due = Vec::new();
        for i in 0..self.slots.len() {
            let prompt = self.prompt(i);
            let slot = &mut self.slots[i];
            let Some(at) = slot.next_caption.filter(|_| slot.enabled) else {
                continue;
            };
            if at > now {
                continue;
            }
            slot.next_caption = Some(now + slot.interval);
            if slot.busy {
                continue;
            }
            let Some(frame) = slot.view.shared.mailbox.take_new() else {
                continue;
            };
            if let Some(scene) = slot.scene.as_mut() {
                if !scene.changed(&frame.image) {
                    continue;
                }
            }
            slot.busy = true;
            due.push(DueCaption {
                camera: i,
                frame,
                prompt,
            });
        }
        due
    }

    /// Camera `i`'s caption finished or was dropped: the next one may be queued.
    pub fn release(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i) {
            slot.busy = false;
        }
    }

    /// Counts a published caption of camera `i`.
    pub fn captioned(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i) {
            slot.captions += 1;
        }
    }

    /// Notes a failed caption; `true` the first time (log it loudly), `false` after.
    pub fn note_failure(&mut self, i: usize) -> bool {
        self.slots
            .get_mut(i)
            .is_some_and(|s| !std::mem::replace(&mut s.failed_before, true))
    }

    pub fn enabled(&self, i: usize) -> bool {
        self.slots[i].enabled
    }

    pub fn interval(&self, i: usize) -> Duration {
        self.slots[i].interval
    }

    /// Switches periodic captions of camera `i` on or off; on, the first is due one interval on.
    pub fn set_enabled(&mut self, i: usize, on: bool, now: Instant) {
        let slot = &mut self.slots[i];
        if slot.enabled != on {
            slot.enabled = on;
            slot.next_caption = on.then(|| now + slot.interval);
        }
    }

    /// Sets the caption interval of camera `i`; the next caption is due one new interval on.
    pub fn set_interval(&mut self, i: usize, interval: Duration, now: Instant) {
        let slot = &mut self.slots[i];
        slot.interval = interval;
        if slot.enabled {
            slot.next_caption = Some(now + interval);
        }
    }

    /// Per camera, and the totals over all cameras.
    pub fn health(&self) -> (BTreeMap<String, CameraHealth>, CameraTotals) {
        let mut totals = CameraTotals::default();
        let cameras = self
            .slots
            .iter()
            .map(|s| {
                let shared = &s.view.shared;
                let (captured, dropped) = shared.mailbox.counts();
                totals.captured += captured;
                totals.dropped += dropped;
                totals.captions += s.captions;
                let (state, error, attempts) = match shared.state() {
                    CameraState::Starting => ("starting", None, None),
                    CameraState::Ok => ("ok", None, None),
                    CameraState::Retrying { error, attempts } => {
                        ("retrying", Some(error), Some(attempts))
                    }
                    CameraState::Stopped => ("stopped", None, None),
                };
                let health = CameraHealth {
                    source: s.view.config.source.to_string(),
                    state,
                    error,
                    attempts,
                    fps: s.view.config.fps,
                    captured,
                    dropped,
                    captions: s.captions,
                    captions_enabled: s.enabled,
                    interval_s: s.interval.as_secs_f64(),
                    last_frame_ts: shared.mailbox.latest_ts().map(unix_seconds),
                };
                (s.view.config.name.clone(), health)
            })
            .collect();
        (cameras, totals)
    }
}

/// Unix seconds with millisecond precision.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
}
