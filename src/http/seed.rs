//! The FastAPI service's endpoints, same names, parameters and JSON, so that its clients work
//! unchanged: `GET /health` → `{"status": "healthy", "model"}` (503 `"degraded"` with a reason
//! while the captioner is not loaded); `POST /image-caption` (multipart `file`, query or form
//! `prompt`) → `{"caption", "filename"}`; `POST /vqa` (multipart `file`, query or form
//! `question`) → `{"question", "answer"}`.

use std::collections::HashMap;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::wire::requests::{Request, Upload, VisionRequest};
use crate::wire::results::Answered;
use crate::wire::{ErrorCode, Task};

use super::calls::{Ask, HttpReply};
use super::errors::HttpError;
use super::state::AppState;
use super::upload::{read_form, Form};

pub async fn health(State(shared): State<AppState>) -> Result<Response, HttpError> {
    let HttpReply::Health(h) = shared.call(Ask::Health).await? else {
        return Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal: no health report",
        ));
    };
    let model = shared.captioner.clone();
    if h.captioner.state == "loaded" {
        return Ok(Json(json!({"status": "healthy", "model": model})).into_response());
    }
    let reason = h
        .captioner
        .reason
        .clone()
        .unwrap_or_else(|| h.captioner.state.to_string());
    let body = json!({"status": "degraded", "model": model, "reason": reason});
    Ok((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response())
}

pub async fn image_caption(
    State(shared): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let mut form = form(multipart).await?;
    let prompt = form.text(&query, "prompt");
    let image = form.take_file()?;
    let answer = ask_vision(&shared, Task::Caption, image, None, prompt).await?;
    Ok(Json(json!({"caption": answer, "filename": form.filename})))
}

pub async fn vqa(
    State(shared): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let mut form = form(multipart).await?;
    let question = form.text(&query, "question");
    if question.as_deref().is_none_or(|q| q.trim().is_empty()) {
        return Err(HttpError::bad_request(
            ErrorCode::MissingField,
            "\"question\" is required (query or form): what to ask about the image",
        ));
    }
    let image = form.take_file()?;
    let answer = ask_vision(&shared, Task::Vqa, image, question.clone(), None).await?;
    Ok(Json(json!({"question": question, "answer": answer})))
}

async fn form(multipart: Result<Multipart, MultipartRejection>) -> Result<Form, HttpError> {
    let multipart = multipart.map_err(|_| {
        HttpError::bad_request(
            ErrorCode::MissingField,
            "send the image as multipart/form-data in the field \"file\"",
        )
    })?;
    read_form(multipart).await
}

/// A caption or answer for an uploaded image, through the daemon like any request.
async fn ask_vision(
    shared: &AppState,
    task: Task,
    image: Vec<u8>,
    question: Option<String>,
    prompt: Option<String>,
) -> Result<String, HttpError> {
    let request = VisionRequest {
        id: shared.new_id(),
        task,
        question,
        camera: None,
        image: Some(Upload::Bytes(image)),
        prompt,
        choices: None,
        template: None,
    };
    match shared.call(Ask::Request(Request::Vision(request))).await? {
        HttpReply::Answer(Answered::Vision(v)) => Ok(v.answer.or(v.caption).unwrap_or_default()),
        HttpReply::Answer(Answered::Error(e)) => Err(HttpError::from_reply(&e)),
        _ => Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal: the daemon answered with something else",
        )),
    }
}
