//! `PATCH /v1/links/{code}` (with `If-Match`) and `DELETE /v1/links/{code}`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sluice_connectors::{LinkChange, LinkPatch};

use crate::dto::{ErrorBody, LinkResponse, UpdateLinkRequest};
use crate::error::{ApiError, precondition_failed_exists};
use crate::extract::LinkCode;
use crate::links::conditional::Condition;
use crate::links::{etag, link_headers, normalize_tags, now_ms, parse_expires_at, parse_redirect_type, to_response, validate_org};
use crate::media_types::ApiMergePatch;
use crate::state::ApiState;

/// Updates a link. Send `If-Match: <ETag>` to update only the revision you read.
#[utoipa::path(
    patch, path = "/v1/links/{code}", tag = "links",
    params(
        ("code" = String, Path, description = "Short code (case-sensitive)"),
        ("If-Match" = Option<String>, Header, description = "ETag of the revision to update, quoted as the ETag header sends it (or a list of them, in one line or several: any may match; or `*`); 412 when stale"),
        ("If-None-Match" = Option<String>, Header, description = "`*` or a list of ETags: 412 when the link exists (`*`) or its current ETag is listed (weak comparison)"),
    ),
    // The media types of `crate::media_types::MERGE_PATCH_TYPES`, each with the same schema
    // (a test in `crate::openapi` checks the two lists agree).
    request_body(
        description = "A JSON merge patch (RFC 7396), sent as application/merge-patch+json or application/json: members left out are kept, `null` removes `expires_at` or `org` (and is refused for the other members)",
        content(
            (UpdateLinkRequest = "application/merge-patch+json"),
            (UpdateLinkRequest = "application/json"),
        ),
    ),
    responses(
        (status = 200, description = "Updated link", body = LinkResponse, headers(("ETag" = String))),
        (status = 400, description = "Invalid field (same rules as create, e.g. invalid_org; a member of the wrong JSON type, or null where it is refused, is invalid_request, details.field naming it), alias_rename_unsupported, or invalid_etag (an If-Match or If-None-Match member that is neither `*` nor a quoted entity tag)", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "link_held: an administrator disabled the link", body = ErrorBody),
        (status = 412, description = "precondition_failed", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type: the body is a JSON merge patch (RFC 7396), sent as application/merge-patch+json or application/json (listed in the Accept-Patch header of the answer; a JSON Patch, application/json-patch+json, is refused); or unsupported_content_encoding for a body with a Content-Encoding (send it uncompressed)", body = ErrorBody),
        (status = 422, description = "policy_violation", body = ErrorBody),
        (status = 503, description = "store_unavailable: the link store cannot be reached; retry", body = ErrorBody),
    )
)]
pub async fn update_link(
    State(state): State<ApiState>,
    LinkCode(code): LinkCode,
    headers: HeaderMap,
    ApiMergePatch(body): ApiMergePatch<UpdateLinkRequest>,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let patch = build_patch(&state, &body.value, now)?;
    if let Some(u) = &patch.long_url {
        crate::admin::policy::check_target(&state, u).await?;
    }
    crate::admin::policy::check_owner_enable(&state, &code, patch.enabled).await?;
    let expected_version = preconditions(&state, &code, &headers).await?;
    // A patch that changes nothing the link shows (empty, or every field at its current
    // value) is found so in the store's transaction: no new revision, the same ETag, and
    // nothing to invalidate or announce.
    let out = state.inner.store.update(&code, &patch, expected_version, now).await?;
    if out.written {
        state.notify(LinkChange::Upserted(out.link.clone()));
    }
    Ok((link_headers(&out.link), Json(to_response(&state, &out.link))).into_response())
}

/// Evaluates the request's preconditions against the stored link (RFC 9110 §13.2.2: `If-Match`
/// first, then `If-None-Match`; every line of each, [`Condition`]); returns the revision the
/// write must still find (`If-Match` with entity tags: the store compares it in the write's
/// own transaction) or `None`.
///
/// Errors: 400 `invalid_etag` when a member of either field is neither `*` nor a quoted
/// entity tag (before any lookup); 412 `precondition_failed` when `If-Match` matches no
/// current tag (strong comparison: weak tags never match), or when `If-None-Match` is `*`
/// or lists the current tag (weak comparison, §13.1.2: the link exists); 404 `not_found`
/// when a precondition is sent for a code without a link.
async fn preconditions(state: &ApiState, code: &str, headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let if_match = Condition::read(headers, &header::IF_MATCH)?;
    let if_none_match = Condition::read(headers, &header::IF_NONE_MATCH)?;
    if if_match.is_none() && if_none_match.is_none() {
        return Ok(None);
    }
    let current = state.inner.store.get(code).await?.ok_or_else(|| ApiError::link_not_found(code))?;
    let tag = etag(&current);
    if let Some(m) = &if_match
        && !m.matches_strong(&tag)
    {
        return Err(m.if_match_failed(&tag));
    }
    if let Some(m) = &if_none_match
        && m.matches_weak(&tag)
    {
        return Err(precondition_failed_exists());
    }
    Ok(if_match.filter(|m| !m.is_any()).map(|_| current.version))
}

fn build_patch(state: &ApiState, req: &UpdateLinkRequest, now: chrono::DateTime<chrono::Utc>) -> Result<LinkPatch, ApiError> {
    if req.custom_alias.is_some() {
        return Err(ApiError::bad_request("alias_rename_unsupported", "a link's code cannot be changed; create a new link instead"));
    }
    Ok(LinkPatch {
        long_url: req.long_url.as_deref().map(|u| state.inner.policy.normalize(u)).transpose()?,
        enabled: req.enabled,
        expires_at: match &req.expires_at {
            None => None,
            Some(None) => Some(None),
            Some(Some(raw)) => Some(Some(parse_expires_at(raw, now)?)),
        },
        tags: req.tags.as_deref().map(normalize_tags).transpose()?,
        redirect_type: req.redirect_type.as_ref().map(parse_redirect_type).transpose()?,
        org: match &req.org {
            None => None,
            Some(None) => Some(None),
            Some(Some(raw)) => Some(Some(validate_org(raw)?)),
        },
    })
}

/// Deletes a link; its code cannot be reused for 30 days. Send `If-Match: <ETag>` to delete
/// only the revision you read (RFC 9110 §13.1.1): the store compares the revision in the
/// delete's own transaction, so a PATCH landing between the check and the delete is caught
/// (412), as for a PATCH.
#[utoipa::path(
    delete, path = "/v1/links/{code}", tag = "links",
    params(
        ("code" = String, Path, description = "Short code (case-sensitive)"),
        ("If-Match" = Option<String>, Header, description = "ETag of the revision to delete, quoted as the ETag header sends it (or a list of them, in one line or several: any may match; or `*`); 412 when stale"),
        ("If-None-Match" = Option<String>, Header, description = "`*` or a list of ETags: 412 when the link exists (`*`) or its current ETag is listed (weak comparison)"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "invalid_etag (an If-Match or If-None-Match member that is neither `*` nor a quoted entity tag)", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 412, description = "precondition_failed", body = ErrorBody),
        (status = 503, description = "store_unavailable: the link store cannot be reached; retry", body = ErrorBody),
    )
)]
pub async fn delete_link(State(state): State<ApiState>, LinkCode(code): LinkCode, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    let expected_version = preconditions(&state, &code, &headers).await?;
    let deleted = state.inner.store.delete(&code, expected_version, now_ms()).await?;
    state.notify(LinkChange::Deleted(deleted.code));
    Ok(StatusCode::NO_CONTENT)
}
