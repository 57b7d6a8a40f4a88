//! The playground's API errors: a status and a JSON body `{"error": "...", "field": "..."}`
//! naming the request field at fault, built from the library's structured errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::error::Error;

/// An API error: the HTTP status, the message and the request field it is about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// 400 about `field`.
    pub fn field(field: &str, error: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: error.into(),
            field: Some(field.to_string()),
        }
    }

    /// Any status, about the request as a whole.
    pub fn status(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            field: None,
        }
    }

    /// A library error about a request field: `field` unless the error names its option.
    pub fn from_lib(field: &str, e: Error) -> Self {
        let named = match &e {
            Error::Option { option, .. } => option.replace('-', "_"),
            Error::UnknownWord { .. } | Error::Prompt { .. } => field.to_string(),
            _ => field.to_string(),
        };
        Self::field(&named, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}
