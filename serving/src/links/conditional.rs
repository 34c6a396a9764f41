//! `If-Match` and `If-None-Match` of the single-link routes (RFC 9110 §13.1.1, §13.1.2).
//!
//! Each field is `*` or a comma-separated list of entity tags, `"opaque"` or `W/"opaque"`
//! (§8.8.3); its lines are one list (§5.3), and empty list members are skipped (§5.6.1.2).
//! A member that is neither (`abc` for the ETag `"abc"`, `W/abc`, `"abc`) could never match
//! an ETag of ours: instead of counting it as "no match" (a GET then answers 200 with the
//! body as if nothing had been sent, a PATCH 412 "modified" however often it is retried),
//! the request is refused with 400 `invalid_etag`, naming the header and the member
//! ([`Condition::read`]). `*` stands alone (`"*" / #entity-tag`, §13.1.1): a field that lists
//! it with entity tags or twice (`*, "a"`, on one line or several) is refused the same way.

use axum::http::{HeaderMap, HeaderName, header};
use serde_json::json;

use crate::error::{ApiError, echo};

/// A parsed `If-Match` or `If-None-Match` field (every line of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `*` was listed.
    any: bool,
    /// The entity tags listed: weak or not, and the opaque tag with its quotes.
    tags: Vec<(bool, Vec<u8>)>,
}

impl Condition {
    /// The field `name` (`If-Match` or `If-None-Match`) of `headers`: `Ok(None)` when absent.
    ///
    /// Errors: 400 `invalid_etag` when a member is neither `*` nor an entity tag (details
    /// `{"header", "value"}`: the header's name and the member as sent, bounded), or when
    /// `*` is not the field's only member (details `value`: the field's lines joined by `, `).
    pub fn read(headers: &HeaderMap, name: &HeaderName) -> Result<Option<Condition>, ApiError> {
        let mut lines = headers.get_all(name).iter().peekable();
        if lines.peek().is_none() {
            return Ok(None);
        }
        let mut cond = Condition { any: false, tags: Vec::new() };
        let mut members_seen = 0usize;
        for line in headers.get_all(name) {
            for member in members(line.as_bytes()) {
                members_seen += 1;
                match member {
                    b"*" => cond.any = true,
                    m => match entity_tag(m) {
                        Some(tag) => cond.tags.push(tag),
                        None => return Err(invalid(name, m)),
                    },
                }
            }
        }
        if cond.any && members_seen > 1 {
            let field: Vec<&[u8]> = headers.get_all(name).iter().map(|l| l.as_bytes()).collect();
            return Err(star_not_alone(name, &field.join(&b", "[..])));
        }
        Ok(Some(cond))
    }

    /// Whether `*` was sent (then it is the field's only member: the link must exist,
    /// whatever its revision).
    pub fn is_any(&self) -> bool {
        self.any
    }

    /// Strong comparison with the ETag `current` (`If-Match`, §8.8.3.2): `*`, or a listed
    /// tag that is not weak and has `current`'s opaque tag.
    pub fn matches_strong(&self, current: &str) -> bool {
        self.any || self.tags.iter().any(|(weak, opaque)| !weak && opaque == current.as_bytes())
    }

    /// The 412 for an `If-Match` that [`Self::matches_strong`] refused against `current`:
    /// one listing `current` only as a weak tag (`W/"…"`) is told that weak tags never
    /// match (attack of session 51: it read "modified since the given ETag", though nothing
    /// had changed); one listing nothing (`If-Match:` empty, or `,`) is told so (attack of
    /// session 52: it read "modified since the given ETag" too); any other is a stale ETag.
    pub fn if_match_failed(&self, current: &str) -> ApiError {
        if !self.any && self.tags.is_empty() {
            crate::error::precondition_failed_empty()
        } else if self.matches_weak(current) {
            crate::error::precondition_failed_weak()
        } else {
            crate::error::precondition_failed()
        }
    }

    /// Weak comparison with the ETag `current` (`If-None-Match`): `*`, or a listed tag, weak
    /// or not, with `current`'s opaque tag (`W/"x"` matches `"x"`).
    pub fn matches_weak(&self, current: &str) -> bool {
        let current = current.strip_prefix("W/").unwrap_or(current).as_bytes();
        self.any || self.tags.iter().any(|(_, opaque)| opaque == current)
    }
}

/// The non-empty members of one line of a list field, optional whitespace trimmed. A comma
/// inside a quoted opaque tag does not split it (etagc includes `,`).
fn members(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = line;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let mut quoted = false;
            let end = rest
                .iter()
                .position(|&b| {
                    if b == b'"' {
                        quoted = !quoted;
                    }
                    b == b',' && !quoted
                })
                .unwrap_or(rest.len());
            let member = rest[..end].trim_ascii();
            rest = rest.get(end + 1..).unwrap_or_default();
            if !member.is_empty() {
                return Some(member);
            }
        }
    })
}

/// `member` as an entity tag (`[W/]"etagc*"`, RFC 9110 §8.8.3): whether it is weak, and its
/// opaque tag with the quotes; `None` when it is not one.
fn entity_tag(member: &[u8]) -> Option<(bool, Vec<u8>)> {
    let (weak, opaque) = match member.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, member),
    };
    let inner = opaque.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    // etagc = %x21 / %x23-7E / obs-text: no space, no control, no further quote.
    inner.iter().all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80).then(|| (weak, opaque.to_vec()))
}

/// 400 `invalid_etag` for `member` of the field `name`.
fn invalid(name: &HeaderName, member: &[u8]) -> ApiError {
    let display = if name == header::IF_MATCH { "If-Match" } else { "If-None-Match" };
    let value = String::from_utf8_lossy(member);
    let message = format!(
        "{display} must be * or a list of entity tags in double quotes, as the ETag header sends them (\"1a2b-3\" or W/\"1a2b-3\", RFC 9110 section 8.8.3); got \"{}\"",
        echo(&value)
    );
    ApiError::bad_request("invalid_etag", message).with_details(json!({ "header": display, "value": value }))
}

/// 400 `invalid_etag` for the field `name` (its lines `field`) listing `*` with other members.
fn star_not_alone(name: &HeaderName, field: &[u8]) -> ApiError {
    let display = if name == header::IF_MATCH { "If-Match" } else { "If-None-Match" };
    let value = String::from_utf8_lossy(field);
    let message = format!("{display} must be * alone or a list of entity tags, not both (RFC 9110 section 13.1.1); got \"{}\"", echo(&value));
    ApiError::bad_request("invalid_etag", message).with_details(json!({ "header": display, "value": value }))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn read(name: &HeaderName, lines: &[&[u8]]) -> Result<Option<Condition>, ApiError> {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(name, HeaderValue::from_bytes(l).expect("header value"));
        }
        Condition::read(&h, name)
    }

    #[test]
    fn lists_of_entity_tags_and_star_are_read_across_lines() {
        let c = read(&header::IF_MATCH, &[b"\"a\", W/\"b\"", b" , \"c,d\" ,,", b"\"\xe9\""]).expect("valid").expect("present");
        let tags: Vec<(bool, &[u8])> = c.tags.iter().map(|(w, o)| (*w, o.as_slice())).collect();
        assert_eq!(tags, vec![(false, &b"\"a\""[..]), (true, b"\"b\""), (false, b"\"c,d\""), (false, b"\"\xe9\"")]);
        assert!(!c.any);
        assert_eq!(read(&header::IF_MATCH, &[]), Ok(None));
        let star = read(&header::IF_NONE_MATCH, &[b"*"]).expect("valid").expect("present");
        assert!(star.is_any() && star.matches_strong("\"x\"") && star.matches_weak("\"x\""));
    }

    #[test]
    fn star_with_other_members_is_400_invalid_etag() {
        for (name, lines, value) in [
            (&header::IF_MATCH, &[&b"*, \"a\""[..]][..], "*, \"a\""),
            (&header::IF_MATCH, &[b"\"a\"", b"*"], "\"a\", *"),
            (&header::IF_NONE_MATCH, &[b"*,*"], "*,*"),
            (&header::IF_NONE_MATCH, &[b"*", b" *"], "*,  *"),
        ] {
            let e = read(name, lines).expect_err(value);
            let display = if *name == header::IF_MATCH { "If-Match" } else { "If-None-Match" };
            assert_eq!((e.status.as_u16(), e.code), (400, "invalid_etag"), "{value}");
            assert_eq!(e.details, json!({"header": display, "value": value}), "{value}");
            assert_eq!(
                e.message,
                format!("{display} must be * alone or a list of entity tags, not both (RFC 9110 section 13.1.1); got \"{value}\""),
                "{value}"
            );
        }
        // Empty members around a lone `*` are no members (§5.6.1.2).
        assert!(read(&header::IF_MATCH, &[b" , *,", b""]).expect("valid").expect("present").is_any());
    }

    #[test]
    fn strong_and_weak_comparison() {
        let c = read(&header::IF_MATCH, &[b"W/\"a\", \"b\""]).expect("valid").expect("present");
        assert!(!c.matches_strong("\"a\"") && c.matches_strong("\"b\""));
        assert!(c.matches_weak("\"a\"") && c.matches_weak("W/\"a\"") && c.matches_weak("\"b\""));
        assert!(!c.matches_weak("\"c\"") && !c.matches_strong("\"c\""));
        // The 412 of a refused If-Match: a weak tag of the current ETag is named as such.
        let weak = c.if_match_failed("\"a\"");
        assert_eq!(
            (weak.status.as_u16(), weak.code, weak.message.as_str()),
            (
                412,
                "precondition_failed",
                "If-Match compares ETags strongly (RFC 9110 §13.1.1): a weak ETag (W/\"…\") never matches; send the ETag as GET returned it"
            )
        );
        let stale = c.if_match_failed("\"c\"");
        assert_eq!((stale.status.as_u16(), stale.code, stale.message.as_str()), (412, "precondition_failed", "the link was modified since the given ETag"));
        // An empty list matches nothing, and says so.
        for empty in [&b""[..], b",", b" , ,"] {
            let c = read(&header::IF_MATCH, &[empty]).expect("valid").expect("present");
            assert!(!c.matches_strong("\"a\""));
            let e = c.if_match_failed("\"a\"");
            assert_eq!(
                (e.status.as_u16(), e.message.as_str()),
                (412, "If-Match lists no ETag, so none can match (RFC 9110 §13.1.1); send the ETag as GET returned it, or leave the header out"),
                "{empty:?}"
            );
        }
    }

    #[test]
    fn a_member_that_is_no_entity_tag_is_400_invalid_etag() {
        for (name, bad, member) in [
            (&header::IF_NONE_MATCH, &b"abc"[..], "abc"),
            (&header::IF_MATCH, b"\"a\", abc", "abc"),
            (&header::IF_MATCH, b"W/abc", "W/abc"),
            (&header::IF_MATCH, b"\"abc", "\"abc"),
            (&header::IF_MATCH, b"w/\"abc\"", "w/\"abc\""),
            (&header::IF_MATCH, b"\"a b\"", "\"a b\""),
            (&header::IF_MATCH, b"\"a\"\"b\"", "\"a\"\"b\""),
            (&header::IF_MATCH, b"**", "**"),
        ] {
            let e = read(name, &[bad]).expect_err(member);
            let display = if *name == header::IF_MATCH { "If-Match" } else { "If-None-Match" };
            assert_eq!((e.status.as_u16(), e.code), (400, "invalid_etag"), "{member}");
            assert_eq!(e.details, json!({"header": display, "value": member}), "{member}");
        }
        let e = read(&header::IF_NONE_MATCH, &[b"abc"]).expect_err("unquoted");
        assert_eq!(
            e.message,
            "If-None-Match must be * or a list of entity tags in double quotes, as the ETag header sends them (\"1a2b-3\" or W/\"1a2b-3\", RFC 9110 section 8.8.3); got \"abc\""
        );
    }
}
