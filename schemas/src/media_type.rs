//! The media-type rule every route that reads a JSON body shares (the API's `POST`/`PATCH`
//! bodies in `sluice-serving`, `POST /v1/events` in `sluice-ingest`): the `charset`
//! parameter of its `Content-Type`, when present, must name UTF-8. Like [`crate::strict_json`],
//! it is part of how JSON is read off the wire, so it lives here, in the crate both depend on.
//! Which media types a route takes (`application/json`, `+json`, NDJSON) stays with the route.

/// A JSON body's `Content-Type` names a `charset` other than UTF-8 ([`check_json_charset`]).
/// Its message is the one the API answers with (415 `unsupported_media_type`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("charset {charset} is not supported: {body} are UTF-8 (RFC 8259 §8.1); send charset=utf-8 or no charset")]
pub struct UnsupportedCharset {
    /// The charset named, without quotes, in lower case (as the `mime` crate reads it).
    pub charset: String,
    /// What the route's bodies hold, plural, for the message (`"JSON bodies"`, `"events"`).
    pub body: &'static str,
}

/// Parses a `Content-Type` value with the `mime` crate, after reading it as RFC 9110 §8.3.1
/// writes it: `type "/" subtype *( OWS ";" OWS [ parameter ] )`. The `mime` crate refuses
/// two forms that grammar allows, whitespace before a `;` (`application/json ;charset=utf-8`)
/// and empty parameters (`application/json;;`), so the parameters are first split at the
/// `;`s outside quoted strings, trimmed, the empty ones dropped, and joined again with `"; "`.
/// `None` when the result is still no media type (e.g. `json`, `application/json; x`).
pub fn parse_media_type(value: &str) -> Option<mime::Mime> {
    let mut parts: Vec<&str> = Vec::new();
    let (mut from, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                parts.push(&value[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[from..]);
    let mut parts = parts.into_iter().map(str::trim);
    let mut text = parts.next().unwrap_or_default().to_owned();
    for param in parts.filter(|p| !p.is_empty()) {
        text.push_str("; ");
        text.push_str(param);
    }
    text.parse().ok()
}

/// Checks the `charset` parameters of `media_type`, the parsed `Content-Type` of a JSON
/// body: none, or each naming UTF-8 (any case, quoted or not, as the `mime` crate compares
/// it), is fine; any other is refused, since JSON exchanged between systems is UTF-8 (RFC
/// 8259 §8.1) — also when another `charset` of the same header names UTF-8
/// (`charset=utf-8; charset=latin1` is refused for `latin1`). `body` names what the route's
/// bodies hold, for the message. Callers answer the error with 415 `unsupported_media_type`.
///
/// Errors: [`UnsupportedCharset`] for the first charset other than UTF-8.
pub fn check_json_charset(media_type: &mime::Mime, body: &'static str) -> Result<(), UnsupportedCharset> {
    match media_type.params().find(|(name, value)| *name == mime::CHARSET && *value != mime::UTF_8) {
        Some((_, charset)) => Err(UnsupportedCharset { charset: charset.as_str().to_owned(), body }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(content_type: &str) -> Result<(), UnsupportedCharset> {
        check_json_charset(&content_type.parse().expect("a media type"), "JSON bodies")
    }

    #[test]
    fn a_charset_must_be_utf8_when_present() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=UTF-8",
            "application/json; charset=\"UTF-8\"",
            "application/x-ndjson;charset=Utf-8",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for (content_type, charset) in [
            ("application/json; charset=utf-16", "utf-16"),
            ("application/json; charset=\"latin1\"", "latin1"),
            ("application/merge-patch+json; charset=ISO-8859-1", "iso-8859-1"),
            ("application/json; charset=utf8", "utf8"),
        ] {
            assert_eq!(check(content_type), Err(UnsupportedCharset { charset: charset.to_owned(), body: "JSON bodies" }), "{content_type}");
        }
        let e = check_json_charset(&"application/x-ndjson; charset=iso-8859-1".parse().expect("a media type"), "events").expect_err("latin-1");
        assert_eq!(e.to_string(), "charset iso-8859-1 is not supported: events are UTF-8 (RFC 8259 §8.1); send charset=utf-8 or no charset");
        for (content_type, charset) in
            [("application/json; charset=utf-8; charset=latin1", "latin1"), ("application/json; charset=utf-16; charset=utf-8", "utf-16")]
        {
            assert_eq!(check(content_type), Err(UnsupportedCharset { charset: charset.to_owned(), body: "JSON bodies" }), "{content_type}");
        }
        assert_eq!(check("application/json; charset=utf-8; charset=UTF-8"), Ok(()));
        assert_eq!(
            check("application/json; charset=utf-16").expect_err("utf-16").to_string(),
            "charset utf-16 is not supported: JSON bodies are UTF-8 (RFC 8259 §8.1); send charset=utf-8 or no charset"
        );
    }

    /// The parameters of `value` as the `mime` crate reads them after [`parse_media_type`].
    fn params(value: &str) -> Option<(String, Vec<(String, String)>)> {
        parse_media_type(value).map(|m| (m.essence_str().to_owned(), m.params().map(|(n, v)| (n.to_string(), v.to_string())).collect()))
    }

    #[test]
    fn whitespace_before_semicolons_and_empty_parameters_are_read_as_rfc_9110_allows() {
        let utf8 = || Some(("application/json".to_owned(), vec![("charset".to_owned(), "utf-8".to_owned())]));
        for value in [
            "application/json;charset=utf-8",
            "application/json ;charset=utf-8",
            "application/json\t; charset=utf-8 ",
            "application/json;;; charset=utf-8;",
            " application/json ; ; charset=utf-8 ; ",
        ] {
            assert_eq!(params(value), utf8(), "{value:?}");
        }
        for value in ["application/json", "application/json;", "application/json;;;", "application/json ; "] {
            assert_eq!(params(value), Some(("application/json".to_owned(), vec![])), "{value:?}");
        }
        // A `;` inside a quoted string is part of the value.
        assert_eq!(
            params("application/json; x=\"a;b\" ;charset=utf-8"),
            Some(("application/json".to_owned(), vec![("x".to_owned(), "a;b".to_owned()), ("charset".to_owned(), "utf-8".to_owned())]))
        );
        for bad in ["", ";", "json", "application/json; x", "application/json; charset = utf-8", "/json", "application/json; x=\"open"] {
            assert_eq!(params(bad), None, "{bad:?}");
        }
    }
}
