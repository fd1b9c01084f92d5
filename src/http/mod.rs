//! The HTTP API beside MQTT (`[http]`, off by default): the FastAPI service's endpoints
//! (`GET /health`, `POST /image-caption`, `POST /vqa`, [`seed`]), landfall's own (`/v1/...`,
//! [`v1`]) and `GET /metrics` ([`prometheus`]), on the daemon's tokio runtime (axum).
//!
//! This module owns the listener, the routes, the bearer token, CORS, the body limit and the
//! shapes of HTTP answers. It may not touch models, queues or the core: every request becomes
//! an [`HttpCall`] for the daemon's loop, which admits it like an MQTT request (same scheduler
//! queue and priority as interactive MQTT requests, same limits, same error codes) and answers
//! it with an [`HttpReply`].

mod calls;
mod errors;
pub mod prometheus;
mod seed;
mod state;
mod upload;
mod v1;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use calls::{Ask, HttpCall, HttpReply};
pub use errors::HttpError;
use errors::LocalRefusal;
use prometheus::HttpCounts;
use state::{AppState, Shared};

use crate::config::HttpConfig;

/// Calls waiting for the loop at most; more are answered 503 at once.
pub const CALL_QUEUE: usize = 1024;

/// A bound listener, ready to serve.
pub struct HttpServer {
    listener: TcpListener,
    router: Router,
}

impl HttpServer {
    /// Binds `config.listen`; `None` when the API is off.
    pub async fn bind(
        config: &HttpConfig,
        captioner: &str,
        calls: mpsc::Sender<HttpCall>,
    ) -> std::io::Result<Option<Self>> {
        let Some(addr) = config.listen else {
            return Ok(None);
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("http.listen {addr}: {e}")))?;
        let shared = Arc::new(Shared {
            calls,
            token: config.token.clone(),
            captioner: captioner.to_string(),
            next_id: AtomicU64::new(1),
            counts: Mutex::new(HttpCounts::new()),
            refused: Mutex::new(BTreeMap::new()),
        });
        Ok(Some(Self {
            listener,
            router: router(shared, config),
        }))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        if let Err(e) = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("the HTTP API stopped: {e}");
        }
    }
}

fn router(shared: AppState, config: &HttpConfig) -> Router {
    let api = Router::new()
        .route("/health", get(seed::health))
        .route("/image-caption", post(seed::image_caption))
        .route("/vqa", post(seed::vqa))
        .route("/v1/health", get(v1::health))
        .route("/v1/classify", post(v1::classify))
        .route("/v1/caption", post(v1::caption))
        .route("/v1/vqa", post(v1::vqa))
        .route("/metrics", get(v1::metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            count_and_shape,
        ))
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    let api = match cors(&config.cors_origins) {
        Some(layer) => api.layer(layer),
        None => api,
    };
    api.with_state(shared)
}

/// Cross-origin requests from the configured origins only (none by default).
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
    )
}

/// The bearer token, when one is configured, on every request.
async fn authorize(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &shared.token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => {
            HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized: wrong token").into_response()
        }
        None => HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized: send `Authorization: Bearer <token>` (http.token)",
        )
        .into_response(),
    }
}

/// Compares without stopping at the first difference, so timing tells nothing of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts each answer by route and status, and gives axum's own bodiless errors (405) the
/// `{"detail"}` shape.
async fn count_and_shape(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let mut response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        let allow = response.headers().get(header::ALLOW).cloned();
        response =
            HttpError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed").into_response();
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    if let Some(LocalRefusal(code)) = response.extensions().get::<LocalRefusal>().copied() {
        if let Ok(mut refused) = shared.refused.lock() {
            *refused.entry(code.as_str()).or_insert(0) += 1;
        }
    }
    let status = response.status().as_u16();
    if let Ok(mut counts) = shared.counts.lock() {
        *counts.entry((route, status)).or_insert(0) += 1;
    }
    response
}

async fn not_found() -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, "Not Found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
