//! The vision side of the core: caption and VQA requests (a camera's latest frame, or an
//! uploaded image decoded off the loop), and the cameras' periodic captions.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::daemon::jobs::{Answer, BatchKey, Input, JobError, JobId, VisionInput};
use crate::daemon::metrics::round;
use crate::daemon::scheduler::Priority;
use crate::wire::requests::VisionRequest;
use crate::wire::results::CameraCaption;
use crate::wire::ErrorCode;

use super::answers::{retained_message, AnswerSpec};
use super::cameras::unix_seconds;
use super::decodes::AwaitingImage;
use super::events::Action;
use super::records::{JobKind, RequestJob};
use super::routing::{plan_vision, ImageFrom, VisionContext};
use super::Core;

impl Core {
    pub(super) fn accept_vision(&mut self, mut job: RequestJob, r: VisionRequest, now: Instant) {
        let choices = r.choices.clone();
        let question = r.question.clone();
        let cx = VisionContext {
            cameras: &self.cameras,
            templates: &self.templates,
            default_prompt: &self.captioner_config.prompt,
            max_prompt_tokens: self.captioner.max_prompt_tokens,
        };
        let plan = match plan_vision(r, &cx) {
            Ok(plan) => plan,
            Err((code, message)) => return self.refuse(job, code, message),
        };
        let camera_name = plan.camera.map(|i| self.cameras.name(i).to_string());
        let mut seq = None;
        let frame = match plan.image {
            ImageFrom::Camera(i) => match self.cameras.latest_frame(i) {
                Some(frame) => {
                    seq = Some(frame.seq);
                    Some(frame)
                }
                None => {
                    let message = self.cameras.why_no_frame(i);
                    return self.refuse(job, ErrorCode::CameraUnavailable, message);
                }
            },
            ImageFrom::Upload(_) => None,
        };
        job.spec = AnswerSpec::Vision {
            task: job.task,
            question,
            prompt: plan.prompt.clone(),
            camera: camera_name,
            seq,
        };
        match (frame, plan.image) {
            (Some(frame), _) => {
                let id = self.new_job(now, JobKind::Request(job));
                self.admit_vision(id, frame.image, plan.prompt, choices, now);
            }
            (None, ImageFrom::Upload(upload)) => {
                if self.decodes.waiting() >= self.jobs.capacity() {
                    self.metrics.overloaded += 1;
                    return self.refuse(
                        job,
                        ErrorCode::Overloaded,
                        "too many images are waiting to be decoded; send it again later".into(),
                    );
                }
                let id = self.new_job(now, JobKind::Request(job));
                let keep = AwaitingImage {
                    prompt: plan.prompt,
                    choices,
                };
                self.decodes.push(id, upload, keep);
                self.start_decodes();
            }
            (None, ImageFrom::Camera(_)) => {}
        }
    }

    /// A vision job with its image: to the scheduler, or answered at once without a captioner.
    fn admit_vision(
        &mut self,
        id: JobId,
        image: Arc<image::RgbImage>,
        prompt: String,
        choices: Option<Vec<String>>,
        now: Instant,
    ) {
        if !self.captioner.is_loaded() {
            let why = self
                .captioner
                .state
                .reason()
                .unwrap_or("not loaded")
                .to_string();
            return self.finish(id, Err(JobError::Unavailable(why)), now);
        }
        let input = Input::Vision(VisionInput {
            image,
            prompt,
            max_new_tokens: self.captioner_config.max_new_tokens,
            choices,
        });
        self.admit(BatchKey::Vision, Priority::Interactive, id, input);
    }

    /// Hands waiting images to decoding workers.
    fn start_decodes(&mut self) {
        for (job, image) in self.decodes.start() {
            self.actions.push(Action::Decode { job, image });
        }
    }

    pub(super) fn on_decoded(
        &mut self,
        job: JobId,
        image: Result<image::RgbImage, String>,
        now: Instant,
    ) {
        let waiting = self.decodes.finished(job);
        self.start_decodes();
        let Some(waiting) = waiting else {
            return;
        };
        match image {
            Ok(image) => {
                self.admit_vision(job, Arc::new(image), waiting.prompt, waiting.choices, now)
            }
            Err(message) => self.fail_job(job, ErrorCode::ImageDecodeFailed, &message),
        }
    }

    pub(super) fn on_camera_caption(
        &mut self,
        camera: usize,
        seq: u64,
        ts: SystemTime,
        latency_ms: f64,
        outcome: Result<Answer, JobError>,
    ) {
        let name = self.cameras.name(camera).to_string();
        match outcome {
            Ok(Answer::Vision(answer)) => {
                self.cameras.captioned(camera);
                let caption = CameraCaption {
                    camera: name.clone(),
                    seq,
                    ts: unix_seconds(ts),
                    caption: answer.text,
                    latency_ms: round(latency_ms),
                    model: self.captioner_name.clone(),
                };
                // Retained: the latest caption is what a newly subscribed dashboard should see.
                if let Some(msg) = retained_message(&self.topics.camera_caption(&name), &caption) {
                    self.actions.push(Action::Publish { msg, ack: None });
                }
            }
            Ok(_) => tracing::error!("camera {name:?}: the engine gave no caption"),
            Err(e) => {
                if self.cameras.note_failure(camera) {
                    tracing::warn!("camera {name:?}: caption failed: {e}");
                } else {
                    tracing::debug!("camera {name:?}: caption failed: {e}");
                }
            }
        }
    }

    /// Queues the periodic captions that are due.
    pub(super) fn periodic_captions(&mut self, now: Instant) {
        if !self.captions_on() {
            return;
        }
        for due in self.cameras.take_due(now) {
            let id = self.new_job(
                now,
                JobKind::Caption {
                    camera: due.camera,
                    seq: due.frame.seq,
                    ts: due.frame.ts,
                },
            );
            let input = Input::Vision(VisionInput {
                image: due.frame.image,
                prompt: due.prompt,
                max_new_tokens: self.captioner_config.max_new_tokens,
                choices: None,
            });
            self.admit(BatchKey::Vision, Priority::Periodic, id, input);
        }
    }
}
