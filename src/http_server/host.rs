//! The `Host` header check of [`super::serve_with`] (RFC 9112 §3.2, RFC 9110 §7.2).

use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::Response;

use crate::http_listener::error_response;

const NOT_ONE_HOST_11: &str = "an HTTP/1.1 request must carry exactly one Host header (RFC 9112 section 3.2)";
const MANY_HOSTS: &str = "a request must not carry more than one Host header (RFC 9112 section 3.2)";
const BAD_HOST: &str = "the Host header is not a valid host[:port] (RFC 9110 section 7.2, RFC 3986 section 3.2.2)";

/// The 400 `invalid_host` answer (`connection: close`) to a request (`version`, `headers`) whose `Host` is wrong:
/// missing in HTTP/1.1 (HTTP/1.0 may omit it), given more than once, or not a
/// `uri-host [":" port]` ([`valid_host`]); `None` when the request is fine.
pub(super) fn reject_host(version: Version, headers: &HeaderMap) -> Option<Response> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let message = match (hosts.next(), hosts.next()) {
        (Some(h), None) if valid_host(h.as_bytes()) => return None,
        (Some(_), None) => BAD_HOST,
        (None, _) if version == Version::HTTP_10 => return None,
        _ if version == Version::HTTP_11 => NOT_ONE_HOST_11,
        _ => MANY_HOSTS,
    };
    let mut resp = error_response(StatusCode::BAD_REQUEST, "invalid_host", message, None);
    // The request is not understood (RFC 9112 §3.2): its body is not read, the connection ends.
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(resp)
}

/// Whether `v` is a `Host` value: `uri-host [":" port]` (RFC 9110 §7.2), where `uri-host`
/// is an IPv6 literal in brackets or a `reg-name` / IPv4 address (unreserved characters,
/// sub-delimiters and `%HH` escapes, RFC 3986 §3.2.2; empty allowed, RFC 9112 §3.2) and
/// `port` is digits with a value ≤ 65535, leading zeros allowed (empty allowed, RFC 3986
/// §3.2.3; [`valid_port`]).
/// Spaces, control characters, `@`, `/`, `?`, `#` and a second `:` are not.
pub(super) fn valid_host(v: &[u8]) -> bool {
    let (host_ok, port) = if let Some(rest) = v.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else { return false };
        let literal = std::str::from_utf8(&rest[..end]).ok().and_then(|s| s.parse::<std::net::Ipv6Addr>().ok());
        let after = &rest[end + 1..];
        match after {
            [] => (literal.is_some(), None),
            [b':', port @ ..] => (literal.is_some(), Some(port)),
            _ => return false,
        }
    } else {
        match v.iter().position(|&b| b == b':') {
            Some(i) => (reg_name(&v[..i]), Some(&v[i + 1..])),
            None => (reg_name(v), None),
        }
    };
    host_ok && port.is_none_or(valid_port)
}

/// `port = *DIGIT` (RFC 3986 §3.2.3) with a value of at most 65535: leading zeros of any
/// number are the same port (`0080` is 80, as hyper's `Uri`, Go's `net/http` and the URL
/// parser of browsers read it); empty is allowed.
fn valid_port(p: &[u8]) -> bool {
    let significant = &p[p.iter().position(|&d| d != b'0').unwrap_or(p.len())..];
    p.iter().all(u8::is_ascii_digit) && significant.len() <= 5 && significant.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65_535
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )` (RFC 3986 §3.2.2).
fn reg_name(v: &[u8]) -> bool {
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            b'%' if v.len() > i + 2 && v[i + 1].is_ascii_hexdigit() && v[i + 2].is_ascii_hexdigit() => i += 2,
            _ => return false,
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::valid_host;

    #[test]
    fn host_values() {
        for ok in [
            "x",
            "sho.rt.example",
            "sho.rt.example:8080",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:443",
            "a-b_c~d",
            "xn--bcher-kva.example",
            "h%41st",
            "",
            "h:",
            "h:65535",
            "h:00080",
            "example.com:0080",
            // RFC 3986 §3.2.3: `port = *DIGIT`; leading zeros of any number (hyper's `Uri`,
            // Go's net/http and browsers' URL parser read `000080` as 80).
            "example.com:000080",
            "example.com:0000000000000000080",
            "[::1]:000443",
            "h:0000065535",
            "h:000000",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok:?} is valid");
        }
        for bad in [
            "a b",
            "user@host",
            "host:80:80",
            "host:65536",
            "host:123456",
            "host:0065536",
            "host:00000099999",
            "host:+80",
            "host: 80",
            "host:8o",
            "host:-1",
            "[::1",
            "[nothost]",
            "[::1]x",
            "[::1]:x",
            "a/b",
            "a?b",
            "a#b",
            "a\tb",
            "a\u{7f}b",
            "h%4",
            "h%zz",
            "ü.example",
            "a\\b",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?} is invalid");
        }
    }
}
