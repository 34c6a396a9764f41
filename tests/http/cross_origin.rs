//! Cross-site request forgery protection of the API ([`sluice_serving::cross_origin`]): a
//! state-changing request a browser sends from another site's page is refused with 403
//! `cross_origin_request` before it changes anything; curl-like clients and same-origin
//! browser requests go on; the redirect path is never checked. Loopback trust without a
//! token also needs a loopback `Host` (DNS rebinding).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::harness::{Backend, Resp, TestApp};

const LOOPBACK: &str = "127.0.0.1:50000";
const CROSS_SITE: [(&str, &str); 3] = [("host", "127.0.0.1:8080"), ("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")];

/// A request from a direct loopback peer (admitted to the admin routes without a token).
async fn send(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned()))).expect("request");
    req.extensions_mut().insert(ConnectInfo(LOOPBACK.parse::<SocketAddr>().expect("addr")));
    app.call(req).await
}

/// Finding (newcomer, session 58): with no admin token, a page of any site open in a
/// browser on the server's host disabled links and lifted holds (`text/plain` or an empty
/// body needs no CORS preflight), and could repoint or delete links.
async fn requests_from_another_sites_page_change_nothing(b: Backend) {
    let app = TestApp::start(b).await;
    let code = app.create_url("https://example.com/kept").await;
    let text = [("content-type", "text/plain")];
    let json_ct = [("content-type", "application/json")];
    for (method, path, extra, body) in [
        (Method::POST, format!("/v1/admin/links/{code}/disable"), &text[..], Some("{\"reason\":\"csrf\"}")),
        (Method::POST, format!("/v1/admin/links/{code}/disable"), &json_ct[..], Some("{\"reason\":\"csrf\"}")),
        (Method::POST, format!("/v1/admin/links/{code}/enable"), &[][..], None),
        (Method::POST, "/v1/admin/blocklist".to_owned(), &json_ct[..], Some("{\"pattern\":\"example.com\"}")),
        (Method::PATCH, format!("/v1/links/{code}"), &json_ct[..], Some("{\"long_url\":\"https://phish.example/\"}")),
        (Method::DELETE, format!("/v1/links/{code}"), &[][..], None),
        (Method::POST, "/v1/links".to_owned(), &text[..], Some("{\"long_url\":\"https://example.com/new\"}")),
    ] {
        let headers: Vec<(&str, &str)> = CROSS_SITE.iter().chain(extra).copied().collect();
        let v = send(&app, method.clone(), &path, &headers, body).await.assert_error(403, "cross_origin_request");
        assert_eq!(v["details"], json!({"sec_fetch_site": "cross-site"}), "{method} {path}");
    }
    // Nothing changed: the link is enabled, unchanged and redirects; no blocklist entry.
    let got = app.get(&format!("/v1/links/{code}")).await;
    assert_eq!((got.status, got.json()["long_url"].clone(), got.json()["enabled"].clone()), (StatusCode::OK, json!("https://example.com/kept"), json!(true)));
    let r = app.get(&format!("/{code}")).await;
    assert_eq!((r.status, r.location()), (StatusCode::FOUND, Some("https://example.com/kept")));
    let list = send(&app, Method::GET, "/v1/admin/blocklist", &[], None).await;
    assert_eq!((list.status, list.json()["items"].clone()), (StatusCode::OK, json!([])), "{:?}", list.body);
    // The same change from curl (no browser headers) or the server's own page goes through.
    let r = send(&app, Method::POST, &format!("/v1/admin/links/{code}/disable"), &json_ct, Some("{\"reason\":\"abuse\"}")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let same = [("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080"), ("sec-fetch-site", "same-origin")];
    let r = send(&app, Method::POST, &format!("/v1/admin/links/{code}/enable"), &same, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // A redirect followed from another site's page is a click like any other.
    let r = send(&app, Method::GET, &format!("/{code}"), &CROSS_SITE, None).await;
    assert_eq!((r.status, r.location()), (StatusCode::FOUND, Some("https://example.com/kept")));
}

/// Finding (newcomer, session 58): with no token, a page that rebinds its own domain to
/// 127.0.0.1 (DNS rebinding: same origin for the browser, so no cross-site header helps)
/// added blocklist entries and read the audit log as a loopback client.
async fn a_loopback_peer_that_names_another_host_is_not_local(b: Backend) {
    let app = TestApp::start(b).await;
    let rebound = [("host", "rebind.attacker.example:18931"), ("content-type", "application/json")];
    let r = send(&app, Method::POST, "/v1/admin/blocklist", &rebound, Some("{\"pattern\":\"example.com\"}")).await;
    r.assert_error(403, "admin_loopback_only");
    send(&app, Method::GET, "/v1/admin/audit", &rebound, None).await.assert_error(403, "admin_loopback_only");
    // Addressed as localhost, 127.0.0.1 or [::1] it is local.
    for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080"] {
        let r = send(&app, Method::GET, "/v1/admin/blocklist", &[("host", host)], None).await;
        assert_eq!(r.status, StatusCode::OK, "{host}: {:?}", r.body);
    }
}

backend_tests!(requests_from_another_sites_page_change_nothing, a_loopback_peer_that_names_another_host_is_not_local);
