//! How a whole system serves on the listener it is given: the address short URLs carry.

use reqwest::StatusCode;

use crate::harness::Server;

/// `--listen 127.0.0.1:0`: short URLs carry the port the system chose, not `:0`, and they
/// redirect; the admin data is not cached either (every `/v1/` answer is `no-store` unless
/// the route says otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_on_port_zero_gives_short_urls_on_the_bound_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |c| c.server.listen.set_port(0)).await;
    let port = s.system.addr().port();
    assert_ne!(port, 0);
    let code = s.link("p0").await;
    let (status, headers, link) = s.get(&format!("/v1/links/{code}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    assert_eq!(link["short_url"], format!("http://127.0.0.1:{port}/{code}"), "{link}");
    let short = link["short_url"].as_str().expect("short_url");
    let r = s.http.get(short).send().await.expect("follow the short url");
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers().get("location").and_then(|v| v.to_str().ok()), Some("https://example.com/p0"));
    let r = s.http.get(s.path("/v1/admin/blocklist")).send().await.expect("blocklist");
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    s.stop().await;
}
