//! `GET /v1/anomalies` and `GET /v1/anomalies/stream`: what the abuse detectors found, from
//! the embedded anomaly store ([`sluice_connectors::anomaly_store`]).
//!
//! - The list answers the **latest state** of each anomaly matching the filters, newest
//!   first by `(window_start, anomaly_id)` descending, in pages of `limit` (default 100, at
//!   most 1000) with an opaque `next_cursor`. Pages are stable: an anomaly updated while a
//!   client pages keeps its position (its `window_start` never changes).
//! - The stream sends every **event** (open, updated, closed) matching the filters as it is
//!   stored: `event: anomaly`, `id: <event id>`, `data: <AnomalyEventBody JSON>`. It starts
//!   after `Last-Event-ID` (header, as browsers send on reconnect; it wins over the query)
//!   or `?last_event_id=`; without either, with the events stored after the connection.
//!   Event ids are the store's gap-free sequence, so resuming from the last id received
//!   loses and repeats nothing. Keep-alive comments (`: keep-alive`) go out after 15 s of
//!   silence.
//!
//! Filters (both endpoints, [`params`]): `from`, `to` (RFC 3339; the anomaly's
//! `[window_start, window_end]` must meet `[from, to)`), `kind` and `severity`
//! (comma-separated lists), `code` (exact link code).
//!
//! Both are admin endpoints ([`crate::auth`]): evidence names visitors and networks.

pub mod dto;
pub mod not_local;
pub mod params;
pub mod stream;

#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use sluice_connectors::anomaly_store::AnomalyStore;
use utoipa::OpenApi;

use crate::auth::{AdminAuth, AdminPrincipal};
use crate::dto::ErrorBody;
use crate::error::ApiError;
use dto::{AnomalyEventBody, AnomalyPage};

/// State of the anomaly routes (cheap to clone).
#[derive(Clone, Debug)]
pub struct AnomaliesState {
    pub(crate) store: Arc<AnomalyStore>,
    pub(crate) auth: AdminAuth,
    pub(crate) keep_alive: Duration,
    pub(crate) closing: Option<tokio::sync::watch::Receiver<bool>>,
}

impl AnomaliesState {
    /// State over `store`, admitting requests by `auth`, with 15 s keep-alives.
    pub fn new(store: Arc<AnomalyStore>, auth: AdminAuth) -> AnomaliesState {
        AnomaliesState { store, auth, keep_alive: Duration::from_secs(15), closing: None }
    }

    /// Ends every open stream once `closing` turns true (so a graceful shutdown of the
    /// server does not wait for idle streams).
    pub fn with_closing(mut self, closing: tokio::sync::watch::Receiver<bool>) -> AnomaliesState {
        self.closing = Some(closing);
        self
    }

    /// Sets the idle time after which the stream sends a keep-alive comment.
    pub fn with_keep_alive(mut self, keep_alive: Duration) -> AnomaliesState {
        self.keep_alive = keep_alive;
        self
    }
}

impl FromRef<AnomaliesState> for AdminAuth {
    fn from_ref(s: &AnomaliesState) -> AdminAuth {
        s.auth.clone()
    }
}

/// The routes `/v1/anomalies` and `/v1/anomalies/stream`.
pub fn routes(state: AnomaliesState) -> Router {
    Router::new().route("/v1/anomalies", get(list_anomalies)).route("/v1/anomalies/stream", get(stream::anomaly_stream)).with_state(state)
}

/// Maps a store failure to 503 `anomaly_store_unavailable` (retryable) or 500 `internal`.
pub(crate) fn store_error(e: &sluice_connectors::Error) -> ApiError {
    if e.retryable() {
        tracing::warn!(error = %e, "anomaly store unavailable");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "anomaly_store_unavailable", "anomaly store unavailable, retry later")
    } else {
        ApiError::internal(e)
    }
}

/// Runs a blocking store call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    store: &Arc<AnomalyStore>,
    f: impl FnOnce(&AnomalyStore) -> sluice_connectors::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let store = Arc::clone(store);
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(r) => r.map_err(|e| store_error(&e)),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

/// Latest state of each matching anomaly, newest first.
#[utoipa::path(
    get, path = "/v1/anomalies", tag = "anomalies",
    params(
        ("from" = Option<String>, Query, description = "RFC 3339 with offset, 1970..=9999; anomalies whose [window_start, window_end] reaches from or later. Digits past the millisecond are kept exact (event times are whole milliseconds: the bound is rounded up, which selects exactly the same anomalies). Encode '+' as %2B"),
        ("to" = Option<String>, Query, description = "RFC 3339 with offset, 1970..=9999, exclusive; anomalies that started before it (precision as for from)"),
        ("kind" = Option<String>, Query, description = "Comma-separated kinds: click_burst, visitor_flood, bot_share, referrer_spam, geo_shift, blocklisted_target"),
        ("severity" = Option<String>, Query, description = "Comma-separated severities: info, warning, critical"),
        ("code" = Option<String>, Query, description = "Exact short code"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Page size, 1..=1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page (same filters)"),
    ),
    responses(
        (status = 200, description = "A page, newest first", body = AnomalyPage),
        (status = 400, description = "unknown_parameter, duplicate_parameter, invalid_timestamp, invalid_range, invalid_kind, invalid_severity, invalid_code, invalid_limit, invalid_cursor", body = ErrorBody),
        (status = 401, description = "unauthorized: admin bearer token missing or wrong", body = ErrorBody),
        (status = 403, description = "admin_loopback_only: no admin token configured and the client is not local", body = ErrorBody),
        (status = 503, description = "anomaly_store_unavailable", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_anomalies(_admin: AdminPrincipal, State(state): State<AnomaliesState>, RawQuery(query): RawQuery) -> Result<Json<AnomalyPage>, ApiError> {
    let p = params::parse_list(query.as_deref())?;
    let filter = p.filter.clone();
    let (items, more) = blocking(&state.store, move |s| s.list(p.after, filter.to_ms, p.limit, &|a| filter.matches(a))).await?;
    let next_cursor = match (more, items.last()) {
        (true, Some(last)) => Some(params::encode_cursor(last.anomaly.window_start, last.anomaly.anomaly_id.as_bytes(), &p.filter)),
        _ => None,
    };
    Ok(Json(AnomalyPage { items: items.iter().map(AnomalyEventBody::from).collect(), next_cursor }))
}

/// OpenAPI of the anomaly routes.
#[derive(OpenApi)]
#[openapi(
    paths(list_anomalies, stream::anomaly_stream),
    components(schemas(AnomalyPage, AnomalyEventBody, dto::AnomalyActionBody, sluice_schemas::Evidence, sluice_schemas::Tally, sluice_schemas::AnomalyKind, sluice_schemas::Severity, sluice_schemas::AnomalyStatus)),
    tags((name = "anomalies", description = "What the abuse detectors found: list, live stream (SSE)"))
)]
pub struct AnomaliesDoc;
