//! The updater task: checks the adapter repository on the interval and when an announcement says
//! so, stages what a classifier should take ([`crate::updates::check`]), hands it to the loop (the
//! core queues it for the engine, which loads, canary-tests and swaps), and commits the outcome
//! to the state file — the commit point: a crash before it restarts on the old adapter, after it
//! on the new. It also watches the state file, so `landfall adapter rollback` takes effect in the
//! running daemon within [`WATCH`].
//!
//! May not touch: the models (the engine's), MQTT (the loop's). It talks to the loop only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::config::{ClassifierConfig, UpdatesConfig};
use crate::daemon::engine::ClassifierSpec;
use crate::daemon::jobs::{AdapterChange, CanarySpec, Swapped};
use crate::updates::bundle::Bundle;
use crate::updates::check::{self, installed_dir, Decision, Staged};
use crate::updates::client::{self, Source};
use crate::updates::names;
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

/// A classifier that follows the repository.
#[derive(Debug, Clone)]
struct Followed {
    name: String,
    base: PathBuf,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The change that serves `installed`'s bundle.
fn change_for(dir: &Path, version: u64, canary: bool) -> AdapterChange {
    let bundle = std::fs::read(dir.join(names::BUNDLE))
        .ok()
        .and_then(|b| Bundle::parse(&b).ok());
    AdapterChange {
        version: Some(version),
        dir: Some(dir.to_path_buf()),
        labels: bundle.as_ref().and_then(|b| b.labels.clone()),
        canary: bundle
            .as_ref()
            .and_then(|b| b.canary.as_ref())
            .filter(|_| canary)
            .map(|c| CanarySpec {
                file: dir.join(&c.file),
                min_accuracy: c.min_accuracy,
            }),
    }
}

/// What each classifier serves at start: the configured adapter, or the accepted update the
/// state file names (when its directory is there, whole). Staging left by a crash is cleared.
pub fn plan_start(
    classifiers: &[ClassifierConfig],
    updates: Option<&UpdatesConfig>,
) -> Vec<ClassifierSpec> {
    let state = updates.map(|u| {
        let _ = std::fs::remove_dir_all(u.dir.join("staging"));
        State::load(&u.dir).unwrap_or_else(|e| {
            tracing::error!("adapter updates: {e}; starting on the configured adapters");
            State::default()
        })
    });
    classifiers
        .iter()
        .map(|c| {
            let update = match (updates, &state) {
                (Some(u), Some(state)) if c.follow_updates => state
                    .classifiers
                    .get(&c.name)
                    .and_then(|s| s.active())
                    .and_then(|active| {
                        let dir = installed_dir(&u.dir, &c.name, active.version);
                        let whole = names::REQUIRED.iter().all(|f| dir.join(f).is_file());
                        if !whole {
                            tracing::error!(
                                "classifier {:?}: update {} is missing from {}; serving the configured adapter",
                                c.name,
                                active.version,
                                dir.display()
                            );
                        }
                        whole.then(|| change_for(&dir, active.version, false))
                    }),
                _ => None,
            };
            ClassifierSpec {
                config: c.clone(),
                update,
            }
        })
        .collect()
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
        let report = self.state.report(&names).to_string();
        let _ = self.to_loop.send(ToLoop::State(report));
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
            match check::check(&repo, &f.name, &cstate, base.as_deref(), &self.config.dir).await {
                Ok(Decision::UpToDate) => {
                    let version = self.running.get(&f.name).copied().flatten();
                    self.attempt(&f.name, version, Outcome::UpToDate, None);
                }
                Ok(Decision::Staged(staged)) => self.activate(staged).await,
                Err(failure) => {
                    tracing::warn!(
                        "adapter updates: classifier {:?}: {}",
                        f.name,
                        failure.error
                    );
                    let outcome = failure.error.outcome();
                    self.attempt(&f.name, failure.version, outcome, Some(&failure.error));
                }
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
        match self.swap(&staged.classifier, change).await {
            Ok(swapped) => {
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
