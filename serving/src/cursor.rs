//! The mechanism of every opaque list cursor: base64url (no padding) of
//! `"<kind>:<position field>:…:<fingerprint>"` (not a contract), checked when it comes back.
//!
//! - The **kind** names the listing, so one endpoint's cursor is 400 `invalid_cursor` on
//!   another.
//! - The **fingerprint** ([`fingerprint`]: [`FINGERPRINT_LEN`] lowercase hex digits of a
//!   BLAKE3 hash) is checked against the one the request computes ([`check_fingerprint`]):
//!   one that no fingerprint can be is "not a cursor of this endpoint", a well-formed other
//!   one "made with different filters (or altered)" (or the listing's own wording).
//!
//! Every listing uses [`Sealed`] cursors, whose fingerprint covers the kind, what the cursor
//! is bound to *and* the position fields, so a cursor with any field edited, or used on
//! another listing, is refused:
//!
//! - `GET /v1/links` and `GET /v1/admin/audit` ([`crate::links::cursor`]): a sequence
//!   number, bound to the page's filters;
//! - `GET /v1/anomalies` ([`crate::anomalies::params`]): a window start and an anomaly id,
//!   bound to the page's filters;
//! - `GET /v1/webhooks/{id}/deliveries`: a delivery id, bound to the webhook.
//!
//! The hash is not keyed: it detects edits and misuse, not a forger who knows this format
//! (who could only page data the same request can read anyway).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ApiError;

/// Length of a [`fingerprint`] in lowercase hex digits.
pub const FINGERPRINT_LEN: usize = 12;

/// The hint closing the message of a refused cursor of a filtered listing.
pub(crate) const SAME_FILTERS: &str = "use the next_cursor of a previous page with the same filters";

/// Why a cursor that is no cursor of the endpoint is refused.
pub(crate) const NOT_THIS: &str = "not a cursor of this endpoint";

/// Why a well-formed cursor of another listing is refused ([`check_fingerprint`]).
pub(crate) const OTHER_FILTERS: &str = "it was made with different filters (or altered)";

/// A short fingerprint of values (their `Debug` forms), carried in cursors.
///
/// Shape: [`FINGERPRINT_LEN`] lowercase hex digits, the start of the BLAKE3 hash of the
/// values' `Debug` forms joined by `|`.
pub fn fingerprint(values: &[&dyn std::fmt::Debug]) -> String {
    let text = values.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join("|");
    blake3::hash(text.as_bytes()).to_hex()[..FINGERPRINT_LEN].to_string()
}

/// Whether `fp`, read from a cursor, is the fingerprint `expected`. A `fp` that no
/// [`fingerprint`] can be (not [`FINGERPRINT_LEN`] lowercase hex digits) was altered:
/// `Err(`[`NOT_THIS`]`)`; a well-formed other one `Err(`[`OTHER_FILTERS`]`)` (made for
/// another listing, or altered without changing its form).
pub(crate) fn check_fingerprint(fp: &str, expected: &str) -> Result<(), &'static str> {
    if fp.len() != FINGERPRINT_LEN || !fp.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(NOT_THIS);
    }
    if fp != expected {
        return Err(OTHER_FILTERS);
    }
    Ok(())
}

/// 400 `invalid_cursor` for `cursor`: `"cursor is not valid here: <why>; <hint>"`,
/// `details: {"cursor"}`.
pub(crate) fn invalid_hint(cursor: &str, why: &str, hint: &str) -> ApiError {
    ApiError::bad_request("invalid_cursor", format!("cursor is not valid here: {why}; {hint}")).with_details(serde_json::json!({ "cursor": cursor }))
}

/// The text a cursor encodes (base64url, no padding, UTF-8); `Err(`[`NOT_THIS`]`)` otherwise.
pub(crate) fn text_of(cursor: &str) -> Result<String, &'static str> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).map_err(|_| NOT_THIS)?;
    String::from_utf8(bytes).map_err(|_| NOT_THIS)
}

/// `"<kind>:<fields>:<fp>"`, base64url without padding.
pub(crate) fn encode(kind: &str, fields: &[&str], fp: &str) -> String {
    let mut text = kind.to_owned();
    for f in fields {
        text.push(':');
        text.push_str(f);
    }
    text.push(':');
    text.push_str(fp);
    URL_SAFE_NO_PAD.encode(text)
}

/// Splits `text` (a decoded cursor) into its `n` fields and fingerprint when its kind is
/// `kind`; `Err(`[`NOT_THIS`]`)` for another kind or number of fields.
pub(crate) fn split<'t>(text: &'t str, kind: &str, n: usize) -> Result<(Vec<&'t str>, &'t str), &'static str> {
    let mut parts: Vec<&str> = text.split(':').collect();
    if parts.len() != n + 2 || parts[0] != kind {
        return Err(NOT_THIS);
    }
    let fp = parts.pop().unwrap_or_default();
    parts.remove(0);
    Ok((parts, fp))
}

/// A tamper-evident cursor kind: its fingerprint covers the kind, what the cursor is bound
/// to and every position field, so an edited cursor, or one of another binding (other
/// filters, another webhook), is 400 `invalid_cursor`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sealed {
    /// Kind prefix (names the endpoint and the format's version).
    pub kind: &'static str,
    /// Number of position fields (none may contain `:`).
    pub fields: usize,
    /// Why a well-formed cursor whose fingerprint does not match is refused.
    pub other: &'static str,
    /// The hint closing a refusal's message.
    pub hint: &'static str,
}

impl Sealed {
    fn seal(&self, fields: &[&str], binding: &str) -> String {
        let mut values: Vec<&dyn std::fmt::Debug> = vec![&self.kind, &binding];
        values.extend(fields.iter().map(|f| f as &dyn std::fmt::Debug));
        fingerprint(&values)
    }

    /// The cursor of position `fields` bound to `binding`.
    pub(crate) fn encode(&self, fields: &[&str], binding: &str) -> String {
        debug_assert_eq!(fields.len(), self.fields);
        encode(self.kind, fields, &self.seal(fields, binding))
    }

    /// The position fields of `cursor`, made by [`Self::encode`] with `binding` and not
    /// edited since; 400 `invalid_cursor` otherwise.
    pub(crate) fn decode(&self, cursor: &str, binding: &str) -> Result<Vec<String>, ApiError> {
        let refuse = |why: &str| invalid_hint(cursor, why, self.hint);
        let text = text_of(cursor).map_err(refuse)?;
        let (fields, fp) = split(&text, self.kind, self.fields).map_err(refuse)?;
        check_fingerprint(fp, &self.seal(&fields, binding)).map_err(|why| refuse(if why == OTHER_FILTERS { self.other } else { why }))?;
        Ok(fields.into_iter().map(str::to_owned).collect())
    }

    /// 400 `invalid_cursor` with this kind's hint, for a sealed cursor whose fields do not
    /// parse (only a crafted cursor gets there).
    pub(crate) fn not_this(&self, cursor: &str) -> ApiError {
        invalid_hint(cursor, NOT_THIS, self.hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: Sealed = Sealed { kind: "t1", fields: 2, other: "made for another listing (or altered)", hint: "start over" };

    #[test]
    fn sealed_cursors_refuse_every_edit_and_other_bindings() {
        let c = KIND.encode(&["5", "ab"], "bind");
        assert_eq!(KIND.decode(&c, "bind").expect("round trip"), vec!["5".to_owned(), "ab".to_owned()]);
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(&c).expect("b64")).expect("utf8");
        let fp = text.rsplit(':').next().expect("fp").to_owned();
        assert_eq!(text, format!("t1:5:ab:{fp}"));
        let other = "cursor is not valid here: made for another listing (or altered); start over";
        let not_this = "cursor is not valid here: not a cursor of this endpoint; start over";
        for (edited, want) in [
            (KIND.encode(&["5", "ab"], "other binding"), other),
            (encode("t1", &["6", "ab"], &fp), other),
            (encode("t1", &["5", "ac"], &fp), other),
            (encode("t2", &["5", "ab"], &fp), not_this),
            (encode("t1", &["5"], &fp), not_this),
            (encode("t1", &["5", "ab"], "0123456789aB"), not_this),
            (format!("{c}x"), not_this),
            ("!!".to_owned(), not_this),
        ] {
            let e = KIND.decode(&edited, "bind").expect_err(&edited);
            assert_eq!((e.code, e.message.as_str(), e.details), ("invalid_cursor", want, serde_json::json!({"cursor": edited})), "{edited}");
        }
    }
}
