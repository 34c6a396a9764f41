//! `POST`/`GET /v1/admin/blocklist`, `DELETE /v1/admin/blocklist/{pattern}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_connectors::{BlocklistEntry, HoldOutcome};

use super::configured::is_configured;
use super::dto::{BlocklistAddResponse, BlocklistEntryResponse, BlocklistList, BlocklistRemoveResponse, BlocklistRequest};
use super::policy::{blocklist_entries, canonical_pattern, covers, normalize, target_host};
use super::{AdminState, audit_record, check_reason, count};
use crate::auth::AdminPrincipal;
use crate::dto::{ErrorBody, LinkResponse};
use crate::error::{ApiError, echo};
use crate::extract::{ApiJson, ApiPath, ApiQuery, NoParams};
use crate::links::to_response;

fn entry_response(e: &BlocklistEntry) -> BlocklistEntryResponse {
    BlocklistEntryResponse { pattern: e.pattern.clone(), reason: e.reason.clone(), actor: e.actor.clone(), created_at: e.created_at }
}

fn links_of(state: &AdminState, outcomes: &[HoldOutcome]) -> Vec<LinkResponse> {
    outcomes.iter().map(|o| to_response(&state.api, &o.link)).collect()
}

/// Blocks a destination domain and its subdomains: new and patched links to it get 422
/// `policy_violation`, existing links to it stop redirecting (404) at once in every process
/// and are listed; their past clicks are kept.
#[utoipa::path(
    post, path = "/v1/admin/blocklist", tag = "admin",
    request_body = BlocklistRequest,
    responses(
        (status = 201, description = "Added", body = BlocklistAddResponse),
        (status = 200, description = "Already present (nothing changed)", body = BlocklistAddResponse),
        (status = 400, description = "invalid_pattern, pattern_wildcard, pattern_public_suffix (see admin::pattern), invalid_reason, malformed_json, unknown_field", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "admin_loopback_only", body = ErrorBody),
    )
)]
pub async fn add_to_blocklist(
    State(state): State<AdminState>,
    who: AdminPrincipal,
    _query: ApiQuery<NoParams>,
    body: ApiJson<BlocklistRequest>,
) -> Result<Response, ApiError> {
    let pattern = super::pattern::validate_new_pattern(&body.value.pattern)?;
    let reason = check_reason(body.value.reason.as_deref(), false)?;
    let store = state.store()?;
    let now = crate::links::now_ms();
    let entry = BlocklistEntry { pattern: pattern.clone(), reason: reason.clone(), actor: who.actor.clone(), created_at: now };
    let mut audit = audit_record(&who, "blocklist.add", &pattern, reason.as_deref());
    audit.at = now;
    let matches = |l: &sluice_schemas::Link| target_host(&l.long_url).is_some_and(|h| covers(&pattern, &h));
    let out = store.blocklist_add(&entry, &matches, &audit).await?;
    state.notify(out.links.iter().filter(|o| o.changed).map(|o| o.link.clone()));
    if let Some(feed) = &state.feed
        && let Err(e) = feed.insert(&pattern)
    {
        tracing::warn!(error = %e, pattern, "could not feed the blocklist entry to the dataflow");
    }
    let stored = if out.added {
        count("blocklist.add");
        tracing::info!(pattern, actor = who.actor, affected = out.links.len(), "blocklist entry added");
        entry
    } else {
        store.blocklist_list().await?.into_iter().find(|e| e.pattern == pattern).unwrap_or(entry)
    };
    let status = if out.added { StatusCode::CREATED } else { StatusCode::OK };
    let body = BlocklistAddResponse { entry: entry_response(&stored), added: out.added, affected_links: links_of(&state, &out.links) };
    Ok((status, Json(body)).into_response())
}

/// The run-time blocklist (sorted by pattern) and the static entries of the configuration
/// (`[links] blocklist`, which hold existing links like run-time entries: their stored
/// counterparts, actor `config`, are listed here and not in `items`; see
/// [`super::configured`]).
#[utoipa::path(
    get, path = "/v1/admin/blocklist", tag = "admin",
    responses(
        (status = 200, description = "Entries", body = BlocklistList),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "admin_loopback_only", body = ErrorBody),
    )
)]
pub async fn list_blocklist(State(state): State<AdminState>, _who: AdminPrincipal, _query: ApiQuery<NoParams>) -> Result<Json<BlocklistList>, ApiError> {
    let items = blocklist_entries(state.store()?).await?.iter().filter(|e| !is_configured(e)).map(entry_response).collect();
    Ok(Json(BlocklistList { items, config: state.static_blocklist.clone() }))
}

/// Removes a run-time entry (any spelling of it); the links it held redirect again unless
/// another hold or their owner keeps them disabled. An entry of the configuration's
/// `[links] blocklist` is not removed here (404, `details.config: true`): the configuration
/// removes it at the next start ([`super::configured`]).
#[utoipa::path(
    delete, path = "/v1/admin/blocklist/{pattern}", tag = "admin",
    params(("pattern" = String, Path, description = "The domain, any spelling (percent-encoded)")),
    responses(
        (status = 200, description = "Removed", body = BlocklistRemoveResponse),
        (status = 400, description = "invalid_pattern", body = ErrorBody),
        (status = 404, description = "not_found: no such run-time entry (also for an entry of the configuration's [links] blocklist, with details.config true)", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "admin_loopback_only", body = ErrorBody),
    )
)]
pub async fn remove_from_blocklist(
    State(state): State<AdminState>,
    who: AdminPrincipal,
    ApiPath(raw): ApiPath<String>,
    _query: ApiQuery<NoParams>,
) -> Result<Json<BlocklistRemoveResponse>, ApiError> {
    // Attack of session 51: `DELETE …/evil.example%2Fjunk` removed `evil.example`, which
    // `POST` refuses to add in that spelling.
    super::pattern::refuse_url_parts(&raw)?;
    let pattern = normalize(&raw)?;
    let store = state.store()?;
    let audit = audit_record(&who, "blocklist.remove", &pattern, None);
    // Every stored spelling of the entry: an earlier version stored `::ffff:10.0.0.1` for
    // what is now `10.0.0.1`, and both may be stored.
    let stored: Vec<BlocklistEntry> = store.blocklist_list().await?.into_iter().filter(|e| canonical_pattern(&e.pattern) == pattern).collect();
    // The configuration's entries stay as long as it lists them (they would come back at the
    // next start anyway, and their links must not redirect meanwhile).
    if state.static_blocklist.iter().any(|p| canonical_pattern(p) == pattern) || stored.iter().any(is_configured) {
        // An admin may have added the same entry before the configuration listed it: it is
        // listed under `items` then, so the message must not deny it exists.
        let message = if stored.iter().any(|e| !is_configured(e)) {
            format!(
                "\"{}\" is on the run-time blocklist and also in the configuration's [links] blocklist, which keeps it in force: remove it from the configuration and restart the processes that serve the API, then delete it here",
                echo(&pattern)
            )
        } else {
            format!(
                "\"{}\" is in the configuration's [links] blocklist, not on the run-time blocklist: remove it from the configuration and restart the processes that serve the API",
                echo(&pattern)
            )
        };
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", message).with_details(json!({ "pattern": pattern, "config": true })));
    }
    let mut spellings: Vec<String> = stored.into_iter().map(|e| e.pattern).collect();
    if spellings.is_empty() {
        spellings.push(pattern.clone());
    }
    let mut released: Option<Vec<HoldOutcome>> = None;
    for spelling in &spellings {
        if let Some(r) = store.blocklist_remove(spelling, audit.at, &audit).await? {
            released.get_or_insert_with(Vec::new).extend(r);
        }
    }
    let Some(released) = released else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("\"{}\" is not on the run-time blocklist", echo(&pattern)))
            .with_details(json!({ "pattern": pattern })));
    };
    count("blocklist.remove");
    tracing::info!(pattern, actor = who.actor, released = released.len(), "blocklist entry removed");
    state.notify(released.iter().filter(|o| o.changed).map(|o| o.link.clone()));
    if let Some(feed) = &state.feed
        && let Err(e) = feed.remove(&pattern)
    {
        tracing::warn!(error = %e, pattern, "could not remove the blocklist entry from the dataflow");
    }
    Ok(Json(BlocklistRemoveResponse { pattern, released_links: links_of(&state, &released) }))
}
