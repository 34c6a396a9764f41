//! `POST /v1/admin/links/{code}/disable` and `.../enable`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use sluice_connectors::{HOLD_ADMIN, HoldOutcome, LinkHold};

use super::dto::{ActionRequest, AdminLinkResponse, HoldResponse};
use super::{AdminState, audit_record, check_reason, count};
use crate::auth::AdminPrincipal;
use crate::dto::ErrorBody;
use crate::error::ApiError;
use crate::extract::{ApiBytes, ApiQuery, LinkCode, NoParams, parse_json_body};
use crate::links::to_response;

/// The optional JSON body of these endpoints (an empty body is `{}`).
fn body(bytes: &Bytes) -> Result<ActionRequest, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) { Ok(ActionRequest::default()) } else { Ok(parse_json_body::<ActionRequest>(bytes)?.value) }
}

fn response(state: &AdminState, out: &HoldOutcome) -> AdminLinkResponse {
    AdminLinkResponse {
        link: to_response(&state.api, &out.link),
        holds: out
            .holds
            .iter()
            .map(|h| HoldResponse { source: h.source.clone(), reason: h.reason.clone(), actor: h.actor.clone(), created_at: h.created_at })
            .collect(),
    }
}

/// Disables a link administratively: from this response on, every redirect of it, in every
/// process, is a 404 (the owner cannot re-enable it). Idempotent.
#[utoipa::path(
    post, path = "/v1/admin/links/{code}/disable", tag = "admin",
    params(("code" = String, Path, description = "Short code (case-sensitive)")),
    request_body = ActionRequest,
    responses(
        (status = 200, description = "Disabled", body = AdminLinkResponse),
        (status = 400, description = "invalid_reason (required), malformed_json", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "admin_loopback_only", body = ErrorBody),
    )
)]
pub async fn disable_link(
    State(state): State<AdminState>,
    who: AdminPrincipal,
    LinkCode(code): LinkCode,
    _query: ApiQuery<NoParams>,
    ApiBytes(bytes): ApiBytes,
) -> Result<Json<AdminLinkResponse>, ApiError> {
    let req = body(&bytes)?;
    let reason = check_reason(req.reason.as_deref(), true)?;
    let store = state.store()?;
    let audit = audit_record(&who, "link.disable", &code, reason.as_deref());
    let hold = LinkHold { source: HOLD_ADMIN.into(), reason, actor: who.actor.clone(), created_at: audit.at };
    let out = store.hold_link(&code, &hold, audit.at, Some(&audit)).await?;
    if out.changed {
        state.notify([out.link.clone()]);
    }
    count("link.disable");
    tracing::info!(code, actor = who.actor, "link disabled by admin");
    Ok(Json(response(&state, &out)))
}

/// Lifts an admin disable: the link redirects again (unless its owner had disabled it).
/// 409 `link_blocklisted` while a blocklist entry covers its target (nothing changes).
#[utoipa::path(
    post, path = "/v1/admin/links/{code}/enable", tag = "admin",
    params(("code" = String, Path, description = "Short code (case-sensitive)")),
    request_body = Option<ActionRequest>,
    responses(
        (status = 200, description = "Enabled", body = AdminLinkResponse),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "link_blocklisted", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "admin_loopback_only", body = ErrorBody),
    )
)]
pub async fn enable_link(
    State(state): State<AdminState>,
    who: AdminPrincipal,
    LinkCode(code): LinkCode,
    _query: ApiQuery<NoParams>,
    ApiBytes(bytes): ApiBytes,
) -> Result<Json<AdminLinkResponse>, ApiError> {
    let req = body(&bytes)?;
    let reason = check_reason(req.reason.as_deref(), false)?;
    let store = state.store()?;
    let blocking: Vec<String> = store.link_holds(&code).await?.into_iter().filter(|h| h.source != HOLD_ADMIN).map(|h| h.source).collect();
    if !blocking.is_empty() {
        let patterns: Vec<String> = blocking.iter().map(|s| super::policy::canonical_pattern(s.strip_prefix("blocklist:").unwrap_or(s))).collect();
        return Err(ApiError::new(StatusCode::CONFLICT, "link_blocklisted", "the link's target is blocklisted; remove the blocklist entry instead")
            .with_details(json!({ "code": code, "patterns": patterns })));
    }
    let audit = audit_record(&who, "link.enable", &code, reason.as_deref());
    let out = store.release_link(&code, HOLD_ADMIN, audit.at, Some(&audit)).await?;
    if out.changed {
        state.notify([out.link.clone()]);
    }
    count("link.enable");
    tracing::info!(code, actor = who.actor, "link enabled by admin");
    Ok(Json(response(&state, &out)))
}
