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
}
