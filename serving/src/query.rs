//! Query strings as every hand-parsed API route reads them: decoding, the allowed names,
//! and `limit`.
//!
//! The format is `application/x-www-form-urlencoded` (WHATWG URL Standard §5.1): pairs
//! separated by `&`, name and value by the first `=`, `+` meaning a space, `%XX` a byte.
//! Unlike the lossy parser of that standard (`url::form_urlencoded::parse`, which turns
//! bytes that are not UTF-8 into U+FFFD), a value whose decoded bytes are not UTF-8 is
//! refused, so a filter never silently matches something else than what was sent.

use serde_json::json;

use crate::error::{ApiError, echo};

/// Decodes `raw` (the query string without `?`; `None` = empty) into `(name, value)` pairs
/// in order, duplicates kept. Empty segments (`a=1&&b=2`) are skipped; a segment without
/// `=` has an empty value.
///
/// Error: 400 `invalid_parameter` when a name or value is not UTF-8 once percent-decoded,
/// details `{parameter, value, reason}` (`parameter` and `value` decoded lossily, U+FFFD
/// for the bad bytes).
pub fn decode(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    sluice_schemas::form::decode_pairs(raw.unwrap_or("")).map_err(|e| ApiError::bad_request("invalid_parameter", e.message(echo)).with_details(e.details()))
}

/// [`decode`], then only names in `known`, each at most once.
///
/// Errors (400): those of [`decode`]; `unknown_parameter` (details `{parameter, supported}`,
/// `supported` = `known`); `duplicate_parameter` (details `{parameter}`).
pub fn pairs(raw: Option<&str>, known: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in decode(raw)? {
        if !known.contains(&k.as_str()) {
            return Err(unknown(&k, known));
        }
        if out.iter().any(|(n, _)| *n == k) {
            return Err(duplicate(&k));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// Middleware for routes that take no query parameters (`POST /v1/links`,
/// `GET`/`PATCH`/`DELETE /v1/links/{code}`, `/v1/openapi.json`): a query string with a
/// parameter is refused like on every other route, 400 `unknown_parameter` (details
/// `{parameter, supported: []}`) or `invalid_parameter` (not UTF-8 once decoded), instead of
/// being ignored. An empty query (`?`, `?&`) passes.
pub async fn refuse_query(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    match pairs(req.uri().query(), &[]) {
        Ok(_) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// 400 `unknown_parameter` for `name`, listing `supported`.
pub fn unknown(name: &str, supported: &[&str]) -> ApiError {
    ApiError::bad_request("unknown_parameter", format!("unknown query parameter \"{}\"", echo(name)))
        .with_details(json!({ "parameter": name, "supported": supported }))
}

/// 400 `duplicate_parameter` for `name`.
pub fn duplicate(name: &str) -> ApiError {
    ApiError::bad_request("duplicate_parameter", format!("query parameter \"{}\" is given more than once", echo(name)))
        .with_details(json!({ "parameter": name }))
}

/// The value of `name` among `pairs`.
pub fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `limit`: `None` → `default`; else decimal ASCII digits only (no sign, no space, no
/// exponent: `+5`, ` 5`, `5.0` are refused although Rust's integer parser takes `+5`)
/// with a value in `1..=max`.
///
/// Error: 400 `invalid_limit` ([`ApiError::invalid_limit`]).
pub fn limit(v: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(v) = v else { return Ok(default) };
    match v.parse::<usize>() {
        Ok(n) if is_digits(v) && (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid_limit(v, max)),
    }
}

/// Non-empty and ASCII digits only.
pub fn is_digits(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: `url::form_urlencoded::parse`, the WHATWG parser, on every input
    /// that is UTF-8 once decoded.
    fn reference(raw: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    #[test]
    fn decodes_like_the_whatwg_parser_on_utf8() {
        for raw in [
            "",
            "a=1",
            "a=1&b=2",
            "a=1&&b=2&",
            "a",
            "a=",
            "=x",
            "a=b=c",
            "q=x+y%2Bz",
            "t=caf%C3%A9",
            "t=%E2%9C%93+ok",
            "t=%",
            "t=%4",
            "t=%zz",
            "tag=%20spring%20",
            "n%61me=v",
            "t=🙂",
            "a=1&a=2",
        ] {
            assert_eq!(decode(Some(raw)).expect(raw), reference(raw), "{raw}");
        }
        assert_eq!(decode(None).expect("none"), Vec::<(String, String)>::new());
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_with_the_parameter_named() {
        for (raw, param, value, part) in [
            ("tag=%FF", "tag", "\u{FFFD}", "value"),
            ("a=1&tag=x%C3", "tag", "x\u{FFFD}", "value"),
            ("tag=%C3%28", "tag", "\u{FFFD}(", "value"),
            ("t%FFg=1", "t\u{FFFD}g", "1", "name"),
            ("tag=%ED%A0%80", "tag", "\u{FFFD}\u{FFFD}\u{FFFD}", "value"),
        ] {
            let e = decode(Some(raw)).expect_err(raw);
            assert_eq!(e.code, "invalid_parameter", "{raw}");
            assert_eq!(e.details, json!({"parameter": param, "value": value, "reason": "not UTF-8 once percent-decoded"}), "{raw}");
            assert!(e.message.contains(&format!("the {part} is not UTF-8")), "{raw}: {}", e.message);
        }
        // A literal U+FFFD, percent-encoded or not, is valid UTF-8 and kept.
        assert_eq!(decode(Some("tag=%EF%BF%BD")).expect("fffd"), vec![("tag".to_owned(), "\u{FFFD}".to_owned())]);
    }

    #[test]
    fn pairs_refuse_unknown_and_repeated_names() {
        let e = pairs(Some("a=1&c=2"), &["a", "b"]).expect_err("unknown");
        assert_eq!((e.code, e.details), ("unknown_parameter", json!({"parameter": "c", "supported": ["a", "b"]})));
        let e = pairs(Some("a=1&a=1"), &["a"]).expect_err("dup");
        assert_eq!((e.code, e.details), ("duplicate_parameter", json!({"parameter": "a"})));
        let p = pairs(Some("b=2&a=x+y"), &["a", "b"]).expect("ok");
        assert_eq!((get(&p, "a"), get(&p, "b"), get(&p, "c")), (Some("x y"), Some("2"), None));
    }

    #[test]
    fn limit_takes_plain_digits_in_range_only() {
        assert_eq!(limit(None, 7, 10).expect("default"), 7);
        for (v, want) in [("1", 1), ("10", 10), ("007", 7)] {
            assert_eq!(limit(Some(v), 7, 10).expect(v), want);
        }
        for v in ["", "0", "11", "+5", "-1", " 5", "5 ", "5.0", "1e1", "five", "٥", "99999999999999999999999"] {
            let e = limit(Some(v), 7, 10).expect_err(v);
            assert_eq!(e.code, "invalid_limit", "{v}");
            assert_eq!(e.details, json!({"parameter": "limit", "value": v, "min": 1, "max": 10}), "{v}");
        }
    }
}
