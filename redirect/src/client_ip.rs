//! Which IP a click comes from: the socket peer, or, only when the peer is a trusted proxy,
//! the right-most untrusted hop of `X-Forwarded-For` (preferred when present) or
//! `Forwarded` (RFC 7239 `for=`).
//!
//! Accepted hop forms: `192.0.2.10`, `192.0.2.10:1234`, `2001:db8::1`,
//! `2001:0db8:0000:0000:0000:0000:0000:0001`, `[2001:db8::1]`, `[2001:db8::1]:51234`,
//! `::ffff:192.0.2.10`, quoted forms in `Forwarded`, zone ids (`fe80::1%eth0`, dropped).
//! Unparsable hops (`unknown`, `_hidden`) stop the walk: the last trusted address is used.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Resolves client IPs against a trusted-proxy list.
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
}

impl ClientIpResolver {
    /// A resolver trusting `trusted` (empty: forwarding headers are never believed).
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted }
    }

    /// Whether `ip` (IPv4-mapped IPv6 compared as IPv4) is inside a trusted CIDR.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client IP for a request from `peer` carrying `headers`; `None` only when the
    /// peer is unknown (no socket, e.g. in-process tests).
    pub fn resolve(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            return Some(peer);
        }
        let hops = forwarded_hops(headers);
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

/// Hops in order (client first), from all `X-Forwarded-For` lines, or else all
/// `Forwarded` lines' `for=` parameters.
fn forwarded_hops(headers: &HeaderMap) -> Vec<String> {
    let mut hops = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        if let Ok(s) = v.to_str() {
            hops.extend(s.split(',').map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()));
        }
    }
    if !hops.is_empty() {
        return hops;
    }
    for v in headers.get_all("forwarded") {
        let Ok(s) = v.to_str() else { continue };
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
    use axum::http::HeaderValue;

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
}
