//! Every error the sidecar answers with, in the OpenAI shape LiteLLM's proxy uses:
//! `{"error": {"message", "type", "param", "code"}}`, `code` the status as a string
//! (`ProxyException.to_dict`), `param` the field at fault where there is one.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, message: message.into(), param: None }
    }

    /// 400 naming the field at fault.
    pub fn field(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { param: Some(param.into()), ..Self::bad_request(message) }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request_error", message)
    }

    pub fn not_found(param: &str, message: impl Into<String>) -> Self {
        ApiError { param: Some(param.to_owned()), ..Self::new(StatusCode::NOT_FOUND, "not_found_error", message) }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "auth_error", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "auth_error", message)
    }

    /// The database could not be reached or failed: LiteLLM's `no_db_connection`, 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "no_db_connection", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_server_error", message)
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.status.as_u16().to_string(),
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::Duplicate { field, value } => {
                ApiError::field(field.clone(), format!("{field} {value:?} already exists; it must be unique"))
            }
            StoreError::Stale => ApiError::new(
                StatusCode::CONFLICT,
                "conflict_error",
                "the record changed concurrently several times; retry the request",
            ),
            StoreError::Unavailable(message) => {
                ApiError::unavailable(format!("the database is unreachable: {message}"))
            }
            StoreError::Conflict(message) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict_error",
                format!("the database reported a conflict several times ({message}); retry the request"),
            ),
            StoreError::Invalid(message) => {
                ApiError::bad_request(format!("a value was refused by the database: {message}"))
            }
            StoreError::Db(message) => ApiError::internal(format!("database error: {message}")),
        }
    }
}
