//! The redirect hot path over the real stores: statuses, headers, click events, query
//! appending, read-after-write, health endpoints, metrics and roles.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::harness::{BROWSER_UA, Backend, TestApp, wait_until};

backend_tests!(
    redirect_302_with_headers_and_one_click,
    redirect_301_cache_control_is_bounded,
    head_is_not_a_click,
    prefetches_are_refused_or_redirected_without_a_click,
    unknown_disabled_and_expired_are_errors_without_location,
    query_is_appended_unless_configured_off,
    read_after_write_in_process,
    health_ready_and_metrics,
    roles_split_api_and_redirect,
);

async fn redirect_302_with_headers_and_one_click(b: Backend) {
    let app = TestApp::start_with(b, |c| c.redirect.edge_region = Some("test-edge".into())).await;
    let code = app.create_url("https://example.com/landing").await;
    app.take_events();
    let r = app
        .request(
            Method::GET,
            &format!("/{code}"),
            &[("user-agent", BROWSER_UA), ("referer", "https://ref.example/page"), ("accept-language", "de-CH,de;q=0.9")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), Some("https://example.com/landing"));
    assert_eq!(r.header("cache-control"), Some("private, max-age=0"));
    assert!(r.body.is_empty());
    let events = app.take_events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.code, code);
    assert_eq!(e.event_id.get_version_num(), 7);
    let now = chrono::Utc::now().timestamp_millis();
    assert!((now - e.ts).abs() < 10_000, "ts is now in ms: {}", e.ts);
    assert_eq!(e.ip_trunc.as_deref(), Some("203.0.113.0"));
    assert_eq!(e.visitor_id, sluice_schemas::visitor_id(&app.salt(), e.ts, app.peer.ip(), BROWSER_UA));
    assert_eq!(e.user_agent, BROWSER_UA);
    assert_eq!(e.referrer.as_deref(), Some("https://ref.example/page"));
    assert_eq!(e.accept_language.as_deref(), Some("de-CH,de;q=0.9"));
    assert_eq!(e.edge_region.as_deref(), Some("test-edge"));
    // event ids are unique per click
    app.get(&format!("/{code}")).await;
    app.get(&format!("/{code}")).await;
    let more = app.take_events();
    assert_eq!(more.len(), 2);
    assert_ne!(more[0].event_id, more[1].event_id);
    assert_ne!(more[0].event_id, e.event_id);
}

async fn redirect_301_cache_control_is_bounded(b: Backend) {
    let app = TestApp::start(b).await;
    let p = app.create(json!({"long_url": "https://example.com/perm", "redirect_type": 301})).await;
    let r = app.get(&format!("/{}", p["code"].as_str().expect("code"))).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.location(), Some("https://example.com/perm"));
    assert_eq!(r.header("cache-control"), Some("public, max-age=3600"));
    let expires = (chrono::Utc::now() + chrono::Duration::seconds(100)).to_rfc3339();
    let p = app.create(json!({"long_url": "https://example.com/soon", "redirect_type": 301, "expires_at": expires})).await;
    let r = app.get(&format!("/{}", p["code"].as_str().expect("code"))).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    let cc = r.header("cache-control").expect("cache-control");
    let max_age: u64 = cc.strip_prefix("public, max-age=").expect("max-age form").parse().expect("number");
    assert!((95..=100).contains(&max_age), "{cc}");
    let app2 = TestApp::start_with(b, |c| c.links.permanent_max_age = Duration::from_secs(60)).await;
    let p = app2.create(json!({"long_url": "https://example.com/perm", "redirect_type": 301})).await;
    let r = app2.get(&format!("/{}", p["code"].as_str().expect("code"))).await;
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
}

async fn head_is_not_a_click(b: Backend) {
    let app = TestApp::start(b).await;
    let code = app.create_url("https://example.com/c02").await;
    let p = app.create(json!({"long_url": "https://example.com/p", "redirect_type": 301})).await;
    for _ in 0..3 {
        let h = app.head(&format!("/{code}")).await;
        assert_eq!(h.status, StatusCode::FOUND);
        assert_eq!(h.location(), Some("https://example.com/c02"));
        assert!(h.body.is_empty());
        assert!(h.headers.get_all("content-length").iter().count() <= 1);
    }
    let h = app.head(&format!("/{}", p["code"].as_str().expect("code"))).await;
    assert_eq!(h.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(app.take_events().len(), 0, "HEAD is not a click");
    let g = app.get(&format!("/{code}")).await;
    assert_eq!(g.status, StatusCode::FOUND);
    assert_eq!(app.take_events().len(), 1);
    let h = app.head("/no-such-code-c02").await;
    assert_eq!(h.status, StatusCode::NOT_FOUND);
    assert!(h.body.is_empty());
    assert_eq!(h.location(), None);
    let g = app.get("/no-such-code-c02").await;
    g.assert_error(404, "not_found");
    // RFC 9110 §9.3.2: the Content-Length of the GET answer, not of HEAD's empty body.
    assert_eq!(h.header("content-length"), Some(g.body.len().to_string().as_str()), "HEAD 404 says the length of GET's body");
}

/// A browser's prefetch (`Sec-Purpose: prefetch` and the older markers) of a link is not a
/// click: by default 503 `prefetch_refused`, uncacheable, so the browser fetches again when
/// the user follows the link; `redirect` answers the redirect without a click; `count` makes
/// it a click like any other. `HEAD` gets what `GET` gets (never a click); links that do
/// not redirect are unaffected.
async fn prefetches_are_refused_or_redirected_without_a_click(b: Backend) {
    let markers: [&[(&str, &str)]; 5] = [
        &[("sec-purpose", "prefetch")],
        &[("sec-purpose", "prefetch;prerender")],
        &[("purpose", "prefetch")],
        &[("x-moz", "prefetch")],
        &[("x-purpose", "preview")],
    ];
    let app = TestApp::start(b).await;
    let code = app.create_url("https://example.com/pf").await;
    app.take_events();
    for m in markers {
        let headers: Vec<(&str, &str)> = [("user-agent", BROWSER_UA)].into_iter().chain(m.iter().copied()).collect();
        let r = app.request(Method::GET, &format!("/{code}"), &headers, None).await;
        r.assert_error(503, "prefetch_refused");
        assert_eq!((r.location(), r.header("cache-control")), (None, Some("no-store")), "{m:?}");
        // Finding (attack, session 45): a speculative HEAD got the redirect, though C02 says
        // HEAD is answered exactly like GET.
        let h = app.request(Method::HEAD, &format!("/{code}"), &headers, None).await;
        assert_eq!(
            (h.status, h.location(), h.header("cache-control"), h.header("content-length"), h.body.len()),
            (StatusCode::SERVICE_UNAVAILABLE, None, Some("no-store"), Some(r.body.len().to_string().as_str()), 0),
            "HEAD is answered like GET: {m:?}"
        );
    }
    assert_eq!(app.take_events().len(), 0, "no prefetch is a click");
    let r = app.request(Method::GET, "/no-such-pf", &[("sec-purpose", "prefetch")], None).await;
    r.assert_error(404, "not_found");
    // The navigation that follows is the click.
    let r = app.request(Method::GET, &format!("/{code}"), &[("user-agent", BROWSER_UA), ("sec-fetch-mode", "navigate")], None).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(app.take_events().len(), 1);

    let app = TestApp::start_with(b, |c| c.redirect.prefetch = "redirect".into()).await;
    let code = app.create_url("https://example.com/pf").await;
    app.take_events();
    for m in markers {
        let r = app.request(Method::GET, &format!("/{code}?utm_source=x"), m, None).await;
        assert_eq!(
            (r.status, r.location(), r.header("cache-control")),
            (StatusCode::FOUND, Some("https://example.com/pf?utm_source=x"), Some("private, max-age=0")),
            "{m:?}"
        );
    }
    assert_eq!(app.take_events().len(), 0, "redirected, not counted");

    let app = TestApp::start_with(b, |c| c.redirect.prefetch = "count".into()).await;
    let code = app.create_url("https://example.com/pf").await;
    app.take_events();
    for m in markers {
        let r = app.request(Method::GET, &format!("/{code}"), m, None).await;
        assert_eq!(r.status, StatusCode::FOUND, "{m:?}");
    }
    let events = app.take_events();
    assert_eq!(events.len(), markers.len(), "counted like navigations");
    assert!(events.iter().all(|e| e.code == code));
}

async fn unknown_disabled_and_expired_are_errors_without_location(b: Backend) {
    let app = TestApp::start(b).await;
    for path in ["/unknown", "/has.dot", "/%F0%9F%98%80", "/a%20b", &format!("/{}", "x".repeat(65))] {
        let r = app.get(path).await;
        let err = r.assert_error(404, "not_found");
        assert!(err.get("details").is_none());
        assert_eq!(r.location(), None);
    }
    app.create(json!({"long_url": "https://example.com/dis", "custom_alias": "dis"})).await;
    let p = app.patch_json("/v1/links/dis", &json!({"enabled": false}), None).await;
    assert_eq!(p.status, StatusCode::OK);
    let r = app.get("/dis").await;
    r.assert_error(404, "not_found");
    assert_eq!(r.location(), None);
    let h = app.head("/dis").await;
    assert_eq!(h.status, StatusCode::NOT_FOUND);
    assert!(h.body.is_empty());
    app.patch_json("/v1/links/dis", &json!({"enabled": true}), None).await;
    assert_eq!(app.get("/dis").await.status, StatusCode::FOUND);
    // expired: create with a short expiry and poll until it flips
    let exp = chrono::Utc::now() + chrono::Duration::milliseconds(10_000);
    app.create(json!({"long_url": "https://example.com/exp", "custom_alias": "exp", "expires_at": exp.to_rfc3339()})).await;
    assert_eq!(app.get("/exp").await.status, StatusCode::FOUND);
    assert!(wait_until(Duration::from_secs(30), || async { app.get("/exp").await.status == StatusCode::GONE }).await);
    let r = app.get("/exp").await;
    r.assert_error(410, "link_expired");
    assert_eq!(r.location(), None);
    let h = app.head("/exp").await;
    assert_eq!(h.status, StatusCode::GONE);
    assert!(h.body.is_empty());
    let clicks: Vec<_> = app.take_events().into_iter().filter(|e| e.code == "exp").collect();
    // The API keeps whole milliseconds and rounds finer digits up (a link never expires early).
    let gone_after = exp.timestamp_millis() + i64::from(!exp.timestamp_subsec_nanos().is_multiple_of(1_000_000));
    assert!(clicks.iter().all(|e| e.ts < gone_after), "no click at or after expires_at");
    assert!(!clicks.is_empty());
    assert!(app.take_events().is_empty());
    app.get("/dis").await;
    app.get("/unknown").await;
    let ev = app.take_events();
    assert_eq!(ev.iter().map(|e| e.code.as_str()).collect::<Vec<_>>(), vec!["dis"], "404s are not clicks");
}

async fn query_is_appended_unless_configured_off(b: Backend) {
    let app = TestApp::start(b).await;
    app.create(json!({"long_url": "https://example.com/q", "custom_alias": "q1"})).await;
    app.create(json!({"long_url": "https://example.com/q?own=1#sec", "custom_alias": "q2"})).await;
    assert_eq!(app.get("/q1?utm_source=news&x=a+b").await.location(), Some("https://example.com/q?utm_source=news&x=a+b"));
    assert_eq!(app.get("/q2?utm=1").await.location(), Some("https://example.com/q?own=1&utm=1#sec"));
    assert_eq!(app.get("/q1?").await.location(), Some("https://example.com/q"));
    assert_eq!(app.get("/q1?q=%22%3C").await.location(), Some("https://example.com/q?q=%22%3C"));
    let off = app.sibling(|c| c.links.append_query = false);
    assert_eq!(off.get("/q1?utm_source=news").await.location(), Some("https://example.com/q"));
}

fn query_dropped_total(metrics_text: &str) -> u64 {
    metrics_text.lines().find_map(|l| l.strip_prefix("sluice_redirect_query_dropped_total ")).map_or(0, |v| v.trim().parse().expect("counter value"))
}

/// A malformed escape is re-encoded; a query that would make the `Location` longer than
/// 8192 bytes is not forwarded (the redirect goes to the target alone) and is counted.
#[tokio::test]
async fn malformed_and_oversized_queries_still_redirect() {
    let app = TestApp::start(Backend::Sqlite).await;
    app.create(json!({"long_url": "https://example.com/hello?x=1", "custom_alias": "hello"})).await;
    let r = app.get("/hello?%ZZ").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), Some("https://example.com/hello?x=1&%25ZZ"));
    assert_eq!(app.get("/hello?a=%4&b=%41").await.location(), Some("https://example.com/hello?x=1&a=%254&b=%41"));
    let before = String::from_utf8(app.get("/metrics").await.body.to_vec()).expect("utf-8");
    assert!(before.contains("# HELP sluice_redirect_query_dropped_total "), "{before}");
    // "https://example.com/" is 20 bytes: an 8,170-byte target
    let target = format!("https://example.com/{}", "p".repeat(8150));
    assert_eq!(target.len(), 8170);
    app.create(json!({"long_url": target, "custom_alias": "long"})).await;
    let r = app.get(&format!("/long?{}", "q".repeat(60 * 1024))).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), Some(target.as_str()));
    // 8170 + "?" + 21 bytes = 8192 still fits; one more byte does not
    let fits = "q".repeat(21);
    assert_eq!(app.get(&format!("/long?{fits}")).await.location(), Some(format!("{target}?{fits}").as_str()));
    assert_eq!(app.get(&format!("/long?{fits}q")).await.location(), Some(target.as_str()));
    let after = String::from_utf8(app.get("/metrics").await.body.to_vec()).expect("utf-8");
    assert_eq!(query_dropped_total(&after) - query_dropped_total(&before), 2, "{after}");
}

async fn read_after_write_in_process(b: Backend) {
    let app = TestApp::start(b).await;
    // a negative answer is cached, then the alias is created: the next GET redirects
    assert_eq!(app.get("/raw").await.status, StatusCode::NOT_FOUND);
    app.create(json!({"long_url": "https://example.com/v1", "custom_alias": "raw"})).await;
    assert_eq!(app.get("/raw").await.location(), Some("https://example.com/v1"));
    for i in 2..6 {
        let url = format!("https://example.com/v{i}");
        let p = app.patch_json("/v1/links/raw", &json!({"long_url": url}), None).await;
        assert_eq!(p.status, StatusCode::OK);
        assert_eq!(app.get("/raw").await.location(), Some(url.as_str()), "after PATCH {i}");
    }
    app.patch_json("/v1/links/raw", &json!({"redirect_type": 301}), None).await;
    assert_eq!(app.get("/raw").await.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(app.delete("/v1/links/raw").await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/raw").await.status, StatusCode::NOT_FOUND);
}

async fn health_ready_and_metrics(b: Backend) {
    let app = TestApp::start(b).await;
    let h = app.get("/healthz").await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.json(), json!({"status": "ok"}));
    let r = app.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK);
    let expected_backend = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(r.json(), json!({"status": "ready", "store": expected_backend}));
    let code = app.create_url("https://example.com/m").await;
    app.get(&format!("/{code}")).await;
    app.get(&format!("/{code}")).await;
    app.get("/definitely-missing").await;
    let m = app.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.header("content-type").expect("ct").starts_with("text/plain"));
    let text = String::from_utf8(m.body.to_vec()).expect("utf-8");
    for needle in [
        "sluice_http_requests_total{route=\"/{code}\",status_class=\"3xx\"}",
        "sluice_http_requests_total{route=\"/{code}\",status_class=\"4xx\"}",
        "sluice_http_requests_total{route=\"/v1/links\",status_class=\"2xx\"}",
        "sluice_redirect_duration_seconds_bucket",
        "sluice_redirect_cache_hits_total",
        "sluice_redirect_cache_misses_total",
        "sluice_click_events_dropped_total",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    assert!(!text.contains(&code), "no short code in metric labels");
    app.get("/nothing/at/all").await;
    let text = String::from_utf8(app.get("/metrics").await.body.to_vec()).expect("utf-8");
    assert!(text.contains("sluice_http_requests_total{route=\"unmatched\",status_class=\"4xx\"}"), "{text}");
}

async fn roles_split_api_and_redirect(b: Backend) {
    let app = TestApp::start(b).await;
    app.create(json!({"long_url": "https://example.com/role", "custom_alias": "role"})).await;
    let redirect_only = app.sibling(|c| c.server.role = sluice::config::Role::Redirect);
    assert_eq!(redirect_only.get("/role").await.location(), Some("https://example.com/role"));
    redirect_only.get("/v1/links").await.assert_error(404, "not_found");
    redirect_only.post_json("/v1/links", &json!({"long_url": "https://example.com/x"})).await.assert_error(404, "not_found");
    assert_eq!(redirect_only.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(redirect_only.get("/readyz").await.status, StatusCode::OK);
    let api_only = app.sibling(|c| c.server.role = sluice::config::Role::Api);
    api_only.get("/role").await.assert_error(404, "not_found");
    assert!(api_only.take_events().is_empty());
    assert_eq!(api_only.get("/v1/links/role").await.status, StatusCode::OK);
    assert_eq!(api_only.get("/metrics").await.status, StatusCode::OK);
}

fn dropped_total(metrics_text: &str) -> u64 {
    metrics_text
        .lines()
        .find_map(|l| l.strip_prefix("sluice_click_events_dropped_total{reason=\"channel_full\"} "))
        .map_or(0, |v| v.trim().parse().expect("counter value"))
}

/// A full click channel drops events and counts them; the redirect answers regardless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_click_channel_drops_and_counts_without_blocking() {
    use std::sync::Arc;
    use tower::ServiceExt;
    let app = TestApp::start(Backend::Sqlite).await;
    let code = app.create_url("https://example.com/full").await;
    let (sink, mut rx) = sluice_redirect::ChannelClickSink::new(1);
    let stack = sluice::serve::build_stack(&app.config, app.store.clone(), Arc::new(sink), crate::harness::SECRET, Vec::new()).expect("stack");
    let metrics_text = |router: axum::Router| async move {
        let resp = router.oneshot(axum::http::Request::get("/metrics").body(axum::body::Body::empty()).expect("req")).await.expect("resp");
        let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.expect("body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    };
    let before = metrics_text(stack.router.clone()).await;
    assert!(before.contains("sluice_click_events_dropped_total{reason=\"channel_full\"}"), "series exists at start:\n{before}");
    for _ in 0..3 {
        let mut req = axum::http::Request::get(format!("/{code}")).body(axum::body::Body::empty()).expect("req");
        req.extensions_mut().insert(axum::extract::ConnectInfo(app.peer));
        let resp = tokio::time::timeout(Duration::from_secs(30), stack.router.clone().oneshot(req)).await.expect("never waits").expect("resp");
        assert_eq!(resp.status(), StatusCode::FOUND);
    }
    let after = metrics_text(stack.router.clone()).await;
    assert_eq!(dropped_total(&after) - dropped_total(&before), 2, "capacity 1: first kept, two dropped");
    assert_eq!(rx.try_recv().expect("first event").code, code);
    assert!(rx.try_recv().is_err());
}
