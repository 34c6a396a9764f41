//! The media-type rule every route that reads a JSON body shares (the API's `POST`/`PATCH`
//! bodies in `sluice-serving`, `POST /v1/events` in `sluice-ingest`): the `Content-Type` is
//! read as RFC 9110 writes it ([`parse_media_type`]), and its `charset` parameter, when
//! present, must name UTF-8 ([`check_json_charset`]). Like [`crate::strict_json`], it is part
//! of how JSON is read off the wire, so it lives here, in the crate both depend on. Which
//! media types a route takes (`application/json`, `+json`, NDJSON) stays with the route.

use crate::field_value::FieldReader;

/// A JSON body's `Content-Type` names a `charset` other than UTF-8 ([`check_json_charset`]).
/// Its message is the one the API answers with (415 `unsupported_media_type`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("charset {charset} is not supported: {body} are UTF-8 (RFC 8259 §8.1); send charset=utf-8 or no charset")]
pub struct UnsupportedCharset {
    /// The charset named, without quotes (its quoted-pairs unescaped), in lower case; `""`
    /// (two quote marks) for an empty one (`charset=""`), so the message names it.
    pub charset: String,
    /// What the route's bodies hold, plural, for the message (`"JSON bodies"`, `"events"`).
    pub body: &'static str,
}

/// A media type as a `Content-Type` field gives it (RFC 9110 §8.3.1): type, subtype and
/// parameters, read by [`parse_media_type`]. Type, subtype and parameter names are
/// case-insensitive and kept in lower case; parameter values are kept as sent (a quoted one
/// without its quotes, its quoted-pairs unescaped), in order, repeated names included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    type_: String,
    subtype: String,
    params: Vec<(String, String)>,
}

impl MediaType {
    /// The type, in lower case (`application`).
    pub fn type_(&self) -> &str {
        &self.type_
    }

    /// The whole subtype, suffix included, in lower case (`merge-patch+json`).
    pub fn subtype(&self) -> &str {
        &self.subtype
    }

    /// The structured syntax suffix of the subtype (RFC 6839): what follows its last `+`,
    /// when something precedes it (`json` of `vnd.example+json`; none for `json` or `+json`).
    pub fn suffix(&self) -> Option<&str> {
        self.subtype.rfind('+').filter(|&i| i > 0).map(|i| &self.subtype[i + 1..])
    }

    /// `type/subtype` without parameters, in lower case (`application/json`).
    pub fn essence(&self) -> String {
        format!("{}/{}", self.type_, self.subtype)
    }

    /// The parameters in the order given: name (lower case) and value (unquoted, unescaped).
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// Parses a `Content-Type` field value per RFC 9110 §8.3.1 and §5.6:
///
/// ```text
/// media-type = type "/" subtype parameters
/// parameters = *( OWS ";" OWS [ parameter ] )
/// parameter  = parameter-name "=" parameter-value
/// parameter-value = token / quoted-string
/// ```
///
/// `type`, `subtype` and `parameter-name` are tokens (§5.6.2); whitespace around the value is
/// the field's own and is ignored. So whitespace before a `;` (`application/json
/// ;charset=utf-8`) and empty parameters (`application/json;;`) are fine, and a quoted value
/// may hold any qdtext (`;`, spaces, tabs) and quoted-pairs (§5.6.4: `"a\"b"` is `a"b`,
/// `"utf\-8"` is `utf-8`), or nothing (`""`).
///
/// `None` when the value is no media type: a missing or empty type or subtype (`json`,
/// `application/`), a parameter without `=` or with whitespace around it (`application/json;
/// x`, `charset = utf-8`), a value that is neither a token nor one quoted string (`x=a b`,
/// `x="a"b`), an unterminated quoted string, a `\` before a control character, or a control
/// character (other than a tab) inside one.
pub fn parse_media_type(value: &str) -> Option<MediaType> {
    let mut p = FieldReader::new(value.trim_matches([' ', '\t']).as_bytes());
    let type_ = lower(p.token()?);
    p.eat(b'/').then_some(())?;
    let subtype = lower(p.token()?);
    let mut params = Vec::new();
    loop {
        p.skip_ows();
        if p.at_end() {
            break;
        }
        p.eat(b';').then_some(())?;
        p.skip_ows();
        if p.at_end() || p.peek() == Some(b';') {
            continue; // an empty parameter
        }
        let name = lower(p.token()?);
        p.eat(b'=').then_some(())?;
        let mut value = Vec::new();
        p.token_or_quoted_string(&mut value)?;
        // The value came from a `&str` and only ASCII quotes and backslashes were dropped.
        params.push((name, String::from_utf8(value).ok()?));
    }
    Some(MediaType { type_, subtype, params })
}

/// A token (ASCII by definition) in lower case.
fn lower(token: &[u8]) -> String {
    token.iter().map(|&b| char::from(b.to_ascii_lowercase())).collect()
}

/// Checks the `charset` parameters of `media_type`, the parsed `Content-Type` of a JSON
/// body: none, or each naming UTF-8 (`utf-8` in any case, quoted or not, RFC 9110 §8.3.2),
/// is fine; any other is refused, since JSON exchanged between systems is UTF-8 (RFC 8259
/// §8.1) — also `us-ascii` and aliases such as `utf8`, and also when another `charset` of
/// the same header names UTF-8 (`charset=utf-8; charset=latin1` is refused for `latin1`).
/// `body` names what the route's bodies hold, for the message. Callers answer the error
/// with 415 `unsupported_media_type`.
///
/// Errors: [`UnsupportedCharset`] for the first charset other than UTF-8.
pub fn check_json_charset(media_type: &MediaType, body: &'static str) -> Result<(), UnsupportedCharset> {
    match media_type.params().find(|(name, value)| *name == "charset" && !value.eq_ignore_ascii_case("utf-8")) {
        Some((_, "")) => Err(UnsupportedCharset { charset: "\"\"".to_owned(), body }),
        Some((_, charset)) => Err(UnsupportedCharset { charset: charset.to_ascii_lowercase(), body }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameters of `value` after [`parse_media_type`], with its essence.
    fn params(value: &str) -> Option<(String, Vec<(String, String)>)> {
        parse_media_type(value).map(|m| (m.essence(), m.params().map(|(n, v)| (n.to_owned(), v.to_owned())).collect()))
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    fn check(content_type: &str) -> Result<(), UnsupportedCharset> {
        check_json_charset(&parse_media_type(content_type).expect("a media type"), "JSON bodies")
    }

    fn refused(charset: &str) -> Result<(), UnsupportedCharset> {
        Err(UnsupportedCharset { charset: charset.to_owned(), body: "JSON bodies" })
    }

    #[test]
    fn a_charset_must_be_utf8_when_present() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=UTF-8",
            "application/json; charset=\"UTF-8\"",
            "application/json; CHARSET=\"Utf-8\"",
            "application/x-ndjson;charset=Utf-8",
            "application/json; charset=utf-8; charset=UTF-8",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for (content_type, charset) in [
            ("application/json; charset=utf-16", "utf-16"),
            ("application/json; charset=\"latin1\"", "latin1"),
            ("application/merge-patch+json; charset=ISO-8859-1", "iso-8859-1"),
            ("application/json; charset=utf8", "utf8"),
            // The policy is UTF-8 only (RFC 8259 §8.1), named as such: not its subset US-ASCII.
            ("application/json; charset=us-ascii", "us-ascii"),
            ("application/json; charset=\"\"", "\"\""),
            ("application/json; charset=utf-8; charset=latin1", "latin1"),
            ("application/json; charset=utf-16; charset=utf-8", "utf-16"),
        ] {
            assert_eq!(check(content_type), refused(charset), "{content_type}");
        }
        let e = check_json_charset(&parse_media_type("application/x-ndjson; charset=iso-8859-1").expect("a media type"), "events").expect_err("latin-1");
        assert_eq!(e.to_string(), "charset iso-8859-1 is not supported: events are UTF-8 (RFC 8259 §8.1); send charset=utf-8 or no charset");
        assert_eq!(
            check("application/json; charset=\"\"").expect_err("empty").to_string(),
            "charset \"\" is not supported: JSON bodies are UTF-8 (RFC 8259 §8.1); send charset=utf-8 or no charset"
        );
    }

    #[test]
    fn type_subtype_and_suffix_are_read_in_lower_case() {
        let m = parse_media_type("Application/Vnd.Example+JSON; Charset=UTF-8").expect("a media type");
        assert_eq!(
            (m.type_(), m.subtype(), m.suffix(), m.essence()),
            ("application", "vnd.example+json", Some("json"), "application/vnd.example+json".to_owned())
        );
        assert_eq!(m.params().collect::<Vec<_>>(), [("charset", "UTF-8")], "values as sent");
        for (value, suffix) in
            [("application/json", None), ("application/+json", None), ("application/a+b+json", Some("json")), ("application/json+xml", Some("xml"))]
        {
            assert_eq!(parse_media_type(value).expect(value).suffix(), suffix, "{value}");
        }
    }

    #[test]
    fn whitespace_before_semicolons_and_empty_parameters_are_read_as_rfc_9110_allows() {
        let utf8 = || Some(("application/json".to_owned(), pairs(&[("charset", "utf-8")])));
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
        assert_eq!(params("application/json; x=\"a;b\" ;charset=utf-8"), Some(("application/json".to_owned(), pairs(&[("x", "a;b"), ("charset", "utf-8")]))));
        for bad in [
            "",
            ";",
            "json",
            "application/",
            "/json",
            "application /json",
            "application/json; x",
            "application/json; x=",
            "application/json; charset = utf-8",
            "application/json; charset= utf-8",
            "application/json; x=a b",
            "application/json x=1",
            "application/json; x=\"open",
            "application/json; a/b=1",
        ] {
            assert_eq!(params(bad), None, "{bad:?}");
        }
    }

    /// Finding: `charset="utf\-8"` (a quoted-pair, RFC 9110 §5.6.4) was read as `utf\-8` and
    /// refused 415. Quoted values are unescaped: it names UTF-8, as `charset="UTF-8"` does.
    #[test]
    fn quoted_pairs_in_parameter_values_are_unescaped() {
        let charset = |value: &str| params(value).map(|(_, p)| p);
        for value in [r#"application/json; charset="utf\-8""#, r#"application/json; charset="\u\t\f\-\8""#, "application/json; charset=\"UTF-8\""] {
            assert_eq!(check(value), Ok(()), "{value}");
        }
        assert_eq!(charset(r#"application/json; charset="utf\-8""#), Some(pairs(&[("charset", "utf-8")])));
        // The unescaped value is what is compared and reported.
        assert_eq!(check(r#"application/json; charset="lat\in1""#), refused("latin1"));
        // An escaped `;` or `\` stays in the value.
        assert_eq!(charset(r#"application/json; x="a\;b\\c" ; charset="utf-8""#), Some(pairs(&[("x", r"a;b\c"), ("charset", "utf-8")])));
        assert_eq!(charset("application/json; x=\"a b\""), Some(pairs(&[("x", "a b")])));
        // Refused: a backslash ending the string, text after the closing quote, a control
        // character escaped or not (a tab is qdtext), a quote opened in a token.
        for bad in [
            r#"application/json; charset="utf-8\"#,
            r#"application/json; charset="utf"-8"#,
            "application/json; x=\"a\\\u{1}\"",
            "application/json; x=\"a\u{1}\"",
            "application/json; x=\"a\u{7f}\"",
            "application/json; x=a\"b\"",
        ] {
            assert_eq!(params(bad), None, "{bad:?}");
        }
    }

    /// Finding: valid quoted values the `mime` crate cannot hold were refused 415: an
    /// escaped quote (`foo="a\"b"`), an empty quoted string (`foo=""`), a tab inside quotes.
    /// They are read here without it, so the body is taken (RFC 9110 §5.6.4, §5.6.6).
    #[test]
    fn quoted_values_the_mime_crate_could_not_hold_are_read() {
        for (value, expected) in [
            (r#"application/json; foo="a\"b""#, pairs(&[("foo", "a\"b")])),
            (r#"application/json; foo="a\"b"; charset=utf-8"#, pairs(&[("foo", "a\"b"), ("charset", "utf-8")])),
            ("application/json; foo=\"\"", pairs(&[("foo", "")])),
            ("application/json; foo=\"\" ; charset=\"UTF-8\"", pairs(&[("foo", ""), ("charset", "UTF-8")])),
            ("application/json; foo=\"a\tb\"", pairs(&[("foo", "a\tb")])),
            (r#"application/json; foo="\"""#, pairs(&[("foo", "\"")])),
            ("application/json; charset=\"UTF-8\"", pairs(&[("charset", "UTF-8")])),
        ] {
            assert_eq!(params(value), Some(("application/json".to_owned(), expected)), "{value}");
            assert_eq!(check(value), Ok(()), "{value}");
        }
    }
}
