//! Admin authentication, shared by every admin-role endpoint (`/v1/admin/...`,
//! `/v1/anomalies...`, `/v1/webhooks...`) until API keys and roles exist.
//!
//! Rules ([`AdminPrincipal`]):
//! - a token is configured (`[admin] token`): the request must carry
//!   `Authorization: Bearer <token>` (compared in constant time); otherwise 401 with
//!   `WWW-Authenticate: Bearer`: `unauthorized` when no bearer token was sent,
//!   `invalid_token` when the token sent is not the configured one (the codes of the
//!   ingest API, `POST /v1/events`);
//! - no token: only loopback peers (by the socket address, `ConnectInfo<SocketAddr>`) are
//!   admitted, and only when the request carries no header naming a client it was forwarded
//!   for (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`, ... and the configured
//!   `server.forwarded-header`: [`sluice_schemas::client_address`]; a reverse proxy on
//!   loopback would otherwise admit everyone) and whose `Host` is a loopback name
//!   (`localhost`, `127.0.0.1`, `[::1]`: a page rebinding its own domain to 127.0.0.1 sends
//!   that domain); otherwise 403
//!   `admin_loopback_only`. A request without connection info (e.g. a router driven with
//!   `oneshot`) is not loopback.
//!
//! A state opts in by implementing `FromRef<State> for AdminAuth`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The admin credential settings (cheap to clone).
#[derive(Clone, Default)]
pub struct AdminAuth {
    token: Option<Arc<str>>,
    /// `server.forwarded-header` when it names a header (`None`: `auto` / `forwarded`).
    client_header: Option<Arc<str>>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth").field("token", &self.token.as_ref().map(|_| "***")).finish()
    }
}

impl AdminAuth {
    /// Admin auth with `token` (`None` or empty = loopback peers only).
    pub fn new(token: Option<String>) -> AdminAuth {
        // The presented token is trimmed (`Bearer  s3cret `), so is the configured one: a
        // token read with its newline (`SLUICE__ADMIN__TOKEN=$(cat file)`) still matches, and
        // a blank one is none (it could never be presented).
        AdminAuth { token: token.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(Arc::from), client_header: None }
    }

    /// The same auth, also treating a request that carries `header` (the configured
    /// `server.forwarded-header`) as forwarded for another client in the no-token mode.
    pub fn with_client_header(mut self, header: Option<&str>) -> AdminAuth {
        self.client_header = header.map(Arc::from);
        self
    }

    /// Whether a bearer token is required.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Logs (info) which mode the admin endpoints run in; call once at start-up.
    pub fn log_mode(&self) {
        if self.has_token() {
            tracing::info!("admin endpoints require the configured bearer token ([admin] token)");
        } else {
            tracing::warn!("no admin token configured ([admin] token): admin endpoints accept loopback peers only");
        }
    }

    /// Checks one request's headers and peer (module docs).
    ///
    /// Errors: 401 `unauthorized` (no bearer token), 401 `invalid_token` (a wrong one),
    /// 403 `admin_loopback_only`.
    pub fn check(&self, headers: &axum::http::HeaderMap, peer: Option<SocketAddr>) -> Result<AdminPrincipal, AdminAuthError> {
        let peer_ip = peer.map(|p| p.ip());
        match &self.token {
            Some(token) => {
                let given = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    // The scheme is case-insensitive (RFC 9110 §11.1): `Bearer`, `bearer`, `BEARER`.
                    .and_then(|v| v.get(..7).filter(|scheme| scheme.eq_ignore_ascii_case("bearer ")).map(|_| &v[7..]))
                    .map(str::trim);
                match given {
                    Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(AdminPrincipal { actor: "admin-token".into(), peer: peer_ip }),
                    Some(_) => Err(AdminAuthError::InvalidToken),
                    None => Err(AdminAuthError::Unauthorized("this endpoint requires \"Authorization: Bearer <admin token>\"")),
                }
            }
            None => {
                // Through a proxy, or addressed by a name that is not loopback (DNS rebinding).
                let forwarded = sluice_schemas::client_address::forwarded_for_someone(headers, self.client_header.as_deref())
                    || !sluice_schemas::client_address::host_is_loopback(headers);
                match peer_ip {
                    Some(ip) if is_loopback(ip) && !forwarded => Ok(AdminPrincipal { actor: "loopback".into(), peer: peer_ip }),
                    _ => Err(AdminAuthError::LoopbackOnly),
                }
            }
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Equality without an early exit on the first differing byte (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who made an admitted admin request (for audit records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPrincipal {
    /// `"admin-token"` or `"loopback"`.
    pub actor: String,
    /// The peer's address, when known.
    pub peer: Option<IpAddr>,
}

/// Why an admin request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAuthError {
    /// 401 `unauthorized`: no bearer token.
    Unauthorized(&'static str),
    /// 401 `invalid_token`: a bearer token that is not the configured admin token.
    InvalidToken,
    /// 403 `admin_loopback_only`: no token configured and the peer is not loopback.
    LoopbackOnly,
}

impl From<AdminAuthError> for ApiError {
    fn from(e: AdminAuthError) -> ApiError {
        match e {
            AdminAuthError::Unauthorized(msg) => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg),
            AdminAuthError::InvalidToken => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "the bearer token is not the configured admin token"),
            AdminAuthError::LoopbackOnly => ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_loopback_only",
                "no admin token is configured, so admin endpoints accept direct loopback clients only",
            ),
        }
    }
}

impl IntoResponse for AdminAuthError {
    fn into_response(self) -> Response {
        let unauthorized = matches!(self, AdminAuthError::Unauthorized(_) | AdminAuthError::InvalidToken);
        let mut resp = ApiError::from(self).into_response();
        if unauthorized {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl<S> FromRequestParts<S> for AdminPrincipal
where
    AdminAuth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AdminAuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = AdminAuth::from_ref(state);
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        auth.check(&parts.headers, peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"), HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn token_mode_requires_the_exact_bearer_token() {
        let auth = AdminAuth::new(Some("s3cret".into()));
        let remote: SocketAddr = "203.0.113.9:5000".parse().expect("addr");
        let ok = auth.check(&headers(&[("authorization", "Bearer s3cret")]), Some(remote)).expect("admitted");
        assert_eq!(ok, AdminPrincipal { actor: "admin-token".into(), peer: Some(remote.ip()) });
        assert_eq!(auth.check(&headers(&[("authorization", "Bearer s3creT")]), Some(remote)), Err(AdminAuthError::InvalidToken));
        assert_eq!(auth.check(&headers(&[("authorization", "Bearer s3cret2")]), Some(remote)), Err(AdminAuthError::InvalidToken));
        // Loopback alone is not enough once a token is configured.
        let lo: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        assert!(matches!(auth.check(&headers(&[]), Some(lo)), Err(AdminAuthError::Unauthorized(_))));
    }

    #[test]
    fn no_token_mode_admits_direct_loopback_peers_only() {
        let auth = AdminAuth::new(None);
        for lo in ["127.0.0.1:1", "127.8.9.10:2", "[::1]:3", "[::ffff:127.0.0.1]:4"] {
            let p: SocketAddr = lo.parse().expect("addr");
            assert_eq!(auth.check(&headers(&[]), Some(p)).expect(lo).actor, "loopback");
            assert_eq!(auth.check(&headers(&[("x-forwarded-for", "198.51.100.1")]), Some(p)), Err(AdminAuthError::LoopbackOnly), "{lo}");
            assert_eq!(auth.check(&headers(&[("forwarded", "for=198.51.100.1")]), Some(p)), Err(AdminAuthError::LoopbackOnly), "{lo}");
            assert_eq!(auth.check(&headers(&[("x-real-ip", "198.51.100.1")]), Some(p)), Err(AdminAuthError::LoopbackOnly), "{lo}");
            // a header named by server.forwarded-header
            assert_eq!(auth.check(&headers(&[("x-edge-client", "198.51.100.1")]), Some(p)).expect(lo).actor, "loopback");
            let configured = auth.clone().with_client_header(Some("X-Edge-Client"));
            assert_eq!(configured.check(&headers(&[("x-edge-client", "198.51.100.1")]), Some(p)), Err(AdminAuthError::LoopbackOnly), "{lo}");
        }
        for remote in ["10.0.0.1:1", "[2001:db8::1]:2"] {
            assert_eq!(auth.check(&headers(&[]), Some(remote.parse().expect("addr"))), Err(AdminAuthError::LoopbackOnly));
        }
        assert_eq!(auth.check(&headers(&[]), None), Err(AdminAuthError::LoopbackOnly));
        assert!(!AdminAuth::new(Some(String::new())).has_token());
    }

    #[test]
    fn the_configured_token_is_trimmed_like_the_presented_one() {
        let remote: SocketAddr = "203.0.113.9:5000".parse().expect("addr");
        let auth = AdminAuth::new(Some(" s3cret\n".into()));
        assert_eq!(auth.check(&headers(&[("authorization", "Bearer s3cret")]), Some(remote)).expect("admitted").actor, "admin-token");
        assert_eq!(auth.check(&headers(&[("authorization", "Bearer  s3cret ")]), Some(remote)).expect("admitted").actor, "admin-token");
        for scheme in ["bearer", "BEARER", "BeArEr"] {
            assert_eq!(auth.check(&headers(&[("authorization", &format!("{scheme} s3cret"))]), Some(remote)).expect(scheme).actor, "admin-token");
        }
        assert!(matches!(auth.check(&headers(&[("authorization", "Basic s3cret")]), Some(remote)), Err(AdminAuthError::Unauthorized(_))));
        // A blank token is no token: loopback only, never "anyone presenting a blank one".
        for blank in [" ", "\t\n"] {
            let auth = AdminAuth::new(Some(blank.into()));
            assert!(!auth.has_token(), "{blank:?}");
            assert_eq!(auth.check(&headers(&[("authorization", "Bearer  ")]), Some(remote)), Err(AdminAuthError::LoopbackOnly));
        }
    }
}
