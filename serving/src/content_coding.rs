//! Request bodies with a content coding (`Content-Encoding: gzip`, `br`, `deflate`, …) are
//! refused on every API route (`/v1/...`, the admin routes and `POST /v1/events` included)
//! by the [`refuse_content_coding`] middleware: no endpoint decodes one, and reading a
//! compressed body as JSON would only fail later with a misleading 400 `malformed_json`.
//!
//! RFC 9110 §15.5.16: 415 is the answer to a content coding the server does not support,
//! with `Accept-Encoding` naming what it accepts, here only `identity` (no coding). A
//! `Content-Encoding` listing only `identity` is accepted as no coding.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{ApiError, echo};

/// The request's content codings other than `identity` (every `Content-Encoding` field, in
/// order, as one comma-separated list: RFC 9110 §8.4), as sent; `None` when there are none.
/// A field value that is not visible ASCII is one coding, shown with lossy decoding.
fn content_codings(headers: &HeaderMap) -> Option<String> {
    let mut codings: Vec<String> = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        match value.to_str() {
            Ok(v) => codings.extend(v.split(',').map(str::trim).filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity")).map(str::to_owned)),
            Err(_) => codings.push(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        }
    }
    (!codings.is_empty()).then(|| codings.join(", "))
}

/// 415 `unsupported_content_encoding` when the request body has a content coding
/// (details `{"content_encoding": <the codings as sent>}`); `None` for a request whose body
/// is empty or has no coding.
pub fn check(req: &Request) -> Option<ApiError> {
    if axum::body::HttpBody::is_end_stream(req.body()) {
        return None;
    }
    let codings = content_codings(req.headers())?;
    Some(
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
            format!("content codings are not supported: send the request body uncompressed, without Content-Encoding (got \"{}\")", echo(&codings)),
        )
        .with_details(json!({ "content_encoding": codings })),
    )
}

/// Middleware: [`check`] before the route's handler runs; the 415 carries
/// `Accept-Encoding: identity`.
pub async fn refuse_content_coding(req: Request, next: Next) -> Response {
    match check(&req) {
        None => next.run(req).await,
        Some(e) => {
            let mut resp = e.into_response();
            resp.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn req(encodings: &[&str], body: &'static str) -> Request {
        let mut b = Request::post("/v1/links");
        for e in encodings {
            b = b.header("content-encoding", *e);
        }
        b.body(if body.is_empty() { Body::empty() } else { Body::from(body) }).expect("request")
    }

    #[test]
    fn a_coded_body_is_refused_naming_the_codings() {
        for (encodings, shown) in [(&["gzip"][..], "gzip"), (&["GZIP"][..], "GZIP"), (&["identity, br"][..], "br"), (&["gzip", "deflate"][..], "gzip, deflate")]
        {
            let e = check(&req(encodings, "x")).expect("refused");
            assert_eq!(
                (e.status, e.body()),
                (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    json!({"error": {"code": "unsupported_content_encoding", "message": format!("content codings are not supported: send the request body uncompressed, without Content-Encoding (got \"{shown}\")"), "details": {"content_encoding": shown}}})
                ),
                "{encodings:?}"
            );
        }
    }

    #[test]
    fn no_coding_identity_or_no_body_pass() {
        for encodings in [&[][..], &["identity"][..], &["Identity, identity"][..], &[""][..]] {
            assert_eq!(check(&req(encodings, "x")), None, "{encodings:?}");
        }
        assert_eq!(check(&req(&["gzip"], "")), None, "no body: nothing to decode");
    }
}
