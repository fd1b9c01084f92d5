//! Caption and VQA requests, periodic camera captions and Home Assistant discovery, as part of
//! the [`Dispatcher`].
//!
//! A request is parsed on the loop (cheap); its `image_b64` is base64- and image-decoded on a
//! blocking worker, never on the loop, and comes back as a [`Prepared`]. A request without an
//! image uses its camera's latest frame. Both then wait in the scheduler at interactive priority;
//! periodic captions wait at the periodic one, at most one per camera at a time.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use image::RgbImage;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{result_message, Dispatcher, Job, Pending, ReplyTo};
use crate::camera::decode::decode_image;
use crate::camera::scene::SceneDetector;
use crate::camera::{Camera, CameraState};
use crate::config::{CaptionerConfig, HomeAssistantConfig};
use crate::daemon::engine::{ModelState, ModelStatus};
use crate::daemon::metrics::round;
use crate::daemon::scheduler::Priority;
use crate::daemon::vision::{model_name, VisionAnswer, VisionError, VisionInput};
use crate::mqtt::homeassistant;
use crate::mqtt::topics::{ErrorCode, ErrorReply, Task};
use crate::mqtt::vision::{
    parse_vision_request, CameraCaption, CameraHealth, VisionRequest, VisionResult,
};

/// The scheduler key of every caption and VQA job (classifier keys start with `classify/`).
pub const VISION_KEY: &str = "vision";
/// Images decoded at once; more wait their turn in a queue as long as the scheduler's.
const MAX_DECODING: usize = 2;

/// What the daemon hands the dispatcher for vision work.
pub struct VisionSetup {
    pub cameras: Vec<Camera>,
    pub captioner: ModelStatus,
    pub captioner_config: CaptionerConfig,
    pub templates: BTreeMap<String, String>,
    pub homeassistant: HomeAssistantConfig,
    /// Where decoding workers send their requests back.
    pub prepared: mpsc::UnboundedSender<Prepared>,
}

/// A request whose image was decoded (or failed to).
pub struct Prepared(Result<Pending, (ReplyTo, ErrorReply)>);

#[derive(Debug)]
pub(super) struct VisionJob {
    pub input: VisionInput,
    origin: Origin,
    camera: Option<String>,
    seq: Option<u64>,
}

#[derive(Debug)]
enum Origin {
    Request {
        id: Value,
        task: Task,
        question: Option<String>,
        reply: ReplyTo,
    },
    /// A camera's periodic caption, from the frame captured at `ts`.
    Periodic { ts: SystemTime },
}

struct CamSlot {
    camera: Camera,
    next_caption: Option<Instant>,
    scene: Option<SceneDetector>,
    /// A caption of this camera waits or runs: the next one is not queued behind it.
    busy: bool,
    captions: u64,
    /// A caption failed; later failures are logged quietly.
    failed_before: bool,
}

/// A request waiting for an image decoding worker.
struct DecodeTask {
    b64: String,
    received: Instant,
    job: VisionJob,
}

pub(super) struct VisionState {
    slots: Vec<CamSlot>,
    pub captioner: ModelStatus,
    model: String,
    config: CaptionerConfig,
    templates: BTreeMap<String, String>,
    homeassistant: HomeAssistantConfig,
    prepared: mpsc::UnboundedSender<Prepared>,
    waiting: VecDeque<DecodeTask>,
    decoding: usize,
    /// The last health sample had a temperature (Home Assistant gets a sensor for it).
    pub has_temperature: bool,
}

impl VisionState {
    pub fn new(setup: VisionSetup) -> Self {
        let loaded = setup.captioner.state == ModelState::Loaded;
        let periodic = setup
            .cameras
            .iter()
            .filter(|c| c.config.interval.is_some())
            .count();
        if !loaded && periodic > 0 {
            // Said once here; the cameras then simply publish no captions.
            tracing::warn!(
                "periodic captions of {periodic} camera(s) are off until the captioner is installed (`landfall models pull`)"
            );
        }
        let now = Instant::now();
        let slots = setup
            .cameras
            .into_iter()
            .map(|camera| CamSlot {
                next_caption: camera.config.interval.map(|i| now + i),
                scene: camera
                    .config
                    .caption_on_change
                    .then(|| SceneDetector::new(camera.config.scene_threshold)),
                camera,
                busy: false,
                captions: 0,
                failed_before: false,
            })
            .collect();
        Self {
            slots,
            model: model_name(&setup.captioner_config.model),
            captioner: setup.captioner,
            config: setup.captioner_config,
            templates: setup.templates,
            homeassistant: setup.homeassistant,
            prepared: setup.prepared,
            waiting: VecDeque::new(),
            decoding: 0,
            has_temperature: false,
        }
    }

    pub fn decodes_done(&self) -> bool {
        self.decoding == 0 && self.waiting.is_empty()
    }

    /// Per camera, then frames captured, dropped and captions published over all cameras.
    pub fn camera_health(&self) -> (BTreeMap<String, CameraHealth>, u64, u64, u64) {
        let (mut captured, mut dropped, mut captions) = (0, 0, 0);
        let cameras = self
            .slots
            .iter()
            .map(|s| {
                let (c, d) = s.camera.shared.mailbox.counts();
                captured += c;
                dropped += d;
                captions += s.captions;
                let (state, error, attempts) = match s.camera.shared.state() {
                    CameraState::Starting => ("starting", None, None),
                    CameraState::Ok => ("ok", None, None),
                    CameraState::Retrying { error, attempts } => {
                        ("retrying", Some(error), Some(attempts))
                    }
                    CameraState::Stopped => ("stopped", None, None),
                };
                let health = CameraHealth {
                    source: s.camera.config.source.to_string(),
                    state,
                    error,
                    attempts,
                    fps: s.camera.config.fps,
                    captured: c,
                    dropped: d,
                    captions: s.captions,
                    last_frame_ts: s.camera.shared.mailbox.latest_ts().map(unix_seconds),
                };
                (s.camera.name().to_string(), health)
            })
            .collect();
        (cameras, captured, dropped, captions)
    }

    /// Takes the cameras out, for stopping them off the async loop.
    pub fn take_cameras(&mut self) -> Vec<Camera> {
        self.slots.drain(..).map(|s| s.camera).collect()
    }

    /// The prompt of a request, or why it has none (answered `invalid_field`).
    fn prompt_for(&self, req: &VisionRequest, camera: Option<&str>) -> Result<String, String> {
        if let Some(p) = &req.prompt {
            return Ok(p.clone());
        }
        match req.task {
            Task::Vqa => {
                let name = req.template.as_deref().unwrap_or(if req.choices.is_some() {
                    "choices"
                } else {
                    "vqa"
                });
                let template = self.templates.get(name).ok_or_else(|| {
                    let known: Vec<&str> = self.templates.keys().map(String::as_str).collect();
                    format!("no template {name:?} here; this device has {known:?}")
                })?;
                let vars = crate::prompts::PromptVars {
                    question: req.question.as_deref(),
                    camera: Some(camera.unwrap_or("image")),
                    choices: req.choices.as_deref(),
                };
                crate::prompts::render(name, template, &vars).map_err(|e| e.to_string())
            }
            _ => Ok(camera
                .and_then(|c| self.slots.iter().find(|s| s.camera.name() == c))
                .and_then(|s| s.camera.config.prompt.clone())
                .unwrap_or_else(|| self.config.prompt.clone())),
        }
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// `image_b64` to RGB: standard base64 (padding optional, line breaks and a `data:` URL prefix
/// allowed), then the image.
pub fn decode_b64_image(b64: &str) -> Result<RgbImage, String> {
    let data = b64.trim();
    let data = match data.strip_prefix("data:") {
        Some(rest) => rest.split_once(',').map_or(rest, |(_, d)| d),
        None => data,
    };
    let compact: String;
    let data = if data.contains(char::is_whitespace) {
        compact = data.split_whitespace().collect();
        compact.as_str()
    } else {
        data
    };
    let bytes = STANDARD
        .decode(data)
        .or_else(|_| STANDARD_NO_PAD.decode(data))
        .map_err(|e| format!("\"image_b64\" is not valid base64: {e}"))?;
    decode_image(&bytes)
}

impl Dispatcher {
    pub(super) fn on_vision_request(
        &mut self,
        task: Task,
        payload: &[u8],
        reply: ReplyTo,
        received: Instant,
    ) {
        let req = match parse_vision_request(payload, self.max_payload, task) {
            Ok(r) => r,
            Err(e) => return self.reply_error(&reply, e),
        };
        let fail = |code, message: String| ErrorReply::new(req.id.clone(), code, message);
        if self.draining {
            let e = fail(
                ErrorCode::Overloaded,
                "this device is shutting down; send the request again".into(),
            );
            return self.reply_error(&reply, e);
        }
        let names: Vec<&str> = self.vision.slots.iter().map(|s| s.camera.name()).collect();
        let slot = match &req.camera {
            Some(name) => match names.iter().position(|n| n == name) {
                Some(i) => Some(i),
                None => {
                    let e = fail(
                        ErrorCode::UnknownCamera,
                        format!("no camera {name:?} here; this device has {names:?}"),
                    );
                    return self.reply_error(&reply, e);
                }
            },
            None if req.image_b64.is_some() => None,
            None if names.is_empty() => {
                let e = fail(
                    ErrorCode::MissingField,
                    "\"image_b64\" is required: this device has no cameras to take a frame from"
                        .into(),
                );
                return self.reply_error(&reply, e);
            }
            // The first configured camera is the default.
            None => Some(0),
        };
        let camera = slot.map(|i| self.vision.slots[i].camera.name().to_string());
        let prompt = match self.vision.prompt_for(&req, camera.as_deref()) {
            Ok(p) => p,
            Err(message) => {
                return self.reply_error(&reply, fail(ErrorCode::InvalidField, message))
            }
        };
        let origin = Origin::Request {
            id: req.id.clone(),
            task,
            question: req.question.clone(),
            reply,
        };
        let mut job = VisionJob {
            // Filled in from the frame or the decoded image below.
            input: VisionInput {
                image: std::sync::Arc::new(RgbImage::new(0, 0)),
                prompt,
                max_new_tokens: self.vision.config.max_new_tokens,
                choices: req.choices.clone(),
            },
            origin,
            camera,
            seq: None,
        };
        if let Some(b64) = req.image_b64 {
            if self.vision.waiting.len() >= self.scheduler_capacity() {
                self.metrics.overloaded += 1;
                return self.refuse_vision(
                    job,
                    ErrorCode::Overloaded,
                    "too many images are waiting to be decoded; send it again later",
                );
            }
            self.vision
                .waiting
                .push_back(DecodeTask { b64, received, job });
            return self.start_decodes();
        }
        let Some(i) = slot else { return };
        let cam = &self.vision.slots[i].camera;
        let Some(frame) = cam.shared.mailbox.latest() else {
            let why = match cam.shared.state() {
                CameraState::Retrying { error, .. } => format!("it is retrying: {error}"),
                CameraState::Stopped => "it is stopped".to_string(),
                _ => "it is starting".to_string(),
            };
            let message = format!(
                "camera {:?} has no frame yet ({why}); send \"image_b64\" or try again",
                cam.name()
            );
            return self.refuse_vision(job, ErrorCode::CameraUnavailable, &message);
        };
        job.input.image = frame.image;
        job.seq = Some(frame.seq);
        let pending = Pending {
            received,
            job: Job::Vision(job),
        };
        self.admit(VISION_KEY, Priority::Interactive, pending);
    }

    fn scheduler_capacity(&self) -> usize {
        self.scheduler.capacity()
    }

    /// Hands waiting images to blocking workers, at most [`MAX_DECODING`] at once.
    fn start_decodes(&mut self) {
        while self.vision.decoding < MAX_DECODING {
            let Some(task) = self.vision.waiting.pop_front() else {
                return;
            };
            self.vision.decoding += 1;
            let tx = self.vision.prepared.clone();
            tokio::task::spawn_blocking(move || {
                let DecodeTask {
                    b64,
                    received,
                    mut job,
                } = task;
                let outcome = match decode_b64_image(&b64) {
                    Ok(image) => {
                        job.input.image = std::sync::Arc::new(image);
                        Ok(Pending {
                            received,
                            job: Job::Vision(job),
                        })
                    }
                    Err(message) => match job.origin {
                        Origin::Request { id, reply, .. } => Err((
                            reply,
                            ErrorReply::new(id, ErrorCode::ImageDecodeFailed, message),
                        )),
                        // Only requests carry images.
                        Origin::Periodic { .. } => return,
                    },
                };
                let _ = tx.send(Prepared(outcome));
            });
        }
    }

    /// A decoding worker finished.
    pub fn on_prepared(&mut self, prepared: Prepared) {
        self.vision.decoding = self.vision.decoding.saturating_sub(1);
        match prepared.0 {
            Ok(pending) => self.admit(VISION_KEY, Priority::Interactive, pending),
            Err((reply, e)) => self.reply_error(&reply, e),
        }
        self.start_decodes();
    }

    /// Images not yet decoded when stopping: answered like other unfinished work.
    pub(super) fn abandon_decodes(&mut self) {
        let waiting: Vec<DecodeTask> = self.vision.waiting.drain(..).collect();
        for t in waiting {
            self.refuse_vision(
                t.job,
                ErrorCode::Overloaded,
                "this device stopped before running the request; send it again",
            );
        }
    }

    pub(super) fn refuse_vision(&mut self, job: VisionJob, code: ErrorCode, message: &str) {
        match job.origin {
            Origin::Request { id, reply, .. } => {
                self.reply_error(&reply, ErrorReply::new(id, code, message.to_string()));
            }
            Origin::Periodic { .. } => {
                tracing::debug!("caption of camera {:?} not run: {message}", job.camera);
                self.release_camera(job.camera.as_deref());
            }
        }
    }

    fn release_camera(&mut self, camera: Option<&str>) -> Option<&mut CamSlot> {
        let slot = self
            .vision
            .slots
            .iter_mut()
            .find(|s| Some(s.camera.name()) == camera)?;
        slot.busy = false;
        Some(slot)
    }

    pub(super) fn on_vision_done(
        &mut self,
        items: Vec<Pending>,
        outcomes: Vec<Result<VisionAnswer, VisionError>>,
    ) {
        for (p, outcome) in items.into_iter().zip(outcomes) {
            let latency_ms = p.received.elapsed().as_secs_f64() * 1000.0;
            let Job::Vision(job) = p.job else {
                continue;
            };
            match job.origin {
                Origin::Request {
                    id,
                    task,
                    question,
                    reply,
                } => {
                    self.metrics.record_latency(task.as_str(), latency_ms);
                    match outcome {
                        Ok(answer) => {
                            let scores = answer.scores.map(|s| {
                                let (labels, probs): (Vec<String>, Vec<f32>) =
                                    s.into_iter().unzip();
                                crate::json::LabelScores::new(&labels, &probs)
                            });
                            let (caption, answer) = match task {
                                Task::Vqa => (None, Some(answer.text)),
                                _ => (Some(answer.text), None),
                            };
                            let result = VisionResult {
                                id,
                                caption,
                                question,
                                answer,
                                prompt: job.input.prompt,
                                camera: job.camera,
                                seq: job.seq,
                                latency_ms: round(latency_ms),
                                model: self.vision.model.clone(),
                                scores,
                            };
                            let payload = serde_json::to_string(&result).unwrap_or_default();
                            self.push(result_message(&reply, payload));
                        }
                        Err(VisionError::Unavailable(reason)) => {
                            let e = ErrorReply::new(
                                id,
                                ErrorCode::ModelUnavailable,
                                format!("the captioner is not available: {reason}"),
                            );
                            self.reply_error(&reply, e);
                        }
                        Err(VisionError::Failed(reason)) => {
                            tracing::error!("the captioner failed on request {id}: {reason}");
                            let e = ErrorReply::new(
                                id,
                                ErrorCode::Internal,
                                format!("the model failed: {reason}"),
                            );
                            self.reply_error(&reply, e);
                        }
                    }
                }
                Origin::Periodic { ts } => {
                    self.metrics.record_latency("camera_caption", latency_ms);
                    self.on_camera_caption(job.camera, job.seq, ts, latency_ms, outcome);
                }
            }
        }
    }

    fn on_camera_caption(
        &mut self,
        camera: Option<String>,
        seq: Option<u64>,
        ts: SystemTime,
        latency_ms: f64,
        outcome: Result<VisionAnswer, VisionError>,
    ) {
        let model = self.vision.model.clone();
        let Some(name) = camera else { return };
        let Some(slot) = self.release_camera(Some(&name)) else {
            return;
        };
        match outcome {
            Ok(answer) => {
                slot.captions += 1;
                let caption = CameraCaption {
                    camera: name.clone(),
                    seq: seq.unwrap_or_default(),
                    ts: unix_seconds(ts),
                    caption: answer.text,
                    latency_ms: round(latency_ms),
                    model,
                };
                let payload = serde_json::to_string(&caption).unwrap_or_default();
                let to = ReplyTo {
                    topic: self.topics.camera_caption(&name),
                    correlation_data: None,
                };
                let mut msg = result_message(&to, payload);
                // The latest caption is what a newly subscribed dashboard should see.
                msg.retain = true;
                self.push(msg);
            }
            Err(VisionError::Unavailable(reason) | VisionError::Failed(reason)) => {
                if slot.failed_before {
                    tracing::debug!("camera {name:?}: caption failed: {reason}");
                } else {
                    slot.failed_before = true;
                    tracing::warn!("camera {name:?}: caption failed: {reason}");
                }
            }
        }
    }

    /// When the next periodic caption is due; `None` without a captioner or cameras to caption.
    pub fn caption_deadline(&self) -> Option<Instant> {
        if self.vision.captioner.state != ModelState::Loaded || self.draining {
            return None;
        }
        self.vision
            .slots
            .iter()
            .filter_map(|s| s.next_caption)
            .min()
    }

    /// Queues the periodic captions that are due: the camera's newest unused frame, if it changed
    /// enough (with `caption_on_change`) and no caption of that camera is already waiting.
    pub fn periodic_captions(&mut self, now: Instant) {
        if self.caption_deadline().is_none_or(|d| d > now) {
            return;
        }
        let max_new_tokens = self.vision.config.max_new_tokens;
        for i in 0..self.vision.slots.len() {
            let prompt = self.vision.prompt_for_camera(i);
            let slot = &mut self.vision.slots[i];
            let (Some(due), Some(interval)) = (slot.next_caption, slot.camera.config.interval)
            else {
                continue;
            };
            if due > now {
                continue;
            }
            slot.next_caption = Some(now + interval);
            if slot.busy {
                continue;
            }
            let Some(frame) = slot.camera.shared.mailbox.take_new() else {
                continue;
            };
            if let Some(scene) = slot.scene.as_mut() {
                if !scene.changed(&frame.image) {
                    continue;
                }
            }
            slot.busy = true;
            let job = VisionJob {
                input: VisionInput {
                    image: frame.image,
                    prompt,
                    max_new_tokens,
                    choices: None,
                },
                origin: Origin::Periodic { ts: frame.ts },
                camera: Some(slot.camera.name().to_string()),
                seq: Some(frame.seq),
            };
            let pending = Pending {
                received: now,
                job: Job::Vision(job),
            };
            self.admit(VISION_KEY, Priority::Periodic, pending);
        }
    }

    /// Retained discovery configs, when Home Assistant discovery is on and the broker is there.
    pub(super) fn publish_discovery(&mut self) {
        if !self.vision.homeassistant.enabled || !self.outbox.is_connected() {
            return;
        }
        let cameras: Vec<String> = self
            .vision
            .slots
            .iter()
            .map(|s| s.camera.name().to_string())
            .collect();
        let msgs = homeassistant::discovery(
            &self.vision.homeassistant.discovery_prefix,
            &self.topics,
            &self.device_id,
            &cameras,
            self.vision.has_temperature,
        );
        for m in msgs {
            self.push(m);
        }
    }

    /// The cameras, for stopping them off the async loop.
    pub fn take_cameras(&mut self) -> Vec<Camera> {
        self.vision.take_cameras()
    }
}

impl VisionState {
    fn prompt_for_camera(&self, i: usize) -> String {
        self.slots[i]
            .camera
            .config
            .prompt
            .clone()
            .unwrap_or_else(|| self.config.prompt.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_b64() -> String {
        let mut bytes = Vec::new();
        RgbImage::from_pixel(3, 2, image::Rgb([9, 8, 7]))
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .unwrap();
        STANDARD.encode(bytes)
    }

    #[test]
    fn decodes_base64_images_in_the_usual_spellings() {
        let b64 = png_b64();
        assert_eq!(decode_b64_image(&b64).unwrap().dimensions(), (3, 2));
        let wrapped: String = b64
            .as_bytes()
            .chunks(10)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        assert!(decode_b64_image(&wrapped).is_ok());
        assert!(decode_b64_image(&format!("data:image/png;base64,{b64}")).is_ok());
        assert!(decode_b64_image(b64.trim_end_matches('=')).is_ok());
        assert!(decode_b64_image("***")
            .unwrap_err()
            .contains("not valid base64"));
        assert!(decode_b64_image(&STANDARD.encode(b"not an image"))
            .unwrap_err()
            .contains("not an image"));
    }
}
