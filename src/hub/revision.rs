//! Which commit a branch or tag of a Hub repo stands for now, from
//! `GET /api/models/{repo}/revision/{rev}`.

use serde::Deserialize;

use super::manifest::is_commit;
use super::progress::Progress;
use super::transfer::{Fetch, MemorySink, Received, Sink};
use super::{Hub, HubError};

/// The revision API answers with the repo's file list too; more than this is not a Hub.
const API_ANSWER_LIMIT: usize = 16 << 20;

/// What the revision API says about a revision; only the commit matters here.
#[derive(Debug, Deserialize)]
struct RevisionInfo {
    sha: String,
}

/// Fetches `url` whole into `sink` under a progress line that reads `verbs.0` while it runs and
/// `verbs.1` when done.
async fn fetch_with_bar(
    hub: &Hub,
    label: &str,
    url: &str,
    sink: &mut dyn Sink,
    progress: Progress,
    verbs: (&str, &str),
) -> Result<Received, HubError> {
    let fetch = Fetch {
        hub,
        label,
        url,
        expected_size: None,
    };
    let mut received = Received::default();
    let mut bar = progress.file(label, verbs.0, None);
    if let Err(e) = fetch.run(&mut received, sink, &mut bar).await {
        bar.abandon();
        return Err(e);
    }
    bar.finish(verbs.1);
    Ok(received)
}

/// The commit `revision` of `repo` stands for.
pub(super) async fn resolve(
    hub: &Hub,
    name: &str,
    repo: &str,
    revision: &str,
    progress: Progress,
) -> Result<String, HubError> {
    let url = hub.revision_url(repo, revision);
    let label = format!("{name} (revision {revision})");
    let mut sink = MemorySink {
        bytes: Vec::new(),
        limit: API_ANSWER_LIMIT,
        label: &label,
        url: &url,
    };
    fetch_with_bar(
        hub,
        &label,
        &url,
        &mut sink,
        progress,
        ("resolving", "resolved"),
    )
    .await?;
    let bad = |reason: String| HubError::Download {
        file: label.clone(),
        url: url.clone(),
        reason,
    };
    let info: RevisionInfo = serde_json::from_slice(&sink.bytes)
        .map_err(|e| bad(format!("not the Hub's revision answer: {e}")))?;
    if !is_commit(&info.sha) {
        return Err(bad(format!("{:?} is not a 40-hex commit sha", info.sha)));
    }
    Ok(info.sha)
}
