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
}
