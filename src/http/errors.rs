//! HTTP answers for errors, shaped as FastAPI's `HTTPException` shapes them (`{"detail": "..."}`),
//! so clients written for the FastAPI service read them unchanged: 400 for bad input, 401 for a
//! missing or wrong token, 413 for a body too large, 503 (with `Retry-After`) when a model is
//! unavailable or the device is busy, 500 otherwise. The detail is one line that starts with the
//! contract's error code, e.g. `invalid_field: "question" is required ...`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::wire::{ErrorCode, ErrorReply};

/// Seconds a client should wait before sending again after a 503.
const RETRY_AFTER_S: &str = "1";

/// An error answer of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub detail: String,
    /// The contract's code, when it has one.
    pub code: Option<ErrorCode>,
    /// The daemon's core gave it (and counted it); else the HTTP layer refused the request.
    from_core: bool,
}

/// On a response the HTTP layer refused by itself: the code, for `/metrics`' error counts.
#[derive(Debug, Clone, Copy)]
pub struct LocalRefusal(pub ErrorCode);

impl HttpError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            code: None,
            from_core: false,
        }
    }

    /// The error answer a request gets over MQTT, as an HTTP error.
    pub fn from_code(code: ErrorCode, message: &str) -> Self {
        let status = match code {
            ErrorCode::InvalidJson
            | ErrorCode::MissingField
            | ErrorCode::InvalidField
            | ErrorCode::UnknownClassifier
            | ErrorCode::UnknownCamera
            | ErrorCode::ImageDecodeFailed => StatusCode::BAD_REQUEST,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::CameraUnavailable | ErrorCode::Overloaded | ErrorCode::ModelUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            code: Some(code),
            ..Self::new(status, format!("{}: {message}", code.as_str()))
        }
    }

    /// The core's error answer to a request.
    pub fn from_reply(e: &ErrorReply) -> Self {
        Self {
            from_core: true,
            ..Self::from_code(e.error.code, &e.error.message)
        }
    }

    pub fn bad_request(code: ErrorCode, message: impl AsRef<str>) -> Self {
        Self::from_code(code, message.as_ref())
    }

    /// The daemon's loop is gone (stopping): nothing can answer.
    pub fn stopping() -> Self {
        Self::from_code(
            ErrorCode::Overloaded,
            "this device is shutting down; send the request again",
        )
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "detail": self.detail }))).into_response();
        if let (Some(code), false) = (self.code, self.from_core) {
            response.extensions_mut().insert(LocalRefusal(code));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_fastapi_statuses_with_the_code_in_the_detail() {
        let e = HttpError::from_code(ErrorCode::ImageDecodeFailed, "not an image");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.detail, "image_decode_failed: not an image");
        assert_eq!(
            HttpError::from_code(ErrorCode::PayloadTooLarge, "x").status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let busy = HttpError::from_code(ErrorCode::Overloaded, "full").into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            HttpError::from_code(ErrorCode::Internal, "x").status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
