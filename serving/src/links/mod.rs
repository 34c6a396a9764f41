//! Handlers of `/v1/links` and the validation they share (create and update apply the
//! same rules, so a fix on one path can never leave the other open).

pub mod create;
pub mod cursor;
pub mod read;
pub mod update;

use axum::http::{HeaderMap, HeaderValue, header};
use chrono::{DateTime, Utc};
use serde_json::json;
use sluice_schemas::{Link, RedirectType};

use crate::dto::LinkResponse;
use crate::error::ApiError;
use crate::state::ApiState;

/// Most tags on one link.
pub const MAX_TAGS: usize = 32;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;

/// The API view of `link`.
pub fn to_response(state: &ApiState, link: &Link) -> LinkResponse {
    LinkResponse {
        code: link.code.clone(),
        short_url: state.short_url(link),
        long_url: link.long_url.clone(),
        domain: link.domain.clone(),
        expires_at: link.expires_at,
        enabled: link.enabled,
        tags: link.tags.clone(),
        redirect_type: link.redirect_type.status(),
        created_at: link.created_at,
        updated_at: link.updated_at,
    }
}

/// Version of a newly created link (its first ETag is `etag_of(created_at, CREATED_VERSION)`).
pub const CREATED_VERSION: i64 = 1;

/// Strong ETag of a link revision: `"<created_at ms, hex>-<version>"` (the creation instant
/// keeps a recreated code's ETags apart from the old link's).
pub fn etag(link: &Link) -> String {
    etag_of(link.created_at, link.version)
}

/// [`etag`] of a link created at `created_at` at `version`.
pub fn etag_of(created_at: DateTime<Utc>, version: i64) -> String {
    format!("\"{:x}-{}\"", created_at.timestamp_millis(), version)
}

/// Headers for a single-link response: `ETag` and `Cache-Control: no-store`.
pub fn link_headers(link: &Link) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&etag(link)) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h
}

/// Milliseconds-precision now (what every store can represent exactly).
pub fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_else(Utc::now)
}

/// Parses and checks `expires_at`: RFC 3339 with an offset, strictly after `now`, kept to
/// the millisecond. Errors: 400 `invalid_expires_at` (unparsable) or `expires_in_past`.
pub fn parse_expires_at(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let t = DateTime::parse_from_rfc3339(raw.trim())
        .map_err(|e| {
            ApiError::bad_request("invalid_expires_at", format!("expires_at must be an rfc 3339 timestamp with offset: {e}"))
                .with_details(json!({ "expires_at": raw }))
        })?
        .with_timezone(&Utc);
    let t = DateTime::from_timestamp_millis(t.timestamp_millis()).ok_or_else(|| ApiError::bad_request("invalid_expires_at", "expires_at is out of range"))?;
    if t <= now {
        return Err(ApiError::bad_request("expires_in_past", "expires_at must be in the future").with_details(json!({ "expires_at": t, "now": now })));
    }
    Ok(t)
}

/// Validates tags: at most 32, each 1–64 characters after trimming, no control characters;
/// duplicates removed keeping the first occurrence. Error: 400 `invalid_tags`.
pub fn normalize_tags(tags: &[String]) -> Result<Vec<String>, ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad_request("invalid_tags", format!("at most {MAX_TAGS} tags are allowed")).with_details(json!({ "max_tags": MAX_TAGS })));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        let t = t.trim();
        let n = t.chars().count();
        if n == 0 || n > MAX_TAG_CHARS || t.chars().any(char::is_control) {
            return Err(ApiError::bad_request("invalid_tags", format!("each tag must be 1 to {MAX_TAG_CHARS} characters without control characters"))
                .with_details(json!({ "max_tag_chars": MAX_TAG_CHARS })));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    Ok(out)
}

/// 301 or 302; anything else is 400 `invalid_redirect_type`.
pub fn parse_redirect_type(v: u16) -> Result<RedirectType, ApiError> {
    RedirectType::try_from(v).map_err(|msg| ApiError::bad_request("invalid_redirect_type", msg).with_details(json!({ "allowed": [301, 302] })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_at_rules() {
        let now = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").expect("t").with_timezone(&Utc);
        let t = parse_expires_at("2030-01-01T00:00:00+02:00", now).expect("future");
        assert_eq!(t.to_rfc3339(), "2029-12-31T22:00:00+00:00");
        assert_eq!(parse_expires_at("2025-01-01T00:00:00Z", now).expect_err("equal").code, "expires_in_past");
        assert_eq!(parse_expires_at("2024-01-01T00:00:00Z", now).expect_err("past").code, "expires_in_past");
        assert_eq!(parse_expires_at("tomorrow", now).expect_err("junk").code, "invalid_expires_at");
        assert_eq!(parse_expires_at("2030-01-01T00:00:00", now).expect_err("no offset").code, "invalid_expires_at");
    }

    #[test]
    fn tag_rules() {
        assert_eq!(normalize_tags(&["a".into(), " b ".into(), "a".into()]).expect("ok"), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(normalize_tags(&["".into()]).expect_err("empty").code, "invalid_tags");
        assert_eq!(normalize_tags(&["x\u{0}".into()]).expect_err("ctl").code, "invalid_tags");
        assert_eq!(normalize_tags(&vec!["t".to_string(); 33]).expect_err("many").code, "invalid_tags");
        assert!(normalize_tags(&["é".repeat(64)]).is_ok());
        assert_eq!(normalize_tags(&["é".repeat(65)]).expect_err("long").code, "invalid_tags");
    }
}
