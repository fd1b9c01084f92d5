//! The loop's side of the HTTP API: starts the server (when `[http]` is on), numbers each call
//! it hands in, and gives the core's reply to the call of that number. Calls still waiting when
//! the daemon stops are dropped, which their handlers answer 503.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::HttpConfig;
use crate::http::{Ask, HttpCall, HttpReply, HttpServer, CALL_QUEUE};

pub struct HttpBridge {
    pending: HashMap<u64, oneshot::Sender<HttpReply>>,
    next: u64,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl HttpBridge {
    /// Binds and starts the server; the receiver yields its calls (none when the API is off).
    pub async fn start(
        config: &HttpConfig,
        captioner: &str,
    ) -> std::io::Result<(Self, mpsc::Receiver<HttpCall>)> {
        let (tx, rx) = mpsc::channel(CALL_QUEUE);
        let mut bridge = Self {
            pending: HashMap::new(),
            next: 1,
            stop: None,
            task: None,
        };
        if let Some(server) = HttpServer::bind(config, captioner, tx).await? {
            if let Ok(addr) = server.local_addr() {
                tracing::info!("HTTP API on http://{addr}");
            }
            let (stop, stopped) = oneshot::channel::<()>();
            bridge.stop = Some(stop);
            bridge.task = Some(tokio::spawn(server.serve(async {
                let _ = stopped.await;
            })));
        }
        Ok((bridge, rx))
    }

    /// Numbers a call and keeps its reply channel; the core gets the number and the ask.
    pub fn take(&mut self, call: HttpCall) -> (u64, Ask) {
        let request = self.next;
        self.next += 1;
        self.pending.insert(request, call.reply);
        (request, call.ask)
    }

    pub fn respond(&mut self, request: u64, reply: HttpReply) {
        match self.pending.remove(&request) {
            // The client may have gone; nothing to do then.
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => tracing::error!("a reply for HTTP call {request}, which is not waiting"),
        }
    }

    /// Stops the server: calls still waiting are dropped (answered 503), then it closes.
    pub async fn stop(&mut self) {
        self.pending.clear();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if tokio::time::timeout(std::time::Duration::from_secs(2), task)
                .await
                .is_err()
            {
                tracing::warn!("the HTTP API did not close within 2 s");
            }
        }
    }
}
