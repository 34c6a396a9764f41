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
/// writes it: `type "/" subtype *( OWS ";" OWS [ parameter ] )`, a parameter being `name "="
/// ( token / quoted-string )` (§5.6.6). The `mime` crate refuses two forms that grammar
/// allows, whitespace before a `;` (`application/json ;charset=utf-8`) and empty parameters
/// (`application/json;;`), and keeps the backslashes of a quoted string's quoted-pairs
/// (§5.6.4: `"utf\-8"` is `utf-8`). So the parameters are read here first: split at the `;`s
/// outside quoted strings, trimmed, the empty ones dropped, each quoted value unescaped (and
/// written bare when it is then a token, so `charset="utf\-8"` and `charset="UTF-8"` name
/// UTF-8 as `charset=utf-8` does), and joined again with `"; "` for the `mime` crate.
///
/// `None` when the result is still no media type (e.g. `json`, `application/json; x`, an
/// unterminated quoted string, a backslash before a control character), and for a quoted
/// value the `mime` crate cannot hold once unescaped: one holding a `"` (written `\"`) or a
/// control character (a tab), or an empty one (`""`; the `mime` crate misreads those).
pub fn parse_media_type(value: &str) -> Option<mime::Mime> {
    let (essence, mut rest) = value.split_once(';').unwrap_or((value, ""));
    let mut text = essence.trim().to_owned();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            break;
        }
        let (name, after) = rest.split_once('=')?;
        if name.contains(';') {
            return None; // a parameter without `=` (`application/json; x; charset=utf-8`)
        }
        let (param_value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let (unescaped, after) = unquote(quoted)?;
                // Nothing but whitespace may follow the closing quote before the next `;`.
                let after = after.trim_start_matches([' ', '\t']);
                if !(after.is_empty() || after.starts_with(';')) {
                    return None;
                }
                (representable(unescaped)?, after)
            }
            None => {
                let (v, after) = after.split_once(';').unwrap_or((after, ""));
                (v.trim_end_matches([' ', '\t']).to_owned(), after)
            }
        };
        text.push_str("; ");
        text.push_str(name);
        text.push('=');
        text.push_str(&param_value);
        rest = after;
    }
    text.parse().ok()
}

/// Reads a quoted string's content up to its closing `"` (`quoted` starts after the opening
/// one), unescaping its quoted-pairs (RFC 9110 §5.6.4: `\` before HTAB, SP, a visible
/// character or obs-text stands for that character). Returns the content and what follows
/// the closing quote; `None` without a closing quote or for a `\` before anything else.
fn unquote(quoted: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &quoted[i + 1..])),
            '\\' => match chars.next() {
                Some((_, e)) if e == '\t' || e == ' ' || e.is_ascii_graphic() || !e.is_ascii() => out.push(e),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}

/// A parameter value (unescaped) as the `mime` crate reads it back: bare when it is a token
/// (RFC 9110 §5.6.2), else in quotes; `None` when the `mime` crate's quoted strings cannot hold
/// it (empty, or holding a `"` or a control character: the crate has no quoted-pairs).
fn representable(value: String) -> Option<String> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !value.is_empty() && value.chars().all(tchar) {
        Some(value)
    } else if value.is_empty() || value.chars().any(|c| c == '"' || c.is_control()) {
        None
    } else {
        Some(format!("\"{value}\""))
    }
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

    /// Finding: `charset="utf\-8"` (a quoted-pair, RFC 9110 §5.6.4) was read as `utf\-8` and
    /// refused 415. Quoted values are unescaped: it names UTF-8, as `charset="UTF-8"` does.
    #[test]
    fn quoted_pairs_in_parameter_values_are_unescaped() {
        let charset = |value: &str| params(value).map(|(_, p)| p);
        let utf8 = Some(vec![("charset".to_owned(), "utf-8".to_owned())]);
        for value in [r#"application/json; charset="utf\-8""#, r#"application/json; charset="\u\t\f\-\8""#, "application/json; charset=\"UTF-8\""] {
            assert_eq!(charset(value), utf8, "{value}");
            let mime = parse_media_type(value).expect(value);
            assert_eq!(check_json_charset(&mime, "JSON bodies"), Ok(()), "{value}");
        }
        // The unescaped value is what is compared and reported.
        let latin1 = parse_media_type(r#"application/json; charset="lat\in1""#).expect("a media type");
        assert_eq!(check_json_charset(&latin1, "JSON bodies"), Err(UnsupportedCharset { charset: "latin1".to_owned(), body: "JSON bodies" }));
        // An escaped `;` or `\` stays in the value; an escaped `"` does not end the string
        // (its value cannot be held by the `mime` crate: no media type).
        assert_eq!(
            charset(r#"application/json; x="a\;b\\c" ; charset="utf-8""#),
            Some(vec![("x".to_owned(), r"a;b\c".to_owned()), ("charset".to_owned(), "utf-8".to_owned())])
        );
        assert_eq!(charset(r#"application/json; x="a\"b"; charset=utf-8"#), None);
        assert_eq!(charset("application/json; x=\"a b\""), Some(vec![("x".to_owned(), "a b".to_owned())]));
        // Refused: a backslash ending the string, text after the closing quote, a control
        // character escaped, an empty quoted string.
        for bad in
            [r#"application/json; charset="utf-8\"#, r#"application/json; charset="utf"-8"#, "application/json; x=\"a\\\u{1}\"", "application/json; x=\"\""]
        {
            assert_eq!(params(bad), None, "{bad:?}");
        }
    }
}
