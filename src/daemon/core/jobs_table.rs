//! Where every job is between admission and its answer: the record of each (its requester and
//! when it arrived), the scheduler's queues, the broker requests parked while the queues are
//! full, and the batches the engine holds. A job leaves exactly once, through [`JobTable::take`]
//! or one of the calls that hand jobs back, so it is answered exactly once.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::daemon::jobs::{BatchId, BatchKey, Input, JobId, Work};
use crate::daemon::scheduler::{Priority, Scheduler};

/// What waits in the scheduler: a job and its model input.
#[derive(Debug)]
pub struct Queued {
    job: JobId,
    input: Input,
}

/// What the table knows of a job; `T` is the core's record of it.
#[derive(Debug)]
pub struct Entry<T> {
    pub received: Instant,
    pub record: T,
    /// The broker holds it unacknowledged: it may wait parked rather than be refused.
    pub broker_held: bool,
}

/// A job the queues could not take.
#[derive(Debug, PartialEq, Eq)]
pub struct Full(pub JobId);

#[derive(Debug)]
pub struct JobTable<T> {
    entries: HashMap<JobId, Entry<T>>,
    scheduler: Scheduler<BatchKey, Queued>,
    parked: VecDeque<(BatchKey, Queued)>,
    park_limit: usize,
    in_engine: HashMap<BatchId, Vec<JobId>>,
    engine_slots: usize,
    next_job: u64,
    next_batch: u64,
}

impl<T> JobTable<T> {
    pub fn new(
        capacity: usize,
        max_batch: usize,
        max_wait: Duration,
        park_limit: usize,
        engine_slots: usize,
    ) -> Self {
        Self {
            entries: HashMap::new(),
            scheduler: Scheduler::new(capacity, max_batch, max_wait),
            parked: VecDeque::new(),
            park_limit,
            in_engine: HashMap::new(),
            engine_slots: engine_slots.max(1),
            next_job: 0,
            next_batch: 0,
        }
    }

    /// Records a new job.
    pub fn create(&mut self, record: T, received: Instant, broker_held: bool) -> JobId {
        self.next_job += 1;
        let id = JobId(self.next_job);
        self.entries.insert(
            id,
            Entry {
                received,
                record,
                broker_held,
            },
        );
        id
    }

    pub fn get_mut(&mut self, id: JobId) -> Option<&mut Entry<T>> {
        self.entries.get_mut(&id)
    }

    pub fn contains(&self, id: JobId) -> bool {
        self.entries.contains_key(&id)
    }

    /// Removes a job; its record comes back to be answered.
    pub fn take(&mut self, id: JobId) -> Option<Entry<T>> {
        self.entries.remove(&id)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.scheduler.capacity()
    }

    /// Whether a new interactive job would be queued now (none parked ahead of it).
    pub fn has_room(&self) -> bool {
        self.parked.is_empty() && self.scheduler.has_room(Priority::Interactive)
    }

    /// Queues a recorded job for the engine. A broker-held job that finds the queues full is
    /// parked (up to the park limit); otherwise it comes back as [`Full`] to be refused.
    pub fn admit(
        &mut self,
        key: BatchKey,
        priority: Priority,
        job: JobId,
        input: Input,
    ) -> Result<(), Full> {
        let Some(entry) = self.entries.get(&job) else {
            return Ok(());
        };
        let (received, held) = (entry.received, entry.broker_held);
        let queued = Queued { job, input };
        let Err(back) = self.scheduler.push(key, priority, queued, received) else {
            return Ok(());
        };
        if held && self.parked.len() < self.park_limit {
            self.parked.push_back((key, back.0));
            return Ok(());
        }
        Err(Full(job))
    }

    /// When a batch will be due, if the engine has room for one.
    pub fn next_deadline(&self) -> Option<Instant> {
        (self.in_engine.len() < self.engine_slots)
            .then(|| self.scheduler.next_deadline())
            .flatten()
    }

    /// The batches due at `now` that the engine has room for, recorded as held by it; then
    /// parked jobs move into the room that frees.
    pub fn due_batches(&mut self, now: Instant, drain: bool) -> Vec<Work> {
        let mut out = Vec::new();
        while self.in_engine.len() < self.engine_slots {
            let Some(batch) = self.scheduler.next_batch(now, drain) else {
                break;
            };
            if let BatchKey::Adapter(classifier) = batch.key {
                // One change per engine item: each is its own swap.
                for q in batch.items {
                    if let Input::Adapter(change) = q.input {
                        let id = self.new_batch_id();
                        out.push(Work::Adapter {
                            batch: id,
                            classifier,
                            job: q.job,
                            change,
                        });
                        self.in_engine.insert(id, vec![q.job]);
                    }
                }
                continue;
            }
            let id = self.new_batch_id();
            let jobs: Vec<JobId> = batch.items.iter().map(|q| q.job).collect();
            out.push(match batch.key {
                BatchKey::Classify(classifier) => Work::Classify {
                    batch: id,
                    classifier,
                    items: batch
                        .items
                        .into_iter()
                        .filter_map(|q| match q.input {
                            Input::Classify(text) => Some((q.job, text)),
                            _ => None,
                        })
                        .collect(),
                },
                BatchKey::Vision => Work::Vision {
                    batch: id,
                    items: batch
                        .items
                        .into_iter()
                        .filter_map(|q| match q.input {
                            Input::Vision(v) => Some((q.job, v)),
                            _ => None,
                        })
                        .collect(),
                },
                BatchKey::Adapter(_) => continue,
            });
            // Every job of the batch is owed an answer, whatever the engine sends back.
            self.in_engine.insert(id, jobs);
        }
        while self.scheduler.has_room(Priority::Interactive) {
            let Some((key, queued)) = self.parked.pop_front() else {
                break;
            };
            let at = self.entries.get(&queued.job).map_or(now, |e| e.received);
            if let Err(back) = self.scheduler.push(key, Priority::Interactive, queued, at) {
                self.parked.push_front((key, back.0));
                break;
            }
        }
        out
    }

    fn new_batch_id(&mut self) -> BatchId {
        self.next_batch += 1;
        BatchId(self.next_batch)
    }

    /// The jobs of a batch the engine finished; `None` for a batch it was never given.
    pub fn finished_batch(&mut self, batch: BatchId) -> Option<Vec<JobId>> {
        self.in_engine.remove(&batch)
    }

    /// Every job the engine holds, for when it is gone.
    pub fn take_engine_jobs(&mut self) -> Vec<JobId> {
        let mut jobs: Vec<JobId> = self.in_engine.drain().flat_map(|(_, j)| j).collect();
        jobs.sort();
        jobs
    }

    /// Jobs waiting for the engine, by priority (parked ones count as interactive).
    pub fn depth(&self, priority: Priority) -> usize {
        let parked = match priority {
            Priority::Interactive => self.parked.len(),
            Priority::Periodic => 0,
        };
        self.scheduler.depth(priority) + parked
    }

    /// Jobs the engine holds.
    pub fn in_engine(&self) -> usize {
        self.in_engine.values().map(Vec::len).sum()
    }

    /// Removes every job, oldest first, wherever it is.
    pub fn take_all(&mut self) -> Vec<Entry<T>> {
        self.scheduler.drain_all();
        self.parked.clear();
        self.in_engine.clear();
        let mut all: Vec<(JobId, Entry<T>)> = self.entries.drain().collect();
        all.sort_by_key(|(id, _)| *id);
        all.into_iter().map(|(_, e)| e).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (JobTable<&'static str>, Instant) {
        (
            JobTable::new(2, 2, Duration::from_millis(5), 3, 1),
            Instant::now(),
        )
    }

    fn text(s: &str) -> Input {
        Input::Classify(s.into())
    }

    #[test]
    fn broker_jobs_park_when_full_and_others_are_refused() {
        let (mut t, now) = table();
        let key = BatchKey::Classify(0);
        for i in 0..5 {
            let id = t.create("held", now, true);
            assert_eq!(
                t.admit(key, Priority::Interactive, id, text("x")),
                Ok(()),
                "{i}"
            );
        }
        let id = t.create("held", now, true);
        assert_eq!(
            t.admit(key, Priority::Interactive, id, text("x")),
            Err(Full(id))
        );
        let http = t.create("http", now, false);
        assert_eq!(
            t.admit(key, Priority::Interactive, http, text("x")),
            Err(Full(http))
        );
        assert_eq!(t.depth(Priority::Interactive), 5);
    }

    #[test]
    fn batches_record_their_jobs_and_parked_jobs_move_up() {
        let (mut t, now) = table();
        let key = BatchKey::Classify(0);
        let ids: Vec<JobId> = (0..4)
            .map(|_| {
                let id = t.create("r", now, true);
                t.admit(key, Priority::Interactive, id, text("x")).unwrap();
                id
            })
            .collect();
        let work = t.due_batches(now, false);
        assert_eq!(work.len(), 1, "one engine slot");
        let Work::Classify { batch, items, .. } = &work[0] else {
            panic!("classify");
        };
        assert_eq!(items.iter().map(|(j, _)| *j).collect::<Vec<_>>(), ids[..2]);
        // The two parked jobs moved into the scheduler's freed room.
        assert_eq!(t.depth(Priority::Interactive), 2);
        assert!(
            t.due_batches(now, false).is_empty(),
            "the engine slot is taken"
        );
        assert_eq!(t.finished_batch(*batch), Some(ids[..2].to_vec()));
        assert_eq!(t.finished_batch(*batch), None);
        assert_eq!(t.due_batches(now, false).len(), 1);
        assert_eq!(t.take_engine_jobs(), ids[2..].to_vec());
        assert_eq!(t.take_all().len(), 4);
        assert!(t.is_empty());
    }
}
