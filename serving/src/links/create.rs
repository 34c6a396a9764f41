//! `POST /v1/links`: validation, code allocation and `Idempotency-Key` replay.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_connectors::{Error as StoreError, IdempotencyRecord, LinkChange};
use sluice_schemas::{Link, RedirectType};

use crate::alias::{generate_code, validate_custom_alias};
use crate::dto::{CreateLinkRequest, ErrorBody, LinkResponse};
use crate::error::{ApiError, echo};
use crate::extract::ApiJson;
use crate::links::{CREATED_VERSION, etag, etag_of, normalize_tags, now_ms, parse_expires_at, parse_redirect_type, to_response, validate_org};
use crate::ratelimit::OverLimit;
use crate::state::ApiState;
use crate::url_policy::normalize_host;

/// How many generated codes are tried before giving up (each collides with probability
/// n / 62^7 for n stored links).
const MAX_CODE_ATTEMPTS: usize = 8;
/// Longest accepted `Idempotency-Key`, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
/// Idempotency records are scoped to this endpoint by this prefix.
const IDEMPOTENCY_SCOPE: &str = "links:";

/// Creates a short link.
#[utoipa::path(
    post, path = "/v1/links", tag = "links",
    request_body = CreateLinkRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the original 201 for the same key and body within 24 h; 422 idempotency_key_reused for another body; 400 invalid_idempotency_key when malformed, 400 duplicate_header when sent more than once")),
    responses(
        (status = 201, description = "Link created", body = LinkResponse, headers(("ETag" = String), ("Location" = String))),
        (status = 400, description = "invalid_request (body of the wrong shape or types: a member of the wrong JSON type is invalid_request whatever the member, details.field naming it), malformed_json, duplicate_key, unknown_field, invalid_url, unsupported_scheme, missing_host, invalid_host, invalid_port, credentials_in_url, control_characters, url_too_long, redirect_loop, invalid_alias, alias_reserved, unknown_domain, invalid_expires_at, expires_in_past, invalid_redirect_type, invalid_tags, invalid_org, invalid_idempotency_key or duplicate_header (a repeated Content-Type or Idempotency-Key)", body = ErrorBody),
        (status = 409, description = "alias_conflict", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type, or unsupported_content_encoding for a body with a Content-Encoding (send it uncompressed)", body = ErrorBody),
        (status = 422, description = "policy_violation (static or run-time blocklist) or idempotency_key_reused", body = ErrorBody),
        (status = 429, description = "rate_limited: over [api] create-rate-limit for this client (only links created count; a replay of an Idempotency-Key is answered even over the limit); Retry-After", body = ErrorBody),
        (status = 500, description = "internal (the cause is logged, never sent)", body = ErrorBody),
        (status = 503, description = "store_unavailable: the link store cannot be reached; retry", body = ErrorBody),
    )
)]
pub async fn create_link(
    State(state): State<ApiState>,
    over_limit: Option<Extension<OverLimit>>,
    headers: HeaderMap,
    body: ApiJson<CreateLinkRequest>,
) -> Result<Response, ApiError> {
    let over_limit = over_limit.map(|Extension(o)| o);
    let Some(key) = idempotency_key(&headers)? else {
        if let Some(o) = over_limit {
            return Ok(o.response());
        }
        let link = insert_new(&state, &body.value, None).await.map_err(InsertFailure::into_api_error)?;
        return Ok(created(&state, &link));
    };
    let scoped = format!("{IDEMPOTENCY_SCOPE}{key}");
    let request_hash = blake3::hash(body.canonical.as_bytes()).to_hex().to_string();
    // One request per key at a time in this process (the others wait and replay). Across
    // processes sharing the store, the store decides: the link and its record are written in
    // one transaction, the record's key first ([`LinkStore::insert_idempotent`]).
    let lock = state.inner.key_locks.lock_for(&scoped);
    let _guard = lock.lock().await;
    if let Some(rec) = state.inner.store.idempotency_get(&scoped, now_ms()).await? {
        return replay(&rec, &request_hash);
    }
    // Over the create rate limit: only a replay is answered (crate::ratelimit).
    if let Some(o) = over_limit {
        return Ok(o.response());
    }
    let idem = Idempotency { key: &scoped, request_hash: &request_hash };
    match insert_new(&state, &body.value, Some(&idem)).await {
        Ok(link) => Ok(created(&state, &link)),
        Err(InsertFailure::Api(e)) => Err(e),
        // Another request with this key (another process) committed first: answer as it did.
        Err(InsertFailure::KeyTaken) => match state.inner.store.idempotency_get(&scoped, now_ms()).await? {
            Some(rec) => replay(&rec, &request_hash),
            None => Err(ApiError::internal(&"idempotency record vanished after a conflicting insert")),
        },
        // The alias is taken: by the link this key's first request created (it committed
        // after our look-up above), then this is a retry and gets the replay; by any other
        // link, 409.
        Err(InsertFailure::AliasTaken { code, holder }) => match state.inner.store.idempotency_get(&scoped, now_ms()).await? {
            Some(rec) => replay(&rec, &request_hash),
            None => Err(alias_conflict(&code, holder)),
        },
    }
}

/// The `Idempotency-Key` a create runs under: the scoped key and the request body's hash.
struct Idempotency<'a> {
    key: &'a str,
    request_hash: &'a str,
}

/// Why [`insert_new`] stored nothing.
enum InsertFailure {
    /// The request is invalid, or the store failed.
    Api(ApiError),
    /// The custom alias `code` is taken: by a live link, a deleted one in its no-reuse
    /// period, or retired.
    AliasTaken { code: String, holder: AliasHolder },
    /// The idempotency key already has a record.
    KeyTaken,
}

impl From<ApiError> for InsertFailure {
    fn from(e: ApiError) -> Self {
        InsertFailure::Api(e)
    }
}

impl From<StoreError> for InsertFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::IdempotencyKeyExists => InsertFailure::KeyTaken,
            other => InsertFailure::Api(other.into()),
        }
    }
}

impl InsertFailure {
    /// The answer to a create without an `Idempotency-Key`.
    fn into_api_error(self) -> ApiError {
        match self {
            InsertFailure::Api(e) => e,
            InsertFailure::AliasTaken { code, holder } => alias_conflict(&code, holder),
            InsertFailure::KeyTaken => ApiError::internal(&"idempotency key conflict on a create without a key"),
        }
    }
}

/// What holds a custom alias that cannot be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AliasHolder {
    /// A live link.
    Live,
    /// A link deleted less than 30 days ago.
    Deleted,
    /// Nothing any more: the code was retired for good (a link of a lost link store whose
    /// clicks are still in the click log).
    Retired,
}

/// 409 `alias_conflict` for the custom alias `code`; the message says what holds it, and
/// `details` always holds `alias`, `deleted` and `retired` (true for a deleted link's and a retired code).
fn alias_conflict(code: &str, holder: AliasHolder) -> ApiError {
    let (message, details) = match holder {
        AliasHolder::Live => (format!("alias \"{code}\" is already taken"), json!({ "alias": code, "deleted": false, "retired": false })),
        AliasHolder::Deleted => (
            format!("alias \"{code}\" belonged to a deleted link: a deleted link's code is not reused for 30 days"),
            json!({ "alias": code, "deleted": true, "retired": false }),
        ),
        AliasHolder::Retired => (
            format!(
                "alias \"{code}\" is retired for good: it belonged to a link of a link store that was lost while its clicks stayed in the click log, so no new link may inherit them"
            ),
            json!({ "alias": code, "deleted": false, "retired": true }),
        ),
    };
    ApiError::new(StatusCode::CONFLICT, "alias_conflict", message).with_details(details)
}

/// The request's `Idempotency-Key`, validated; `None` when the header is absent. Every
/// endpoint that takes the header reads it through here. Errors: 400 `duplicate_header` for
/// a header given more than once (which key was meant is unknowable, so none is picked; the
/// served router refuses that before the handler, [`crate::single_headers`]), 400
/// `invalid_idempotency_key` for a value that is not 1 to [`MAX_IDEMPOTENCY_KEY_BYTES`]
/// visible ASCII characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    crate::single_headers::check_one(headers, "Idempotency-Key")?;
    headers.get("idempotency-key").map(validate_key).transpose()
}

fn validate_key(v: &HeaderValue) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("invalid_idempotency_key", format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ascii characters"));
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s.is_empty() || s.len() > MAX_IDEMPOTENCY_KEY_BYTES || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(s.to_owned())
}

fn replay(rec: &IdempotencyRecord, request_hash: &str) -> Result<Response, ApiError> {
    if rec.request_hash != request_hash {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "Idempotency-Key was already used with a different request body",
        ));
    }
    let status = StatusCode::from_u16(rec.status).map_err(|e| ApiError::internal(&e))?;
    let parsed = serde_json::from_str::<LinkResponse>(&rec.body).map_err(|e| ApiError::internal(&format!("idempotency record of a link: {e}")))?;
    // The headers of the original 201 (`created`): its ETag is the new link's (version
    // CREATED_VERSION, the body's created_at), whatever happened to the link since.
    let mut resp = (status, created_headers(&parsed.code, &etag_of(parsed.created_at, CREATED_VERSION)), rec.body.clone()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(resp)
}

/// Headers of a 201 for the link `code` with entity tag `etag`: `ETag`, `Location`,
/// `Cache-Control: no-store` (the same for the first answer and every replay).
fn created_headers(code: &str, etag: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/links/{code}")) {
        headers.insert(header::LOCATION, loc);
    }
    headers
}

fn created(state: &ApiState, link: &Link) -> Response {
    (StatusCode::CREATED, created_headers(&link.code, &etag(link)), axum::Json(to_response(state, link))).into_response()
}

/// Validates `req` into a new [`Link`] (code still empty) at `now`.
pub fn build_link(state: &ApiState, req: &CreateLinkRequest, now: chrono::DateTime<chrono::Utc>) -> Result<Link, ApiError> {
    let long_url = state.inner.policy.normalize(&req.long_url)?;
    if let Some(alias) = &req.custom_alias {
        validate_custom_alias(alias)?;
    }
    let domain = match &req.domain {
        None => None,
        Some(d) => {
            let host = normalize_host(d);
            if !state.inner.own_hosts.contains(&host) {
                return Err(ApiError::bad_request("unknown_domain", format!("domain \"{}\" is not one of this service's short domains", echo(d)))
                    .with_details(json!({ "domain": d, "allowed": state.inner.own_hosts })));
            }
            // Echoed as given (normalized), the base URL's host too: `null` means "none given".
            Some(host)
        }
    };
    let expires_at = req.expires_at.as_deref().map(|e| parse_expires_at(e, now)).transpose()?;
    let tags = normalize_tags(req.tags.as_deref().unwrap_or(&[]))?;
    let redirect_type = req.redirect_type.as_ref().map(parse_redirect_type).transpose()?.unwrap_or(RedirectType::Found);
    let org = req.org.as_deref().map(validate_org).transpose()?;
    Ok(Link {
        code: req.custom_alias.clone().unwrap_or_default(),
        long_url,
        domain,
        expires_at,
        enabled: true,
        tags,
        redirect_type,
        org,
        created_at: now,
        updated_at: now,
        version: CREATED_VERSION,
    })
}

/// Validates `req` and stores the new link (a generated code unless it names an alias),
/// with its idempotency record in the same transaction when `idem` is given.
async fn insert_new(state: &ApiState, req: &CreateLinkRequest, idem: Option<&Idempotency<'_>>) -> Result<Link, InsertFailure> {
    let mut link = build_link(state, req, now_ms())?;
    crate::admin::policy::check_target(state, &link.long_url).await?;
    let mut attempt = 0;
    let stored = loop {
        attempt += 1;
        if req.custom_alias.is_none() {
            link.code = generate_code(state.inner.code_length);
        }
        let result = match idem {
            None => state.inner.store.insert(&link).await,
            Some(idem) => {
                // The record holds the 201 body of the link exactly as the store keeps it.
                let stored = sluice_connectors::as_inserted(&link)?;
                let body = serde_json::to_string(&to_response(state, &stored)).map_err(|e| ApiError::internal(&e))?;
                let record =
                    IdempotencyRecord { key: idem.key.to_owned(), request_hash: idem.request_hash.to_owned(), status: 201, body, created_at: now_ms() };
                state.inner.store.insert_idempotent(&stored, &record).await
            }
        };
        match result {
            Ok(l) => break l,
            Err(StoreError::CodeTaken(code)) if req.custom_alias.is_some() => {
                // Live, retired, or a tombstone (a failed look-up counts as live: the plain
                // message).
                let holder = match state.inner.store.get(&code).await {
                    Ok(None) if matches!(state.inner.store.is_retired(&code).await, Ok(true)) => AliasHolder::Retired,
                    Ok(None) => AliasHolder::Deleted,
                    _ => AliasHolder::Live,
                };
                return Err(InsertFailure::AliasTaken { code, holder });
            }
            Err(StoreError::CodeTaken(_)) if attempt < MAX_CODE_ATTEMPTS => {
                tracing::debug!(attempt, "generated code collided, retrying");
            }
            Err(StoreError::CodeTaken(_)) => {
                return Err(ApiError::internal(&format!("no free code after {MAX_CODE_ATTEMPTS} attempts, increase links.code-length")).into());
            }
            Err(e) => return Err(e.into()),
        }
    };
    state.notify(LinkChange::Upserted(stored.clone()));
    Ok(stored)
}
