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

/// Checks the `charset` parameter of `media_type`, the parsed `Content-Type` of a JSON body:
/// absent or UTF-8 (any case, quoted or not, as the `mime` crate compares it) is fine; any
/// other is refused, since JSON exchanged between systems is UTF-8 (RFC 8259 §8.1). `body`
/// names what the route's bodies hold, for the message. Callers answer the error with 415
/// `unsupported_media_type`.
///
/// Errors: [`UnsupportedCharset`] for a charset other than UTF-8.
pub fn check_json_charset(media_type: &mime::Mime, body: &'static str) -> Result<(), UnsupportedCharset> {
    match media_type.get_param(mime::CHARSET) {
        Some(charset) if charset != mime::UTF_8 => Err(UnsupportedCharset { charset: charset.as_str().to_owned(), body }),
        _ => Ok(()),
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
        assert_eq!(
            check("application/json; charset=utf-16").expect_err("utf-16").to_string(),
            "charset utf-16 is not supported: JSON bodies are UTF-8 (RFC 8259 §8.1); send charset=utf-8 or no charset"
        );
    }
}
