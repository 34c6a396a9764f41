//! Opaque keyset pagination cursors of `GET /v1/links` and `GET /v1/admin/audit`, on the
//! shared mechanism of [`crate::cursor`].
//!
//! A cursor encodes the store sequence number of the last row of a page (keyset
//! pagination): rows added while a client pages through never shift pages or repeat. Each
//! endpoint's cursors carry their own kind, so one endpoint's cursor is 400
//! `invalid_cursor` on the other (as `GET /v1/anomalies` and the webhook deliveries do), and
//! the [`fingerprint`] of the filters of the page that made them, so a cursor used with
//! other filters is refused (400 `invalid_cursor`) instead of answering a page of another
//! listing (as `GET /v1/anomalies` binds its cursors). Format (not a contract), base64url
//! (no padding) of:
//!
//! - `GET /v1/links`: `"l2:<seq>:<filter fingerprint>"`, the filters being `tag` (in its
//!   stored spelling), `enabled` (as read: `1` is `true`) and `org` (when given). A cursor of
//!   earlier versions, `"l1:<seq>"`, carries no filters, so which listing it continues is
//!   unknown: it is refused (400 `invalid_cursor`, [`LEGACY_MESSAGE`]), and the client
//!   restarts from the first page;
//! - `GET /v1/admin/audit`: `"u1:<seq>:<filter fingerprint>"`, the filters being `from`,
//!   `to`, `actor` and `action`.

use crate::cursor::{NOT_THIS, check_fingerprint, invalid, split, text_of};
use crate::error::ApiError;

pub use crate::cursor::fingerprint;

/// Kind prefix of `GET /v1/links` cursors.
const LINKS: &str = "l2";
/// Kind prefix of the `GET /v1/links` cursors of earlier versions (no filter fingerprint).
const LINKS_UNBOUND: &str = "l1";
/// The message of the 400 `invalid_cursor` answer to a `GET /v1/links` cursor of an earlier
/// version (`"l1:<seq>"`).
pub const LEGACY_MESSAGE: &str = "cursor is from an older version of this API and names no filters, so the page it continues is unknown: restart the listing from the first page (without a cursor)";
/// Kind prefix of `GET /v1/admin/audit` cursors.
const AUDIT: &str = "u1";

/// Encodes the `GET /v1/links` keyset position after `seq` under the filters whose
/// [`fingerprint`] is `filters`.
pub fn encode(seq: i64, filters: &str) -> String {
    crate::cursor::encode(LINKS, &[&seq.to_string()], filters)
}

/// Decodes a `GET /v1/links` cursor from [`encode`] made under the same filters; 400
/// `invalid_cursor` for anything else: an audit cursor, a cursor of other filters, and a
/// cursor of an earlier version (`"l1:<seq>"`, which names no filters: [`LEGACY_MESSAGE`],
/// `details: {"cursor"}`).
pub fn decode(cursor: &str, filters: &str) -> Result<i64, ApiError> {
    let text = text_of(cursor).map_err(|why| invalid(cursor, why))?;
    if let Some(seq) = text.strip_prefix(LINKS_UNBOUND).and_then(|r| r.strip_prefix(':')) {
        seq_of(cursor, seq)?;
        return Err(ApiError::bad_request("invalid_cursor", LEGACY_MESSAGE).with_details(serde_json::json!({ "cursor": cursor })));
    }
    decode_kind(cursor, &text, LINKS, filters)
}

/// Encodes the `GET /v1/admin/audit` keyset position after `seq` under the filters whose
/// [`fingerprint`] is `filters`.
pub fn encode_audit(seq: i64, filters: &str) -> String {
    crate::cursor::encode(AUDIT, &[&seq.to_string()], filters)
}

/// Decodes a `GET /v1/admin/audit` cursor from [`encode_audit`] made under the same
/// filters; 400 `invalid_cursor` for anything else (a links cursor, a cursor of other
/// filters).
pub fn decode_audit(cursor: &str, filters: &str) -> Result<i64, ApiError> {
    let text = text_of(cursor).map_err(|why| invalid(cursor, why))?;
    decode_kind(cursor, &text, AUDIT, filters)
}

/// The sequence number of `text` (the decoded `cursor`), a cursor of `kind` made under the
/// filters whose fingerprint is `filters`.
fn decode_kind(cursor: &str, text: &str, kind: &str, filters: &str) -> Result<i64, ApiError> {
    let (fields, fp) = split(text, kind, 1).map_err(|why| invalid(cursor, why))?;
    let seq = seq_of(cursor, fields[0])?;
    check_fingerprint(fp, filters).map_err(|why| invalid(cursor, why))?;
    Ok(seq)
}

/// A non-negative sequence number in plain decimal digits.
fn seq_of(cursor: &str, seq: &str) -> Result<i64, ApiError> {
    match seq.parse::<i64>() {
        Ok(n) if crate::query::is_digits(seq) => Ok(n),
        _ => Err(invalid(cursor, NOT_THIS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cursor::FINGERPRINT_LEN;

    #[test]
    fn round_trip_and_rejections() {
        const FP: &str = "0123456789ab";
        const OTHER_FP: &str = "0123456789ac";
        assert_eq!(fingerprint(&[&"tag", &Some(true)]).len(), FINGERPRINT_LEN);
        for s in [0, 1, 42, i64::MAX] {
            assert_eq!(decode(&encode(s, FP), FP).expect("round trip"), s);
            assert_eq!(decode_audit(&encode_audit(s, FP), FP).expect("round trip"), s);
        }
        // "l2:7:abc" and "u1:7:abc".
        assert_eq!((encode(7, "abc"), encode_audit(7, "abc")), ("bDI6NzphYmM".to_owned(), "dTE6NzphYmM".to_owned()));
        for bad in ["", "!!!", "bDE6", "bDE6LTE", "eHg6MQ", "bDE6YQ", "bDI6Nw", "bDI6NzphYmM6eA"] {
            let e = decode(bad, FP).expect_err(bad);
            assert_eq!((e.code, e.details), ("invalid_cursor", serde_json::json!({"cursor": bad})), "{bad}");
        }
        // One endpoint's cursor is not the other's.
        let e = decode(&encode_audit(5, FP), FP).expect_err("audit on links");
        assert_eq!(
            (e.code, e.message.as_str()),
            ("invalid_cursor", "cursor is not valid here: not a cursor of this endpoint; use the next_cursor of a previous page with the same filters")
        );
        assert_eq!(decode_audit(&encode(5, FP), FP).expect_err("links on audit").code, "invalid_cursor");
        assert_eq!(decode_audit("bDE6NQ", FP).expect_err("unbound links cursor on audit").code, "invalid_cursor");
        // Both kinds are bound to their filters.
        for e in [
            decode(&encode(5, FP), OTHER_FP).expect_err("links, other filters"),
            decode_audit(&encode_audit(5, FP), OTHER_FP).expect_err("audit, other filters"),
        ] {
            assert_eq!(
                (e.code, e.message.as_str()),
                (
                    "invalid_cursor",
                    "cursor is not valid here: it was made with different filters (or altered); use the next_cursor of a previous page with the same filters"
                )
            );
        }
        // A cursor altered so that its fingerprint is no fingerprint (a character appended,
        // as a copy-paste slip does): not taken for a cursor of other filters.
        let good = encode(5, FP);
        for altered in [format!("{good}x"), encode(5, "0123456789aB"), encode(5, "0123456789a"), encode(5, "0123456789abc")] {
            let e = decode(&altered, FP).expect_err(&altered);
            assert_eq!(
                (e.code, e.message.as_str()),
                ("invalid_cursor", "cursor is not valid here: not a cursor of this endpoint; use the next_cursor of a previous page with the same filters"),
                "{altered}"
            );
        }
        // A links cursor of an earlier version ("l1:5") names no filters: refused, whatever
        // the filters, saying to start again.
        for filters in ["abc", "xyz"] {
            let e = decode("bDE6NQ", filters).expect_err("unbound");
            assert_eq!((e.code, e.message.as_str(), e.details), ("invalid_cursor", LEGACY_MESSAGE, serde_json::json!({"cursor": "bDE6NQ"})));
        }
        assert_ne!(fingerprint(&[&Some("a"), &None::<&str>]), fingerprint(&[&None::<&str>, &Some("a")]));
        assert_ne!(fingerprint(&[&Some("a"), &Some(true)]), fingerprint(&[&Some("a"), &Some(false)]));
    }
}
