//! Adapter updates as the core sees them: an announcement asks the updater to check now; a change
//! the updater staged becomes a job at periodic priority (requests first), so the engine swaps
//! between batches; its outcome goes back to the updater, which commits it; the updater's report
//! is published retained on `P/adapters/state`.

use std::time::Instant;

use crate::daemon::jobs::{AdapterChange, Answer, BatchKey, Input, JobError};
use crate::daemon::scheduler::Priority;
use crate::updates::{Code, UpdateError};

use super::answers::status_message;
use super::events::Action;
use super::records::JobKind;
use super::Core;

impl Core {
    /// A change for `classifier` from the updater: queued for the engine.
    pub(super) fn on_adapter_change(
        &mut self,
        classifier: String,
        change: AdapterChange,
        now: Instant,
    ) {
        let Some(index) = self.classifiers.iter().position(|c| c.name == classifier) else {
            let result = Err(UpdateError::new(
                Code::BadBundle,
                format!("this device has no classifier {classifier:?}"),
            ));
            return self.actions.push(Action::AdapterDone {
                classifier,
                version: change.version,
                result,
            });
        };
        let version = change.version;
        let id = self.new_job(
            now,
            JobKind::Adapter {
                classifier: index,
                version,
            },
        );
        if let Err(full) = self.jobs.admit(
            BatchKey::Adapter(index),
            Priority::Periodic,
            id,
            Input::Adapter(change),
        ) {
            self.jobs.take(full.0);
            self.actions.push(Action::AdapterDone {
                classifier,
                version,
                result: Err(UpdateError::local(
                    "the queues are full; the change is tried again on the next check",
                )),
            });
        }
    }

    /// The engine's outcome of an adapter job.
    pub(super) fn on_adapter_done(
        &mut self,
        classifier: usize,
        version: Option<u64>,
        outcome: Result<Answer, JobError>,
    ) {
        let result = match outcome {
            Ok(Answer::Adapter(Ok(swapped))) => {
                if let Some(v) = self.adapter_versions.get_mut(classifier) {
                    *v = swapped.version;
                }
                Ok(swapped)
            }
            Ok(Answer::Adapter(Err((code, reason)))) => Err(UpdateError::new(code, reason)),
            Ok(_) => Err(UpdateError::local(
                "the engine gave an answer of the wrong kind",
            )),
            Err(e) => Err(UpdateError::local(format!(
                "the engine could not swap: {e}"
            ))),
        };
        let name = self
            .classifiers
            .get(classifier)
            .map_or_else(String::new, |c| c.name.clone());
        self.actions.push(Action::AdapterDone {
            classifier: name,
            version,
            result,
        });
    }

    /// The updater's report, retained.
    pub(super) fn publish_adapter_state(&mut self, report: String) {
        self.last_adapter_state = Some(report.clone());
        if self.connected {
            let msg = status_message(&self.topics.adapters_state, report);
            self.actions.push(Action::Publish { msg, ack: None });
        }
    }

    /// The last report again (on each connect).
    pub(super) fn republish_adapter_state(&mut self) {
        if let Some(report) = self.last_adapter_state.clone() {
            self.publish_adapter_state(report);
        }
    }
}
