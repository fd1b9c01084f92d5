//! What every HTTP handler shares: the channel to the daemon's loop, the token, the ids of
//! requests that bring none, and the API's own counts for `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::wire::{ErrorCode, RequestId};

use super::calls::{Ask, HttpCall, HttpReply};
use super::errors::HttpError;
use super::prometheus::HttpCounts;

/// What every handler shares.
pub struct Shared {
    pub calls: mpsc::Sender<HttpCall>,
    pub token: Option<String>,
    /// The captioner's name, for `/health`.
    pub captioner: String,
    /// For the ids of requests that bring none.
    pub next_id: AtomicU64,
    pub counts: Mutex<HttpCounts>,
    /// Requests the HTTP layer refused before they reached the core, by code.
    pub refused: Mutex<BTreeMap<&'static str, u64>>,
}

pub type AppState = Arc<Shared>;

impl Shared {
    /// An id for a request that brings none: `http-<n>`.
    pub fn new_id(&self) -> RequestId {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        RequestId::string(&format!("http-{n}"))
    }

    /// Asks the loop and waits for its reply.
    pub async fn call(&self, ask: Ask) -> Result<HttpReply, HttpError> {
        let (reply, answer) = oneshot::channel();
        match self.calls.try_send(HttpCall { ask, reply }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(HttpError::from_code(
                    ErrorCode::Overloaded,
                    "too many HTTP requests are waiting; send it again later",
                ))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(HttpError::stopping()),
        }
        answer.await.map_err(|_| HttpError::stopping())
    }
}
