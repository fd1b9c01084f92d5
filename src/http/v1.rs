//! landfall's own endpoints, whose JSON is the MQTT topics' JSON: `GET /v1/health` (what
//! `P/health` carries), `POST /v1/classify` (`{"text"|"texts", "classifier"?, "id"?}` → the
//! `P/classify/result` object, or a list of them for `texts`), `POST /v1/caption` and
//! `POST /v1/vqa` (the bodies of `P/caption/request` and `P/vqa/request`, `choices` included;
//! `id` optional) → the result object; and `GET /metrics` in the Prometheus text format.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::value::RawValue;

use crate::wire::requests::parse_request;
use crate::wire::results::Answered;
use crate::wire::{ErrorCode, Task};

use super::calls::{Ask, HttpReply};
use super::errors::HttpError;
use super::prometheus::{self, CONTENT_TYPE};
use super::state::AppState;

/// Texts one `/v1/classify` call may carry.
pub const MAX_TEXTS: usize = 256;

pub async fn health(State(shared): State<AppState>) -> Result<Response, HttpError> {
    match shared.call(Ask::Health).await? {
        HttpReply::Health(h) => Ok(Json(h).into_response()),
        _ => Err(other()),
    }
}

pub async fn metrics(State(shared): State<AppState>) -> Result<Response, HttpError> {
    let HttpReply::Metrics(snapshot) = shared.call(Ask::Metrics).await? else {
        return Err(other());
    };
    let counts = shared.counts.lock().map(|c| c.clone()).unwrap_or_default();
    let refused = shared.refused.lock().map(|r| r.clone()).unwrap_or_default();
    let mut snapshot = *snapshot;
    // What the HTTP layer refused itself counts as requests and errors too, as over MQTT.
    for (code, n) in refused {
        *snapshot.errors.entry(code).or_insert(0) += n;
        snapshot.health.counters.requests += n;
        snapshot.health.counters.errors += n;
    }
    let text = prometheus::render(&snapshot, &counts);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

pub async fn classify(
    State(shared): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let mut fields = object(body)?;
    if !fields.contains_key("id") {
        fields.insert("id".into(), raw(shared.new_id().as_json()));
    }
    let Some(texts) = fields.remove("texts") else {
        return Ok(Json(answer(&shared, &fields, Task::Classify).await?).into_response());
    };
    if fields.contains_key("text") {
        return Err(HttpError::bad_request(
            ErrorCode::InvalidField,
            "send \"text\" or \"texts\", not both",
        ));
    }
    let texts: Vec<Box<RawValue>> = serde_json::from_str(texts.get()).map_err(|_| {
        HttpError::bad_request(
            ErrorCode::InvalidField,
            "\"texts\" must be a list of strings",
        )
    })?;
    if texts.is_empty() || texts.len() > MAX_TEXTS {
        return Err(HttpError::bad_request(
            ErrorCode::InvalidField,
            format!(
                "\"texts\" must hold 1 to {MAX_TEXTS} strings, not {}",
                texts.len()
            ),
        ));
    }
    // Each text is one job; the scheduler batches them together.
    let calls = texts.into_iter().map(|text| {
        let mut one = fields.clone();
        one.insert("text".into(), text);
        let shared = shared.clone();
        async move { answer(&shared, &one, Task::Classify).await }
    });
    let results: Vec<Answered> = futures::future::try_join_all(calls).await?;
    Ok(Json(results).into_response())
}

pub async fn caption(
    State(shared): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    vision(&shared, body, Task::Caption).await
}

pub async fn vqa(
    State(shared): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    vision(&shared, body, Task::Vqa).await
}

async fn vision(
    shared: &AppState,
    body: Result<Bytes, BytesRejection>,
    task: Task,
) -> Result<Response, HttpError> {
    let mut fields = object(body)?;
    if !fields.contains_key("id") {
        fields.insert("id".into(), raw(shared.new_id().as_json()));
    }
    Ok(Json(answer(shared, &fields, task).await?).into_response())
}

type Fields = BTreeMap<String, Box<RawValue>>;

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_string()).expect("an id is JSON")
}

/// The body as a JSON object whose values stay as sent (an id beyond 2^64 stays that number).
fn object(body: Result<Bytes, BytesRejection>) -> Result<Fields, HttpError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            HttpError::from_code(
                ErrorCode::PayloadTooLarge,
                "the body is larger than this device takes (http.max_body_bytes)",
            )
        } else {
            HttpError::bad_request(
                ErrorCode::InvalidJson,
                format!("the body cannot be read: {e}"),
            )
        }
    })?;
    let text = std::str::from_utf8(&body).map_err(|e| {
        HttpError::bad_request(
            ErrorCode::InvalidJson,
            format!(
                "the body is not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    serde_json::from_str(text).map_err(|e| {
        HttpError::bad_request(
            ErrorCode::InvalidJson,
            format!("the body must be a JSON object like {{\"text\": \"...\"}}: {e}"),
        )
    })
}

/// Runs one request through the daemon: its result object, or its error as an HTTP error.
async fn answer(shared: &AppState, fields: &Fields, task: Task) -> Result<Answered, HttpError> {
    let payload = serde_json::to_vec(fields)
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("internal: {e}")))?;
    // The body limit is http.max_body_bytes, already enforced.
    let request =
        parse_request(&payload, usize::MAX, task).map_err(|e| HttpError::from_reply(&e))?;
    match shared.call(Ask::Request(request)).await? {
        HttpReply::Answer(Answered::Error(e)) => Err(HttpError::from_reply(&e)),
        HttpReply::Answer(a) => Ok(a),
        _ => Err(other()),
    }
}

fn other() -> HttpError {
    HttpError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal: the daemon answered with something else",
    )
}
