//! Handlers of `/v1/links` and the validation they share (create and update apply the
//! same rules, so a fix on one path can never leave the other open).

pub mod conditional;
pub mod create;
pub mod cursor;
pub mod read;
pub mod update;

use axum::http::{HeaderMap, HeaderValue, header};
use chrono::{DateTime, Datelike, Utc};
use serde_json::json;
use sluice_schemas::{Link, RedirectType};

use crate::dto::{LinkResponse, RedirectTypeNumber};
use crate::error::ApiError;
use crate::state::ApiState;

/// Most tags on one link.
pub const MAX_TAGS: usize = 32;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;
/// Longest organisation, in characters.
pub const MAX_ORG_CHARS: usize = 64;

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
        org: link.org.clone(),
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

/// Parses and checks `expires_at`: RFC 3339 with an offset, strictly after `now`, stored to
/// the millisecond: finer digits round **up** to the next millisecond, so a link never
/// expires before the instant asked (`…00.123456789Z` → `…00.124Z`). A leap second
/// (`23:59:60Z`, RFC 3339 §5.6) is the first millisecond after it (POSIX time has no leap
/// seconds); second 60 at any other UTC time is refused ([`crate::rfc3339`]). Errors: 400
/// `invalid_expires_at` (unparsable, a misplaced leap second) or `expires_in_past`.
pub fn parse_expires_at(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let t = crate::rfc3339::parse(raw.trim())
        .map_err(|e| {
            ApiError::bad_request("invalid_expires_at", format!("expires_at must be an rfc 3339 timestamp with offset: {e}"))
                .with_details(json!({ "expires_at": raw }))
        })?
        .with_timezone(&Utc);
    let round_up = i64::from(t.timestamp_subsec_nanos() % 1_000_000 != 0);
    let t = t.timestamp_millis().checked_add(round_up).and_then(DateTime::from_timestamp_millis).filter(|t| t.year() <= 9999).ok_or_else(|| {
        ApiError::bad_request("invalid_expires_at", "expires_at must be at or before 9999-12-31T23:59:59.999Z").with_details(json!({ "expires_at": raw }))
    })?;
    if t <= now {
        return Err(ApiError::bad_request("expires_in_past", "expires_at must be in the future").with_details(json!({ "expires_at": t, "now": now })));
    }
    Ok(t)
}

/// Validates tags: at most 32 distinct ones (counted once trimmed, normalized and
/// deduplicated), each 1–64 characters after trimming white space and
/// normalizing to Unicode NFC (UAX #15, so `café` typed precomposed or as `e` + U+0301 is one
/// tag), with no control characters (`Cc`) and no format characters (`Cf`: zero-width
/// spaces and joiners, bidirectional overrides such as U+202E, the byte order mark), which
/// would make tags that look alike or empty differ; duplicates removed keeping the first
/// occurrence. Error: 400 `invalid_tags` (`details.index` names the offending tag).
pub fn normalize_tags(tags: &[String]) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (index, raw) in tags.iter().enumerate() {
        let t = checked_tag(raw).map_err(|bad| {
            let mut details = json!({ "index": index });
            match bad {
                BadTag::Length => details["max_tag_chars"] = json!(MAX_TAG_CHARS),
                BadTag::JoinerAtEdge(c) | BadTag::Invisible(c) => details["character"] = json!(format!("U+{:04X}", u32::from(c))),
            }
            ApiError::bad_request("invalid_tags", format!("tag {index}: {}", bad.reason())).with_details(details)
        })?;
        if !out.contains(&t) {
            out.push(t);
        }
        if out.len() > MAX_TAGS {
            return Err(ApiError::bad_request("invalid_tags", format!("at most {MAX_TAGS} distinct tags are allowed"))
                .with_details(json!({ "max_tags": MAX_TAGS, "index": index })));
        }
    }
    Ok(out)
}

/// Why a tag cannot be stored ([`checked_tag`]).
enum BadTag {
    /// Empty after trimming, or over [`MAX_TAG_CHARS`] characters.
    Length,
    /// A zero-width joiner or non-joiner first or last.
    JoinerAtEdge(char),
    /// A control or format character ([`is_invisible`]).
    Invisible(char),
}

impl BadTag {
    fn reason(&self) -> String {
        match self {
            BadTag::Length => format!("each tag must be 1 to {MAX_TAG_CHARS} characters (after trimming white space)"),
            BadTag::JoinerAtEdge(c) => {
                format!("a zero-width joiner or non-joiner may only stand between characters of a tag (found U+{:04X} at an edge)", u32::from(*c))
            }
            BadTag::Invisible(c) => format!("tags must not contain control or format characters (found U+{:04X})", u32::from(*c)),
        }
    }
}

/// One tag in its stored spelling ([`normalize_tag`]), or why no link can carry it.
fn checked_tag(raw: &str) -> Result<String, BadTag> {
    let t = normalize_tag(raw);
    let n = t.chars().count();
    if n == 0 || n > MAX_TAG_CHARS {
        return Err(BadTag::Length);
    }
    if let Some(c) = [t.chars().next(), t.chars().last()].into_iter().flatten().find(|&c| is_joiner(c)) {
        return Err(BadTag::JoinerAtEdge(c));
    }
    if let Some(c) = t.chars().find(|&c| is_invisible(c)) {
        return Err(BadTag::Invisible(c));
    }
    Ok(t)
}

/// A `tag` query filter (`GET /v1/links?tag=`, `GET /v1/stats/summary?tag=`) in its stored
/// spelling ([`normalize_tag`]). A value no link could carry (empty after trimming, over
/// 64 characters, a control or format character, a joiner at an edge: the rules of
/// [`normalize_tags`]) is 400 `invalid_parameter` with `details {parameter: "tag", value,
/// reason}`, the same on both endpoints.
pub fn tag_filter(raw: &str) -> Result<String, ApiError> {
    checked_tag(raw).map_err(|bad| {
        let reason = bad.reason();
        ApiError::bad_request("invalid_parameter", format!("invalid \"tag\": {reason}"))
            .with_details(json!({ "parameter": "tag", "value": raw, "reason": reason }))
    })
}

/// The canonical spelling of one tag as stored and matched: white space trimmed, Unicode NFC
/// (UAX #15). `GET /v1/links?tag=` and the stats' `tag` filter use it too, so any spelling of
/// a tag finds the links that carry it.
pub fn normalize_tag(raw: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    raw.trim().nfc().collect::<String>().trim().to_owned()
}

/// Zero-width non-joiner and joiner (U+200C, U+200D): format characters that Persian and
/// Indic scripts and emoji sequences need inside words (UAX #31 §2.3 allows them there).
fn is_joiner(c: char) -> bool {
    matches!(c, '\u{200c}' | '\u{200d}')
}

/// A control (`Cc`) or format (`Cf`) character other than the joiners: invisible, or
/// changing how the text around it is displayed (Unicode general categories, UAX #44).
fn is_invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.is_control() || (c.general_category() == GeneralCategory::Format && !is_joiner(c))
}

/// Why `org` names no organisation a link can have, or `None` when it is valid: 1 to
/// [`MAX_ORG_CHARS`] characters, each an ASCII letter or digit, `_`, `.` or `-`.
fn org_problem(org: &str) -> Option<&'static str> {
    if org.is_empty() || org.len() > MAX_ORG_CHARS {
        Some("org must be 1 to 64 characters")
    } else if !org.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        Some("org may only contain the characters A-Z, a-z, 0-9, '_', '.' and '-'")
    } else {
        None
    }
}

/// Checks a link's organisation (`org` of `POST /v1/links` and `PATCH /v1/links/{code}`): 1
/// to [`MAX_ORG_CHARS`] characters, each an ASCII letter or digit, `_`, `.` or `-`;
/// case-sensitive and kept exactly as given (no trimming). Error: 400 `invalid_org`, the
/// message saying which rule is broken, `details: {"org": <the value>}`.
pub fn validate_org(org: &str) -> Result<String, ApiError> {
    match org_problem(org) {
        None => Ok(org.to_owned()),
        Some(why) => Err(ApiError::bad_request("invalid_org", why).with_details(json!({ "org": org }))),
    }
}

/// An `org` query filter of `GET /v1/links`: a value no link could carry ([`validate_org`]'s
/// rules) is 400 `invalid_parameter` with `details {parameter: "org", value, reason}`, as for
/// the `tag` filter.
pub fn org_filter(raw: &str) -> Result<String, ApiError> {
    match org_problem(raw) {
        None => Ok(raw.to_owned()),
        Some(reason) => Err(ApiError::bad_request("invalid_parameter", format!("invalid \"org\": {reason}"))
            .with_details(json!({ "parameter": "org", "value": raw, "reason": reason }))),
    }
}

/// 301 or 302; any other JSON number — also one no integer type holds (`1e20`,
/// `100000000000000000000`), a negative or a fractional one — is 400
/// `invalid_redirect_type`: `redirect_type must be 301 or 302, got <number>`.
pub fn parse_redirect_type(RedirectTypeNumber(v): &RedirectTypeNumber) -> Result<RedirectType, ApiError> {
    let refuse = |msg: String| ApiError::bad_request("invalid_redirect_type", msg).with_details(json!({ "allowed": [301, 302] }));
    match v.as_u64().and_then(|n| u16::try_from(n).ok()) {
        Some(n) => RedirectType::try_from(n).map_err(refuse),
        None => Err(refuse(format!("redirect_type must be 301 or 302, got {v}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_type_is_301_or_302_whatever_number_is_sent() {
        let n = |text: &str| RedirectTypeNumber(serde_json::from_str::<serde_json::Number>(text).expect(text));
        assert_eq!(parse_redirect_type(&n("301")).expect("301"), RedirectType::Permanent);
        assert_eq!(parse_redirect_type(&n("302")).expect("302"), RedirectType::Found);
        for (text, shown) in [
            ("307", "307"),
            ("0", "0"),
            ("-302", "-302"),
            ("65838", "65838"), // 302 + 65536: not wrapped to 302
            ("18446744073709551615", "18446744073709551615"),
            ("100000000000000000000", "1e+20"),
            ("301.5", "301.5"),
            ("301.0", "301.0"),
        ] {
            let e = parse_redirect_type(&n(text)).expect_err(text);
            assert_eq!(
                (e.code, e.message.as_str(), &e.details),
                ("invalid_redirect_type", format!("redirect_type must be 301 or 302, got {shown}").as_str(), &json!({ "allowed": [301, 302] })),
                "{text}"
            );
        }
    }

    #[test]
    fn expires_at_rules() {
        let now = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").expect("t").with_timezone(&Utc);
        let t = parse_expires_at("2030-01-01T00:00:00+02:00", now).expect("future");
        assert_eq!(t.to_rfc3339(), "2029-12-31T22:00:00+00:00");
        assert_eq!(parse_expires_at("2025-01-01T00:00:00Z", now).expect_err("equal").code, "expires_in_past");
        assert_eq!(parse_expires_at("2024-01-01T00:00:00Z", now).expect_err("past").code, "expires_in_past");
        assert_eq!(parse_expires_at("tomorrow", now).expect_err("junk").code, "invalid_expires_at");
        // Rounding up past the last representable millisecond of year 9999 is refused as
        // an invalid expires_at (not a formatting error later).
        assert_eq!(parse_expires_at("9999-12-31T23:59:59.9999999Z", now).expect_err("year 10000").code, "invalid_expires_at");
        assert_eq!(
            parse_expires_at("9999-12-31T23:59:59.999Z", now).expect("last millisecond"),
            DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999Z").expect("rfc3339").with_timezone(&Utc)
        );
        assert_eq!(parse_expires_at("2030-01-01T00:00:00", now).expect_err("no offset").code, "invalid_expires_at");
        // Sub-millisecond digits round up; whole milliseconds stay.
        let ms = |raw: &str| parse_expires_at(raw, now).expect(raw).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        assert_eq!(ms("2030-01-01T00:00:00.123456789Z"), "2030-01-01T00:00:00.124Z");
        assert_eq!(ms("2030-01-01T00:00:00.123000000Z"), "2030-01-01T00:00:00.123Z");
        assert_eq!(ms("2030-01-01T00:00:00.123Z"), "2030-01-01T00:00:00.123Z");
        assert_eq!(ms("2030-01-01T00:00:00.999999Z"), "2030-01-01T00:00:01.000Z");
        assert_eq!(ms("2030-01-01T00:00:00.000001Z"), "2030-01-01T00:00:00.001Z");
        // An instant 0.4 ms after now is in the future and stays so after rounding.
        assert_eq!(parse_expires_at("2025-01-01T00:00:00.0004Z", now).expect("future").timestamp_millis(), now.timestamp_millis() + 1);
        // A leap second is the millisecond after it.
        assert_eq!(ms("2030-06-30T23:59:60Z"), "2030-07-01T00:00:00.000Z");
        assert_eq!(ms("2030-06-30T23:59:60.5Z"), "2030-07-01T00:00:00.500Z");
        let e = parse_expires_at("2030-06-30T12:00:60Z", now).expect_err("leap second at noon");
        assert_eq!(
            (e.code, e.message.as_str()),
            ("invalid_expires_at", "expires_at must be an rfc 3339 timestamp with offset: second 60 (a leap second) is only valid at 23:59:60 UTC")
        );
    }

    #[test]
    fn org_rules() {
        for ok in ["acme", "A", "team_a.eu-1", &"x".repeat(64), "0"] {
            assert_eq!(validate_org(ok).expect(ok), ok);
            assert_eq!(org_filter(ok).expect(ok), ok);
        }
        for (bad, why) in [
            ("", "org must be 1 to 64 characters"),
            (&"x".repeat(65), "org must be 1 to 64 characters"),
            (" acme", "org may only contain the characters A-Z, a-z, 0-9, '_', '.' and '-'"),
            ("a/b", "org may only contain the characters A-Z, a-z, 0-9, '_', '.' and '-'"),
            ("café", "org may only contain the characters A-Z, a-z, 0-9, '_', '.' and '-'"),
            ("a\u{0}", "org may only contain the characters A-Z, a-z, 0-9, '_', '.' and '-'"),
        ] {
            let e = validate_org(bad).expect_err(bad);
            assert_eq!((e.code, e.message.as_str(), &e.details), ("invalid_org", why, &json!({ "org": bad })), "{bad:?}");
            let e = org_filter(bad).expect_err(bad);
            assert_eq!((e.code, &e.details["reason"]), ("invalid_parameter", &json!(why)), "{bad:?}");
        }
    }

    #[test]
    fn tag_rules() {
        assert_eq!(normalize_tags(&["a".into(), " b ".into(), "a".into()]).expect("ok"), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(normalize_tags(&["".into()]).expect_err("empty").code, "invalid_tags");
        assert_eq!(normalize_tags(&["x\u{0}".into()]).expect_err("ctl").code, "invalid_tags");
        for edge in ["\u{200d}ab", "ab\u{200c}", "\u{200d}"] {
            let e = normalize_tags(&[edge.into()]).expect_err("joiner at an edge");
            assert_eq!((e.code, &e.details["index"]), ("invalid_tags", &json!(0)), "{edge:?}");
        }
        assert_eq!(normalize_tags(&["a\u{200d}b".into()]).expect("joiner inside"), vec!["a\u{200d}b".to_string()]);
        // 33 copies of one tag are one tag; the limit counts distinct tags once normalized
        // (attack of session 50: a 33rd tag equal to another once trimmed was refused).
        assert_eq!(normalize_tags(&vec!["t".to_string(); 33]).expect("one distinct tag"), vec!["t".to_string()]);
        let mut tags: Vec<String> = (0..32).map(|i| format!("t{i}")).collect();
        tags.extend([" t1 ".to_string(), "t0".to_string()]);
        assert_eq!(normalize_tags(&tags).expect("32 distinct").len(), 32);
        tags.push("t32".into());
        let e = normalize_tags(&tags).expect_err("33 distinct");
        assert_eq!((e.code, e.details), ("invalid_tags", json!({"max_tags": 32, "index": 34})));
        assert!(normalize_tags(&["é".repeat(64)]).is_ok());
        assert_eq!(normalize_tags(&["é".repeat(65)]).expect_err("long").code, "invalid_tags");
    }

    #[test]
    fn tags_are_nfc_and_visible() {
        // Precomposed U+00E9 and e + U+0301 are one tag, stored precomposed.
        let nfd = "cafe\u{301}".to_string();
        assert_eq!(normalize_tags(&["caf\u{e9}".into(), nfd.clone()]).expect("ok"), vec!["caf\u{e9}".to_string()]);
        assert_eq!(normalize_tags(std::slice::from_ref(&nfd)).expect("ok"), vec!["caf\u{e9}".to_string()]);
        assert_eq!(normalize_tag(" cafe\u{301} "), "caf\u{e9}");
        // 64 decomposed characters are 64 after composition, 65 before: counted after.
        assert!(normalize_tags(&["e\u{301}".repeat(64)]).is_ok());
        for (bad, cp) in [("\u{200b}", "U+200B"), ("\u{202e}evil", "U+202E"), ("a\u{feff}", "U+FEFF"), ("x\u{2066}y", "U+2066"), ("\u{7f}", "U+007F")] {
            let e = normalize_tags(&["ok".into(), bad.into()]).expect_err(bad);
            assert_eq!(e.code, "invalid_tags", "{bad:?}");
            assert_eq!(e.details["character"], cp, "{bad:?}");
            assert_eq!(e.details["index"], 1, "{bad:?}");
        }
        // White space only (including U+3000) or joiners only is an empty tag.
        assert_eq!(normalize_tags(&["\u{3000} ".into()]).expect_err("blank").code, "invalid_tags");
        assert_eq!(normalize_tags(&["\u{200d}\u{200c}".into()]).expect_err("joiners").code, "invalid_tags");
        // Joiners inside words and emoji sequences are kept (Persian "می‌خواهم", a family emoji).
        let fa = "\u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}".to_string();
        let family = "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}".to_string();
        assert_eq!(normalize_tags(&[fa.clone(), family.clone()]).expect("ok"), vec![fa, family]);
        // Letters of other scripts and emoji stay allowed.
        assert_eq!(normalize_tags(&["日本".into(), "🚀".into()]).expect("ok"), vec!["日本".to_string(), "🚀".to_string()]);
    }
}
