//! Request headers through which a proxy names the client it forwards for.
//!
//! Endpoints that trust loopback callers when no token is configured (the admin API,
//! `POST /v1/events`) must not trust a reverse proxy on the same host that forwards outside
//! clients: such a request reaches them from a loopback peer but carries one of these
//! headers. The list is the de-facto standard set (RFC 7239 `Forwarded`, `X-Forwarded-For`,
//! nginx's `X-Real-IP`, Cloudflare's `CF-Connecting-IP`, Akamai's `True-Client-IP`, Fastly's
//! `Fastly-Client-IP`, ...) plus the header `server.forwarded-header` names.

use std::net::IpAddr;

use http::HeaderMap;

/// Lower-case names of the headers proxies commonly report a client address in.
pub const CLIENT_ADDRESS_HEADERS: [&str; 9] = [
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-original-forwarded-for",
];

/// Whether `headers` says the request was forwarded on behalf of another client: it carries
/// one of [`CLIENT_ADDRESS_HEADERS`] or `configured` (the forwarding header the server was
/// told to read, any case), with any value, even empty.
pub fn forwarded_for_someone(headers: &HeaderMap, configured: Option<&str>) -> bool {
    CLIENT_ADDRESS_HEADERS.iter().any(|h| headers.contains_key(*h)) || configured.is_some_and(|h| headers.contains_key(h))
}

/// Whether the request's `Host` names this machine ([`is_loopback_host`] of its host, any
/// port); also true without a `Host` (HTTP/1.0). A loopback peer that addressed the server
/// by another name followed DNS to it: a page that rebinds its own domain to 127.0.0.1 (DNS
/// rebinding) sends its domain as `Host`, so endpoints that trust loopback callers refuse it.
pub fn host_is_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(http::header::HOST) else { return true };
    let Ok(host) = host.to_str() else { return false };
    let host = host.trim().to_ascii_lowercase();
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`: the bracketed address as `url` serializes it.
        Some(rest) => match rest.split_once(']') {
            Some((v6, after)) if after.is_empty() || after.starts_with(':') => &host[..v6.len() + 2],
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host.as_str(), |(name, _port)| name),
    };
    is_loopback_host(name.strip_suffix('.').unwrap_or(name))
}

/// Whether `host` (lowercase, as `url` serializes it: IPv6 in brackets, no port) names this
/// machine: `localhost` / `*.localhost` (RFC 6761), 127.0.0.0/8, `::1`, an IPv4-mapped
/// loopback, or the unspecified address (`0.0.0.0`, `::`: connecting to it reaches this
/// machine). Shared by the referrer classifier, the link API's redirect-loop check and the
/// loopback trust of the admin and events routes.
pub fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback() || v4.is_unspecified(),
        Ok(IpAddr::V6(v6)) => v6.is_loopback() || v6.is_unspecified() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback() || v4.is_unspecified()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn any_client_address_header_or_the_configured_one() {
        let with = |name: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(""));
            h
        };
        for name in CLIENT_ADDRESS_HEADERS {
            assert!(forwarded_for_someone(&with(name), None), "{name}");
        }
        assert!(!forwarded_for_someone(&HeaderMap::new(), None));
        assert!(!forwarded_for_someone(&with("user-agent"), Some("x-my-client")));
        assert!(forwarded_for_someone(&with("x-my-client"), Some("X-My-Client")));
        assert!(!forwarded_for_someone(&with("x-my-client"), None));
        assert!(!forwarded_for_someone(&with("x-my-client"), Some("not a name")));
    }

    /// Finding (newcomer, session 58): with no token, a page that rebinds its own domain to
    /// 127.0.0.1 reached the admin routes and `POST /v1/events` as a loopback client.
    #[test]
    fn only_loopback_names_are_loopback_hosts() {
        let host = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::HOST, HeaderValue::from_static(v));
            host_is_loopback(&h)
        };
        for ok in ["localhost", "LOCALHOST:8080", "localhost.", "app.localhost:1", "127.0.0.1", "127.0.0.1:8080", "127.1.2.3", "[::1]", "[::1]:8080"] {
            assert!(host(ok), "{ok}");
        }
        for bad in ["rebind.attacker.example:18931", "sho.rt", "192.168.1.2:80", "10.0.0.1", "[2001:db8::1]:80", "[::1", "[::1]x", "localhost.example", ""] {
            assert!(!host(bad), "{bad}");
        }
        // The unspecified address reaches this machine too (no DNS name a page could rebind).
        assert!(host("0.0.0.0:8080"), "0.0.0.0");
        assert!(host_is_loopback(&HeaderMap::new()), "no Host (HTTP/1.0)");
    }
}
