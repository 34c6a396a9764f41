//! Which IP a click comes from: the socket peer, or, only when the peer is a trusted proxy,
//! the right-most untrusted hop of the forwarding header ([`ForwardedHeader`], nginx's
//! `real_ip_header`): by default `X-Forwarded-For` (preferred when present) or `Forwarded`
//! (RFC 7239 `for=`); configurable to `Forwarded` only or to any one header a proxy sets
//! (`X-Real-IP`, `CF-Connecting-IP`, `True-Client-IP`), read as a comma-separated list.
//!
//! Accepted hop forms: `192.0.2.10`, `192.0.2.10:1234`, `2001:db8::1`,
//! `2001:0db8:0000:0000:0000:0000:0000:0001`, `[2001:db8::1]`, `[2001:db8::1]:51234`,
//! `::ffff:192.0.2.10`, quoted forms in `Forwarded`, zone ids (`fe80::1%eth0`, dropped).
//! Unparsable hops (`unknown`, `_hidden`) stop the walk: the last trusted address is used.

use std::net::IpAddr;

use axum::http::{HeaderName, header};
use ipnet::IpNet;

use crate::Error;
use crate::head::{HeaderFields, visible_ascii};

/// Which request header a trusted proxy reports the client address in (`[server]
/// forwarded-header`; nginx's `real_ip_header`). Only ever read when the peer is a trusted
/// proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `"auto"` (default): every `X-Forwarded-For` line when there is one, else the `for=`
    /// parameters of every `Forwarded` line (RFC 7239). A proxy that sets only `Forwarded`
    /// must then strip a client's `X-Forwarded-For`, or pick [`Self::Forwarded`].
    #[default]
    Auto,
    /// `"forwarded"`: RFC 7239 `Forwarded` `for=` only; `X-Forwarded-For` is ignored.
    Forwarded,
    /// Any other header name (`"x-forwarded-for"`, `"x-real-ip"`, `"cf-connecting-ip"`):
    /// that header only, every line, comma-separated addresses; `Forwarded` is ignored.
    List(HeaderName),
}

impl std::str::FromStr for ForwardedHeader {
    type Err = Error;

    /// `"auto"` and `"forwarded"` (any case, surrounding blanks ignored) or a header name
    /// (RFC 9110 token; stored lower-case). Errors: [`Error::ForwardedHeader`] for anything
    /// else (empty, blanks or `:` inside, non-ASCII) and for the standard request headers of
    /// [`NOT_CLIENT_ADDRESS_HEADERS`] (a client sets those itself).
    fn from_str(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        if t.eq_ignore_ascii_case("forwarded") {
            return Ok(Self::Forwarded);
        }
        let refuse = |reason| Error::ForwardedHeader { value: s.to_owned(), reason };
        let name = HeaderName::from_bytes(t.as_bytes()).map_err(|_| refuse("is not a header name"))?;
        if NOT_CLIENT_ADDRESS_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("sec-") {
            return Err(refuse("is a standard request header that carries no client address"));
        }
        Ok(Self::List(name))
    }
}

impl ForwardedHeader {
    /// The one header read, for [`Self::List`].
    pub fn header_name(&self) -> Option<&HeaderName> {
        match self {
            Self::List(name) => Some(name),
            _ => None,
        }
    }

    /// Whether a client address in `X-Forwarded-For` is read (`auto` or that header named).
    pub fn reads_x_forwarded_for(&self) -> bool {
        match self {
            Self::Auto => true,
            Self::Forwarded => false,
            Self::List(name) => name == "x-forwarded-for",
        }
    }
}

impl std::fmt::Display for ForwardedHeader {
    /// The config spelling: `auto`, `forwarded` or the lower-case header name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Forwarded => f.write_str("forwarded"),
            Self::List(name) => f.write_str(name.as_str()),
        }
    }
}

/// Standard request headers (RFC 9110/9111/9112, RFC 6265, Fetch) that no proxy reports a
/// client address in: refused as `server.forwarded-header` (with every `Sec-*` header).
pub const NOT_CLIENT_ADDRESS_HEADERS: [&str; 27] = [
    "accept",
    "accept-encoding",
    "accept-language",
    "authorization",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "cookie",
    "expect",
    "host",
    "idempotency-key",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "origin",
    "pragma",
    "proxy-authorization",
    "range",
    "referer",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "via",
];

/// Resolves client IPs against a trusted-proxy list.
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
}

impl ClientIpResolver {
    /// A resolver trusting `trusted` (empty: forwarding headers are never believed) and
    /// reading the default header ([`ForwardedHeader::Auto`]).
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted, header: ForwardedHeader::Auto }
    }

    /// Every request header [`Self::resolve`] may read: none without trusted proxies; else
    /// `X-Forwarded-For` and `Forwarded` ([`ForwardedHeader::Auto`]), `Forwarded`, or the
    /// configured header.
    pub fn read_headers(&self) -> Vec<HeaderName> {
        if self.trusted.is_empty() {
            return Vec::new();
        }
        match &self.header {
            ForwardedHeader::Auto => vec![HeaderName::from_static("x-forwarded-for"), HeaderName::from_static("forwarded")],
            ForwardedHeader::Forwarded => vec![HeaderName::from_static("forwarded")],
            ForwardedHeader::List(name) => vec![name.clone()],
        }
    }

    /// The same resolver reading `header` from trusted proxies.
    pub fn with_header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Whether `ip` (IPv4-mapped IPv6 compared as IPv4) is inside a trusted CIDR.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client IP for a request from `peer` carrying `headers`; `None` only when the
    /// peer is unknown (no socket, e.g. in-process tests).
    pub fn resolve<H: HeaderFields + ?Sized>(&self, peer: Option<IpAddr>, headers: &H) -> Option<IpAddr> {
        let peer = peer?;
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            return Some(peer);
        }
        let hops = match &self.header {
            ForwardedHeader::Auto => {
                let xff = list_hops(headers, &HeaderName::from_static("x-forwarded-for"));
                if xff.is_empty() { forwarded_for_hops(headers) } else { xff }
            }
            ForwardedHeader::Forwarded => forwarded_for_hops(headers),
            ForwardedHeader::List(name) => list_hops(headers, name),
        };
        let mut current = peer;
        for hop in hops.iter().rev() {
            if !self.is_trusted(current) {
                break;
            }
            match parse_hop(hop) {
                Some(ip) => current = ip,
                None => break,
            }
        }
        Some(current)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Hops in order (client first) from every `name` line, each a comma-separated list.
fn list_hops<H: HeaderFields + ?Sized>(headers: &H, name: &HeaderName) -> Vec<String> {
    let mut hops = Vec::new();
    for v in headers.all(name) {
        if let Some(s) = visible_ascii(v) {
            hops.extend(s.split(',').map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()));
        }
    }
    hops
}

/// Hops in order (client first) from the `for=` parameters of every `Forwarded` line
/// (RFC 7239 section 4).
fn forwarded_for_hops<H: HeaderFields + ?Sized>(headers: &H) -> Vec<String> {
    let mut hops = Vec::new();
    for v in headers.all(&header::FORWARDED) {
        let Some(s) = visible_ascii(v) else { continue };
        for element in s.split(',') {
            for pair in element.split(';') {
                if let Some((k, val)) = pair.split_once('=')
                    && k.trim().eq_ignore_ascii_case("for")
                {
                    hops.push(val.trim().to_owned());
                }
            }
        }
    }
    hops
}

/// Parses one hop in any of the forms listed in the module docs.
pub fn parse_hop(raw: &str) -> Option<IpAddr> {
    let s = raw.trim().trim_matches('"').trim();
    if let Some(rest) = s.strip_prefix('[') {
        let inner = &rest[..rest.find(']')?];
        return parse_bare(inner);
    }
    if let Some(ip) = parse_bare(s) {
        return Some(ip);
    }
    // IPv4 with a port: exactly one ':'.
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') || port.parse::<u16>().is_err() {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn parse_bare(s: &str) -> Option<IpAddr> {
    let s = s.split('%').next()?;
    s.parse().ok()
}

#[cfg(test)]
mod tests {
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
        assert_eq!(parse_hop("fe80::1%eth0"), Some(ip("fe80::1")));
        assert_eq!(parse_hop("unknown"), None);
        assert_eq!(parse_hop("_hidden"), None);
        assert_eq!(parse_hop("192.0.2.10:99999"), None);
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
}
