//! Tests of [`super::ClientIpResolver`] and the hop forms it reads.

use super::*;
use axum::http::{HeaderMap, HeaderValue};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).expect("header"));
    }
    h
}

#[test]
fn hop_forms() {
    assert_eq!(parse_hop("2001:db8::1"), Some(ip("2001:db8::1")));
    assert_eq!(parse_hop("2001:0db8:0000:0000:0000:0000:0000:0001"), Some(ip("2001:db8::1")));
    assert_eq!(parse_hop("[2001:db8::1]:51234"), Some(ip("2001:db8::1")));
    assert_eq!(parse_hop("\"[2001:db8::1]:51234\""), Some(ip("2001:db8::1")));
    assert_eq!(parse_hop("[2001:db8::1]"), Some(ip("2001:db8::1")));
    assert_eq!(parse_hop("::ffff:192.0.2.10"), Some(ip("::ffff:192.0.2.10")));
    assert_eq!(parse_hop("192.0.2.10"), Some(ip("192.0.2.10")));
    assert_eq!(parse_hop("192.0.2.10:8080"), Some(ip("192.0.2.10")));
    assert_eq!(parse_hop("\"192.0.2.10\""), Some(ip("192.0.2.10")));
    assert_eq!(parse_hop("unknown"), None);
    assert_eq!(parse_hop("_hidden"), None);
    assert_eq!(parse_hop("192.0.2.10:99999"), None);
    // A zone id names an interface of the machine that wrote it: no client address.
    assert_eq!(parse_hop("fe80::1%eth0"), None);
    assert_eq!(parse_hop("[fe80::1%eth0]:80"), None);
    assert_eq!(parse_hop("[fe80::1%25eth0]"), None);
    // Nothing but a port after the brackets.
    assert_eq!(parse_hop("[2001:db8::1]x"), None);
    assert_eq!(parse_hop("[2001:db8::1]:99999"), None);
    assert_eq!(parse_hop("[2001:db8::1]:"), None);
    assert_eq!(parse_hop("[2001:db8::1]:+80"), None);
    assert_eq!(parse_hop("192.0.2.10:+80"), None);
    assert_eq!(parse_hop("\"192.0.2.10"), None);
    assert_eq!(parse_hop(""), None);
}

#[test]
fn untrusted_peer_ignores_headers() {
    let r = ClientIpResolver::new(vec!["10.0.0.0/8".parse().expect("net")]);
    let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
    assert_eq!(r.resolve(Some(ip("203.0.113.5")), &h), Some(ip("203.0.113.5")));
    let none = ClientIpResolver::default();
    assert_eq!(none.resolve(Some(ip("127.0.0.1")), &h), Some(ip("127.0.0.1")));
    assert_eq!(none.resolve(Some(ip("::1")), &HeaderMap::new()), Some(ip("::1")));
    assert_eq!(none.resolve(None, &h), None);
}

#[test]
fn rightmost_untrusted_hop_wins() {
    let r = ClientIpResolver::new(vec!["10.0.0.0/8".parse().expect("net"), "127.0.0.1/32".parse().expect("net")]);
    // spoofed left-most value is ignored: the proxy chain 10.1.1.1 saw 198.51.100.7
    let h = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.1.1.1")]);
    assert_eq!(r.resolve(Some(ip("127.0.0.1")), &h), Some(ip("198.51.100.7")));
    // multiple header lines are one list
    let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-for", "198.51.100.8")]);
    assert_eq!(r.resolve(Some(ip("10.0.0.2")), &h), Some(ip("198.51.100.8")));
    // all hops trusted: the left-most one
    let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
    assert_eq!(r.resolve(Some(ip("127.0.0.1")), &h), Some(ip("10.9.9.9")));
    // unparsable hop stops the walk at the last trusted address
    let h = headers(&[("x-forwarded-for", "garbage, 10.1.1.1")]);
    assert_eq!(r.resolve(Some(ip("127.0.0.1")), &h), Some(ip("10.1.1.1")));
    // IPv4-mapped peer is matched against IPv4 CIDRs
    let h = headers(&[("x-forwarded-for", "198.51.100.9")]);
    assert_eq!(r.resolve(Some(ip("::ffff:10.0.0.3")), &h), Some(ip("198.51.100.9")));
}

#[test]
fn forwarded_header() {
    let r = ClientIpResolver::new(vec!["127.0.0.0/8".parse().expect("net")]);
    let h = headers(&[("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43, For=\"[2001:db8:cafe::17]:4711\"")]);
    assert_eq!(r.resolve(Some(ip("127.0.0.1")), &h), Some(ip("2001:db8:cafe::17")));
    // X-Forwarded-For takes precedence when both are present
    let h = headers(&[("forwarded", "for=192.0.2.60"), ("x-forwarded-for", "198.51.100.1")]);
    assert_eq!(r.resolve(Some(ip("127.0.0.1")), &h), Some(ip("198.51.100.1")));
}

#[test]
fn configured_header() {
    let trusted = vec!["127.0.0.0/8".parse().expect("net")];
    let both = headers(&[("x-forwarded-for", "198.51.100.1"), ("forwarded", "for=192.0.2.60"), ("x-real-ip", "203.0.113.9")]);
    let peer = Some(ip("127.0.0.1"));
    let with = |h: &str| ClientIpResolver::new(trusted.clone()).with_header(h.parse().expect("header setting"));
    assert_eq!(with("auto").resolve(peer, &both), Some(ip("198.51.100.1")));
    assert_eq!(with(" Forwarded ").resolve(peer, &both), Some(ip("192.0.2.60")));
    assert_eq!(with("X-Forwarded-For").resolve(peer, &both), Some(ip("198.51.100.1")));
    assert_eq!(with("x-real-ip").resolve(peer, &both), Some(ip("203.0.113.9")));
    // the chosen header only: absent means the peer, never a fallback to another header
    assert_eq!(with("cf-connecting-ip").resolve(peer, &both), peer);
    assert_eq!(with("forwarded").resolve(peer, &headers(&[("x-forwarded-for", "198.51.100.1")])), peer);
    // still only from a trusted peer
    assert_eq!(with("x-real-ip").resolve(Some(ip("203.0.113.5")), &both), Some(ip("203.0.113.5")));
    // a list in the chosen header is walked right to left like X-Forwarded-For
    let h = headers(&[("x-real-ip", "1.2.3.4, 198.51.100.7, 127.0.0.9")]);
    assert_eq!(with("x-real-ip").resolve(peer, &h), Some(ip("198.51.100.7")));
}

#[test]
fn header_setting_spellings() {
    assert_eq!("AUTO".parse::<ForwardedHeader>().expect("auto"), ForwardedHeader::Auto);
    assert_eq!("True-Client-IP".parse::<ForwardedHeader>().expect("name").to_string(), "true-client-ip");
    let reads_xff = |s: &str| s.parse::<ForwardedHeader>().expect(s).reads_x_forwarded_for();
    assert_eq!(["auto", "X-Forwarded-For", "forwarded", "x-real-ip"].map(reads_xff), [true, true, false, false]);
    for bad in ["", "  ", "x real ip", "x-real-ip:", "héader", "a\nb"] {
        let err = bad.parse::<ForwardedHeader>().expect_err(bad);
        assert!(matches!(&err, Error::ForwardedHeader { value, reason: "is not a header name" } if value == bad), "{bad:?}: {err:?}");
        assert!(!err.retryable());
    }
    for standard in ["Host", "content-length", "authorization", "cookie", "user-agent", "Sec-Fetch-Site"] {
        let err = standard.parse::<ForwardedHeader>().expect_err(standard);
        assert!(err.to_string().contains("is a standard request header that carries no client address"), "{standard}: {err}");
    }
}

/// RFC 7239 §4 values: a token or a quoted-string, whose quoted-pairs (`\x` = `x`, RFC 9110
/// §5.6.4) are decoded before the node is read; a quoted comma or semicolon is part of the
/// value, not a separator.
#[test]
fn forwarded_quoted_strings_are_decoded() {
    let r = ClientIpResolver::new(vec!["127.0.0.0/8".parse().expect("net")]);
    let peer = Some(ip("127.0.0.1"));
    let fwd = |v: &str| r.resolve(peer, &headers(&[("forwarded", v)]));
    assert_eq!(fwd(r#"for="[2001:db8::\1]:4711""#), Some(ip("2001:db8::1")));
    assert_eq!(fwd(r#"for="\[2001:db8::17\]""#), Some(ip("2001:db8::17")));
    assert_eq!(fwd(r#"for="192.0.2.\61""#), Some(ip("192.0.2.61")));
    assert_eq!(fwd(r#"for="192.0.2.60";proto=http;by="\"x\\y\"", for=198.51.100.3"#), Some(ip("198.51.100.3")));
    // A decoded quote or backslash is no part of an address: the hop names no client.
    assert_eq!(fwd(r#"for="\"192.0.2.1\"""#), peer);
    assert_eq!(fwd(r#"for="192.0.2.1\\""#), peer);
    // A quoted comma does not split the element: `198.51.100.9` is inside the value.
    assert_eq!(fwd(r#"for="_a,for=198.51.100.9""#), peer);
    assert_eq!(fwd(r#"by="a;b,c";for=198.51.100.4"#), Some(ip("198.51.100.4")));
    // Parameter names in any case, empty list elements ignored.
    assert_eq!(fwd("FOR=192.0.2.8 , ,"), Some(ip("192.0.2.8")));
}

/// RFC 7239 §6: a node is an IPv4 address or an IPv6 address in brackets, with an optional
/// port, quoted when it holds `:` or `[` (which a token may not). An unquoted bracketed IPv6,
/// an unbracketed IPv6 and a zone id name no client.
#[test]
fn forwarded_nodes_follow_rfc_7239() {
    let r = ClientIpResolver::new(vec!["127.0.0.0/8".parse().expect("net")]);
    let peer = Some(ip("127.0.0.1"));
    let fwd = |v: &str| r.resolve(peer, &headers(&[("forwarded", v)]));
    assert_eq!(fwd("for=192.0.2.43"), Some(ip("192.0.2.43")));
    assert_eq!(fwd(r#"for="192.0.2.43:47011""#), Some(ip("192.0.2.43")));
    assert_eq!(fwd(r#"for="192.0.2.43:_p0rt""#), Some(ip("192.0.2.43")));
    assert_eq!(fwd(r#"for="[2001:db8:cafe::17]""#), Some(ip("2001:db8:cafe::17")));
    assert_eq!(fwd(r#"for="[2001:db8:cafe::17]:4711""#), Some(ip("2001:db8:cafe::17")));
    assert_eq!(fwd(r#"for="[::ffff:192.0.2.9]""#), Some(ip("::ffff:192.0.2.9")));
    for bad in [
        "for=[2001:db8::1]",
        "for=[2001:db8::1]:4711",
        "for=2001:db8::1",
        r#"for="2001:db8::1""#,
        r#"for="[fe80::1%eth0]""#,
        r#"for="[fe80::1%25eth0]""#,
        "for=192.0.2.43:80",
        r#"for="192.0.2.43:123456""#,
        r#"for="192.0.2.43:""#,
        r#"for="[2001:db8::1]x""#,
        r#"for="192.0.2.43"#,
        "for=",
        "for=unknown",
        "for=_hidden",
        r#"for="_hidden:_port""#,
        "for = 192.0.2.43",
        "for=192.0.2.43;for=198.51.100.1",
    ] {
        assert_eq!(fwd(bad), peer, "{bad}");
    }
}

/// The walk right to left stops at a hop that names no address (nginx `real_ip_recursive`):
/// the client is the address last walked to, which a trusted proxy reported (or the peer).
/// A value left of such a hop was written by a client and is never read.
#[test]
fn a_hop_that_names_no_address_ends_the_walk() {
    let r = ClientIpResolver::new(vec!["10.0.0.0/8".parse().expect("net"), "127.0.0.1/32".parse().expect("net")]);
    let peer = Some(ip("127.0.0.1"));
    let at = |pairs: &[(&'static str, &str)]| r.resolve(peer, &headers(pairs));
    assert_eq!(at(&[("x-forwarded-for", "198.51.100.7, unknown")]), peer);
    assert_eq!(at(&[("x-forwarded-for", "198.51.100.7, unknown, 10.1.1.1")]), Some(ip("10.1.1.1")));
    assert_eq!(at(&[("x-forwarded-for", "198.51.100.7, fe80::1%eth0, 10.1.1.1")]), Some(ip("10.1.1.1")));
    assert_eq!(at(&[("forwarded", "for=198.51.100.7, for=unknown;proto=https, for=10.1.1.1")]), Some(ip("10.1.1.1")));
    assert_eq!(at(&[("forwarded", "for=198.51.100.7, for=_hidden")]), peer);
    // An element without `for` is a proxy that named no client.
    assert_eq!(at(&[("forwarded", "for=198.51.100.7, proto=https;by=10.1.1.1")]), peer);
    assert_eq!(at(&[("forwarded", "for=198.51.100.7, ;")]), peer);
    // A malformed element (an unterminated quote, an unquoted bracket) ends the walk too,
    // and with it everything after it on its line.
    assert_eq!(at(&[("forwarded", r#"for=198.51.100.7, for="10.1.1.2, for=10.1.1.1"#)]), peer);
    assert_eq!(at(&[("forwarded", "for=198.51.100.7, for=[::1], for=10.1.1.1")]), peer);
    assert_eq!(at(&[("forwarded", "for=198.51.100.7"), ("forwarded", "for=10.1.1.1")]), Some(ip("198.51.100.7")));
    assert_eq!(at(&[("forwarded", "for=198.51.100.7"), ("forwarded", "for=[::1]"), ("forwarded", "for=10.1.1.1")]), Some(ip("10.1.1.1")));
}

/// A field value with bytes outside visible ASCII (obs-text) is read, not skipped: skipping
/// the line a trusted proxy appended to would credit the client's own lines before it.
#[test]
fn a_line_with_non_ascii_bytes_is_read_not_skipped() {
    let r = ClientIpResolver::new(vec!["10.0.0.0/8".parse().expect("net"), "127.0.0.1/32".parse().expect("net")]);
    let peer = Some(ip("127.0.0.1"));
    let mut h = HeaderMap::new();
    h.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
    h.append("x-forwarded-for", HeaderValue::from_bytes(b"x\xffy").expect("obs-text"));
    assert_eq!(r.resolve(peer, &h), peer);
    h.append("x-forwarded-for", HeaderValue::from_bytes(b"\xff, 10.1.1.1").expect("obs-text"));
    assert_eq!(r.resolve(peer, &h), Some(ip("10.1.1.1")));
    let mut h = HeaderMap::new();
    h.append("forwarded", HeaderValue::from_static("for=6.6.6.6"));
    h.append("forwarded", HeaderValue::from_bytes(b"for=\"\xff\"").expect("obs-text"));
    assert_eq!(r.resolve(peer, &h), peer);
    let mut h = HeaderMap::new();
    h.append("forwarded", HeaderValue::from_bytes(b"by=\"\xff\";for=198.51.100.2").expect("obs-text"));
    assert_eq!(r.resolve(peer, &h), Some(ip("198.51.100.2")));
}
