//! Opaque keyset pagination cursors of `GET /v1/links` and `GET /v1/admin/audit`:
//! [`Sealed`] cursors of the shared mechanism of [`crate::cursor`], as `GET /v1/anomalies`
//! and the webhook deliveries use.
//!
//! A cursor encodes the store sequence number of the last row of a page (keyset
//! pagination): rows added while a client pages through never shift pages or repeat. Each
//! endpoint's cursors carry their own kind, so one endpoint's cursor is 400
//! `invalid_cursor` on the other, and a fingerprint covering the kind, the filters of the
//! page that made them ([`links_filters`], [`audit_filters`]) and the sequence number: a
//! cursor used with other filters, or with any field edited, is refused (400
//! `invalid_cursor`) instead of answering a page of another listing or from another
//! position. Format (not a contract), base64url (no padding) of:
//!
//! - `GET /v1/links`: `"l3:<seq>:<fingerprint>"`, the filters being `tag` (in its stored
//!   spelling), `enabled` (as read: `1` is `true`) and `org`;
//! - `GET /v1/admin/audit`: `"u2:<seq>:<fingerprint>"`, the filters being `from`, `to`,
//!   `actor` and `action`.
//!
//! Cursors of earlier versions are 400 `invalid_cursor`, and the client restarts from the
//! first page: `"l2:<seq>:<filter fingerprint>"` and `"u1:<seq>:<filter fingerprint>"`,
//! whose position was not sealed, as not cursors of this endpoint; `"l1:<seq>"`, which
//! named no filters, with [`LEGACY_MESSAGE`].

use chrono::{DateTime, Utc};

use crate::cursor::{OTHER_FILTERS, SAME_FILTERS, Sealed, fingerprint, text_of};
use crate::error::ApiError;

/// `GET /v1/links` cursors: the sequence number of a page's last link, bound to the page's
/// filters ([`links_filters`]).
const LINKS: Sealed = Sealed { kind: "l3", fields: 1, other: OTHER_FILTERS, hint: SAME_FILTERS };
/// Kind prefix of the `GET /v1/links` cursors of the first version (no filter fingerprint).
const LINKS_UNBOUND: &str = "l1";
/// The message of the 400 `invalid_cursor` answer to a `GET /v1/links` cursor of the first
/// version (`"l1:<seq>"`).
pub const LEGACY_MESSAGE: &str = "cursor is from an older version of this API and names no filters, so the page it continues is unknown: restart the listing from the first page (without a cursor)";
/// `GET /v1/admin/audit` cursors: the sequence number of a page's last entry, bound to the
/// page's filters ([`audit_filters`]).
const AUDIT: Sealed = Sealed { kind: "u2", fields: 1, other: OTHER_FILTERS, hint: SAME_FILTERS };

/// What a `GET /v1/links` cursor is bound to: the fingerprint of the filters as the store
/// matches them (`tag` in its stored spelling, `enabled` as read, `org` exactly).
pub fn links_filters(tag: Option<&str>, enabled: Option<bool>, org: Option<&str>) -> String {
    fingerprint(&[&tag, &enabled, &org])
}

/// What a `GET /v1/admin/audit` cursor is bound to: the fingerprint of the filters as read
/// (`from` and `to` at full precision, `actor` and `action` exactly).
pub fn audit_filters(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>, actor: Option<&str>, action: Option<&str>) -> String {
    fingerprint(&[&from, &to, &actor, &action])
}

/// Encodes the `GET /v1/links` keyset position after `seq` under `filters` (from
/// [`links_filters`]).
pub fn encode(seq: i64, filters: &str) -> String {
    LINKS.encode(&[&seq.to_string()], filters)
}

/// Decodes a `GET /v1/links` cursor from [`encode`] made under the same `filters` and not
/// edited since; 400 `invalid_cursor` (`details: {"cursor"}`) for anything else: an edited
/// cursor, an audit cursor, a cursor of other filters, a cursor of an earlier version (a
/// first-version one, `"l1:<seq>"`, which names no filters, with [`LEGACY_MESSAGE`]).
pub fn decode(cursor: &str, filters: &str) -> Result<i64, ApiError> {
    if let Ok(text) = text_of(cursor)
        && text.strip_prefix(LINKS_UNBOUND).and_then(|r| r.strip_prefix(':')).is_some_and(crate::query::is_digits)
    {
        return Err(ApiError::bad_request("invalid_cursor", LEGACY_MESSAGE).with_details(serde_json::json!({ "cursor": cursor })));
    }
    decode_kind(&LINKS, cursor, filters)
}

/// Encodes the `GET /v1/admin/audit` keyset position after `seq` under `filters` (from
/// [`audit_filters`]).
pub fn encode_audit(seq: i64, filters: &str) -> String {
    AUDIT.encode(&[&seq.to_string()], filters)
}

/// Decodes a `GET /v1/admin/audit` cursor from [`encode_audit`] made under the same
/// `filters` and not edited since; 400 `invalid_cursor` for anything else (an edited
/// cursor, a links cursor, a cursor of other filters or of an earlier version).
pub fn decode_audit(cursor: &str, filters: &str) -> Result<i64, ApiError> {
    decode_kind(&AUDIT, cursor, filters)
}

/// The sequence number of `cursor`, a cursor of `kind` bound to `filters`: a non-negative
/// number in plain decimal digits (anything else was crafted with the format known).
fn decode_kind(kind: &Sealed, cursor: &str, filters: &str) -> Result<i64, ApiError> {
    let fields = kind.decode(cursor, filters)?;
    let seq = fields[0].as_str();
    seq.parse::<i64>().ok().filter(|_| crate::query::is_digits(seq)).ok_or_else(|| kind.not_this(cursor))
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::cursor::FINGERPRINT_LEN;

    /// The refusal of what is no cursor of the endpoint (another kind, another shape).
    const NOT_THIS: &str = "cursor is not valid here: not a cursor of this endpoint; use the next_cursor of a previous page with the same filters";
    /// The refusal of a well-formed cursor whose fingerprint does not match (other filters,
    /// an edited field).
    const OTHER: &str =
        "cursor is not valid here: it was made with different filters (or altered); use the next_cursor of a previous page with the same filters";

    /// How a listing reads its cursors ([`decode`], [`decode_audit`]).
    type Decode = fn(&str, &str) -> Result<i64, ApiError>;

    /// One of the two listings, as its handler binds and reads cursors.
    struct Listing {
        kind: &'static str,
        other_kind: &'static str,
        encode: fn(i64, &str) -> String,
        decode: Decode,
        /// The filters of the page making the cursor.
        filters: String,
        /// Filters differing from `filters` in one filter each.
        other_filters: Vec<String>,
    }

    fn at(h: u32) -> Option<DateTime<Utc>> {
        Some(Utc.with_ymd_and_hms(2024, 6, 1, h, 0, 0).single().expect("instant"))
    }

    fn listings() -> [Listing; 2] {
        [
            Listing {
                kind: "l3",
                other_kind: "u2",
                encode,
                decode,
                filters: links_filters(Some("a"), Some(true), None),
                other_filters: vec![
                    links_filters(None, Some(true), None),
                    links_filters(Some("b"), Some(true), None),
                    links_filters(Some("a"), None, None),
                    links_filters(Some("a"), Some(false), None),
                    links_filters(Some("a"), Some(true), Some("acme")),
                    links_filters(None, None, None),
                ],
            },
            Listing {
                kind: "u2",
                other_kind: "l3",
                encode: encode_audit,
                decode: decode_audit,
                filters: audit_filters(at(1), None, None, Some("link.disable")),
                other_filters: vec![
                    audit_filters(at(2), None, None, Some("link.disable")),
                    audit_filters(None, None, None, Some("link.disable")),
                    audit_filters(at(1), at(3), None, Some("link.disable")),
                    audit_filters(at(1), None, Some("admin-token"), Some("link.disable")),
                    audit_filters(at(1), None, None, Some("link.enable")),
                    audit_filters(at(1), None, Some("link.disable"), None),
                    audit_filters(None, None, None, None),
                ],
            },
        ]
    }

    fn text_of(cursor: &str) -> String {
        String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).expect("base64url")).expect("utf8")
    }

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    /// Asserts that `got`, the answer to `cursor`, is exactly 400 `invalid_cursor` with
    /// `message` and the cursor in its details.
    fn assert_refused(got: Result<i64, ApiError>, cursor: &str, message: &str) {
        let e = got.expect_err(cursor);
        assert_eq!(
            (e.status.as_u16(), e.code, e.message.as_str(), e.details),
            (400, "invalid_cursor", message, json!({ "cursor": cursor })),
            "{cursor} ({})",
            String::from_utf8_lossy(&URL_SAFE_NO_PAD.decode(cursor).unwrap_or_default())
        );
    }

    #[test]
    fn cursors_round_trip_under_their_filters() {
        for l in listings() {
            for seq in [0, 1, 42, i64::MAX] {
                let c = (l.encode)(seq, &l.filters);
                assert_eq!((l.decode)(&c, &l.filters).expect("round trip"), seq);
                let text = text_of(&c);
                let fp = text.strip_prefix(&format!("{}:{seq}:", l.kind)).unwrap_or_else(|| panic!("format: {text}"));
                assert!(fp.len() == FINGERPRINT_LEN && fp.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{text}");
                // Sealed: the fingerprint is not the filters' alone.
                assert_ne!(fp, l.filters);
            }
            // The fingerprint covers the position and the filters.
            assert_ne!(text_of(&(l.encode)(1, &l.filters)).rsplit(':').next(), text_of(&(l.encode)(2, &l.filters)).rsplit(':').next());
            for other in &l.other_filters {
                assert_ne!(other, &l.filters);
                assert_ne!((l.encode)(1, &l.filters), (l.encode)(1, other));
            }
        }
        // Each filter keeps its place: the same value as another filter is another binding.
        assert_ne!(links_filters(Some("acme"), None, None), links_filters(None, None, Some("acme")));
        assert_ne!(audit_filters(None, None, Some("x"), None), audit_filters(None, None, None, Some("x")));
        assert_ne!(audit_filters(at(1), None, None, None), audit_filters(None, at(1), None, None));
    }

    /// QA finding (session 55): a links or audit cursor (then `"l2:<seq>:<filter
    /// fingerprint>"`, `"u1:…"`) with its position edited was accepted, paging from wherever
    /// the edit pointed. Its fingerprint now covers the kind, the filters and the position:
    /// any edit of any field is exactly 400 `invalid_cursor`.
    #[test]
    fn edited_cursors_are_invalid_cursor() {
        for l in listings() {
            let c = (l.encode)(41, &l.filters);
            let text = text_of(&c);
            let fp = text.strip_prefix(&format!("{}:41:", l.kind)).expect("format").to_owned();
            assert_eq!((l.decode)(&c, &l.filters).expect("untouched"), 41);
            let kind = l.kind;
            let mut edits: Vec<(String, &str)> = Vec::new();
            // The position: another number, the same number spelt otherwise, no number.
            for seq in ["42", "40", "0", "4", "410", "041", "+41", "-41", " 41", "41 ", "9223372036854775807", "99999999999999999999", "", "x"] {
                edits.push((format!("{kind}:{seq}:{fp}"), OTHER));
            }
            // The fingerprint: each digit changed to another hex digit (the form kept)…
            for i in 0..fp.len() {
                let (head, tail) = fp.split_at(i);
                let d = if tail.starts_with('0') { '1' } else { '0' };
                edits.push((format!("{kind}:41:{head}{d}{}", &tail[1..]), OTHER));
            }
            // …or to what no fingerprint is.
            let upper = fp.to_ascii_uppercase();
            let edited_fps = [format!("{fp}0"), fp[1..].to_owned(), String::new(), format!("{}g", &fp[1..])];
            for bad in edited_fps.iter().chain((upper != fp).then_some(&upper)) {
                edits.push((format!("{kind}:41:{bad}"), NOT_THIS));
            }
            // The kind: the other endpoint's, an earlier version's, another spelling; and
            // the shape: a field added or removed.
            for k in [l.other_kind, "l2", "u1", "l1", "a2", "d2", &kind.to_ascii_uppercase(), "", &kind[..1]] {
                edits.push((format!("{k}:41:{fp}"), NOT_THIS));
            }
            for shape in [format!("{kind}:41:41:{fp}"), format!("{kind}:{fp}"), format!("{kind}:41"), format!("41:{fp}"), format!("{kind}:41:{fp}:")] {
                edits.push((shape, NOT_THIS));
            }
            for (edited, want) in edits {
                let edited = b64(&edited);
                assert_refused((l.decode)(&edited, &l.filters), &edited, want);
            }
            // The encoding itself: a character added, padding, no base64url, not UTF-8.
            for edited in [
                format!("{c}x"),
                format!("{c}="),
                format!("{c}==="),
                c.replace('-', "+").replace('_', "/") + "!",
                "!!".to_owned(),
                b64("\u{0}"),
                URL_SAFE_NO_PAD.encode([0xff, 0xfe]),
            ] {
                assert_refused((l.decode)(&edited, &l.filters), &edited, NOT_THIS);
            }
            // The untouched cursor under other filters (each one changed), or on the other
            // endpoint.
            for other in &l.other_filters {
                assert_refused((l.decode)(&c, other), &c, OTHER);
            }
            let other_endpoint = listings().into_iter().find(|o| o.kind == l.other_kind).expect("other");
            assert_refused((other_endpoint.decode)(&c, &l.filters), &c, NOT_THIS);
            assert_refused((other_endpoint.decode)(&c, &other_endpoint.filters), &c, NOT_THIS);
        }
    }

    /// The cursors of earlier versions are refused, never read as a position: `"l2:…"` and
    /// `"u1:…"` (filters fingerprinted, position not sealed) as no cursor of the endpoint,
    /// `"l1:<seq>"` (no filters) with [`LEGACY_MESSAGE`].
    #[test]
    fn cursors_of_earlier_versions_are_invalid_cursor() {
        // Exactly as the previous version made them, `"<kind>:<seq>:<filter fingerprint>"`,
        // for the filters `listings()` binds: links `tag=a&enabled=true` (`org` joined the
        // fingerprint only when given), audit `from=…T01:00:00Z&action=link.disable`.
        let tag = Some("a".to_owned());
        let action = Some("link.disable".to_owned());
        let old_filters = [("l2", fingerprint(&[&tag, &Some(true)])), ("u1", fingerprint(&[&at(1), &None::<DateTime<Utc>>, &None::<String>, &action]))];
        for (l, (old_kind, old_fp)) in listings().into_iter().zip(old_filters) {
            for seq in ["0", "41"] {
                let old = crate::cursor::encode(old_kind, &[seq], &old_fp);
                assert_refused((l.decode)(&old, &l.filters), &old, NOT_THIS);
                // With the new kind put in: its fingerprint is the filters' alone.
                let relabelled = crate::cursor::encode(l.kind, &[seq], &old_fp);
                assert_refused((l.decode)(&relabelled, &l.filters), &relabelled, OTHER);
            }
        }
        for filters in [links_filters(None, None, None), links_filters(Some("a"), Some(true), None)] {
            for legacy in ["bDE6NQ", "bDE6MA"] {
                // "l1:5", "l1:0".
                let e = decode(legacy, &filters).expect_err(legacy);
                assert_eq!((e.status.as_u16(), e.code, e.message.as_str(), e.details), (400, "invalid_cursor", LEGACY_MESSAGE, json!({ "cursor": legacy })));
                assert_refused(decode_audit(legacy, &audit_filters(None, None, None, None)), legacy, NOT_THIS);
            }
            // "l1:-1", "l1:", "l1:5:x" are no cursor of any version.
            for bad in [b64("l1:-1"), b64("l1:"), b64("l1:5:x")] {
                assert_refused(decode(&bad, &filters), &bad, NOT_THIS);
            }
        }
    }

    /// A cursor sealed with a matching fingerprint but a position that is no sequence number
    /// (only a forger who knows the format makes one) is 400 `invalid_cursor`, never a panic
    /// or a page.
    #[test]
    fn crafted_positions_are_invalid_cursor() {
        let listings: [(Sealed, Decode); 2] = [(LINKS, decode), (AUDIT, decode_audit)];
        for (sealed, decode) in listings {
            for seq in ["-1", "+1", " 1", "1.0", "x", "", "99999999999999999999", "٣"] {
                let c = sealed.encode(&[seq], "filters");
                assert_refused(decode(&c, "filters"), &c, NOT_THIS);
            }
            let c = sealed.encode(&["007"], "filters");
            assert_eq!(decode(&c, "filters").expect("digits"), 7);
        }
    }
}
