//! The request-target forms of [`super::serve_with`] that an origin server does not serve
//! as a path (RFC 9112 §3.2): the authority-form (`CONNECT host:443`, for proxies) and the
//! asterisk-form (`OPTIONS *`, a question about the server as a whole), and the
//! absolute-form targets (`http://host/code`) whose scheme or authority is no good.

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;

use crate::http_listener::error_response;

/// Every method some route of the server takes (the link API's `PATCH` and `DELETE`
/// included): the `Allow` of the answers below.
pub const SERVER_METHODS: &str = "GET, HEAD, POST, PATCH, DELETE";

pub(super) const CONNECT_MESSAGE: &str = "CONNECT asks a proxy for a tunnel (RFC 9110 section 9.3.6); this server is an origin server and tunnels nothing";
pub(super) const AUTHORITY_FORM_MESSAGE: &str = "the request target must be a path starting with '/' or an absolute http:// or https:// URL; a bare host or host:port (the authority-form) is for CONNECT only (RFC 9112 section 3.2.3)";
pub(super) const ABSOLUTE_SCHEME_MESSAGE: &str = "an absolute request target must be an http:// or https:// URL (RFC 9112 section 3.2.2)";
pub(super) const ABSOLUTE_AUTHORITY_MESSAGE: &str = "the host of an absolute request target is not a valid host[:port] (no user:password@, a port of at most 65535; RFC 9112 section 3.2.2, RFC 9110 section 4.2.4)";
pub(super) const ASTERISK_FORM_MESSAGE: &str = "the request target \"*\" is for OPTIONS only (RFC 9112 section 3.2.4); send a path, e.g. GET /code";

/// The answer to a request (`method`, `uri`) whose target is not a path, `None` for every
/// other request (an origin-form `/…` or absolute-form `http://host/…` target):
///
/// * `CONNECT`, whatever its target: 405 `method_not_allowed` with `Allow:`
///   [`SERVER_METHODS`];
/// * `OPTIONS *`: 200, no body, `Allow:` [`SERVER_METHODS`] (RFC 9110 §9.3.7: the server's
///   capabilities);
/// * an authority-form target (`host:port`, or anything else without a `/` or a scheme) with
///   another method, or `*` with a method other than `OPTIONS`: 400 `invalid_path`;
/// * an absolute-form target (`http://host/code`, which stands for `Host` too, RFC 9112
///   §3.2.2) whose scheme is not http or https: 400 `invalid_path`; whose authority is not a
///   valid `Host` ([`super::host::valid_host`]: `user:password@`, a port past 65535): 400
///   `invalid_host`, as the same value in `Host` is.
///
/// All but `OPTIONS *` with `connection: close`: a client that sent one has mistaken the
/// server for a proxy, and what it sends next is not meant for an origin server.
pub(super) fn reject_target_form(method: &Method, uri: &Uri) -> Option<Response> {
    let asterisk = uri.scheme().is_none() && uri.path() == "*";
    let authority_form = uri.scheme().is_none() && uri.authority().is_some();
    let mut resp = if *method == Method::CONNECT {
        with_allow(error_response(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", CONNECT_MESSAGE, None))
    } else if asterisk && *method == Method::OPTIONS {
        let mut resp = with_allow(Response::new(Body::empty()));
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Some(resp);
    } else if asterisk {
        error_response(StatusCode::BAD_REQUEST, "invalid_path", ASTERISK_FORM_MESSAGE, None)
    } else if authority_form {
        error_response(StatusCode::BAD_REQUEST, "invalid_path", AUTHORITY_FORM_MESSAGE, None)
    } else if let Some(scheme) = uri.scheme_str() {
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            error_response(StatusCode::BAD_REQUEST, "invalid_path", ABSOLUTE_SCHEME_MESSAGE, None)
        } else if uri.authority().is_some_and(|a| super::host::valid_host(a.as_str().as_bytes())) {
            return None;
        } else {
            error_response(StatusCode::BAD_REQUEST, "invalid_host", ABSOLUTE_AUTHORITY_MESSAGE, None)
        }
    } else {
        return None;
    };
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(resp)
}

fn with_allow(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(SERVER_METHODS));
    resp
}
