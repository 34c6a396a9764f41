//! The request head the redirect handler reads: [`RequestHead`] (method, path, query) and
//! [`HeaderFields`] (header field values by name, [`HeaderFields::all`]).
//!
//! Why a trait rather than `http::request::Parts`: a server that parses requests itself
//! (the `sluice` binary's express lane) can hand the handler a view of the bytes it parsed,
//! without building a `Uri` and a `HeaderMap` (hashing every field name, a reference-counted
//! slice per value) for each redirect. `Parts` and `HeaderMap` implement both, so hyper's
//! path reads the same fields the same way.

use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, Method};

/// Header fields of a request, by name.
pub trait HeaderFields {
    /// The value of every field named `name`, in the order received (raw bytes as in the
    /// request, without the whitespace around them, RFC 9110 §5.5); repeated fields are
    /// separate items.
    fn all<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + use<'a, Self>;

    /// The value of the first field named `name` (`None`: no such field).
    fn first<'a>(&'a self, name: &HeaderName) -> Option<&'a [u8]> {
        self.all(name).next()
    }
}

impl HeaderFields for HeaderMap {
    fn all<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        self.get_all(name).into_iter().map(|v| v.as_bytes())
    }

    fn first<'a>(&'a self, name: &HeaderName) -> Option<&'a [u8]> {
        self.get(name).map(|v| v.as_bytes())
    }
}

/// What the redirect handler reads of a request: its method, path and query (of an
/// origin-form target, RFC 9112 §3.2.1) and the header fields named by
/// [`crate::RedirectState::read_headers`] (others may be absent).
pub trait RequestHead: HeaderFields + Sync {
    /// `HEAD` (else `GET`: the handler is only given those two).
    fn is_head(&self) -> bool;
    /// The target's path, as sent (percent-encoding kept), e.g. `/abc`.
    fn path(&self) -> &str;
    /// The target's query, after `?` (`None`: no `?`).
    fn query(&self) -> Option<&str>;
}

impl HeaderFields for Parts {
    fn all<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        HeaderFields::all(&self.headers, name)
    }

    fn first<'a>(&'a self, name: &HeaderName) -> Option<&'a [u8]> {
        self.headers.first(name)
    }
}

impl RequestHead for Parts {
    fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }

    fn path(&self) -> &str {
        self.uri.path()
    }

    fn query(&self) -> Option<&str> {
        self.uri.query()
    }
}

/// `value` as text when it holds only visible ASCII and tabs (what
/// `HeaderValue::to_str` accepts); `None` otherwise.
pub fn visible_ascii(value: &[u8]) -> Option<&str> {
    if value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) { std::str::from_utf8(value).ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, Request, header};

    #[test]
    fn parts_read_their_uri_and_every_repeated_field_in_order() {
        let req = Request::head("/ab%43?x=1&y")
            .header(header::USER_AGENT, "UA/1")
            .header("x-forwarded-for", "1.2.3.4")
            .header("X-Forwarded-For", "5.6.7.8")
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        assert!(parts.is_head());
        assert_eq!(parts.path(), "/ab%43");
        assert_eq!(parts.query(), Some("x=1&y"));
        let xff = HeaderName::from_static("x-forwarded-for");
        assert_eq!(parts.all(&xff).collect::<Vec<_>>(), [b"1.2.3.4".as_slice(), b"5.6.7.8"]);
        assert_eq!(parts.first(&xff), Some(b"1.2.3.4".as_slice()));
        assert_eq!(parts.first(&header::USER_AGENT), Some(b"UA/1".as_slice()));
        assert_eq!(parts.first(&header::REFERER), None);
        assert_eq!(parts.all(&header::REFERER).count(), 0);
        let (get, ()) = Request::get("/x").body(()).expect("request").into_parts();
        assert!(!get.is_head());
        assert_eq!(get.query(), None);
    }

    #[test]
    fn visible_ascii_accepts_what_header_value_to_str_accepts() {
        for b in 0..=255u8 {
            let bytes = [b'a', b, b'z'];
            let Ok(v) = HeaderValue::from_bytes(&bytes) else { continue };
            assert_eq!(visible_ascii(&bytes), v.to_str().ok(), "byte {b:#04x}");
        }
    }
}
