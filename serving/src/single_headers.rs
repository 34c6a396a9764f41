//! Request header fields that must be sent at most once, checked in one place for every
//! API route (`/v1/...`, the admin routes and `POST /v1/events` included) by the
//! [`refuse_repeated`] middleware; never on the redirect path (`GET /{code}`), which must
//! not fail on a header.
//!
//! RFC 9110 §5.3 lets a sender repeat only a field whose value is a comma-separated list.
//! `Content-Type`, `Authorization`, `Idempotency-Key` and `Last-Event-ID` (one event id,
//! WHATWG HTML §9.2 server-sent events) are not lists: a request with two copies is ambiguous (a proxy may have checked one, the server would act on the other), so
//! it is refused with 400 `duplicate_header` instead of served with the first copy.
//! `Content-Length` is hyper's: it refuses differing copies before any handler runs.
//! `If-Match` and `If-None-Match` *are* lists (RFC 9110 §13.1.1, §13.1.2): their copies are
//! one combined list, and the link endpoints read every copy (a PATCH with `If-Match: "a"`
//! and `If-Match: "b"` applies when the current ETag is either; a member that is not `*` or
//! a quoted entity tag is 400 `invalid_etag`, [`crate::links::conditional`]).

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;

/// The header fields a request may carry at most once, as they are spelled in errors.
pub const SINGLE_HEADERS: [&str; 4] = ["Content-Type", "Authorization", "Idempotency-Key", "Last-Event-ID"];

fn header_name(display: &str) -> HeaderName {
    match display {
        "Content-Type" => header::CONTENT_TYPE,
        "Authorization" => header::AUTHORIZATION,
        "Last-Event-ID" => HeaderName::from_static("last-event-id"),
        _ => HeaderName::from_static("idempotency-key"),
    }
}

/// 400 `duplicate_header` when `headers` holds more than one copy of the field `display`
/// (one of [`SINGLE_HEADERS`]): details `{"header": display, "count": n}`.
pub fn check_one(headers: &HeaderMap, display: &'static str) -> Result<(), ApiError> {
    let count = headers.get_all(header_name(display)).iter().count();
    if count > 1 {
        return Err(ApiError::bad_request("duplicate_header", format!("the {display} header appears {count} times; send it exactly once"))
            .with_details(json!({ "header": display, "count": count })));
    }
    Ok(())
}

/// [`check_one`] for every field of [`SINGLE_HEADERS`], in that order.
pub fn check(headers: &HeaderMap) -> Result<(), ApiError> {
    SINGLE_HEADERS.iter().try_for_each(|h| check_one(headers, h))
}

/// Middleware: 400 `duplicate_header` ([`check`]) before the route's handler runs.
pub async fn refuse_repeated(req: Request, next: Next) -> Response {
    match check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_repeated_single_header_is_named_with_its_count() {
        let mut h = HeaderMap::new();
        h.append("authorization", HeaderValue::from_static("Bearer a"));
        h.append("content-type", HeaderValue::from_static("application/json"));
        assert_eq!(check(&h), Ok(()));
        h.append("authorization", HeaderValue::from_static("Bearer b"));
        h.append("authorization", HeaderValue::from_static("Bearer c"));
        let e = check(&h).expect_err("repeated");
        assert_eq!(
            e.body(),
            json!({"error": {"code": "duplicate_header", "message": "the Authorization header appears 3 times; send it exactly once", "details": {"header": "Authorization", "count": 3}}})
        );
        // Last-Event-ID (an SSE resume point) is one id.
        let mut h = HeaderMap::new();
        h.append("last-event-id", HeaderValue::from_static("0"));
        assert_eq!(check(&h), Ok(()));
        h.append("last-event-id", HeaderValue::from_static("1"));
        let e = check(&h).expect_err("repeated");
        assert_eq!(
            e.body(),
            json!({"error": {"code": "duplicate_header", "message": "the Last-Event-ID header appears 2 times; send it exactly once", "details": {"header": "Last-Event-ID", "count": 2}}})
        );
        // list fields may repeat
        let mut h = HeaderMap::new();
        h.append("if-match", HeaderValue::from_static("\"a\""));
        h.append("if-match", HeaderValue::from_static("\"b\""));
        h.append("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("192.0.2.2"));
        assert_eq!(check(&h), Ok(()));
    }
}
