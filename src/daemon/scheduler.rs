//! Admission and batching policy, kept free of I/O and clocks (the caller passes `now`) so it can
//! be tested exactly.
//!
//! - Bounded: at most `capacity` jobs wait; one more is refused (the caller answers `overloaded`).
//!   Periodic work may fill only half of it, so a camera backlog never locks out requests.
//! - Priorities: interactive jobs (MQTT requests) run before periodic ones (camera captions,
//!   canary evaluations); while any interactive job waits, no periodic batch starts.
//! - Dynamic batching: a batch holds jobs for one model (`key`) in arrival order. It starts when
//!   `max_batch` such jobs wait, or when the oldest has waited `max_wait`, or at once when
//!   draining for shutdown.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Interactive,
    Periodic,
}

impl Priority {
    fn index(self) -> usize {
        match self {
            Self::Interactive => 0,
            Self::Periodic => 1,
        }
    }
}

#[derive(Debug)]
struct Job<K, T> {
    key: K,
    enqueued: Instant,
    item: T,
}

/// Jobs for one model, taken together.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch<K, T> {
    pub key: K,
    pub priority: Priority,
    pub items: Vec<T>,
}

/// Why a job was refused; the job comes back so the caller can answer it.
#[derive(Debug, PartialEq, Eq)]
pub struct Overloaded<T>(pub T);

/// Waiting jobs of type `T`, for models named by keys of type `K`.
#[derive(Debug)]
pub struct Scheduler<K, T> {
    /// By [`Priority::index`].
    queues: [VecDeque<Job<K, T>>; 2],
    capacity: usize,
    max_batch: usize,
    max_wait: Duration,
}

impl<K: Copy + Eq, T> Scheduler<K, T> {
    /// `capacity` and `max_batch` of 0 are treated as 1.
    pub fn new(capacity: usize, max_batch: usize, max_wait: Duration) -> Self {
        Self {
            queues: [VecDeque::new(), VecDeque::new()],
            capacity: capacity.max(1),
            max_batch: max_batch.max(1),
            max_wait,
        }
    }

    /// Jobs waiting, all priorities.
    pub fn len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many jobs may wait, all priorities together.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn depth(&self, priority: Priority) -> usize {
        self.queues[priority.index()].len()
    }

    /// Whether a job of `priority` would be taken now.
    pub fn has_room(&self, priority: Priority) -> bool {
        let limit = match priority {
            Priority::Interactive => self.capacity,
            Priority::Periodic => (self.capacity / 2).max(1),
        };
        self.len() < self.capacity && self.depth(priority) < limit
    }

    /// Queues a job for model `key`, or refuses it when the queue is full.
    pub fn push(
        &mut self,
        key: K,
        priority: Priority,
        item: T,
        now: Instant,
    ) -> Result<(), Overloaded<T>> {
        if !self.has_room(priority) {
            return Err(Overloaded(item));
        }
        self.queues[priority.index()].push_back(Job {
            key,
            enqueued: now,
            item,
        });
        Ok(())
    }

    /// The queue whose head decides what runs next: the highest priority with work.
    fn head_queue(&self) -> Option<(Priority, &VecDeque<Job<K, T>>)> {
        [Priority::Interactive, Priority::Periodic]
            .into_iter()
            .map(|p| (p, &self.queues[p.index()]))
            .find(|(_, q)| !q.is_empty())
    }

    /// The batch to run now, if one is due. With `drain`, anything waiting is due.
    pub fn next_batch(&mut self, now: Instant, drain: bool) -> Option<Batch<K, T>> {
        let (priority, queue) = self.head_queue()?;
        let head = queue.front()?;
        let same_key = queue.iter().filter(|j| j.key == head.key).count();
        let due = drain
            || same_key >= self.max_batch
            || now.saturating_duration_since(head.enqueued) >= self.max_wait;
        if !due {
            return None;
        }
        let key = head.key;
        let queue = &mut self.queues[priority.index()];
        let mut items = Vec::with_capacity(same_key.min(self.max_batch));
        let mut rest = VecDeque::with_capacity(queue.len());
        for job in queue.drain(..) {
            if job.key == key && items.len() < self.max_batch {
                items.push(job.item);
            } else {
                rest.push_back(job);
            }
        }
        *queue = rest;
        Some(Batch {
            key,
            priority,
            items,
        })
    }

    /// When [`Self::next_batch`] will have a batch if nothing else arrives; `None` when empty.
    pub fn next_deadline(&self) -> Option<Instant> {
        let (_, queue) = self.head_queue()?;
        queue.front().map(|head| head.enqueued + self.max_wait)
    }

    /// Removes and returns every waiting job.
    pub fn drain_all(&mut self) -> Vec<T> {
        self.queues
            .iter_mut()
            .flat_map(|q| q.drain(..).map(|j| j.item))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(10);

    fn sched(capacity: usize, max_batch: usize) -> (Scheduler<&'static str, u32>, Instant) {
        (Scheduler::new(capacity, max_batch, WAIT), Instant::now())
    }

    #[test]
    fn a_full_batch_starts_at_once() {
        let (mut s, t0) = sched(100, 3);
        for i in 0..3 {
            s.push("a", Priority::Interactive, i, t0).unwrap();
        }
        let b = s.next_batch(t0, false).unwrap();
        assert_eq!(b.items, vec![0, 1, 2]);
        assert!(s.is_empty());
    }

    #[test]
    fn a_partial_batch_waits_for_max_wait() {
        let (mut s, t0) = sched(100, 4);
        s.push("a", Priority::Interactive, 1, t0).unwrap();
        s.push("a", Priority::Interactive, 2, t0 + Duration::from_millis(3))
            .unwrap();
        assert_eq!(s.next_batch(t0 + Duration::from_millis(5), false), None);
        assert_eq!(s.next_deadline(), Some(t0 + WAIT));
        let b = s.next_batch(t0 + WAIT, false).unwrap();
        assert_eq!(b.items, vec![1, 2]);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn draining_ignores_max_wait() {
        let (mut s, t0) = sched(100, 4);
        s.push("a", Priority::Interactive, 1, t0).unwrap();
        assert_eq!(s.next_batch(t0, true).unwrap().items, vec![1]);
    }

    #[test]
    fn batches_hold_one_model_and_keep_arrival_order() {
        let (mut s, t0) = sched(100, 2);
        for (k, i) in [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("b", 5)] {
            s.push(k, Priority::Interactive, i, t0).unwrap();
        }
        let later = t0 + WAIT;
        let got: Vec<_> = std::iter::from_fn(|| s.next_batch(later, false))
            .map(|b| (b.key, b.items))
            .collect();
        assert_eq!(
            got,
            vec![("a", vec![1, 3]), ("b", vec![2, 5]), ("a", vec![4])]
        );
    }

    #[test]
    fn interactive_work_goes_before_periodic() {
        let (mut s, t0) = sched(100, 8);
        s.push("cap", Priority::Periodic, 1, t0).unwrap();
        s.push("a", Priority::Interactive, 2, t0 + Duration::from_millis(5))
            .unwrap();
        // The periodic job is overdue, but an interactive one waits: nothing periodic starts.
        assert_eq!(s.next_batch(t0 + WAIT, false), None);
        let b = s.next_batch(t0 + Duration::from_millis(15), false).unwrap();
        assert_eq!((b.priority, b.items), (Priority::Interactive, vec![2]));
        let b = s.next_batch(t0 + Duration::from_millis(15), false).unwrap();
        assert_eq!((b.priority, b.items), (Priority::Periodic, vec![1]));
    }

    #[test]
    fn a_full_queue_refuses_and_returns_the_job() {
        let (mut s, t0) = sched(2, 8);
        s.push("a", Priority::Interactive, 1, t0).unwrap();
        s.push("a", Priority::Interactive, 2, t0).unwrap();
        assert_eq!(
            s.push("a", Priority::Interactive, 3, t0),
            Err(Overloaded(3))
        );
        s.next_batch(t0 + WAIT, false).unwrap();
        s.push("a", Priority::Interactive, 4, t0).unwrap();
    }

    #[test]
    fn periodic_work_fills_at_most_half_the_queue() {
        let (mut s, t0) = sched(4, 8);
        s.push("cap", Priority::Periodic, 1, t0).unwrap();
        s.push("cap", Priority::Periodic, 2, t0).unwrap();
        assert_eq!(s.push("cap", Priority::Periodic, 3, t0), Err(Overloaded(3)));
        s.push("a", Priority::Interactive, 4, t0).unwrap();
        s.push("a", Priority::Interactive, 5, t0).unwrap();
        assert_eq!(s.depth(Priority::Interactive), 2);
        assert_eq!(s.drain_all().len(), 4);
    }
}
