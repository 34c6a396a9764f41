//! Webhook subscriptions to anomaly events: `POST /v1/webhooks` (201), `GET /v1/webhooks`,
//! `GET /v1/webhooks/{id}`, `DELETE /v1/webhooks/{id}` (204),
//! `GET /v1/webhooks/{id}/deliveries` (newest first, cursor-paged).
//!
//! A new webhook receives every anomaly event (open, updated, closed) stored after its
//! creation whose kind is in `kinds` (empty = all) and whose severity is at least
//! `min_severity`. Delivery, signing, retries: [`dispatch`], [`signature`]; URL checks:
//! [`ssrf`]. The secret is write-only: responses carry only `secret_set`.
//!
//! Admin endpoints ([`crate::auth`]).

pub mod dispatch;
pub mod signature;
pub mod ssrf;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::extract::{FromRef, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_connectors::anomaly_store::AnomalyStore;
use sluice_connectors::anomaly_store::webhooks::{DeliveryAttempt, DeliveryRecord, DeliveryState, WebhookRecord};
use sluice_schemas::{AnomalyKind, Severity};
use utoipa::{OpenApi, ToSchema};

use crate::anomalies::blocking;
use crate::auth::{AdminAuth, AdminPrincipal};
use crate::dto::ErrorBody;
use crate::error::{ApiError, echo};
use crate::extract::{ApiJson, ApiPath, ApiQuery, NoParams};
use crate::stats::params::rfc3339_utc;
pub use dispatch::{Dispatcher, WebhookConfig};

/// Shortest accepted secret, bytes.
pub const MIN_SECRET_BYTES: usize = 16;
/// Longest accepted secret, bytes.
pub const MAX_SECRET_BYTES: usize = 256;
/// Longest accepted URL, bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Most webhooks a store holds.
pub const MAX_WEBHOOKS: usize = 100;
/// Default / largest page of deliveries.
const DELIVERIES_DEFAULT_LIMIT: usize = 50;
const DELIVERIES_MAX_LIMIT: usize = 1000;

/// State of the webhook routes (cheap to clone).
#[derive(Clone, Debug)]
pub struct WebhooksState {
    store: Arc<AnomalyStore>,
    auth: AdminAuth,
    allow_private: bool,
    dispatcher: Option<Arc<Dispatcher>>,
}

impl WebhooksState {
    /// State over `store`; `allow_private` as `[webhooks] allow-private`; `dispatcher` is
    /// woken after each change (`None`: changes are picked up at its next round).
    pub fn new(store: Arc<AnomalyStore>, auth: AdminAuth, allow_private: bool, dispatcher: Option<Arc<Dispatcher>>) -> WebhooksState {
        WebhooksState { store, auth, allow_private, dispatcher }
    }
}

impl FromRef<WebhooksState> for AdminAuth {
    fn from_ref(s: &WebhooksState) -> AdminAuth {
        s.auth.clone()
    }
}

/// The webhook routes.
pub fn routes(state: WebhooksState) -> Router {
    Router::new()
        .route("/v1/webhooks", get(list_webhooks).post(create_webhook))
        .route("/v1/webhooks/{id}", get(get_webhook).delete(delete_webhook))
        .route("/v1/webhooks/{id}/deliveries", get(list_deliveries))
        .with_state(state)
}

/// `POST /v1/webhooks` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Receiver, `http://` or `https://` (verified with rustls against the platform's CA
    /// roots and `[webhooks] extra-ca-file`); must not reach a non-public address unless
    /// `[webhooks] allow-private`.
    pub url: String,
    /// Kinds to deliver; empty or absent = every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Lowest severity delivered (default `info`).
    #[serde(default)]
    pub min_severity: Option<String>,
    /// HMAC key of `Sluice-Signature`, 16 to 256 bytes.
    pub secret: String,
}

/// A webhook as answered (the secret is never returned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookBody {
    /// Id (UUIDv7).
    pub id: String,
    /// Receiver URL (normalized).
    pub url: String,
    /// Kinds delivered (empty = all).
    pub kinds: Vec<AnomalyKind>,
    /// Lowest severity delivered.
    pub min_severity: Severity,
    /// Always true: a secret is stored (write-only).
    pub secret_set: bool,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Last anomaly event id turned into deliveries for it.
    pub cursor: u64,
}

impl From<&WebhookRecord> for WebhookBody {
    fn from(r: &WebhookRecord) -> Self {
        WebhookBody {
            id: r.id.clone(),
            url: r.url.clone(),
            kinds: r.kinds.clone(),
            min_severity: r.min_severity,
            secret_set: true,
            created_at: rfc3339_utc(r.created_at_ms),
            cursor: r.cursor,
        }
    }
}

/// `GET /v1/webhooks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    /// Every webhook, oldest first.
    pub items: Vec<WebhookBody>,
}

/// One attempt as answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptBody {
    /// 1-based.
    pub attempt: u32,
    /// Start, RFC 3339 UTC.
    pub at: String,
    /// Duration, ms.
    pub duration_ms: u64,
    /// HTTP status answered, if any.
    pub status_code: Option<u16>,
    /// Failure without an HTTP answer.
    pub error: Option<String>,
}

/// One delivery as answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryBody {
    /// Delivery id.
    pub delivery_id: u64,
    /// Anomaly event delivered.
    pub event_id: u64,
    /// `pending`, `succeeded` or `failed`.
    pub state: String,
    /// Enqueued at, RFC 3339 UTC.
    pub created_at: String,
    /// Next attempt due (pending), RFC 3339 UTC.
    pub next_attempt_at: Option<String>,
    /// Attempts, oldest first.
    pub attempts: Vec<AttemptBody>,
}

impl From<&DeliveryRecord> for DeliveryBody {
    fn from(d: &DeliveryRecord) -> Self {
        let state = match d.state {
            DeliveryState::Pending => "pending",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Failed => "failed",
        };
        let attempt = |a: &DeliveryAttempt| AttemptBody {
            attempt: a.attempt,
            at: rfc3339_utc(a.at_ms),
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            error: a.error.clone(),
        };
        DeliveryBody {
            delivery_id: d.delivery_id,
            event_id: d.event_id,
            state: state.to_string(),
            created_at: rfc3339_utc(d.created_at_ms),
            next_attempt_at: d.next_attempt_at_ms.map(rfc3339_utc),
            attempts: d.attempts.iter().map(attempt).collect(),
        }
    }
}

/// A page of deliveries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryPage {
    /// Newest first.
    pub items: Vec<DeliveryBody>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

fn webhook_not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "webhook_not_found", format!("no webhook with id \"{}\"", echo(id))).with_details(json!({ "id": id }))
}

/// The stored form of a webhook id from a path ([`crate::extract::canonical_uuid`]); text that
/// is not a UUID is looked up as given (and not found).
fn webhook_key(id: &str) -> String {
    crate::extract::canonical_uuid(id).unwrap_or_else(|| id.to_string())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Subscribe to anomaly events.
#[utoipa::path(
    post, path = "/v1/webhooks", tag = "webhooks", request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Created; Location: /v1/webhooks/{id}", body = WebhookBody),
        (status = 400, description = "malformed_json, unknown_field, invalid_request, unknown_parameter, invalid_parameter, control_characters, invalid_webhook_url, unsupported_url_scheme, invalid_port, webhook_url_forbidden (non-public address), webhook_host_unresolvable, invalid_kind, invalid_severity, invalid_secret", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "admin_loopback_only", body = ErrorBody),
        (status = 409, description = "too_many_webhooks (at most 100)", body = ErrorBody),
        (status = 415, description = "unsupported_media_type, or unsupported_content_encoding for a body with a Content-Encoding (send it uncompressed)", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn create_webhook(
    _admin: AdminPrincipal,
    State(state): State<WebhooksState>,
    _query: ApiQuery<NoParams>,
    body: ApiJson<CreateWebhookRequest>,
) -> Result<Response, ApiError> {
    let req = body.value;
    if req.url.len() > MAX_URL_BYTES {
        return Err(ApiError::bad_request("invalid_webhook_url", format!("webhook url is longer than {MAX_URL_BYTES} bytes"))
            .with_details(json!({ "max_bytes": MAX_URL_BYTES })));
    }
    let mut kinds = Vec::new();
    for k in &req.kinds {
        let kind = AnomalyKind::parse(k).ok_or_else(|| {
            ApiError::bad_request("invalid_kind", format!("unknown anomaly kind \"{}\"", echo(k)))
                .with_details(json!({ "field": "kinds", "value": k, "allowed": AnomalyKind::ALL.map(AnomalyKind::as_str) }))
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    let min_severity = match req.min_severity.as_deref() {
        None => Severity::Info,
        Some(s) => Severity::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_severity", format!("unknown severity \"{}\"", echo(s)))
                .with_details(json!({ "field": "min_severity", "value": s, "allowed": Severity::ALL.map(Severity::as_str) }))
        })?,
    };
    if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&req.secret.len()) {
        return Err(ApiError::bad_request(
            "invalid_secret",
            format!("secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes long, got {}", req.secret.len()),
        )
        .with_details(json!({ "min_bytes": MIN_SECRET_BYTES, "max_bytes": MAX_SECRET_BYTES })));
    }
    // Last: it may resolve the host (DNS), and every cheaper field error should win over it.
    let url = ssrf::validate_url(&req.url, state.allow_private).await?;
    let rec = WebhookRecord {
        id: uuid::Uuid::now_v7().to_string(),
        url: url.to_string(),
        kinds,
        min_severity,
        secret: req.secret,
        created_at_ms: now_ms(),
        cursor: 0,
    };
    // The cap is checked in the insert's transaction, so concurrent creates cannot pass it.
    let Some(stored) = blocking(&state.store, move |s| s.create_webhook(rec, MAX_WEBHOOKS)).await? else {
        return Err(ApiError::new(StatusCode::CONFLICT, "too_many_webhooks", format!("at most {MAX_WEBHOOKS} webhooks can exist; delete one first"))
            .with_details(json!({ "max": MAX_WEBHOOKS })));
    };
    if let Some(d) = &state.dispatcher {
        d.wake();
    }
    tracing::info!(webhook_id = %stored.id, url = %stored.url, "webhook created");
    let location = format!("/v1/webhooks/{}", stored.id);
    Ok((StatusCode::CREATED, [(axum::http::header::LOCATION, location)], Json(WebhookBody::from(&stored))).into_response())
}

/// Every webhook.
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = WebhookList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("admin_token" = []))
)]
pub async fn list_webhooks(_admin: AdminPrincipal, State(state): State<WebhooksState>, _query: ApiQuery<NoParams>) -> Result<Json<WebhookList>, ApiError> {
    let hooks = blocking(&state.store, |s| s.webhooks()).await?;
    Ok(Json(WebhookList { items: hooks.iter().map(WebhookBody::from).collect() }))
}

/// One webhook.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = WebhookBody), (status = 404, description = "webhook_not_found", body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("admin_token" = []))
)]
pub async fn get_webhook(
    _admin: AdminPrincipal,
    State(state): State<WebhooksState>,
    ApiPath(id): ApiPath<String>,
    _query: ApiQuery<NoParams>,
) -> Result<Json<WebhookBody>, ApiError> {
    let key = webhook_key(&id);
    match blocking(&state.store, move |s| s.webhook(&key)).await? {
        Some(r) => Ok(Json(WebhookBody::from(&r))),
        None => Err(webhook_not_found(&id)),
    }
}

/// Unsubscribe (pending deliveries stop; past delivery records stay stored but are no longer listed: the deliveries route answers 404 webhook_not_found).
#[utoipa::path(
    delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "webhook_not_found", body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("admin_token" = []))
)]
pub async fn delete_webhook(
    _admin: AdminPrincipal,
    State(state): State<WebhooksState>,
    ApiPath(id): ApiPath<String>,
    _query: ApiQuery<NoParams>,
) -> Result<StatusCode, ApiError> {
    let key = webhook_key(&id);
    if blocking(&state.store, move |s| s.delete_webhook(&key)).await? {
        tracing::info!(webhook_id = %id, "webhook deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(webhook_not_found(&id))
    }
}

/// Deliveries of a webhook with every attempt, newest first.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(
        ("id" = String, Path, description = "Webhook id"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "1..=1000, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page of this webhook's deliveries (an edited cursor, or another webhook's, is 400 invalid_cursor)"),
    ),
    responses(
        (status = 200, body = DeliveryPage),
        (status = 400, description = "unknown_parameter, duplicate_parameter, invalid_limit, invalid_cursor", body = ErrorBody),
        (status = 404, description = "webhook_not_found (deliveries of a deleted webhook stay stored but are not listed)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub async fn list_deliveries(
    _admin: AdminPrincipal,
    State(state): State<WebhooksState>,
    ApiPath(id): ApiPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<DeliveryPage>, ApiError> {
    let (limit, cursor) = parse_deliveries_query(query.as_deref())?;
    let key = webhook_key(&id);
    let before = cursor.as_deref().map(|c| decode_deliveries_cursor(c, &key)).transpose()?;
    let k = key.clone();
    if blocking(&state.store, move |s| s.webhook(&k)).await?.is_none() {
        return Err(webhook_not_found(&id));
    }
    let k = key.clone();
    let (items, more) = blocking(&state.store, move |s| s.deliveries(&k, before, limit)).await?;
    let next_cursor = match (more, items.last()) {
        (true, Some(last)) => Some(encode_deliveries_cursor(last.delivery_id, &key)),
        _ => None,
    };
    Ok(Json(DeliveryPage { items: items.iter().map(DeliveryBody::from).collect(), next_cursor }))
}

/// Deliveries cursors ([`crate::cursor::Sealed`]): the last delivery id of a page, bound to
/// the webhook (its stored id).
const DELIVERIES_CURSOR: crate::cursor::Sealed = crate::cursor::Sealed {
    kind: "d2",
    fields: 1,
    other: "it was made for another webhook's deliveries (or altered)",
    hint: "use the next_cursor of a previous page of this webhook's deliveries",
};

/// The cursor continuing after delivery `delivery_id` of webhook `webhook_key`: base64url
/// (no padding) of `"d2:<delivery id>:<fingerprint of the webhook id and delivery id>"` (not
/// a contract).
fn encode_deliveries_cursor(delivery_id: u64, webhook_key: &str) -> String {
    DELIVERIES_CURSOR.encode(&[&delivery_id.to_string()], webhook_key)
}

/// The delivery id of a cursor from [`encode_deliveries_cursor`] for the same webhook; 400
/// `invalid_cursor` for an edited cursor, another webhook's, or anything else.
fn decode_deliveries_cursor(cursor: &str, webhook_key: &str) -> Result<u64, ApiError> {
    let fields = DELIVERIES_CURSOR.decode(cursor, webhook_key)?;
    let n = fields[0].as_str();
    n.parse::<u64>().ok().filter(|_| crate::query::is_digits(n)).ok_or_else(|| DELIVERIES_CURSOR.not_this(cursor))
}

/// `(limit, cursor)` of the deliveries query.
fn parse_deliveries_query(raw: Option<&str>) -> Result<(usize, Option<String>), ApiError> {
    let p = crate::query::pairs(raw, &["limit", "cursor"])?;
    let limit = crate::query::limit(crate::query::get(&p, "limit"), DELIVERIES_DEFAULT_LIMIT, DELIVERIES_MAX_LIMIT)?;
    Ok((limit, crate::query::get(&p, "cursor").map(str::to_owned)))
}

/// OpenAPI of the webhook routes.
#[derive(OpenApi)]
#[openapi(
    paths(create_webhook, list_webhooks, get_webhook, delete_webhook, list_deliveries),
    components(schemas(CreateWebhookRequest, WebhookBody, WebhookList, DeliveryBody, AttemptBody, DeliveryPage)),
    tags((name = "webhooks", description = "Signed HTTP callbacks for anomaly events (Sluice-Signature: t=<unix>,v1=<hex HMAC-SHA256 of \"t.body\">)"))
)]
pub struct WebhooksDoc;
