//! Reading a `multipart/form-data` upload as the FastAPI service takes it: the image in the
//! field `file` (its bytes and file name) and text fields such as `prompt` or `question`, which
//! may also come as query parameters (the query wins, as FastAPI reads plain `str` parameters
//! from the query).

use std::collections::HashMap;

use axum::extract::multipart::{Multipart, MultipartError};
use axum::http::StatusCode;

use crate::wire::ErrorCode;

use super::errors::HttpError;

/// Query parameters by name.
pub type Query = HashMap<String, String>;

/// An upload and its text fields.
#[derive(Debug, Default)]
pub struct Form {
    pub file: Option<Vec<u8>>,
    pub filename: Option<String>,
    pub fields: HashMap<String, String>,
}

impl Form {
    /// A text parameter from the query, else the form.
    pub fn text(&self, query: &Query, name: &str) -> Option<String> {
        query.get(name).or_else(|| self.fields.get(name)).cloned()
    }

    /// The file's bytes, or why there are none.
    pub fn take_file(&mut self) -> Result<Vec<u8>, HttpError> {
        match self.file.take() {
            None => Err(HttpError::bad_request(
                ErrorCode::MissingField,
                "the form field \"file\" is required: the image, as multipart/form-data",
            )),
            Some(bytes) if bytes.is_empty() => Err(HttpError::bad_request(
                ErrorCode::ImageDecodeFailed,
                "the uploaded \"file\" is empty",
            )),
            Some(bytes) => Ok(bytes),
        }
    }
}

fn form_error(e: &MultipartError) -> HttpError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return HttpError::from_code(
            ErrorCode::PayloadTooLarge,
            "the upload is larger than this device takes (http.max_body_bytes)",
        );
    }
    HttpError::bad_request(
        ErrorCode::InvalidField,
        format!(
            "the multipart form cannot be read: {}",
            one_line(&e.body_text())
        ),
    )
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads every field; text fields other than `file` must be UTF-8.
pub async fn read_form(mut multipart: Multipart) -> Result<Form, HttpError> {
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await.map_err(|e| form_error(&e))? {
        let Some(name) = field.name().map(str::to_string) else {
            continue;
        };
        if name == "file" {
            form.filename = field.file_name().map(str::to_string);
            let bytes = field.bytes().await.map_err(|e| form_error(&e))?;
            form.file = Some(bytes.to_vec());
        } else {
            let bytes = field.bytes().await.map_err(|e| form_error(&e))?;
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                HttpError::bad_request(
                    ErrorCode::InvalidField,
                    format!("the form field {name:?} is not UTF-8 text"),
                )
            })?;
            form.fields.insert(name, text);
        }
    }
    Ok(form)
}
