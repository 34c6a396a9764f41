//! One component (a name or a value) of an `application/x-www-form-urlencoded` query
//! string, decoded strictly: shared by the API's routes (`sluice-serving`) and the event
//! input (`sluice-ingest`), so that both read a query string alike.
//!
//! Decoding follows the WHATWG URL Standard §5.1 (`+` is a space, then `%XX` is a byte,
//! a `%` not followed by two hex digits stays as is), like `url::form_urlencoded::parse`;
//! unlike it, bytes that are not UTF-8 are not replaced by U+FFFD but refused.

/// `details.reason` of the 400 `invalid_parameter` answered for a component that
/// [`decode_component`] refuses (the same words on every route).
pub const NOT_UTF8: &str = "not UTF-8 once percent-decoded";

/// Decodes `part` (the text between `&` and `=` separators).
///
/// Errors: `Err(lossy)` when the decoded bytes are not UTF-8, `lossy` being the text with
/// U+FFFD for the bad bytes (for an error message that names what was sent).
pub fn decode_component(part: &str) -> Result<String, String> {
    let spaced = part.replace('+', " ");
    let bytes: Vec<u8> = percent_encoding::percent_decode(spaced.as_bytes()).collect();
    String::from_utf8(bytes).map_err(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A query-string component that is not UTF-8 once decoded (see [`decode_pairs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotUtf8 {
    /// The pair's name, decoded lossily (U+FFFD for the bad bytes).
    pub parameter: String,
    /// The pair's value, decoded lossily.
    pub value: String,
    /// `"name"` or `"value"`: the part that is not UTF-8 (the name when both are not).
    pub part: &'static str,
}

impl NotUtf8 {
    /// The message of the 400 `invalid_parameter` it is answered with, naming the
    /// parameter through `echo` (the crate's bound on echoed input).
    pub fn message<'a>(&'a self, echo: impl Fn(&'a str) -> std::borrow::Cow<'a, str>) -> String {
        format!("query parameter \"{}\": the {} is {NOT_UTF8}", echo(&self.parameter), self.part)
    }

    /// Its `details`: `{parameter, value, reason}`.
    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({ "parameter": self.parameter, "value": self.value, "reason": NOT_UTF8 })
    }
}

/// Decodes a whole query string (without `?`) into `(name, value)` pairs, in order,
/// duplicates kept: pairs separated by `&` (empty segments skipped), name and value by the
/// first `=` (none: an empty value), each component by [`decode_component`].
///
/// Errors: [`NotUtf8`] for the first pair with a component that is not UTF-8.
pub fn decode_pairs(raw: &str) -> Result<Vec<(String, String)>, NotUtf8> {
    let mut out = Vec::new();
    for segment in raw.split('&').filter(|s| !s.is_empty()) {
        let (name, value) = segment.split_once('=').unwrap_or((segment, ""));
        match (decode_component(name), decode_component(value)) {
            (Ok(n), Ok(v)) => out.push((n, v)),
            (n, v) => {
                let part = if n.is_err() { "name" } else { "value" };
                return Err(NotUtf8 { parameter: n.unwrap_or_else(|lossy| lossy), value: v.unwrap_or_else(|lossy| lossy), part });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_escapes_and_refuses_bytes_that_are_not_utf8() {
        assert_eq!(decode_component("caf%C3%A9+x%2By"), Ok("café x+y".to_owned()));
        assert_eq!(decode_component("100%"), Ok("100%".to_owned()));
        assert_eq!(decode_component("%zz%4"), Ok("%zz%4".to_owned()));
        assert_eq!(decode_component("%EF%BF%BD"), Ok("\u{FFFD}".to_owned()));
        assert_eq!(decode_component("a%FFb"), Err("a\u{FFFD}b".to_owned()));
        assert_eq!(decode_component("%C3%28"), Err("\u{FFFD}(".to_owned()));
    }

    #[test]
    fn pairs_split_on_the_first_equals_and_name_the_bad_part() {
        let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(decode_pairs("a=1&&b=x=y&c&=d"), Ok(vec![p("a", "1"), p("b", "x=y"), p("c", ""), p("", "d")]));
        assert_eq!(decode_pairs(""), Ok(vec![]));
        let e = |parameter: &str, value: &str, part| NotUtf8 { parameter: parameter.to_owned(), value: value.to_owned(), part };
        assert_eq!(decode_pairs("ok=1&t=%FF"), Err(e("t", "\u{FFFD}", "value")));
        assert_eq!(decode_pairs("t%FF=1"), Err(e("t\u{FFFD}", "1", "name")));
        assert_eq!(decode_pairs("t%FF=%FF"), Err(e("t\u{FFFD}", "\u{FFFD}", "name")));
        let err = e("tagé", "\u{FFFD}", "value");
        assert_eq!(err.message(std::borrow::Cow::Borrowed), "query parameter \"tagé\": the value is not UTF-8 once percent-decoded");
        assert_eq!(err.message(|s| s[..3].into()), "query parameter \"tag\": the value is not UTF-8 once percent-decoded");
        assert_eq!(err.details(), serde_json::json!({"parameter": "tagé", "value": "\u{FFFD}", "reason": NOT_UTF8}));
    }
}
