//! The updater task: checks the adapter repository on the interval and when an announcement says
//! so, stages what a classifier should take ([`crate::updates::check`]), hands it to the loop (the
//! core queues it for the engine, which loads, canary-tests and swaps), and commits the outcome
//! to the state file — the commit point: a crash before it restarts on the old adapter, after it
//! on the new. It also watches the state file, so `landfall adapter rollback` takes effect in the
//! running daemon within [`WATCH`].
//!
//! May not touch: the models (the engine's), MQTT (the loop's). It talks to the loop only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::config::UpdatesConfig;
use crate::daemon::engine::ClassifierSpec;
use crate::daemon::jobs::{AdapterChange, Swapped};
use crate::updates::check::{self, installed_dir, Failure, Staged};
use crate::updates::client::{self, Source};
use crate::updates::state::{Attempt, Installed, State};
use crate::updates::{base_sha256, Outcome, UpdateError};

/// How often the state file is looked at for changes made outside the daemon (a rollback).
pub const WATCH: Duration = Duration::from_secs(2);
/// Longest wait for the engine to swap a staged adapter.
const SWAP_TIMEOUT: Duration = Duration::from_secs(600);

/// What the updater asks of the loop.
#[derive(Debug)]
pub enum ToLoop {
    /// Load, test and swap in this adapter.
    Change {
        classifier: String,
        change: AdapterChange,
    },
    /// The `P/adapters/state` report.
    State(String),
}

/// What the loop tells the updater.
#[derive(Debug)]
pub enum FromLoop {
    /// An announcement arrived: check now.
    Check,
    /// The engine's outcome of a change.
    Done {
        classifier: String,
        version: Option<u64>,
        result: Result<Swapped, UpdateError>,
    },
}

/// Where an update in progress stands, as `in_progress.stage` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Its files are coming through TUF.
    Downloading,
    /// Staged whole; the engine loads it beside the serving adapter and runs its canary.
    Testing,
    /// The engine swapped it in; the state file is being committed.
    Switching,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Self::Downloading => "downloading",
            Self::Testing => "testing",
            Self::Switching => "switching",
        }
    }
}

/// A classifier that follows the repository.
#[derive(Debug, Clone)]
struct Followed {
    name: String,
    base: PathBuf,
}

mod start;

use start::change_for;
pub use start::plan_start;

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub struct Updater {
    config: UpdatesConfig,
    followed: Vec<Followed>,
    /// sha256 of each followed classifier's base weights, by name.
    bases: BTreeMap<String, Option<String>>,
    /// What each followed classifier serves now (`None`: the configured adapter).
    running: BTreeMap<String, Option<u64>>,
    state: State,
    /// The state file as the updater last wrote or read it, to notice changes from outside.
    seen: Option<Vec<u8>>,
    to_loop: mpsc::UnboundedSender<ToLoop>,
    from_loop: mpsc::UnboundedReceiver<FromLoop>,
    /// A check was asked for while another ran.
    check_again: bool,
    /// The update under way for a classifier: (version, stage).
    in_progress: BTreeMap<String, (u64, Stage)>,
}

impl Updater {
    pub fn new(
        config: UpdatesConfig,
        specs: &[ClassifierSpec],
        to_loop: mpsc::UnboundedSender<ToLoop>,
        from_loop: mpsc::UnboundedReceiver<FromLoop>,
    ) -> Self {
        let followed: Vec<Followed> = specs
            .iter()
            .filter(|s| s.config.follow_updates)
            .map(|s| Followed {
                name: s.config.name.clone(),
                base: s.config.base.clone(),
            })
            .collect();
        let running = specs
            .iter()
            .filter(|s| s.config.follow_updates)
            .map(|s| {
                (
                    s.config.name.clone(),
                    s.update.as_ref().and_then(|u| u.version),
                )
            })
            .collect();
        let state = State::load(&config.dir).unwrap_or_default();
        Self {
            seen: std::fs::read(State::path(&config.dir)).ok(),
            config,
            followed,
            bases: BTreeMap::new(),
            running,
            state,
            to_loop,
            from_loop,
            check_again: false,
            in_progress: BTreeMap::new(),
        }
    }

    /// Runs until the loop goes away.
    pub async fn run(mut self) {
        for f in self.followed.clone() {
            let base = f.base.clone();
            let sha = tokio::task::spawn_blocking(move || base_sha256(&base))
                .await
                .ok()
                .and_then(|r| r.map_err(|e| tracing::warn!("adapter updates: {e}")).ok());
            self.bases.insert(f.name.clone(), sha);
        }
        self.report();
        let mut interval = self.config.interval.map(|every| {
            let mut i = tokio::time::interval(every);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        let mut watch = tokio::time::interval(WATCH);
        loop {
            let tick = async {
                match interval.as_mut() {
                    Some(i) => {
                        i.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = tick => self.check_all().await,
                msg = self.from_loop.recv() => match msg {
                    Some(FromLoop::Check) => self.check_all().await,
                    Some(FromLoop::Done { classifier, .. }) => {
                        tracing::debug!("adapter updates: an outcome for {classifier:?} nobody waited for");
                    }
                    None => return,
                },
                _ = watch.tick() => self.apply_outside_changes().await,
            }
            while std::mem::take(&mut self.check_again) {
                self.check_all().await;
            }
        }
    }

    fn report(&self) {
        let names: Vec<String> = self.followed.iter().map(|f| f.name.clone()).collect();
        let mut report = self.state.report(&names);
        for name in &names {
            let progress = self.in_progress.get(name).map(|(version, stage)| {
                serde_json::json!({ "version": version, "stage": stage.as_str() })
            });
            report[name.as_str()]["in_progress"] = progress.into();
        }
        let _ = self.to_loop.send(ToLoop::State(report.to_string()));
    }

    /// Marks (and reports, and logs) the stage `classifier`'s update `version` has reached.
    fn progress(&mut self, classifier: &str, version: u64, stage: Stage) {
        tracing::info!(
            "classifier {classifier:?}: adapter update {version}: {}",
            stage.as_str()
        );
        self.in_progress
            .insert(classifier.to_string(), (version, stage));
        self.report();
    }

    fn failed(&mut self, name: &str, failure: &Failure) {
        tracing::warn!("adapter updates: classifier {name:?}: {}", failure.error);
        let outcome = failure.error.outcome();
        self.attempt(name, failure.version, outcome, Some(&failure.error));
    }

    /// Writes the state, unless the file changed from outside since it was read (a rollback):
    /// that change is applied first, on the next look at the file.
    fn save(&mut self) {
        if std::fs::read(State::path(&self.config.dir)).ok() != self.seen {
            tracing::debug!(
                "adapter updates: the state file changed meanwhile; not overwriting it"
            );
            return;
        }
        if let Err(e) = self.state.save(&self.config.dir) {
            tracing::error!("adapter updates: {e}");
        }
        self.seen = std::fs::read(State::path(&self.config.dir)).ok();
    }

    fn attempt(
        &mut self,
        name: &str,
        version: Option<u64>,
        outcome: Outcome,
        error: Option<&UpdateError>,
    ) {
        self.state.classifier(name).last_attempt = Some(Attempt {
            version,
            ts: now_s(),
            outcome,
            code: error.and_then(|e| e.code),
            reason: error.map(|e| e.reason.clone()),
        });
    }

    /// One check of every followed classifier.
    async fn check_all(&mut self) {
        if self.followed.is_empty() {
            return;
        }
        // A rollback written meanwhile counts before anything new is taken.
        self.apply_outside_changes().await;
        let repo = match self.load().await {
            Ok(repo) => repo,
            Err(e) => {
                tracing::warn!("adapter updates: {}: {e}", self.config.repository);
                for f in self.followed.clone() {
                    self.attempt(&f.name, None, e.outcome(), Some(&e));
                }
                self.save();
                return self.report();
            }
        };
        for f in self.followed.clone() {
            let cstate = self.state.classifier(&f.name).clone();
            let base = self.bases.get(&f.name).cloned().flatten();
            match check::pick(&repo, &f.name, &cstate) {
                Ok(None) => {
                    let version = self.running.get(&f.name).copied().flatten();
                    self.attempt(&f.name, version, Outcome::UpToDate, None);
                }
                Ok(Some(offer)) => {
                    self.progress(&f.name, offer.version, Stage::Downloading);
                    let dir = &self.config.dir;
                    match check::fetch_and_stage(&repo, &f.name, &offer, base.as_deref(), dir).await
                    {
                        Ok(staged) => self.activate(staged).await,
                        Err(failure) => self.failed(&f.name, &failure),
                    }
                    self.in_progress.remove(&f.name);
                }
                Err(failure) => self.failed(&f.name, &failure),
            }
            self.save();
            self.report();
        }
    }

    async fn load(&self) -> Result<tough::Repository, UpdateError> {
        let source = Source::parse(&self.config.repository)?;
        let root = std::fs::read(&self.config.root)
            .map_err(|e| UpdateError::local(format!("{}: {e}", self.config.root.display())))?;
        client::load(&source, &root, &self.config.dir.join("tuf")).await
    }

    /// Hands a staged version to the engine and commits it if the engine swapped it in.
    async fn activate(&mut self, staged: Staged) {
        let change = change_for(&staged.dir, staged.version, true);
        self.progress(&staged.classifier, staged.version, Stage::Testing);
        match self.swap(&staged.classifier, change).await {
            Ok(swapped) => {
                self.progress(&staged.classifier, staged.version, Stage::Switching);
                let evicted = self
                    .state
                    .classifier(&staged.classifier)
                    .activate(Installed {
                        version: staged.version,
                        sha256: staged.weights_sha256.clone(),
                        since: now_s(),
                    });
                self.attempt(
                    &staged.classifier,
                    Some(staged.version),
                    Outcome::Activated,
                    None,
                );
                self.running
                    .insert(staged.classifier.clone(), swapped.version);
                self.save();
                tracing::info!(
                    "classifier {:?}: adapter update {} is serving{}",
                    staged.classifier,
                    staged.version,
                    swapped
                        .canary
                        .map(|(acc, n)| format!(" (canary accuracy {acc:.4} on {n} texts)"))
                        .unwrap_or_default()
                );
                for v in evicted {
                    let _ = std::fs::remove_dir_all(installed_dir(
                        &self.config.dir,
                        &staged.classifier,
                        v,
                    ));
                }
            }
            Err(e) => {
                tracing::warn!(
                    "classifier {:?}: adapter update {} refused: {e}",
                    staged.classifier,
                    staged.version
                );
                self.attempt(
                    &staged.classifier,
                    Some(staged.version),
                    e.outcome(),
                    Some(&e),
                );
                let _ = std::fs::remove_dir_all(&staged.dir);
            }
        }
    }

    /// Asks the loop for a swap and waits for its outcome.
    async fn swap(
        &mut self,
        classifier: &str,
        change: AdapterChange,
    ) -> Result<Swapped, UpdateError> {
        let version = change.version;
        if self
            .to_loop
            .send(ToLoop::Change {
                classifier: classifier.to_string(),
                change,
            })
            .is_err()
        {
            return Err(UpdateError::local("the daemon is stopping"));
        }
        let wait = async {
            loop {
                match self.from_loop.recv().await {
                    Some(FromLoop::Done {
                        classifier: c,
                        version: v,
                        result,
                    }) if c == classifier && v == version => return result,
                    Some(FromLoop::Done { .. }) => {}
                    Some(FromLoop::Check) => self.check_again = true,
                    None => return Err(UpdateError::local("the daemon is stopping")),
                }
            }
        };
        tokio::time::timeout(SWAP_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| Err(UpdateError::local("the engine did not swap in time")))
    }

    /// A state file changed from outside (`landfall adapter rollback`): serve what it says.
    async fn apply_outside_changes(&mut self) {
        let now = std::fs::read(State::path(&self.config.dir)).ok();
        if now == self.seen {
            return;
        }
        self.seen = now;
        let state = match State::load(&self.config.dir) {
            Ok(s) => s,
            Err(e) => return tracing::error!("adapter updates: {e}"),
        };
        self.state = state;
        for f in self.followed.clone() {
            let wanted = self.state.classifier(&f.name).active().map(|a| a.version);
            let running = self.running.get(&f.name).copied().flatten();
            if wanted == running {
                continue;
            }
            let change = match wanted {
                Some(v) => change_for(&installed_dir(&self.config.dir, &f.name, v), v, false),
                None => AdapterChange {
                    version: None,
                    dir: None,
                    labels: None,
                    canary: None,
                },
            };
            match self.swap(&f.name, change).await {
                Ok(_) => {
                    tracing::info!(
                        "classifier {:?}: rolled back to {}",
                        f.name,
                        wanted.map_or_else(
                            || "the configured adapter".to_string(),
                            |v| format!("update {v}")
                        )
                    );
                    self.running.insert(f.name.clone(), wanted);
                }
                Err(e) => {
                    tracing::error!("classifier {:?}: rollback failed: {e}", f.name);
                    self.attempt(&f.name, wanted, Outcome::Failed, Some(&e));
                    self.save();
                }
            }
        }
        self.report();
    }
}
