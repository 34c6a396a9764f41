//! Request headers through which a proxy names the client it forwards for.
//!
//! Endpoints that trust loopback callers when no token is configured (the admin API,
//! `POST /v1/events`) must not trust a reverse proxy on the same host that forwards outside
//! clients: such a request reaches them from a loopback peer but carries one of these
//! headers. The list is the de-facto standard set (RFC 7239 `Forwarded`, `X-Forwarded-For`,
//! nginx's `X-Real-IP`, Cloudflare's `CF-Connecting-IP`, Akamai's `True-Client-IP`, Fastly's
//! `Fastly-Client-IP`, ...) plus the header `server.forwarded-header` names.

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

/// Whether the request's `Host` names this machine by a loopback name: `localhost` or a
/// subdomain of it (RFC 6761 §6.3), an IPv4 address in 127.0.0.0/8 or `[::1]`, with any
/// port; also true without a `Host` (HTTP/1.0). A loopback peer that addressed the server by
/// another name followed DNS to it: a page that rebinds its own domain to 127.0.0.1 (DNS
/// rebinding) sends its domain as `Host`, so endpoints that trust loopback callers refuse it.
pub fn host_is_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(http::header::HOST) else { return true };
    let Ok(host) = host.to_str() else { return false };
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, after)) if after.is_empty() || after.starts_with(':') => return v6.parse::<std::net::Ipv6Addr>().is_ok_and(|a| a.is_loopback()),
            _ => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host.as_str(), |(name, _port)| name)
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name == "localhost" || name.ends_with(".localhost") || name.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
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
        for bad in
            ["rebind.attacker.example:18931", "sho.rt", "192.168.1.2:80", "10.0.0.1", "[2001:db8::1]:80", "[::1", "[::1]x", "localhost.example", "0.0.0.0", ""]
        {
            assert!(!host(bad), "{bad}");
        }
        assert!(host_is_loopback(&HeaderMap::new()), "no Host (HTTP/1.0)");
    }
}
