//! The REST API of Sluice: link management under `/v1/links`, errors in one JSON shape,
//! the generated OpenAPI document at `/v1/openapi.json`.
//!
//! | module | what |
//! |---|---|
//! | [`state`] | [`ApiState`], [`ApiConfig`], [`LinkChangeHook`] |
//! | [`links`] | handlers for `/v1/links` and `/v1/links/{code}` |
//! | [`url_policy`] | validation and normalization of `long_url` |
//! | [`alias`] | custom alias rules, reserved words, generated codes |
//! | [`extract`] | wrapper extractors mapping bad input to [`ApiError`] |
//! | [`media_types`] | the `Content-Type`s request bodies are read in: JSON, a JSON merge patch for `PATCH` |
//! | [`error`] | [`ApiError`] |
//! | [`error_codes`] | every error code the HTTP API answers with, by status |
//! | [`dto`] | request/response bodies |
//! | [`openapi`] | the OpenAPI document |
//! | [`stats`] | `GET /v1/links/{code}/stats`, `GET /v1/stats/summary` over the dataflow's views |
//! | [`reports`] | [`ReportsState`] and the routes of [`export`], [`jobs`], [`live`] |
//! | [`export`] | `GET /v1/stats/export`: CSV / JSON / NDJSON, streamed |
//! | [`jobs`] | `POST /v1/reports/export`, `GET /v1/jobs/{job_id}[/download]`: persistent export jobs |
//! | [`live`] | `GET /v1/links/{code}/stats/live`: server-sent events per second |
//! | [`auth`] | admin authentication ([`auth::AdminPrincipal`]): bearer token or loopback |
//! | [`anomalies`] | `GET /v1/anomalies`, `GET /v1/anomalies/stream` (SSE) from the anomaly store |
//! | [`webhooks`] | `/v1/webhooks`: signed, retried, recorded anomaly deliveries; SSRF guard |
//! | [`admin`] | `/v1/admin/...`: blocklist, disable/enable, audit log ([`admin::routes`]) |
//! | [`ratelimit`] | the per-client `POST /v1/links` limit (C25) |
//! | [`cross_origin`] | 403 `cross_origin_request` for a state-changing request from another site's page (CSRF) |
//! | [`single_headers`] | 400 `duplicate_header` for a repeated `Content-Type`, `Authorization` or `Idempotency-Key` |
//!
//! Consumers: the `sluice` binary merges [`routes`] into its router and wires a
//! [`LinkChangeHook`] that invalidates the redirect cache.
#![deny(missing_docs)]

pub mod admin;
pub mod alias;
pub mod anomalies;
pub mod auth;
pub mod cache_control;
pub mod content_coding;
pub mod cross_origin;
pub mod cursor;
pub mod dto;
pub mod error;
pub mod error_codes;
pub mod export;
pub mod extract;
pub mod jobs;
pub mod links;
pub mod live;
pub mod media_types;
pub mod openapi;
pub mod query;
pub mod ratelimit;
pub mod reports;
pub use sluice_schemas::rfc3339;
pub mod single_headers;
pub mod state;
pub mod stats;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod url_policy;
pub mod webhooks;

#[cfg(test)]
mod tests;

use axum::Router;
use axum::routing::get;

pub use error::ApiError;
pub use reports::ReportsState;
pub use state::{ApiConfig, ApiState, LinkChangeHook};

/// The API's routes (`/v1/links`, `/v1/links/{code}`, `/v1/openapi.json`) without
/// fallbacks, for merging into a larger router.
pub fn routes(state: ApiState) -> Router {
    let create = match state.inner.create_limiter.clone() {
        Some(limiter) => axum::routing::post(links::create::create_link).layer(axum::middleware::from_fn_with_state(limiter, ratelimit::limit_requests)),
        None => axum::routing::post(links::create::create_link),
    };
    // Routes without query parameters refuse one (400 unknown_parameter), as the others
    // refuse an unknown one.
    let no_query = || axum::middleware::from_fn(query::refuse_query);
    Router::new()
        .route("/v1/links", get(links::read::list_links).merge(create.layer(no_query())))
        .route("/v1/links/{code}", get(links::read::get_link).patch(links::update::update_link).delete(links::update::delete_link).layer(no_query()))
        .route("/v1/openapi.json", get(openapi::openapi_json).layer(no_query()))
        .with_state(state)
}

/// The API as a complete router: [`routes`] plus JSON 404/405 fallbacks. Tests drive it
/// with `tower::ServiceExt::oneshot`.
pub fn app(state: ApiState) -> Router {
    with_fallbacks(extract::with_body_limit(routes(state), DEFAULT_MAX_BODY_BYTES))
}

/// Request body limit of [`app`], bytes: axum's default, 2 MiB (the binary serves
/// `[server] max-body-bytes`).
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 << 20;

/// Adds the JSON `not_found` (404) and `method_not_allowed` (405) fallbacks to `router`.
pub fn with_fallbacks(router: Router) -> Router {
    router.fallback(error::not_found_fallback).method_not_allowed_fallback(error::method_not_allowed_fallback)
}
