//! Real-world failure cases from shared/cases/README.md (C02, C05, C06, C07, C09, C10,
//! C11, C13, C23), as far as they are observable without the stats pipeline: statuses,
//! headers, stored values, and the click events the redirect produces.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::harness::{BROWSER_UA, Backend, TestApp, wait_until};

backend_tests!(
    c02_head_requests,
    c05_encoding,
    c06_idn,
    c07_dangerous_schemes,
    c09_long_urls,
    c10_alias_case,
    c11_reserved_aliases,
    c13_expiry,
    c23_ipv6_clients
);

async fn c02_head_requests(b: Backend) {
    let app = TestApp::start(b).await;
    let code = app.create_url("https://example.com/c02").await;
    let get_status = {
        let r = app.head(&format!("/{code}")).await; // warm nothing in stats: HEAD only
        r.status
    };
    for _ in 0..2 {
        let h = app.head(&format!("/{code}")).await;
        assert_eq!(h.status, get_status);
        assert_eq!(h.location(), Some("https://example.com/c02"));
        assert!(h.body.is_empty());
        assert!(h.headers.get_all("content-length").iter().count() <= 1);
        assert!(h.status != StatusCode::METHOD_NOT_ALLOWED && !h.status.is_server_error());
    }
    assert_eq!(app.take_events().len(), 0, "clicks = 0 after 3 HEADs");
    let g = app.get(&format!("/{code}")).await;
    assert_eq!(g.status, get_status, "HEAD answers what GET answers");
    let ev = app.take_events();
    assert_eq!(ev.len(), 1, "clicks = 1");
    assert_eq!(ev.iter().map(|e| e.visitor_id).collect::<BTreeSet<_>>().len(), 1, "uniques = 1");
    let h = app.head("/no-such-code-c02").await;
    assert_eq!(h.status, StatusCode::NOT_FOUND);
    assert!(h.body.is_empty());
    assert_eq!(app.get("/no-such-code-c02").await.status, StatusCode::NOT_FOUND);
}

fn assert_clean_location(loc: &str) {
    assert!(loc.is_ascii(), "{loc}");
    assert!(!loc.contains(' ') && !loc.contains('\r') && !loc.contains('\n'), "{loc:?}");
}

async fn c05_encoding(b: Backend) {
    let app = TestApp::start(b).await;
    let follow = |input: &'static str| {
        let app = &app;
        async move {
            let v = app.create(json!({"long_url": input})).await;
            let code = v["code"].as_str().expect("code").to_owned();
            let stored = app.get(&format!("/v1/links/{code}")).await.json()["long_url"].as_str().expect("url").to_owned();
            let loc = app.get(&format!("/{code}")).await.location().expect("location").to_owned();
            assert_clean_location(&loc);
            (stored, loc)
        }
    };
    // 1. %20 and + kept as they are
    let (stored, loc) = follow("https://example.com/search?q=hello%20world&r=a+b").await;
    assert_eq!(stored, "https://example.com/search?q=hello%20world&r=a+b");
    assert_eq!(loc, "https://example.com/search?q=hello%20world&r=a+b");
    // 2. non-ASCII percent-encoded once
    let (_, loc) = follow("https://example.com/café/ü?q=ñ").await;
    assert_eq!(loc, "https://example.com/caf%C3%A9/%C3%BC?q=%C3%B1");
    // 3. already encoded: unchanged
    let (_, loc) = follow("https://example.com/caf%C3%A9").await;
    assert_eq!(loc, "https://example.com/caf%C3%A9");
    // 4. surrounding spaces trimmed
    let (stored, loc) = follow("  https://example.com/c05  ").await;
    assert_eq!((stored.as_str(), loc.as_str()), ("https://example.com/c05", "https://example.com/c05"));
    // 5. inner raw space encoded
    let (_, loc) = follow("https://example.com/a b").await;
    assert_eq!(loc, "https://example.com/a%20b");
    // 6. CR LF header injection refused, nothing created
    let r = app.post_json("/v1/links", &json!({"long_url": "https://example.com/x\r\nSet-Cookie: a=b", "custom_alias": "c05inj"})).await;
    r.assert_error(400, "control_characters");
    app.assert_no_link("c05inj").await;
}

async fn c06_idn(b: Backend) {
    let app = TestApp::start(b).await;
    let loc_of = |input: &'static str| {
        let app = &app;
        async move {
            let code = app.create_url(input).await;
            app.get(&format!("/{code}")).await.location().expect("location").to_owned()
        }
    };
    assert_eq!(loc_of("https://zürich.example/pfad").await, "https://xn--zrich-kva.example/pfad");
    assert_eq!(loc_of("https://xn--zrich-kva.example/pfad").await, "https://xn--zrich-kva.example/pfad");
    assert_eq!(loc_of("https://xn----8sbnliotidln.example/").await, "https://xn----8sbnliotidln.example/");
    // our own IDN short domain, in either form, is one domain: a loop target and a valid `domain`
    app.post_json("/v1/links", &json!({"long_url": "https://xn--krz-hoa.example/x"})).await.assert_error(400, "redirect_loop");
    let v = app.create(json!({"long_url": "https://example.com/c06", "domain": "kürz.example", "custom_alias": "idn"})).await;
    assert_eq!(v["short_url"], "https://xn--krz-hoa.example/idn", "one consistent (punycode) form");
    let r = app.request(Method::GET, "/idn", &[("host", "xn--krz-hoa.example"), ("user-agent", BROWSER_UA)], None).await;
    assert_eq!(r.location(), Some("https://example.com/c06"));
}

async fn c07_dangerous_schemes(b: Backend) {
    let app = TestApp::start(b).await;
    let hostile = [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "  javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "http://",
        "https:///nohost",
        "//example.com/scheme-relative",
        "example.com/no-scheme",
    ];
    for (i, url) in hostile.iter().enumerate() {
        let alias = format!("c07x{i}");
        let r = app.post_json("/v1/links", &json!({"long_url": url, "custom_alias": alias})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url:?}: {}", String::from_utf8_lossy(&r.body));
        r.json();
        app.assert_no_link(&alias).await;
    }
    app.create(json!({"long_url": "https://example.com/c07", "custom_alias": "c07"})).await;
    for url in hostile {
        let r = app.patch_json("/v1/links/c07", &json!({"long_url": url}), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "PATCH {url:?}");
    }
    assert_eq!(app.get("/c07").await.location(), Some("https://example.com/c07"));
}

async fn c09_long_urls(b: Backend) {
    let app = TestApp::start(b).await;
    app.create(json!({"long_url": "https://example.com/c09", "custom_alias": "c09p"})).await;
    for n in [201usize, 256, 2048, 2049, 4096, 8192, 65536] {
        let url = format!("https://example.com/p?x={}", "a".repeat(n - 24));
        assert_eq!(url.len(), n);
        let alias = format!("c09n{n}");
        let r = app.post_json("/v1/links", &json!({"long_url": url, "custom_alias": alias})).await;
        let p = app.patch_json("/v1/links/c09p", &json!({"long_url": url}), None).await;
        if n <= 8192 {
            assert_eq!(r.status, StatusCode::CREATED, "N={n}");
            let stored = app.get(&format!("/v1/links/{alias}")).await.json()["long_url"].as_str().expect("url").to_owned();
            assert_eq!(stored.len(), n);
            assert_eq!(stored, url);
            assert_eq!(app.get(&format!("/{alias}")).await.location(), Some(url.as_str()));
            assert_eq!(p.status, StatusCode::OK, "PATCH N={n}");
            assert_eq!(app.get("/c09p").await.location(), Some(url.as_str()));
        } else {
            let err = r.assert_error(400, "url_too_long");
            assert_eq!(err["details"]["max_bytes"], 8192);
            assert!(err["message"].as_str().expect("message").contains("8192"));
            app.assert_no_link(&alias).await;
            p.assert_error(400, "url_too_long");
        }
    }
    let last = format!("https://example.com/p?x={}", "a".repeat(8192 - 24));
    assert_eq!(app.get("/c09p").await.location(), Some(last.as_str()), "failed PATCHes changed nothing");
}

async fn c10_alias_case(b: Backend) {
    let app = TestApp::start(b).await;
    let v = app.create(json!({"long_url": "https://example.com/c10", "custom_alias": "MyPromo"})).await;
    assert_eq!(v["code"], "MyPromo");
    assert!(v["short_url"].as_str().expect("short").ends_with("/MyPromo"));
    assert_eq!(app.get("/MyPromo").await.location(), Some("https://example.com/c10"));
    // documented: case-sensitive
    assert_eq!(app.get("/mypromo").await.status, StatusCode::NOT_FOUND);
    let lower = app.create(json!({"long_url": "https://example.com/other", "custom_alias": "mypromo"})).await;
    assert_eq!(lower["code"], "mypromo");
    assert_eq!(app.get("/MyPromo").await.location(), Some("https://example.com/c10"));
    assert_eq!(app.get("/mypromo").await.location(), Some("https://example.com/other"));
    assert_eq!(app.delete("/v1/links/mypromo").await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/mypromo").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/MyPromo").await.location(), Some("https://example.com/c10"), "DELETE removed only the lower-case one");
    let p = app.patch_json("/v1/links/MyPromo", &json!({"long_url": "https://example.com/c10b"}), None).await;
    assert_eq!(p.status, StatusCode::OK);
    app.patch_json("/v1/links/MYPROMO", &json!({"long_url": "https://example.com/x"}), None).await.assert_error(404, "not_found");
}

async fn c11_reserved_aliases(b: Backend) {
    let app = TestApp::start(b).await;
    let existing = app.create_url("https://example.com/existing").await;
    // every first path segment we serve, plus the case's list
    let served = ["v1", "healthz", "readyz", "metrics"];
    let listed = ["v1", "V1", "api", "admin", "health", "healthz", "metrics", "favicon.ico", "robots.txt", ".well-known"];
    for alias in served.iter().chain(listed.iter()) {
        let err = app.post_json("/v1/links", &json!({"long_url": "https://example.com/c11", "custom_alias": alias})).await.assert_error(400, "alias_reserved");
        assert!(err["message"].as_str().expect("message").contains(alias), "names the alias");
    }
    let g = app.get(&format!("/v1/links/{existing}")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json()["long_url"], "https://example.com/existing");
    assert_eq!(app.get("/healthz").await.json(), json!({"status": "ok"}));
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    assert_eq!(app.get("/metrics").await.status, StatusCode::OK);
    for path in ["/v1", "/api", "/admin", "/robots.txt", "/favicon.ico"] {
        let r = app.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_ne!(r.location(), Some("https://example.com/c11"));
    }
    app.patch_json(&format!("/v1/links/{existing}"), &json!({"custom_alias": "admin"}), None).await.assert_error(400, "alias_rename_unsupported");
    let list = app.get("/v1/links").await.json();
    assert_eq!(list["items"].as_array().expect("items").len(), 1, "no link created");
}

async fn c13_expiry(b: Backend) {
    let app = TestApp::start(b).await;
    // 1. expiry in 10 s (the case's figure: the steps before the deadline fit even on a
    // loaded machine), returned as the same instant
    let exp = chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis() + 10_000).expect("ts");
    let exp_text = exp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let v = app.create(json!({"long_url": "https://example.com/c13", "expires_at": exp_text})).await;
    let code = v["code"].as_str().expect("code").to_owned();
    let got = app.get(&format!("/v1/links/{code}")).await.json()["expires_at"].as_str().expect("expires").to_owned();
    assert_eq!(chrono::DateTime::parse_from_rfc3339(&got).expect("rfc3339"), exp);
    // 2. three clicks before the deadline (also warms the cache)
    app.take_events();
    for _ in 0..3 {
        let r = app.get(&format!("/{code}")).await;
        assert_eq!(r.status, StatusCode::FOUND);
        assert_eq!(r.header("cache-control"), Some("private, max-age=0"));
    }
    // 3. after the deadline: 410 without Location, also on HEAD, although the entry is cached
    assert!(wait_until(Duration::from_secs(30), || async { chrono::Utc::now() >= exp + chrono::Duration::milliseconds(20) }).await);
    let r = app.get(&format!("/{code}")).await;
    r.assert_error(410, "link_expired");
    assert_eq!(r.location(), None);
    assert_eq!(app.head(&format!("/{code}")).await.status, StatusCode::GONE);
    // 4. clicks = 3
    assert_eq!(app.take_events().iter().filter(|e| e.code == code).count(), 3);
    // 5. past expiry refused; offsets become the UTC instant
    app.post_json("/v1/links", &json!({"long_url": "https://example.com/c13", "expires_at": "2020-01-01T00:00:00Z"}))
        .await
        .assert_error(400, "expires_in_past");
    let v = app.create(json!({"long_url": "https://example.com/c13", "expires_at": "2030-01-01T00:00:00+02:00"})).await;
    assert_eq!(v["expires_at"], "2029-12-31T22:00:00Z");
    // 6. PATCH an expiry onto a warm cached link: it stops at the new deadline
    let fresh = app.create_url("https://example.com/c13b").await;
    assert_eq!(app.get(&format!("/{fresh}")).await.status, StatusCode::FOUND);
    let exp2 = chrono::Utc::now() + chrono::Duration::milliseconds(10_000);
    let p = app.patch_json(&format!("/v1/links/{fresh}"), &json!({"expires_at": exp2.to_rfc3339()}), None).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(app.get(&format!("/{fresh}")).await.status, StatusCode::FOUND, "still before the deadline");
    assert!(wait_until(Duration::from_secs(30), || async { chrono::Utc::now() >= exp2 + chrono::Duration::milliseconds(20) }).await);
    assert_eq!(app.get(&format!("/{fresh}")).await.status, StatusCode::GONE);
    // 7. unknown code
    let r = app.get("/never-existed-c13").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.location(), None);
}

async fn c23_ipv6_clients(b: Backend) {
    let app = TestApp::start_with(b, |c| c.server.trusted_proxies = vec!["127.0.0.0/8".into(), "::1".into()]).await;
    let code = app.create_url("https://example.com/c23").await;
    app.take_events();
    let proxy: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
    let clients = ["2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0001", "::ffff:192.0.2.10", "192.0.2.10", "[2001:db8::1]:51234"];
    for c in clients {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(format!("/{code}"))
            .header("user-agent", BROWSER_UA)
            .header("x-forwarded-for", c)
            .body(Body::empty())
            .expect("request");
        req.extensions_mut().insert(ConnectInfo(proxy));
        let r = app.call(req).await;
        assert_eq!(r.status, StatusCode::FOUND, "{c}");
    }
    let ev = app.take_events();
    assert_eq!(ev.len(), 5, "no click dropped");
    let ids: Vec<u64> = ev.iter().map(|e| e.visitor_id).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 2, "uniques = 2");
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[0], ids[4]);
    assert_eq!(ids[2], ids[3]);
    assert_ne!(ids[0], ids[2]);
    let salt = app.salt();
    let v6: std::net::IpAddr = "2001:db8::1".parse().expect("ip");
    let v4: std::net::IpAddr = "192.0.2.10".parse().expect("ip");
    assert_eq!(ids[0], sluice_schemas::visitor_id(&salt, ev[0].ts, v6, BROWSER_UA));
    assert_eq!(ids[3], sluice_schemas::visitor_id(&salt, ev[3].ts, v4, BROWSER_UA));
    let trunc: Vec<&str> = ev.iter().map(|e| e.ip_trunc.as_deref().expect("ip_trunc present")).collect();
    assert_eq!(trunc, vec!["2001:db8::", "2001:db8::", "192.0.2.0", "192.0.2.0", "2001:db8::"]);
    // an untrusted peer's header is ignored
    let mut req =
        Request::builder().uri(format!("/{code}")).header("user-agent", BROWSER_UA).header("x-forwarded-for", "2001:db8::1").body(Body::empty()).expect("req");
    req.extensions_mut().insert(ConnectInfo("198.51.100.77:1234".parse::<SocketAddr>().expect("addr")));
    app.call(req).await;
    let ev = app.take_events();
    assert_eq!(ev[0].ip_trunc.as_deref(), Some("198.51.100.0"));
    // a direct IPv6 peer ::1 is itself, not 127.0.0.1
    let direct = TestApp::start(b).await;
    let code = direct.create_url("https://example.com/c23b").await;
    for peer in ["[::1]:4000", "127.0.0.1:4000"] {
        let mut req = Request::builder().uri(format!("/{code}")).header("user-agent", BROWSER_UA).body(Body::empty()).expect("req");
        req.extensions_mut().insert(ConnectInfo(peer.parse::<SocketAddr>().expect("addr")));
        assert_eq!(direct.call(req).await.status, StatusCode::FOUND);
    }
    let ev = direct.take_events();
    assert_eq!(ev[0].ip_trunc.as_deref(), Some("::"));
    assert_eq!(ev[1].ip_trunc.as_deref(), Some("127.0.0.0"));
    let loopback6: std::net::IpAddr = "::1".parse().expect("ip");
    assert_eq!(ev[0].visitor_id, sluice_schemas::visitor_id(&direct.salt(), ev[0].ts, loopback6, BROWSER_UA));
    assert_ne!(ev[0].visitor_id, ev[1].visitor_id);
}
