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
    /// An error without details; the message bounded ([`bound_message`]).
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: bound_message(message.into()), details: Value::Null, retry_after_s: None }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Adds details, every string cut to [`MAX_ECHO_BYTES`] (on a character boundary) and,
    /// when one was cut, `"truncated": true` in the object (as the link API's details).
    pub fn with_details(mut self, mut details: Value) -> Self {
        if bound_strings(&mut details)
            && let Value::Object(m) = &mut details
        {
            m.insert("truncated".into(), Value::Bool(true));
        }
        self.details = details;
        self
    }

    /// The JSON body (its message bounded even when the field was set directly).
    pub fn body(&self) -> Value {
        let mut err = json!({ "code": self.code, "message": bound_message(self.message.clone()) });
        if !self.details.is_null() {
            err["details"] = self.details.clone();
        }
        json!({ "error": err })
    }
}

/// Longest string of details and longest input quoted in a message, bytes (as
/// `sluice_serving::error::MAX_ECHO_BYTES`).
pub const MAX_ECHO_BYTES: usize = 256;

/// The largest char boundary of `s` at or below `max` bytes.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    (0..=max.min(s.len())).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

/// Input quoted in a message: at most [`MAX_ECHO_BYTES`] of it, then `…` when cut (as
/// `sluice_serving::error::echo`).
pub fn echo(input: &str) -> std::borrow::Cow<'_, str> {
    if input.len() <= MAX_ECHO_BYTES {
        return input.into();
    }
    format!("{}…", &input[..floor_char_boundary(input, MAX_ECHO_BYTES)]).into()
}

/// Cuts every string of `v` longer than [`MAX_ECHO_BYTES`]; whether one was cut.
fn bound_strings(v: &mut Value) -> bool {
    match v {
        Value::String(s) if s.len() > MAX_ECHO_BYTES => {
            s.truncate(floor_char_boundary(s, MAX_ECHO_BYTES));
            true
        }
        Value::Array(a) => a.iter_mut().fold(false, |cut, x| bound_strings(x) | cut),
        Value::Object(m) => m.values_mut().fold(false, |cut, x| bound_strings(x) | cut),
        _ => false,
    }
}

/// Longest error message, bytes (as `sluice_serving::error::MAX_MESSAGE_BYTES`).
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `message` bounded to [`MAX_MESSAGE_BYTES`] exactly as the link API bounds its messages
/// (`sluice_serving::error::bound_message`): a longer one (one quoting the request, such as
/// an unknown query parameter) keeps its first 768 and last 253 bytes, cut on character
/// boundaries, around a `…`.
pub fn bound_message(message: String) -> String {
    const HEAD: usize = 768;
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let head_end = floor_char_boundary(&message, HEAD);
    let tail_from = message.len() - (MAX_MESSAGE_BYTES - HEAD - '…'.len_utf8());
    let tail_start = (tail_from..message.len()).find(|&i| message.is_char_boundary(i)).unwrap_or(message.len());
    format!("{}…{}", &message[..head_end], &message[tail_start..])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_keeps_its_start_and_end() {
        let short = "m".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(bound_message(short.clone()), short);
        let e = ApiError::bad_request("invalid_parameter", format!("unknown query parameter \"{}\"", "q".repeat(60_000)));
        let head = "unknown query parameter \"";
        assert_eq!(e.message, format!("{head}{}…{}\"", "q".repeat(768 - head.len()), "q".repeat(252)));
        assert_eq!(e.message.len(), MAX_MESSAGE_BYTES);
    }

    #[test]
    fn echoed_input_and_details_are_cut_at_256_bytes() {
        assert_eq!(echo(&"k".repeat(256)), "k".repeat(256));
        assert_eq!(echo(&"k".repeat(100_000)), format!("{}…", "k".repeat(256)));
        let e = ApiError::bad_request("x", "y").with_details(json!({"content_type": "c".repeat(100_000), "n": 1}));
        assert_eq!(e.details, json!({"content_type": "c".repeat(256), "n": 1, "truncated": true}));
        let e = ApiError::bad_request("x", "y").with_details(json!({"content_type": "c".repeat(256)}));
        assert_eq!(e.details, json!({"content_type": "c".repeat(256)}), "at the limit: untouched");
    }
}
