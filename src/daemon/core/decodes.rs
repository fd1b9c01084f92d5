//! Uploaded images on their way to the model: each request's image (`image_b64`, an HTTP upload) is decoded by a worker
//! off the loop, at most [`MAX_DECODING`] at once, the rest waiting in arrival order.

use std::collections::{HashMap, VecDeque};

use crate::daemon::jobs::JobId;
use crate::wire::requests::Upload;

/// Images decoded at once; more wait their turn.
pub const MAX_DECODING: usize = 2;

/// What a vision request keeps while its image is decoded.
#[derive(Debug)]
pub struct AwaitingImage {
    pub prompt: String,
    pub choices: Option<Vec<String>>,
}

#[derive(Debug, Default)]
pub struct Decodes {
    awaiting: HashMap<JobId, AwaitingImage>,
    queue: VecDeque<(JobId, Upload)>,
    running: usize,
}

impl Decodes {
    /// Images waiting for a worker.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    pub fn push(&mut self, job: JobId, image: Upload, awaiting: AwaitingImage) {
        self.awaiting.insert(job, awaiting);
        self.queue.push_back((job, image));
    }

    /// The images to hand to workers now.
    pub fn start(&mut self) -> Vec<(JobId, Upload)> {
        let mut out = Vec::new();
        while self.running < MAX_DECODING {
            let Some(next) = self.queue.pop_front() else {
                break;
            };
            self.running += 1;
            out.push(next);
        }
        out
    }

    /// A worker finished `job`; what the request kept, unless it was forgotten meanwhile.
    pub fn finished(&mut self, job: JobId) -> Option<AwaitingImage> {
        self.running = self.running.saturating_sub(1);
        self.awaiting.remove(&job)
    }

    pub fn forget(&mut self, job: JobId) {
        self.awaiting.remove(&job);
        self.queue.retain(|(j, _)| *j != job);
    }

    pub fn clear(&mut self) {
        self.awaiting.clear();
        self.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> AwaitingImage {
        AwaitingImage {
            prompt: String::new(),
            choices: None,
        }
    }

    #[test]
    fn at_most_two_decode_at_once_in_arrival_order() {
        let mut d = Decodes::default();
        for i in 1..=3 {
            d.push(JobId(i), Upload::Base64(format!("b{i}")), kept());
        }
        let started: Vec<u64> = d.start().iter().map(|(j, _)| j.0).collect();
        assert_eq!(started, vec![1, 2]);
        assert!(d.start().is_empty());
        assert!(d.finished(JobId(1)).is_some());
        assert_eq!(d.start()[0].0, JobId(3));
        d.forget(JobId(2));
        assert!(d.finished(JobId(2)).is_none());
    }
}
