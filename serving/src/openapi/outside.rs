//! Routes the `sluice` binary serves outside `/v1/`, described for the OpenAPI document
//! only: the redirect (`GET`/`HEAD /{code}`, answered by `sluice_redirect`) and the health
//! routes `/healthz`, `/readyz` and `/metrics` (the binary's `health` module). The
//! functions below are never called: each carries the `#[utoipa::path]` of the real
//! handler's answers.

#![allow(dead_code)]

use utoipa::OpenApi;

use crate::dto::ErrorBody;

/// The redirect and health routes ([`crate::openapi::document`] merges them in).
#[derive(OpenApi)]
#[openapi(
    paths(redirect_get, redirect_head, healthz, readyz, metrics),
    tags(
        (name = "redirect", description = "The short links themselves: GET /{code} redirects to the link's target and counts a click"),
        (name = "health", description = "Liveness, readiness and Prometheus metrics (outside /v1/, no admin token)"),
    )
)]
pub struct OutsideDoc;

/// Redirects to the link's target and counts a click.
#[utoipa::path(
    get, path = "/{code}", tag = "redirect",
    params(("code" = String, Path, description = "The link's code or alias, [A-Za-z0-9_-]{1,64} (percent-encoded unreserved characters are decoded first); any other path is 404 not_found")),
    responses(
        (status = 301, description = "Permanent redirect (redirect_type permanent): no body", headers(("Location" = String, description = "The link's target, with the request's query string appended (unless [links] append-query = false) when the result fits 8192 bytes"), ("Cache-Control" = String, description = "public, max-age=<[links] permanent-max-age in s>, or the seconds left to the link's expires_at when fewer"))),
        (status = 302, description = "Temporary redirect (redirect_type found, the default): no body", headers(("Location" = String, description = "As for 301"), ("Cache-Control" = String, description = "private, max-age=0 (every click reaches the server)"))),
        (status = 400, description = "invalid_path: malformed percent-encoding in the path", body = ErrorBody, content_type = "application/json"),
        (status = 404, description = "not_found: no link with this code, or the link is disabled", body = ErrorBody, content_type = "application/json"),
        (status = 410, description = "link_expired: the link's expires_at has passed (inclusive)", body = ErrorBody, content_type = "application/json"),
        (status = 503, description = "store_unavailable (the link store failed), prefetch_refused (a speculative request: Sec-Purpose, Purpose, X-Purpose or X-Moz header, under the default prefetch policy) or starting (the start-up work is not done, with Retry-After)", body = ErrorBody, content_type = "application/json"),
    )
)]
fn redirect_get() {}

/// The answer `GET /{code}` would give (status and headers, `Content-Length` of its body),
/// without a body; not a click.
#[utoipa::path(
    head, path = "/{code}", tag = "redirect",
    params(("code" = String, Path, description = "As for GET /{code}")),
    responses(
        (status = 301, description = "As for GET: no body", headers(("Location" = String), ("Cache-Control" = String))),
        (status = 302, description = "As for GET: no body", headers(("Location" = String), ("Cache-Control" = String))),
        (status = 400, description = "invalid_path, no body (Content-Type application/json, Content-Length of the GET answer)"),
        (status = 404, description = "not_found, no body (Content-Type application/json, Content-Length of the GET answer)"),
        (status = 410, description = "link_expired, no body (Content-Type application/json, Content-Length of the GET answer)"),
        (status = 503, description = "store_unavailable or starting, no body (Content-Type application/json, Content-Length of the GET answer)"),
    )
)]
fn redirect_head() {}

/// Liveness: the process is up (also while it starts).
#[utoipa::path(
    get, path = "/healthz", tag = "health",
    responses(
        (status = 200, description = "Always {\"status\": \"ok\"}; Cache-Control: no-store", content_type = "application/json", body = Object, example = json!({"status": "ok"})),
    )
)]
fn healthz() {}

/// Readiness: the link store answers (and, for the embedded SQLite store, its file is still
/// at its path) and every required dependency works.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "{\"status\": \"ready\", \"store\": <backend>, \"dependencies\": {<name>: {\"status\", …}}} (dependencies only when there are some; optional ones are reported, never failing it); Cache-Control: no-store", content_type = "application/json", body = Object, example = json!({"status": "ready", "store": "sqlite"})),
        (status = 503, description = "not_ready: the link store is unreachable or did not answer in 2 s, its file is gone, a required dependency (click log tail or writer) failed, or the start-up work is not done; details name every failed one", body = ErrorBody, content_type = "application/json"),
    )
)]
fn readyz() {}

/// The process's metrics in the Prometheus text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4 (sluice_* counters, gauges and histograms)", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
    )
)]
fn metrics() {}
