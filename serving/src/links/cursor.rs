//! Opaque pagination cursors for `GET /v1/links`.
//!
//! A cursor encodes the store sequence number of the last link of a page (keyset
//! pagination): links created while a client pages through appear after it, never shift
//! pages or repeat. Format (not a contract): base64url (no padding) of `"l1:<seq>"`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ApiError;

/// Encodes the keyset position after `seq`.
pub fn encode(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("l1:{seq}"))
}

/// Decodes a cursor from [`encode`]; 400 `invalid_cursor` for anything else.
pub fn decode(cursor: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request("invalid_cursor", "cursor is not valid, use next_cursor from a previous page")
            .with_details(serde_json::json!({ "cursor": cursor }))
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let seq: i64 = text.strip_prefix("l1:").ok_or_else(bad)?.parse().map_err(|_| bad())?;
    if seq < 0 {
        return Err(bad());
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        for s in [0, 1, 42, i64::MAX] {
            assert_eq!(decode(&encode(s)).expect("round trip"), s);
        }
        for bad in ["", "!!!", "bDE6", "bDE6LTE", "eHg6MQ", "bDE6YQ"] {
            let e = decode(bad).expect_err(bad);
            assert_eq!((e.code, e.details), ("invalid_cursor", serde_json::json!({"cursor": bad})), "{bad}");
        }
    }
}
