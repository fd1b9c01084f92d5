//! `landfall adapter ...`: the operator's repository (`init-repo`, `publish`, `timestamp`), the
//! device's checks without a daemon (`verify`) and rollback on a device (`rollback`).

use std::time::Duration;

use serde_json::json;

use super::CliError;
use crate::classifier::evaluate::{accuracy, gold_ids, predict};
use crate::classifier::input::read_rows;
use crate::classifier::{BaseCache, Classifier, ClassifierOptions};
use crate::cli::{
    AdapterCommand, InitRepoArgs, PublishArgs, RollbackArgs, TimestampArgs, VerifyArgs,
};
use crate::config::Config;
use crate::updates::check;
use crate::updates::client::{self, Source};
use crate::updates::operator::{self, Publication};
use crate::updates::state::{Attempt, ClassifierState, State};
use crate::updates::{base_sha256, names, Outcome, UpdateError};

/// A rejected update is bad input (2); a failure to fetch or store is a runtime failure (1).
impl From<UpdateError> for CliError {
    fn from(e: UpdateError) -> Self {
        let message = match e.code {
            Some(code) => format!("{}: {}", code.as_str(), e.reason),
            None => e.reason.clone(),
        };
        match e.outcome() {
            Outcome::Rejected => CliError::usage(message),
            _ => CliError::runtime(message),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the async runtime: {e}")))
}

pub fn run(cmd: &AdapterCommand) -> Result<(), CliError> {
    match cmd {
        AdapterCommand::InitRepo(a) => init_repo(a),
        AdapterCommand::Publish(a) => publish(a),
        AdapterCommand::Timestamp(a) => timestamp(a),
        AdapterCommand::Verify(a) => verify(a),
        AdapterCommand::Rollback(a) => rollback(a),
    }
}

fn init_repo(a: &InitRepoArgs) -> Result<(), CliError> {
    let report = runtime()?.block_on(operator::init_repo(&a.repo.repo, &a.repo.keys))?;
    println!(
        "repository {} made; keys in {}; install {} on devices as [updates] root",
        a.repo.repo.display(),
        a.repo.keys.display(),
        report.root.display()
    );
    Ok(())
}

fn publish(a: &PublishArgs) -> Result<(), CliError> {
    if let Some(min) = a.min_accuracy {
        if !(0.0..=1.0).contains(&min) {
            return Err(CliError::usage(format!(
                "--min-accuracy {min}: must be between 0 and 1"
            )));
        }
    }
    let base_sha256 = base_sha256(&a.base)?;
    let publication = Publication {
        classifier: a.classifier.clone(),
        adapter: a.adapter.clone(),
        base_sha256,
        version: a.version,
        canary: a.canary.clone().zip(a.min_accuracy),
        labels: a.labels.clone(),
    };
    // The adapter must load on its base here, before any device sees it.
    let opts = ClassifierOptions {
        labels: a.labels.clone(),
        ..ClassifierOptions::default()
    };
    let mut cache = BaseCache::default();
    Classifier::load(&a.base, &a.adapter, &opts, &mut cache)?;
    let published =
        runtime()?.block_on(operator::publish(&a.repo.repo, &a.repo.keys, &publication))?;
    println!(
        "published {} version {} ({} files) in {}",
        a.classifier,
        published.version,
        published.targets.len(),
        a.repo.repo.display()
    );
    Ok(())
}

fn timestamp(a: &TimestampArgs) -> Result<(), CliError> {
    let lifetime = parse_lifetime(&a.expires)?;
    let version = runtime()?.block_on(operator::timestamp(&a.repo.repo, &a.repo.keys, lifetime))?;
    println!(
        "timestamp.json version {version} signed, expires in {}",
        a.expires
    );
    Ok(())
}

fn parse_lifetime(text: &str) -> Result<Duration, CliError> {
    crate::config::parse_duration(text).map_err(|e| CliError::usage(format!("--expires: {e}")))
}

fn verify(a: &VerifyArgs) -> Result<(), CliError> {
    let root = std::fs::read(&a.root)
        .map_err(|e| CliError::usage(format!("--root {}: {e}", a.root.display())))?;
    let source = Source::parse(&a.repository)?;
    let work = tempfile::tempdir().map_err(|e| CliError::runtime(e.to_string()))?;
    let base_sha = a.base.as_deref().map(base_sha256).transpose()?;
    let rt = runtime()?;
    let staged = rt.block_on(async {
        let repo = client::load(&source, &root, &work.path().join("tuf")).await?;
        let offer = check::pick(&repo, &a.classifier, &ClassifierState::default())
            .map_err(|f| f.error)?
            .ok_or_else(|| {
                CliError::usage(format!(
                    "the repository offers no adapter for classifier {:?}",
                    a.classifier
                ))
            })?;
        check::fetch_and_stage(
            &repo,
            &a.classifier,
            &offer,
            base_sha.as_deref(),
            work.path(),
        )
        .await
        .map_err(|f| CliError::from(f.error))
    })?;
    let mut canary = None;
    if let Some(base) = &a.base {
        let opts = ClassifierOptions {
            labels: staged.bundle.labels.clone(),
            ..ClassifierOptions::default()
        };
        let mut cache = BaseCache::default();
        let classifier = Classifier::load(base, &staged.dir, &opts, &mut cache).map_err(|e| {
            CliError::usage(format!(
                "bad_bundle: the adapter does not fit the base: {e}"
            ))
        })?;
        if let Some(c) = &staged.bundle.canary {
            let file = staged.dir.join(names::CANARY);
            let rows = read_rows(&file, true)?;
            let gold = gold_ids(&rows, &classifier.labels, &file)?;
            let acc = accuracy(&gold, &predict(&classifier, &rows, 16)?);
            if acc < c.min_accuracy {
                return Err(CliError::usage(format!(
                    "canary_failed: accuracy {acc:.4} on {} texts is below {}",
                    rows.len(),
                    c.min_accuracy
                )));
            }
            canary = Some((acc, rows.len()));
        }
    }
    if a.json {
        println!(
            "{}",
            json!({
                "classifier": a.classifier,
                "version": staged.version,
                "weights_sha256": staged.weights_sha256,
                "base_sha256": staged.bundle.base_sha256,
                "base_checked": a.base.is_some(),
                "canary": canary.map(|(acc, n)| json!({"accuracy": acc, "n": n})),
            })
        );
    } else {
        println!(
            "{} version {}: signatures, expiry, hashes and bundle check out{}{}",
            a.classifier,
            staged.version,
            if a.base.is_some() {
                "; it loads on the base"
            } else {
                ""
            },
            canary
                .map(|(acc, n)| format!("; canary accuracy {acc:.4} on {n} texts"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn rollback(a: &RollbackArgs) -> Result<(), CliError> {
    let config =
        Config::load(a.config.config.as_deref()).map_err(|e| CliError::usage(e.to_string()))?;
    let Some(updates) = &config.updates else {
        return Err(CliError::usage(
            "the config has no [updates]: this device takes no adapter updates",
        ));
    };
    if !config.classifiers.iter().any(|c| c.name == a.classifier) {
        let known: Vec<&str> = config.classifiers.iter().map(|c| c.name.as_str()).collect();
        return Err(CliError::usage(format!(
            "--classifier {:?}: this device has {known:?}",
            a.classifier
        )));
    }
    let mut state = State::load(&updates.dir)?;
    let c = state.classifier(&a.classifier);
    let Some(gone) = c.roll_back() else {
        return Err(CliError::usage(format!(
            "{}: the configured adapter serves already; there is nothing to roll back",
            a.classifier
        )));
    };
    let now = c.active().map(|i| i.version);
    c.last_attempt = Some(Attempt {
        version: Some(gone),
        ts: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        outcome: Outcome::RolledBack,
        code: None,
        reason: Some(format!(
            "rolled back by the operator; version {gone} is not taken again"
        )),
    });
    state.save(&updates.dir)?;
    println!(
        "{}: version {gone} rolled back; {} serves once the daemon notices (within {} s)",
        a.classifier,
        now.map_or_else(
            || "the configured adapter".to_string(),
            |v| format!("version {v}")
        ),
        crate::daemon::updater::WATCH.as_secs()
    );
    Ok(())
}
