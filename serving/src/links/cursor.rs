//! Opaque keyset pagination cursors of `GET /v1/links` and `GET /v1/admin/audit`.
//!
//! A cursor encodes the store sequence number of the last row of a page (keyset
//! pagination): rows added while a client pages through never shift pages or repeat. Each
//! endpoint's cursors carry their own kind, so one endpoint's cursor is 400
//! `invalid_cursor` on the other (as `GET /v1/anomalies` and the webhook deliveries do).
//! Format (not a contract), base64url (no padding) of:
//!
//! - `GET /v1/links`: `"l1:<seq>"`;
//! - `GET /v1/admin/audit`: `"u1:<seq>:<filter fingerprint>"`, the fingerprint a short hash
//!   of the filters (`from`, `to`, `actor`, `action`) of the page that made it, so a cursor
//!   used with other filters is refused instead of answering a page of another listing (as
//!   `GET /v1/anomalies` binds its cursors).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ApiError;

/// Kind prefix of `GET /v1/links` cursors.
const LINKS: &str = "l1";
/// Kind prefix of `GET /v1/admin/audit` cursors.
const AUDIT: &str = "u1";

/// Encodes the `GET /v1/links` keyset position after `seq`.
pub fn encode(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{LINKS}:{seq}"))
}

/// Decodes a `GET /v1/links` cursor from [`encode`]; 400 `invalid_cursor` for anything else
/// (an audit cursor included).
pub fn decode(cursor: &str) -> Result<i64, ApiError> {
    let text = text_of(cursor)?;
    let seq = text.strip_prefix(LINKS).and_then(|r| r.strip_prefix(':')).ok_or_else(|| invalid(cursor, "not a cursor of this endpoint"))?;
    seq_of(cursor, seq)
}

/// Encodes the `GET /v1/admin/audit` keyset position after `seq` under the filters whose
/// [`fingerprint`] is `filters`.
pub fn encode_audit(seq: i64, filters: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{AUDIT}:{seq}:{filters}"))
}

/// Decodes a `GET /v1/admin/audit` cursor from [`encode_audit`] made under the same
/// filters; 400 `invalid_cursor` for anything else (a links cursor, a cursor of other
/// filters).
pub fn decode_audit(cursor: &str, filters: &str) -> Result<i64, ApiError> {
    let text = text_of(cursor)?;
    let mut parts = text.split(':');
    let (Some(AUDIT), Some(seq), Some(fp), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(invalid(cursor, "not a cursor of this endpoint"));
    };
    let seq = seq_of(cursor, seq)?;
    if fp != filters {
        return Err(invalid(cursor, "it was made with different filters"));
    }
    Ok(seq)
}

/// A short fingerprint of a listing's filters (their `Debug` forms), carried in its cursors.
pub fn fingerprint(filters: &[&dyn std::fmt::Debug]) -> String {
    let text = filters.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join("|");
    blake3::hash(text.as_bytes()).to_hex()[..12].to_string()
}

fn invalid(cursor: &str, why: &str) -> ApiError {
    ApiError::bad_request("invalid_cursor", format!("cursor is not valid here: {why}; use the next_cursor of a previous page with the same filters"))
        .with_details(serde_json::json!({ "cursor": cursor }))
}

fn text_of(cursor: &str) -> Result<String, ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).map_err(|_| invalid(cursor, "not a cursor of this endpoint"))?;
    String::from_utf8(bytes).map_err(|_| invalid(cursor, "not a cursor of this endpoint"))
}

/// A non-negative sequence number in plain decimal digits.
fn seq_of(cursor: &str, seq: &str) -> Result<i64, ApiError> {
    match seq.parse::<i64>() {
        Ok(n) if crate::query::is_digits(seq) => Ok(n),
        _ => Err(invalid(cursor, "not a cursor of this endpoint")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        for s in [0, 1, 42, i64::MAX] {
            assert_eq!(decode(&encode(s)).expect("round trip"), s);
            assert_eq!(decode_audit(&encode_audit(s, "abc"), "abc").expect("round trip"), s);
        }
        for bad in ["", "!!!", "bDE6", "bDE6LTE", "eHg6MQ", "bDE6YQ"] {
            let e = decode(bad).expect_err(bad);
            assert_eq!((e.code, e.details), ("invalid_cursor", serde_json::json!({"cursor": bad})), "{bad}");
        }
        // One endpoint's cursor is not the other's; an audit cursor is bound to its filters.
        assert_eq!(decode(&encode_audit(5, "abc")).expect_err("audit on links").code, "invalid_cursor");
        assert_eq!(decode_audit(&encode(5), "abc").expect_err("links on audit").code, "invalid_cursor");
        let e = decode_audit(&encode_audit(5, "abc"), "abd").expect_err("other filters");
        assert!(e.message.contains("different filters"), "{}", e.message);
        assert_ne!(fingerprint(&[&Some("a"), &None::<&str>]), fingerprint(&[&None::<&str>, &Some("a")]));
    }
}
