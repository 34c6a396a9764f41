//! [`ApiError`]: the events endpoint's failures in the DESIGN.md error shape
//! `{"error": {"code": "...", "message": "...", "details": {...}}}`.
//!
//! `sluice-ingest` cannot depend on `sluice-serving` (DESIGN.md crate table), so this is the
//! intake's own copy of the shape; the JSON is identical to the link API's.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A failed request: status, stable snake_case code, lowercase message, optional details.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`unauthorized`, `too_many_events`, ...).
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Structured details (`null` when none).
    pub details: Value,
    /// Seconds for `Retry-After` (503 only).
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    /// An error without details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: Value::Null, retry_after_s: None }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut err = json!({ "code": self.code, "message": self.message });
        if !self.details.is_null() {
            err["details"] = self.details.clone();
        }
        json!({ "error": err })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body().to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"sluice-ingest\""));
        }
        if let Some(s) = self.retry_after_s {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<crate::Error> for ApiError {
    /// Log failures are 503 `log_unavailable` (retry; nothing of the batch was stored);
    /// a failed append task is 500 `internal`. The cause is logged here, once.
    fn from(err: crate::Error) -> Self {
        let chain = crate::telemetry::error_chain(&err);
        if err.retryable() {
            tracing::warn!(error = %chain, "events request could not be stored");
            let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "log_unavailable", "the click log is unavailable, retry later");
            e.retry_after_s = Some(1);
            e
        } else {
            tracing::error!(error = %chain, "events request failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        }
    }
}
