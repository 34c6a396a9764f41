//! `GET /v1/admin/audit?limit=&cursor=&from=&to=&actor=&action=`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde_json::json;
use sluice_connectors::AuditQuery;

use super::AdminState;
use super::dto::{AuditEntry, AuditPage, AuditParams};
use crate::auth::AdminPrincipal;
use crate::dto::ErrorBody;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::links::cursor;

/// Default page size.
const DEFAULT_LIMIT: u32 = 100;

/// `from`/`to` as the anomalies' filters read them
/// ([`crate::anomalies::params::rfc3339_param`]), at full precision.
fn instant(name: &'static str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|r| crate::anomalies::params::rfc3339_param(name, r).map(|t| t.with_timezone(&Utc))).transpose()
}

/// `actor`/`action`: an exact match; an empty value matches nothing any entry holds, so it
/// is refused (400 `invalid_parameter`, details `{parameter, value, reason}`).
fn non_empty(name: &'static str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        Some(v) if v.is_empty() => Err(ApiError::bad_request("invalid_parameter", format!("\"{name}\" must not be empty (leave it out to list every {name})"))
            .with_details(serde_json::json!({ "parameter": name, "value": v, "reason": "empty" }))),
        v => Ok(v),
    }
}

const _: () = assert!(
    sluice_connectors::link_store::MAX_AUDIT_LIMIT as usize == crate::extract::PAGE_MAX_LIMIT,
    "a limit that is no integer is answered with PAGE_MAX_LIMIT"
);

/// The audit log, newest first: every admin and automatic action with actor, time, target,
/// reason and origin IP. Append-only (the database refuses updates and deletes).
#[utoipa::path(
    get, path = "/v1/admin/audit", tag = "admin",
    params(AuditParams),
    responses(
        (status = 200, description = "A page, newest first", body = AuditPage),
        (status = 400, description = "invalid_timestamp, invalid_limit, invalid_range, invalid_cursor, invalid_parameter, unknown_parameter, duplicate_parameter", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "admin_loopback_only", body = ErrorBody),
    )
)]
pub async fn list_audit(State(state): State<AdminState>, _who: AdminPrincipal, ApiQuery(p): ApiQuery<AuditParams>) -> Result<Json<AuditPage>, ApiError> {
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=sluice_connectors::link_store::MAX_AUDIT_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_limit(&limit.to_string(), sluice_connectors::link_store::MAX_AUDIT_LIMIT as usize));
    }
    let (from, to) = (instant("from", p.from.as_deref())?, instant("to", p.to.as_deref())?);
    // As the anomalies' filters: an empty range (`from` = `to`) is refused like an inverted one.
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(ApiError::bad_request("invalid_range", "\"from\" must be earlier than \"to\"").with_details(
            json!({ "from": p.from.as_deref().map(crate::rfc3339::restore_offset_plus), "to": p.to.as_deref().map(crate::rfc3339::restore_offset_plus) }),
        ));
    }
    let (actor, action) = (non_empty("actor", p.actor)?, non_empty("action", p.action)?);
    // Cursors are sealed: bound to the filters of the page that made them and to their
    // position (`invalid_cursor` with other filters, or edited).
    let filters = cursor::audit_filters(from, to, actor.as_deref(), action.as_deref());
    let before_seq = p.cursor.as_deref().map(|c| cursor::decode_audit(c, &filters)).transpose()?;
    let query = AuditQuery { limit, before_seq, from, to, actor, action };
    let rows = state.store()?.audit_list(&query).await?;
    // A full page may be followed by more (the next page may then be empty).
    let next_cursor = if rows.len() == limit as usize { rows.last().map(|r| cursor::encode_audit(r.seq, &filters)) } else { None };
    let items = rows
        .into_iter()
        .map(|r| AuditEntry { at: r.at, actor: r.actor, action: r.action, target: r.target, reason: r.reason, origin_ip: r.origin_ip, details: r.details })
        .collect();
    Ok(Json(AuditPage { items, next_cursor }))
}
