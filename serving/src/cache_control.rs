//! `Cache-Control` of API answers: every API route answers with `no-store` unless its
//! handler chose a value itself (the stats endpoints' `private, max-age=…` revalidation,
//! for instance). Link lists, admin data, webhooks and anomaly lists describe state that
//! changes under the client and may be private to an organization, so no shared or browser
//! cache may keep them (RFC 9111 §5.2.2.5); the single-link answers and every error already
//! said so, and the rest now does too.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// Middleware: adds `Cache-Control: no-store` to an answer that has no `Cache-Control`.
pub async fn no_store_by_default(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut().entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    resp
}
