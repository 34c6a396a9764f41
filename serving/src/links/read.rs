//! `GET /v1/links/{code}` and `GET /v1/links`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sluice_connectors::ListQuery;

use crate::dto::{ErrorBody, LinkPage, LinkResponse, ListParams};
use crate::error::ApiError;
use crate::extract::{ApiQuery, LinkCode};
use crate::links::conditional::Condition;
use crate::links::{cursor, etag, link_headers, to_response};
use crate::state::ApiState;

/// Largest page size.
pub const MAX_LIMIT: u32 = 1000;
const _: () = assert!(MAX_LIMIT as usize == crate::extract::PAGE_MAX_LIMIT, "a limit that is no integer is answered with PAGE_MAX_LIMIT");
/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 100;

/// Reads one link. Send `If-None-Match: <ETag>` to revalidate a copy: 304 (no body, the
/// same `ETag`) while the link is at that revision (RFC 9110 §13.1.2). `If-Match` is
/// evaluated first (RFC 9110 §13.2.2): 412 `precondition_failed` unless it lists the current
/// ETag (strong comparison) or is `*`. A member of either field that is neither `*` nor a
/// quoted entity tag is 400 `invalid_etag` ([`Condition`]).
#[utoipa::path(
    get, path = "/v1/links/{code}", tag = "links",
    params(
        ("code" = String, Path, description = "Short code (case-sensitive)"),
        ("If-None-Match" = Option<String>, Header, description = "ETag(s) of a copy held, quoted as the ETag header sends them (or `*`); 304 when one is current (weak comparison)"),
        ("If-Match" = Option<String>, Header, description = "ETag(s) the link must be at, quoted (or `*`); 412 when none is current (strong comparison)"),
    ),
    responses(
        (status = 200, description = "The link", body = LinkResponse, headers(("ETag" = String))),
        (status = 304, description = "The copy with this ETag is current", headers(("ETag" = String))),
        (status = 400, description = "invalid_etag (an If-Match or If-None-Match member that is neither `*` nor a quoted entity tag)", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 412, description = "precondition_failed (If-Match lists no current ETag)", body = ErrorBody),
        (status = 503, description = "store_unavailable: the link store cannot be reached; retry", body = ErrorBody),
    )
)]
pub async fn get_link(State(state): State<ApiState>, LinkCode(code): LinkCode, headers: HeaderMap) -> Result<Response, ApiError> {
    let if_match = Condition::read(&headers, &header::IF_MATCH)?;
    let if_none_match = Condition::read(&headers, &header::IF_NONE_MATCH)?;
    let link = state.inner.store.get(&code).await?.ok_or_else(|| ApiError::link_not_found(&code))?;
    if let Some(c) = if_match.filter(|c| !c.matches_strong(&etag(&link))) {
        return Err(c.if_match_failed(&etag(&link)));
    }
    if if_none_match.is_some_and(|c| c.matches_weak(&etag(&link))) {
        return Ok((StatusCode::NOT_MODIFIED, link_headers(&link)).into_response());
    }
    Ok((link_headers(&link), Json(to_response(&state, &link))).into_response())
}

/// Lists links in creation order (the store's insertion order) with keyset pagination. A
/// `cursor` is bound to the filters (`tag`, `enabled`, `org`) of the page that made it and
/// to its position: with other filters, or edited, it is 400 `invalid_cursor`.
#[utoipa::path(
    get, path = "/v1/links", tag = "links",
    params(ListParams),
    responses(
        (status = 200, description = "A page of links", body = LinkPage),
        (status = 400, description = "invalid_limit, invalid_cursor (not a cursor of this endpoint, made with other filters, edited, or of an older version: restart from the first page), invalid_parameter, unknown_parameter or duplicate_parameter", body = ErrorBody),
    )
)]
pub async fn list_links(State(state): State<ApiState>, ApiQuery(params): ApiQuery<ListParams>) -> Result<Json<LinkPage>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_limit(&limit.to_string(), MAX_LIMIT as usize));
    }
    let enabled = params.enabled.as_deref().map(|v| crate::stats::params::bool_param("enabled", v)).transpose()?;
    let tag = params.tag.as_deref().map(super::tag_filter).transpose()?;
    let org = params.org.as_deref().map(super::org_filter).transpose()?;
    // Cursors are sealed: bound to the filters of the page that made them, read as the store
    // matches them (any spelling of a tag, `1` for `true`), and to their position; with
    // other filters, or edited, they are `invalid_cursor`.
    let filters = cursor::links_filters(tag.as_deref(), enabled, org.as_deref());
    let after_seq = params.cursor.as_deref().map(|c| cursor::decode(c, &filters)).transpose()?;
    let rows = state.inner.store.list(&ListQuery { limit, after_seq, tag, enabled, org }).await?;
    // A full page may be followed by more; an extra empty page is the price of not
    // asking the store for limit + 1 rows.
    let next_cursor = if rows.len() == limit as usize { rows.last().map(|(seq, _)| cursor::encode(*seq, &filters)) } else { None };
    let items = rows.iter().map(|(_, l)| to_response(&state, l)).collect();
    Ok(Json(LinkPage { items, next_cursor }))
}
