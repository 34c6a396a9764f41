//! The one error type of the link API, [`ApiError`], and its JSON rendering.
//!
//! Every response that is not a success carries the body shape of DESIGN.md,
//! `{"error": {"code": "...", "message": "...", "details": {...}}}`, with a stable snake_case
//! `code`. 5xx responses send a generic message; the cause is logged once here. Input echoed
//! back is bounded: quoted in a message through [`echo`] (256 bytes), every message at
//! [`MAX_MESSAGE_BYTES`] ([`bound_message`]), every string of details at [`MAX_ECHO_BYTES`].

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An API failure: an HTTP status, a stable machine-readable code, a human message
/// (lowercase, no trailing period) and optional structured details.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status of the response.
    pub status: StatusCode,
    /// Stable snake_case error code (`alias_conflict`, `url_too_long`, ...).
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Structured details (`null` when there are none).
    pub details: Value,
}

impl ApiError {
    /// An error with an explicit status and code and no details. The message is bounded
    /// ([`bound_message`]).
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: bound_message(message.into()), details: Value::Null }
    }

    /// Replaces the message (bounded, [`bound_message`]).
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = bound_message(message.into());
        self
    }

    /// Adds structured details. Echoed input is bounded: a string longer than
    /// [`MAX_ECHO_BYTES`] (at any depth) is cut to at most that many bytes on a character
    /// boundary, an array to its first [`MAX_ECHO_ITEMS`] items, and an object's details
    /// then carry `"truncated": true`.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = bound_details(details);
        self
    }

    /// 400 with the given code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 `invalid_limit`: a `limit` query parameter that is not an integer in `1..=max`.
    /// Every endpoint answers it alike: details `{parameter: "limit", value, min: 1, max}`,
    /// `value` being the parameter as sent (a string, bounded like all echoed input).
    pub fn invalid_limit(value: &str, max: usize) -> Self {
        Self::bad_request("invalid_limit", format!("limit must be an integer between 1 and {max}, got \"{}\"", echo(value)))
            .with_details(json!({ "parameter": "limit", "value": value, "min": 1, "max": max }))
    }

    /// 404 `not_found` for a link code.
    pub fn link_not_found(code: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no link with code \"{}\"", echo(code))).with_details(json!({ "code": code }))
    }

    /// 404 `not_found` for a path no route serves.
    pub fn route_not_found(path: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route").with_details(json!({ "path": path }))
    }

    /// 405 `method_not_allowed`.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("method {method} is not allowed on this route"))
    }

    /// 500 `internal`: the cause is logged, the client sees a generic message.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error while serving api request");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    /// 503 `store_unavailable`: the link store could not be reached; retryable.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "link store unavailable");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "link store unavailable, retry later (GET /readyz says why)")
    }

    /// The JSON body of this error; its message bounded ([`bound_message`]) even when
    /// the field was set directly.
    pub fn body(&self) -> Value {
        let mut err = json!({ "code": self.code, "message": bound_message(self.message.clone()) });
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
        let body = self.body().to_string();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

impl From<sluice_connectors::Error> for ApiError {
    fn from(err: sluice_connectors::Error) -> Self {
        use sluice_connectors::Error as E;
        match &err {
            E::NotFound(code) => ApiError::link_not_found(code),
            E::CodeTaken(code) => {
                ApiError::new(StatusCode::CONFLICT, "alias_conflict", format!("code \"{code}\" is already taken")).with_details(json!({ "code": code }))
            }
            E::VersionMismatch { .. } => precondition_failed(),
            // A value the caller gave that the store cannot hold (a NUL character, an instant
            // outside years 1..=9999, a limit out of range): the caller's error, not ours.
            E::InvalidValue { field, reason } => {
                ApiError::bad_request("invalid_parameter", format!("invalid value for \"{field}\": {reason}")).with_details(json!({ "field": field }))
            }
            // Logged with every cause ("database error: attempt to write a readonly database").
            _ if err.retryable() => ApiError::unavailable(&err.chain()),
            _ => ApiError::internal(&err.chain()),
        }
    }
}

/// Longest string (bytes) of error details: input echoed back (a 100 KB alias, a long host)
/// is cut to this (see [`ApiError::with_details`]).
pub const MAX_ECHO_BYTES: usize = 256;

/// Input quoted in an error message, bounded like the strings of details: at most
/// [`MAX_ECHO_BYTES`] bytes of it (cut on a character boundary), then `…` when it was cut.
/// Every message that quotes a value of the request quotes it through here.
pub fn echo(input: &str) -> Cow<'_, str> {
    if input.len() <= MAX_ECHO_BYTES {
        return Cow::Borrowed(input);
    }
    Cow::Owned(format!("{}…", &input[..floor_char_boundary(input, MAX_ECHO_BYTES)]))
}

/// Longest error message, bytes. Messages are short sentences; only one that quotes the
/// request without [`echo`] (a parser's own error text, e.g. serde's `invalid type: string
/// "…"`) can be longer.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Bytes of a cut message kept before its `…`; the rest of [`MAX_MESSAGE_BYTES`] (less the 3
/// bytes of `…`) is its end, which often says what was expected.
const MESSAGE_HEAD_BYTES: usize = 768;

/// `message` bounded to [`MAX_MESSAGE_BYTES`]: a longer one keeps its first
/// [`MESSAGE_HEAD_BYTES`] (768) and last 253 bytes (both cut on character boundaries)
/// around a `…`. Every error body of the API, the intake and the HTTP server has its message
/// bounded so.
pub fn bound_message(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let head = &message[..floor_char_boundary(&message, MESSAGE_HEAD_BYTES)];
    let tail_from = message.len() - (MAX_MESSAGE_BYTES - MESSAGE_HEAD_BYTES - '…'.len_utf8());
    let tail = &message[(tail_from..message.len()).find(|&i| message.is_char_boundary(i)).unwrap_or(message.len())..];
    format!("{head}…{tail}")
}

/// Most items of one array in error details (e.g. the unknown codes of a report job, up to
/// 1,000): the first ones are kept, and the details carry `"truncated": true`.
pub const MAX_ECHO_ITEMS: usize = 20;

/// Details with every string cut to [`MAX_ECHO_BYTES`], every array to its first
/// [`MAX_ECHO_ITEMS`] items and, when anything was cut and they are an object,
/// `"truncated": true` (what [`ApiError::with_details`] stores).
pub fn bound_details(mut details: Value) -> Value {
    if bound_strings(&mut details)
        && let Value::Object(m) = &mut details
    {
        m.insert("truncated".into(), Value::Bool(true));
    }
    details
}

/// The largest char boundary of `s` at or below `max` bytes.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    (0..=max.min(s.len())).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

/// Cuts every string of `v` longer than [`MAX_ECHO_BYTES`] and every array longer than
/// [`MAX_ECHO_ITEMS`]; whether anything was cut.
fn bound_strings(v: &mut Value) -> bool {
    match v {
        Value::String(s) if s.len() > MAX_ECHO_BYTES => {
            let cut = (0..=MAX_ECHO_BYTES).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
            s.truncate(cut);
            true
        }
        Value::Array(a) => {
            let long = a.len() > MAX_ECHO_ITEMS;
            a.truncate(MAX_ECHO_ITEMS);
            a.iter_mut().fold(long, |cut, x| bound_strings(x) | cut)
        }
        Value::Object(m) => m.values_mut().fold(false, |cut, x| bound_strings(x) | cut),
        _ => false,
    }
}

/// 412 `precondition_failed` for a stale `If-Match`.
pub fn precondition_failed() -> ApiError {
    ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", "the link was modified since the given ETag")
}

/// 412 `precondition_failed` for an `If-Match` that lists weak ETags only (`W/"…"`): they
/// never match it, whatever the link's state (strong comparison, RFC 9110 §13.1.1).
pub fn precondition_failed_weak() -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        "If-Match compares ETags strongly (RFC 9110 §13.1.1): a weak ETag (W/\"…\") never matches; send the ETag as GET returned it",
    )
}

/// 412 `precondition_failed` for an `If-Match` without members (empty, or commas only): an
/// empty list matches no ETag (RFC 9110 §13.1.1), whatever the link's state.
pub fn precondition_failed_empty() -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        "If-Match lists no ETag, so none can match (RFC 9110 §13.1.1); send the ETag as GET returned it, or leave the header out",
    )
}

/// 412 `precondition_failed` for `If-None-Match` (RFC 9110 §13.1.2): the link exists (`*`)
/// or its current ETag is listed.
pub fn precondition_failed_exists() -> ApiError {
    ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", "If-None-Match: the link exists with a matching ETag")
}

/// Fallback handler: 404 in the error shape for any path no route matches.
pub async fn not_found_fallback(uri: axum::http::Uri) -> ApiError {
    ApiError::route_not_found(uri.path())
}

/// Fallback handler: 405 in the error shape when the path exists but the method does not.
pub async fn method_not_allowed_fallback(method: axum::http::Method) -> ApiError {
    ApiError::method_not_allowed(method.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_the_store_refuses_is_400_invalid_parameter() {
        let e = ApiError::from(sluice_connectors::Error::InvalidValue { field: "tag", reason: "contains a NUL character".into() });
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.body(),
            json!({"error": {"code": "invalid_parameter", "message": "invalid value for \"tag\": contains a NUL character", "details": {"field": "tag"}}})
        );
    }

    #[test]
    fn echoed_strings_are_cut_on_a_char_boundary_and_marked() {
        let e = ApiError::bad_request("invalid_alias", "m").with_details(json!({"alias": "a".repeat(100_000), "max_length": 64}));
        assert_eq!(e.details, json!({"alias": "a".repeat(256), "max_length": 64, "truncated": true}));
        // Arrays keep their first MAX_ECHO_ITEMS items, each string bounded too.
        let codes: Vec<String> = (0..1000).map(|i| format!("{i}{}", "c".repeat(300))).collect();
        let e = ApiError::bad_request("x", "m").with_details(json!({"codes": codes, "count": 1000}));
        let want: Vec<String> = codes[..MAX_ECHO_ITEMS].iter().map(|c| c[..256].to_owned()).collect();
        assert_eq!(e.details, json!({"codes": want, "count": 1000, "truncated": true}));
        let e = ApiError::bad_request("x", "m").with_details(json!({"allowed": ["a", "b"]}));
        assert_eq!(e.details, json!({"allowed": ["a", "b"]}));
        // 'é' is 2 bytes: 255 'a' then 'é' would end at byte 257, so it is dropped
        let long = format!("{}{}", "a".repeat(255), "é".repeat(10));
        let e = ApiError::bad_request("x", "y").with_details(json!({"list": [long, "ok"]}));
        assert_eq!(e.details, json!({"list": ["a".repeat(255), "ok"], "truncated": true}));
        let exact = "b".repeat(256);
        let e = ApiError::bad_request("x", "y").with_details(json!({"v": exact}));
        assert_eq!(e.details, json!({"v": "b".repeat(256)}), "at the limit: untouched, no mark");
    }

    #[test]
    fn echoed_input_and_whole_messages_are_bounded() {
        assert_eq!(echo("short"), "short");
        assert_eq!(echo(&"x".repeat(256)), "x".repeat(256), "at the limit: untouched");
        assert_eq!(echo(&"x".repeat(1_000_000)), format!("{}…", "x".repeat(256)));
        // 'é' is 2 bytes: 255 'a' then 'é' would end at byte 257
        assert_eq!(echo(&format!("{}{}", "a".repeat(255), "é".repeat(10))), format!("{}…", "a".repeat(255)));
        let exact = "m".repeat(1024);
        assert_eq!(bound_message(exact.clone()), exact, "at the limit: untouched");
        let long = format!("invalid type: string \"{}\", expected u16", "s".repeat(1_000_000));
        let cut = bound_message(long);
        assert_eq!(cut.len(), 1024);
        let tail = "\", expected u16";
        assert_eq!(cut, format!("invalid type: string \"{}…{}{tail}", "s".repeat(768 - 22), "s".repeat(253 - tail.len())));
        // through the error: set directly, still bounded in the body
        let mut e = ApiError::bad_request("invalid_request", "m".repeat(5000));
        assert_eq!(e.message.len(), 1024);
        e.message = "n".repeat(5000);
        assert_eq!(e.body()["error"]["message"].as_str().map(str::len), Some(1024));
    }

    #[test]
    fn body_has_design_shape() {
        let e = ApiError::bad_request("invalid_url", "bad").with_details(json!({"field": "long_url"}));
        assert_eq!(e.body(), json!({"error": {"code": "invalid_url", "message": "bad", "details": {"field": "long_url"}}}));
        let e = ApiError::bad_request("x", "y");
        assert_eq!(e.body(), json!({"error": {"code": "x", "message": "y"}}));
    }
}
