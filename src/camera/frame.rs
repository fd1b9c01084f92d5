//! A captured frame and the single-slot mailbox each camera writes into.
//!
//! Latest frame wins: a camera never queues frames for a consumer that is slower than it. Each
//! new frame replaces the one in the slot; if that one was never used, it counts as dropped.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use image::RgbImage;

#[derive(Debug, Clone)]
pub struct Frame {
    /// Shared: a frame goes to the model and stays the camera's latest without a copy.
    pub image: Arc<RgbImage>,
    /// Counts this camera's frames from 1 (restarts with the daemon).
    pub seq: u64,
    pub ts: SystemTime,
}

#[derive(Debug, Default)]
struct Slot {
    latest: Option<Frame>,
    /// The latest frame has not been used yet.
    unused: bool,
    captured: u64,
    dropped: u64,
}

#[derive(Debug, Default)]
pub struct Mailbox {
    slot: Mutex<Slot>,
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        // A panic while holding this lock cannot leave the counters half-updated in a way
        // that matters; keep serving rather than poisoning every later frame.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts a new frame in the slot, replacing (and counting as dropped) an unused one.
    pub fn put(&self, image: Arc<RgbImage>, ts: SystemTime) -> u64 {
        let mut s = self.lock();
        s.captured += 1;
        if s.unused {
            s.dropped += 1;
        }
        let seq = s.captured;
        s.latest = Some(Frame { image, seq, ts });
        s.unused = true;
        seq
    }

    /// The latest frame if nobody has used it yet, marking it used (periodic captions).
    pub fn take_new(&self) -> Option<Frame> {
        let mut s = self.lock();
        if !s.unused {
            return None;
        }
        s.unused = false;
        s.latest.clone()
    }

    /// The latest frame, new or not, marking it used (requests that ask about "now").
    pub fn latest(&self) -> Option<Frame> {
        let mut s = self.lock();
        s.unused = false;
        s.latest.clone()
    }

    /// (captured, dropped) so far.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.lock();
        (s.captured, s.dropped)
    }

    /// When the latest frame was taken, if there is one.
    pub fn latest_ts(&self) -> Option<SystemTime> {
        self.lock().latest.as_ref().map(|f| f.ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> Arc<RgbImage> {
        Arc::new(RgbImage::new(2, 2))
    }

    #[test]
    fn frames_overwritten_unused_count_as_dropped() {
        let m = Mailbox::default();
        assert!(m.take_new().is_none());
        m.put(img(), SystemTime::now());
        m.put(img(), SystemTime::now());
        m.put(img(), SystemTime::now());
        assert_eq!(m.counts(), (3, 2));
        let f = m.take_new().unwrap();
        assert_eq!(f.seq, 3);
        // Used: the next frame replaces it without a drop, and there is nothing new to take.
        assert!(m.take_new().is_none());
        m.put(img(), SystemTime::now());
        assert_eq!(m.counts(), (4, 2));
    }

    #[test]
    fn latest_serves_old_frames_and_marks_them_used() {
        let m = Mailbox::default();
        assert!(m.latest().is_none());
        m.put(img(), SystemTime::now());
        assert_eq!(m.latest().unwrap().seq, 1);
        assert_eq!(m.latest().unwrap().seq, 1);
        assert!(m.take_new().is_none());
        m.put(img(), SystemTime::now());
        assert_eq!(m.counts(), (2, 0));
    }
}
