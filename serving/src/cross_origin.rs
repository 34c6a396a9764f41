//! Cross-site request forgery protection for every API route: a state-changing request
//! (any method but `GET`, `HEAD` and `OPTIONS`) that a browser made on behalf of another
//! site is refused with 403 `cross_origin_request`, before any handler runs. The redirect
//! path (`GET /{code}`) is never checked.
//!
//! Why: the admin routes trust loopback clients when no admin token is set, and the link API
//! has no credentials of its own, so a page of any site open in a browser on the server's
//! host (or on a network the API is reachable from) could otherwise disable links, lift
//! holds, edit the blocklist or repoint links with a form post or a `no-cors` fetch, which
//! browsers send without a CORS preflight (`text/plain`, form encodings, no body).
//!
//! The rule is the one of Go 1.25's `net/http.CrossOriginProtection` (after Filippo
//! Valsorda, "Cross-Site Request Forgery", 2025), which relies on what browsers add to every
//! request, not on tokens:
//! 1. `Sec-Fetch-Site` (W3C Fetch Metadata, sent by every current browser): `same-origin` or
//!    `none` (typed in, bookmarks) passes; `same-site` and `cross-site` are refused.
//! 2. Without it, an `Origin` header (RFC 6454 §7; older browsers) passes only when its
//!    host and port equal the request's `Host`.
//! 3. Neither header: not a browser request (curl, SDKs, servers), which a page cannot
//!    make; it passes.
//!
//! Sluice answers no CORS preflight, so a dashboard on another origin cannot call the API
//! from a browser anyway; this closes the requests that need no preflight.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;

/// Middleware: 403 `cross_origin_request` for a state-changing request a browser sent from
/// another site (module docs); every other request goes on.
pub async fn refuse_cross_origin(req: Request, next: Next) -> Response {
    match check(req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// The module's rule for one request.
///
/// Errors: 403 `cross_origin_request` with `details.sec_fetch_site` or `details.origin`
/// (the value that refused it, as sent when it is visible ASCII).
pub fn check(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            other => Err(refused("sec_fetch_site", other, "Sec-Fetch-Site says the request came from another site")),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let host = headers.get(header::HOST).map(|h| h.as_bytes().to_ascii_lowercase());
    match origin_authority(origin.as_bytes()) {
        Some(authority) if host.as_deref() == Some(authority.as_slice()) => Ok(()),
        _ => Err(refused("origin", origin.as_bytes(), "its Origin is not this server's host")),
    }
}

/// The `host[:port]` of a serialized origin (`scheme "://" host [ ":" port ]`, RFC 6454
/// §6.2), lower-cased, with the default port of `http`/`https` dropped as a `Host` header
/// omits it; `None` for `null` and anything else.
fn origin_authority(origin: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(origin).ok()?.to_ascii_lowercase();
    let (scheme, authority) = text.split_once("://")?;
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    let default = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    Some(authority.strip_suffix(default).unwrap_or(authority).as_bytes().to_vec())
}

fn refused(field: &'static str, value: &[u8], why: &str) -> ApiError {
    let shown = if value.iter().all(|b| b.is_ascii_graphic() || *b == b' ') { String::from_utf8_lossy(value).into_owned() } else { String::new() };
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_origin_request",
        format!("a state-changing request from a page of another site is refused (cross-site request forgery protection): {why}; call the API from a server or a command line, not from another site's page"),
    )
    .with_details(json!({ field: shown }))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    fn code(method: Method, pairs: &[(&'static str, &str)]) -> Option<&'static str> {
        check(&method, &headers(pairs)).err().map(|e| e.code)
    }

    /// Finding (newcomer, session 58): a page of another site could disable a link or lift
    /// an abuse hold through the admin routes of a server without an admin token.
    #[test]
    fn browser_requests_from_other_sites_are_refused() {
        let refused = Some("cross_origin_request");
        let host = ("host", "127.0.0.1:8080");
        for m in [Method::POST, Method::PATCH, Method::DELETE, Method::PUT] {
            assert_eq!(code(m.clone(), &[host, ("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")]), refused, "{m}");
            assert_eq!(code(m.clone(), &[host, ("sec-fetch-site", "same-site")]), refused, "{m}");
            assert_eq!(code(m.clone(), &[host, ("origin", "https://evil.example")]), refused, "{m}");
            assert_eq!(code(m.clone(), &[host, ("origin", "null")]), refused, "{m}");
            assert_eq!(code(m.clone(), &[host, ("origin", "http://127.0.0.1:8081")]), refused, "{m}: another port is another origin");
            assert_eq!(code(m.clone(), &[("origin", "http://127.0.0.1:8080")]), refused, "{m}: no Host to compare");
        }
    }

    #[test]
    fn same_origin_browser_requests_and_non_browser_clients_pass() {
        let host = ("host", "127.0.0.1:8080");
        for m in [Method::POST, Method::PATCH, Method::DELETE] {
            assert_eq!(code(m.clone(), &[host]), None, "curl: neither header");
            assert_eq!(code(m.clone(), &[host, ("sec-fetch-site", "same-origin"), ("origin", "http://127.0.0.1:8080")]), None);
            assert_eq!(code(m.clone(), &[host, ("sec-fetch-site", "none")]), None);
            assert_eq!(code(m.clone(), &[host, ("origin", "http://127.0.0.1:8080")]), None);
            assert_eq!(code(m.clone(), &[("host", "Sho.RT"), ("origin", "https://sho.rt")]), None, "default port, case");
            assert_eq!(code(m.clone(), &[("host", "sho.rt"), ("origin", "http://sho.rt:80")]), None);
        }
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert_eq!(code(m.clone(), &[host, ("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")]), None, "{m} changes nothing");
        }
    }
}
