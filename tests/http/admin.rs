//! Admin controls over HTTP, against both stores: authentication, disable/enable, the audit
//! log and its cursors, timestamps, the routes' request checks (bodies, paths, query
//! parameters). The blocklist: [`crate::admin_blocklist`].

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, Resp, TestApp};

pub const TOKEN: &str = "t0ken-for-admin-tests";
const REMOTE: &str = "203.0.113.9:40000";
const LOOPBACK: &str = "127.0.0.1:50000";

/// An admin request from `peer` with an optional bearer token and JSON body.
pub async fn admin_call(app: &TestApp, method: Method, path: &str, token: Option<&str>, peer: &str, body: Option<Value>) -> Resp {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let mut req = b.body(body.map_or_else(Body::empty, |v| Body::from(v.to_string()))).expect("request");
    let addr: SocketAddr = peer.parse().expect("peer");
    req.extensions_mut().insert(ConnectInfo(addr));
    app.call(req).await
}

/// An admin call with the test token from a remote peer.
pub async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Resp {
    admin_call(app, method, path, Some(TOKEN), REMOTE, body).await
}

/// A stack whose admin routes take the test token.
pub async fn with_token(b: Backend) -> TestApp {
    TestApp::start_with(b, |c| c.admin.token = Some(sluice::config::Secret(TOKEN.into()))).await
}

async fn no_token_admits_direct_loopback_only(b: Backend) {
    let app = TestApp::start(b).await;
    let r = admin_call(&app, Method::GET, "/v1/admin/blocklist", None, REMOTE, None).await;
    r.assert_error(403, "admin_loopback_only");
    let r = admin_call(&app, Method::GET, "/v1/admin/blocklist", None, LOOPBACK, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json(), json!({"items": [], "config": ["blocked.example"]}));
    let r = admin_call(&app, Method::GET, "/v1/admin/blocklist", None, "[::1]:1", None).await;
    assert_eq!(r.status, StatusCode::OK);
    // Through a proxy on loopback: refused.
    let mut req = Request::get("/v1/admin/audit").header("x-forwarded-for", "198.51.100.7").body(Body::empty()).expect("req");
    req.extensions_mut().insert(ConnectInfo(LOOPBACK.parse::<SocketAddr>().expect("addr")));
    app.call(req).await.assert_error(403, "admin_loopback_only");
    // A token sent while none is configured does not help a remote peer.
    admin_call(&app, Method::GET, "/v1/admin/audit", Some("anything"), REMOTE, None).await.assert_error(403, "admin_loopback_only");
}

async fn token_is_required_on_every_admin_route(b: Backend) {
    let app = with_token(b).await;
    let code = app.create_url("https://example.com/auth").await;
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/admin/blocklist".into(), None),
        (Method::POST, "/v1/admin/blocklist".into(), Some(json!({"pattern": "x.example"}))),
        (Method::DELETE, "/v1/admin/blocklist/x.example".into(), None),
        (Method::POST, format!("/v1/admin/links/{code}/disable"), Some(json!({"reason": "r"}))),
        (Method::POST, format!("/v1/admin/links/{code}/enable"), None),
        (Method::GET, "/v1/admin/audit".into(), None),
    ];
    for (m, path, body) in &routes {
        // No token: `unauthorized`; a wrong one: `invalid_token` (the ingest API's codes).
        for (token, peer, code) in [
            (None, REMOTE, "unauthorized"),
            (None, LOOPBACK, "unauthorized"),
            (Some("wrong"), REMOTE, "invalid_token"),
            (Some("t0ken-for-admin-testS"), LOOPBACK, "invalid_token"),
        ] {
            let r = admin_call(&app, m.clone(), path, token, peer, body.clone()).await;
            r.assert_error(401, code);
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{m} {path}");
        }
    }
    // Nothing happened.
    assert_eq!(app.get(&format!("/{code}")).await.status, StatusCode::FOUND);
    let r = admin(&app, Method::GET, "/v1/admin/audit", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"items": [], "next_cursor": null}));
    // Documented in the OpenAPI document.
    let doc = app.get("/v1/openapi.json").await.json();
    for (path, method) in [
        ("/v1/admin/blocklist", "post"),
        ("/v1/admin/blocklist", "get"),
        ("/v1/admin/blocklist/{pattern}", "delete"),
        ("/v1/admin/links/{code}/disable", "post"),
        ("/v1/admin/links/{code}/enable", "post"),
        ("/v1/admin/audit", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} in the OpenAPI document");
    }
}

async fn disable_enable_and_exact_audit_log(b: Backend) {
    let app = with_token(b).await;
    let code = app.create_url("https://example.com/dis").await;
    assert_eq!(app.get(&format!("/{code}")).await.status, StatusCode::FOUND);
    let path = format!("/v1/admin/links/{code}/disable");
    admin(&app, Method::POST, &path, None).await.assert_error(400, "invalid_reason");
    admin(&app, Method::POST, &path, Some(json!({"reason": "  "}))).await.assert_error(400, "invalid_reason");
    admin(&app, Method::POST, "/v1/admin/links/nope/disable", Some(json!({"reason": "x"}))).await.assert_error(404, "not_found");
    let r = admin(&app, Method::POST, &path, Some(json!({"reason": "phishing report #12"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["link"]["enabled"], false);
    assert_eq!(v["holds"][0]["source"], "admin");
    assert_eq!(v["holds"][0]["reason"], "phishing report #12");
    // The very next redirect is a 404 (the link was cached).
    app.get(&format!("/{code}")).await.assert_error(404, "not_found");
    // Idempotent.
    assert_eq!(admin(&app, Method::POST, &path, Some(json!({"reason": "again"}))).await.status, StatusCode::OK);
    app.patch_json(&format!("/v1/links/{code}"), &json!({"enabled": true}), None).await.assert_error(409, "link_held");
    let r = admin(&app, Method::POST, &format!("/v1/admin/links/{code}/enable"), Some(json!({"reason": "false positive"}))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["link"]["enabled"], true);
    assert_eq!(r.json()["holds"], json!([]));
    assert_eq!(app.get(&format!("/{code}")).await.location(), Some("https://example.com/dis"));
    // Blocklist changes from a loopback-free remote admin, then the whole log, newest first.
    admin(&app, Method::POST, "/v1/admin/blocklist", Some(json!({"pattern": "spam.example", "reason": "spam wave"}))).await;
    admin(&app, Method::DELETE, "/v1/admin/blocklist/spam.example", None).await;
    let log = admin(&app, Method::GET, "/v1/admin/audit", None).await.json();
    let items = log["items"].as_array().expect("items");
    let got: Vec<Value> = items.iter().map(|e| json!([e["action"], e["actor"], e["target"], e["reason"], e["origin_ip"], e["details"]])).collect();
    assert_eq!(
        got,
        vec![
            json!(["blocklist.remove", "admin-token", "spam.example", null, "203.0.113.9", {"affected": []}]),
            json!(["blocklist.add", "admin-token", "spam.example", "spam wave", "203.0.113.9", {"affected": []}]),
            json!(["link.enable", "admin-token", code, "false positive", "203.0.113.9", null]),
            json!(["link.disable", "admin-token", code, "again", "203.0.113.9", null]),
            json!(["link.disable", "admin-token", code, "phishing report #12", "203.0.113.9", null]),
        ]
    );
    let times: Vec<chrono::DateTime<chrono::Utc>> = items.iter().map(|e| e["at"].as_str().expect("at").parse().expect("rfc3339")).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    // Paging (limit 2) visits every record once; filters are exact.
    let mut seen = Vec::new();
    let mut url = "/v1/admin/audit?limit=2".to_owned();
    loop {
        let page = admin(&app, Method::GET, &url, None).await.json();
        seen.extend(page["items"].as_array().expect("items").iter().map(|e| e["action"].as_str().expect("a").to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("/v1/admin/audit?limit=2&cursor={c}"),
            None => {
                assert_eq!(page.get("next_cursor"), Some(&Value::Null), "the last page says null, as GET /v1/links does: {page}");
                break;
            }
        }
    }
    assert_eq!(seen, vec!["blocklist.remove", "blocklist.add", "link.enable", "link.disable", "link.disable"]);
    let only = admin(&app, Method::GET, "/v1/admin/audit?action=link.disable", None).await.json();
    assert_eq!(only["items"].as_array().expect("items").len(), 2);
    admin(&app, Method::GET, "/v1/admin/audit?limit=0", None).await.assert_error(400, "invalid_limit");
    admin(&app, Method::GET, "/v1/admin/audit?cursor=zz", None).await.assert_error(400, "invalid_cursor");
    let err = admin(&app, Method::GET, "/v1/admin/audit?from=yesterday", None).await.assert_error(400, "invalid_timestamp");
    assert_eq!(err["details"], json!({"parameter": "from", "value": "yesterday"}));
    // As the anomalies' filters: a '+' of the offset that became a space is taken back,
    // years outside 1970..=9999 are refused, and invalid_limit echoes the text sent.
    let all = admin(&app, Method::GET, "/v1/admin/audit?from=2000-01-01T05:30:00+05:30", None).await.json();
    assert_eq!(all["items"].as_array().expect("items").len(), seen.len());
    admin(&app, Method::GET, "/v1/admin/audit?from=0000-01-01T00:00:00Z", None).await.assert_error(400, "invalid_timestamp");
    // An inverted range names both ends as sent (as the anomalies' filters do).
    let err = admin(&app, Method::GET, "/v1/admin/audit?from=2024-06-02T00:00:00Z&to=2024-06-01T21:00:00-02:00", None).await.assert_error(400, "invalid_range");
    assert_eq!(err["details"], json!({"from": "2024-06-02T00:00:00Z", "to": "2024-06-01T21:00:00-02:00"}));
    // from == to (the same instant in another offset) is refused too, as the anomalies do.
    let err = admin(&app, Method::GET, "/v1/admin/audit?from=2024-06-02T00:00:00Z&to=2024-06-01T22:00:00-02:00", None).await.assert_error(400, "invalid_range");
    assert_eq!(err["details"], json!({"from": "2024-06-02T00:00:00Z", "to": "2024-06-01T22:00:00-02:00"}));
    let err = admin(&app, Method::GET, "/v1/admin/audit?limit=0000", None).await.assert_error(400, "invalid_limit");
    assert_eq!(err["details"]["value"], "0000");
    admin(&app, Method::GET, "/v1/admin/audit?limit=%2B5", None).await.assert_error(400, "invalid_limit");
    // An empty actor or action matches no entry: refused, not an empty page.
    for q in ["actor=", "action="] {
        let err = admin(&app, Method::GET, &format!("/v1/admin/audit?{q}"), None).await.assert_error(400, "invalid_parameter");
        assert_eq!(err["details"]["reason"], "empty", "{q}");
    }
}

/// Whether `s` is an instant as the whole API writes it: RFC 3339 UTC, whole seconds or
/// exactly 3 fractional digits (`2026-01-02T03:04:05Z`, `2026-01-02T03:04:05.123Z`).
fn is_api_instant(s: &str) -> bool {
    let shape_ok = match s.len() {
        20 => true,
        24 => s.as_bytes()[19] == b'.' && s[20..23].bytes().all(|b| b.is_ascii_digit()),
        _ => false,
    };
    shape_ok && s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// Every value under a key ending in `_at` or named `at`, at any depth.
fn instants(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match x {
                    Value::String(s) if k == "at" || k.ends_with("_at") => out.push(s.clone()),
                    _ => instants(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| instants(x, out)),
        _ => {}
    }
}

/// Admin answers write instants in milliseconds like the rest of the API, even those the
/// store keeps to the microsecond (holds, blocklist entries, audit records, and the
/// `updated_at` a hold gives a link).
async fn admin_timestamps_are_milliseconds_like_the_rest_of_the_api(b: Backend) {
    let app = with_token(b).await;
    let code = app.create_url("https://example.com/times").await;
    // An instant with microseconds, one second ahead: 123456 µs past a whole second.
    let second = chrono::Utc::now().timestamp() + 1;
    let t = chrono::DateTime::from_timestamp(second, 123_456_000).expect("instant");
    let written = format!("{}.123Z", chrono::DateTime::from_timestamp(second, 0).expect("s").format("%Y-%m-%dT%H:%M:%S"));
    let store = app.store.admin().expect("admin store");
    let audit = |action: &str, target: &str| sluice_connectors::AuditRecord {
        seq: 0,
        at: t,
        actor: "admin-token".into(),
        action: action.into(),
        target: target.into(),
        reason: Some("µs".into()),
        origin_ip: None,
        details: json!({}),
    };
    let hold = sluice_connectors::LinkHold { source: "admin".into(), reason: Some("µs".into()), actor: "admin-token".into(), created_at: t };
    assert!(store.hold_link(&code, &hold, t, Some(&audit("link.disable", &code))).await.expect("hold").changed);
    let entry = sluice_connectors::BlocklistEntry { pattern: "micro.example".into(), reason: None, actor: "admin-token".into(), created_at: t };
    let none = |_: &sluice_schemas::Link| false;
    assert!(store.blocklist_add(&entry, &none, &audit("blocklist.add", "micro.example")).await.expect("add").added);

    // Each answer, exactly where the stored instant shows.
    let list = admin(&app, Method::GET, "/v1/admin/blocklist", None).await.json();
    assert_eq!(list["items"], json!([{"pattern": "micro.example", "reason": null, "actor": "admin-token", "created_at": written}]));
    let disabled = admin(&app, Method::POST, &format!("/v1/admin/links/{code}/disable"), Some(json!({"reason": "again"}))).await.json();
    assert_eq!(disabled["holds"][0]["created_at"], written);
    assert_eq!(disabled["link"]["updated_at"], written);
    assert_eq!(app.get(&format!("/v1/links/{code}")).await.json()["updated_at"], written);
    let log = admin(&app, Method::GET, "/v1/admin/audit", None).await.json();
    let stored: Vec<&Value> = log["items"].as_array().expect("items").iter().filter(|e| e["reason"] == "µs").map(|e| &e["at"]).collect();
    assert_eq!(stored, vec![&json!(written), &json!(written)]);
    // And every instant of every admin answer (those the API writes itself included).
    let added = admin(&app, Method::POST, "/v1/admin/blocklist", Some(json!({"pattern": "times.example"}))).await.json();
    let enabled = admin(&app, Method::POST, &format!("/v1/admin/links/{code}/enable"), Some(json!({"reason": "ok"}))).await.json();
    let log = admin(&app, Method::GET, "/v1/admin/audit", None).await.json();
    let list = admin(&app, Method::GET, "/v1/admin/blocklist", None).await.json();
    let mut all = Vec::new();
    for v in [&added, &enabled, &disabled, &log, &list] {
        instants(v, &mut all);
    }
    assert!(all.len() >= 12, "{all:?}");
    let bad: Vec<&String> = all.iter().filter(|s| !is_api_instant(s)).collect();
    assert!(bad.is_empty(), "not RFC 3339 UTC milliseconds: {bad:?}");
}

/// The admin routes' JSON bodies are objects: an array is never read by position (a
/// blocklist pattern, a disable reason), nor any other top-level value; 400
/// `invalid_request` and nothing changes (no entry, no hold, no audit record).
async fn admin_bodies_that_are_not_json_objects_are_refused(b: Backend) {
    use crate::links_requests::{NOT_OBJECTS, assert_not_an_object};
    let app = with_token(b).await;
    let code = app.create_url("https://example.com/admin-shape").await;
    for (body, got) in NOT_OBJECTS {
        let body_value: Value = serde_json::from_str(body).expect("json");
        for path in ["/v1/admin/blocklist".to_owned(), format!("/v1/admin/links/{code}/disable"), format!("/v1/admin/links/{code}/enable")] {
            let r = admin(&app, Method::POST, &path, Some(body_value.clone())).await;
            assert_not_an_object(&r, body, got);
        }
    }
    // `["evil.example", "reason"]` would otherwise have been {"pattern", "reason"}.
    let r = admin(&app, Method::POST, "/v1/admin/blocklist", Some(json!(["evil.example", "r"]))).await;
    assert_not_an_object(&r, "[\"evil.example\", \"r\"]", "an array");
    assert_eq!(admin(&app, Method::GET, "/v1/admin/blocklist", None).await.json()["items"], json!([]));
    let link = app.get(&format!("/v1/links/{code}")).await.json();
    assert_eq!(link["enabled"], true, "{link}");
    assert_eq!(app.get(&format!("/{code}")).await.location(), Some("https://example.com/admin-shape"));
    assert_eq!(admin(&app, Method::GET, "/v1/admin/audit", None).await.json()["items"], json!([]));
    // An empty body is still "no reason" (enable takes it; disable requires one).
    assert_eq!(admin(&app, Method::POST, &format!("/v1/admin/links/{code}/enable"), None).await.status, StatusCode::OK);
    admin(&app, Method::POST, &format!("/v1/admin/links/{code}/disable"), None).await.assert_error(400, "invalid_reason");
}

/// A path segment that is not UTF-8 once percent-decoded is 400 `invalid_path` in the JSON
/// error shape on every route with a path parameter (never axum's plain-text "Invalid URL").
async fn path_segments_that_are_not_utf8_are_400_invalid_path(b: Backend) {
    let app = with_token(b).await;
    for (method, path) in [
        (Method::DELETE, "/v1/admin/blocklist/%FF"),
        (Method::DELETE, "/v1/admin/blocklist/a%C3"),
        (Method::POST, "/v1/admin/links/%FF/disable"),
        (Method::POST, "/v1/admin/links/%FF/enable"),
        (Method::GET, "/v1/links/%FF"),
        (Method::DELETE, "/v1/links/%FF"),
    ] {
        let r = admin(&app, method.clone(), path, None).await;
        let err = r.assert_error(400, "invalid_path");
        assert_eq!(err["details"]["parameter"].as_str().map(|p| ["pattern", "code"].contains(&p)), Some(true), "{method} {path}: {err}");
    }
}

/// Admin routes without query parameters refuse one like every `/v1/` route (after the
/// credentials are checked), and nothing changes.
async fn admin_routes_refuse_unknown_repeated_and_non_utf8_query_parameters(b: Backend) {
    let app = with_token(b).await;
    let code = app.create_url("https://example.com/admin-query").await;
    let body = || Some(json!({"pattern": "query.example", "reason": "r"}));
    let reason = || Some(json!({"reason": "r"}));
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/admin/blocklist".into(), None),
        (Method::POST, "/v1/admin/blocklist".into(), body()),
        (Method::DELETE, "/v1/admin/blocklist/blocked.example".into(), None),
        (Method::POST, format!("/v1/admin/links/{code}/disable"), reason()),
        (Method::POST, format!("/v1/admin/links/{code}/enable"), reason()),
    ];
    for (method, path, body) in &cases {
        for (q, want, param) in
            [("foo=1", "unknown_parameter", "foo"), ("limit=1&limit=2", "unknown_parameter", "limit"), ("%FF=1", "invalid_parameter", "\u{FFFD}")]
        {
            let r = admin(&app, method.clone(), &format!("{path}?{q}"), body.clone()).await;
            let err = r.assert_error(400, want);
            assert_eq!(err["details"]["parameter"], param, "{method} {path}?{q}: {err}");
            if want == "unknown_parameter" {
                assert_eq!(err["details"]["supported"], json!([]), "{method} {path}?{q}: {err}");
            }
        }
        // Credentials first: without them, 401 whatever the query.
        let r = admin_call(&app, method.clone(), &format!("{path}?foo=1"), None, REMOTE, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}: {:?}", r.body);
    }
    // Nothing was added, disabled or audited; an empty query is no parameter.
    assert_eq!(admin(&app, Method::GET, "/v1/admin/blocklist?", None).await.json()["items"], json!([]));
    assert_eq!(app.get(&format!("/v1/links/{code}")).await.json()["enabled"], true);
    assert_eq!(admin(&app, Method::GET, "/v1/admin/audit", None).await.json()["items"], json!([]));
}

/// The OpenAPI document lists the audit log's query parameters.
async fn audit_query_parameters_are_documented(b: Backend) {
    let app = with_token(b).await;
    let doc = app.get("/v1/openapi.json").await.json();
    let params = doc["paths"]["/v1/admin/audit"]["get"]["parameters"].as_array().cloned().unwrap_or_default();
    let names: Vec<(&str, &str)> = params.iter().map(|p| (p["name"].as_str().unwrap_or(""), p["in"].as_str().unwrap_or(""))).collect();
    assert_eq!(names, ["limit", "cursor", "from", "to", "actor", "action"].map(|n| (n, "query")).to_vec(), "{params:?}");
}

/// `GET /v1/links` and `GET /v1/admin/audit` cursors are of distinct kinds (each refused by
/// the other endpoint), and an audit cursor is bound to its filters: used with others it is
/// 400 `invalid_cursor`, never a 200 with a page of another listing. The links cursors of
/// earlier versions (`l1:<seq>`, bound to no filters) are refused too, saying to restart
/// from the first page.
async fn audit_and_links_cursors_are_distinct_and_audit_cursors_bound_to_filters(b: Backend) {
    let app = with_token(b).await;
    let mut codes = Vec::new();
    for i in 0..3 {
        let code = app.create_url(&format!("https://example.com/cursor-{i}")).await;
        let r = admin(&app, Method::POST, &format!("/v1/admin/links/{code}/disable"), Some(json!({"reason": "r"}))).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        codes.push(code);
    }
    let links = app.get("/v1/links?limit=1").await.json();
    let links_cursor = links["next_cursor"].as_str().expect("links cursor").to_owned();
    let audit = admin(&app, Method::GET, "/v1/admin/audit?limit=1&action=link.disable", None).await.json();
    let audit_cursor = audit["next_cursor"].as_str().expect("audit cursor").to_owned();
    // Each endpoint's own cursor works, with the same filters.
    let next = admin(&app, Method::GET, &format!("/v1/admin/audit?limit=1&action=link.disable&cursor={audit_cursor}"), None).await.json();
    assert_eq!(next["items"][0]["target"], json!(codes[1]), "{next}");
    let next = app.get(&format!("/v1/links?limit=1&cursor={links_cursor}")).await.json();
    assert_eq!(next["items"].as_array().map(Vec::len), Some(1), "{next}");
    // The other endpoint's cursor: refused.
    let err =
        admin(&app, Method::GET, &format!("/v1/admin/audit?limit=1&action=link.disable&cursor={links_cursor}"), None).await.assert_error(400, "invalid_cursor");
    assert_eq!(err["details"], json!({"cursor": links_cursor}));
    app.get(&format!("/v1/links?limit=1&cursor={audit_cursor}")).await.assert_error(400, "invalid_cursor");
    // The audit cursor with other (or no) filters: refused.
    for q in [
        "action=link.enable",
        "",
        "actor=admin-token&action=link.disable",
        "action=link.disable&from=2000-01-01T00:00:00Z",
        "action=link.disable&to=2999-01-01T00:00:00Z",
    ] {
        let err = admin(&app, Method::GET, &format!("/v1/admin/audit?limit=1&{q}&cursor={audit_cursor}"), None).await.assert_error(400, "invalid_cursor");
        assert!(err["message"].as_str().is_some_and(|m| m.contains("different filters")), "{q}: {err}");
    }
    // Another limit is not another filter.
    let next = admin(&app, Method::GET, &format!("/v1/admin/audit?limit=5&action=link.disable&cursor={audit_cursor}"), None).await.json();
    assert_eq!(next["items"].as_array().map(Vec::len), Some(2), "{next}");
    // A links cursor of an earlier version, base64url of "l1:<seq>" ("l1:0", "l1:2"): 400
    // invalid_cursor with or without filters, never a page; the first page still answers.
    for (q, cursor) in [("", "bDE6MA"), ("", "bDE6Mg"), ("&tag=a", "bDE6MA"), ("&enabled=true", "bDE6Mg")] {
        let r = app.get(&format!("/v1/links?limit=5{q}&cursor={cursor}")).await;
        assert_eq!(
            r.assert_error(400, "invalid_cursor"),
            json!({
                "code": "invalid_cursor",
                "message": "cursor is from an older version of this API and names no filters, so the page it continues is unknown: restart the listing from the first page (without a cursor)",
                "details": {"cursor": cursor}
            }),
            "{q} {cursor}"
        );
        // The legacy cursor is refused by the audit log as not its own.
        let err = admin(&app, Method::GET, &format!("/v1/admin/audit?cursor={cursor}"), None).await.assert_error(400, "invalid_cursor");
        assert!(err["message"].as_str().is_some_and(|m| m.contains("not a cursor of this endpoint")), "{err}");
    }
    let first = app.get("/v1/links?limit=5").await.json();
    assert_eq!(first["items"].as_array().map(Vec::len), Some(3));
}

/// QA finding (session 55): a `GET /v1/admin/audit` cursor with its position edited was
/// accepted, paging from wherever the edit pointed. Every edited field is now 400
/// `invalid_cursor`; the untouched cursor still pages on.
async fn edited_audit_cursors_are_invalid_cursor(b: Backend) {
    use crate::links_cursor::{cursor_fields, cursor_of_fields};
    let app = with_token(b).await;
    let mut codes = Vec::new();
    for i in 0..3 {
        let code = app.create_url(&format!("https://example.com/edited-{i}")).await;
        assert_eq!(admin(&app, Method::POST, &format!("/v1/admin/links/{code}/disable"), Some(json!({"reason": "r"}))).await.status, StatusCode::OK);
        codes.push(code);
    }
    let first = admin(&app, Method::GET, "/v1/admin/audit?limit=1&action=link.disable", None).await.json();
    assert_eq!(first["items"][0]["target"], json!(codes[2]), "{first}");
    let c = first["next_cursor"].as_str().expect("audit cursor").to_owned();
    let (kind, seq, fp) = cursor_fields(&c);
    let n: i64 = seq.parse().expect("a sequence number");
    let flipped = format!("{}{}", if fp.starts_with('0') { '1' } else { '0' }, &fp[1..]);
    let refused = |cursor: &str, why: &str| {
        json!({
            "code": "invalid_cursor",
            "message": format!("cursor is not valid here: {why}; use the next_cursor of a previous page with the same filters"),
            "details": {"cursor": cursor}
        })
    };
    let (altered, not_this) = ("it was made with different filters (or altered)", "not a cursor of this endpoint");
    let mut cases = Vec::new();
    // The position moved on (to skip entries) or back (to replay them), or spelt otherwise;
    // the fingerprint changed.
    for position in [n - 1, n + 1, n - 2, 0].map(|p| p.to_string()).into_iter().chain([format!("0{seq}")]) {
        cases.push((cursor_of_fields(&kind, &position, &fp), altered));
    }
    cases.push((cursor_of_fields(&kind, &seq, &flipped), altered));
    // The kind (a links cursor's, the previous version's) or the fingerprint's form.
    for (k, f) in [("l3", fp.clone()), ("u1", fp.clone()), (kind.as_str(), format!("{fp}0"))] {
        cases.push((cursor_of_fields(k, &seq, &f), not_this));
    }
    for (cursor, why) in cases {
        let r = admin(&app, Method::GET, &format!("/v1/admin/audit?limit=1&action=link.disable&cursor={cursor}"), None).await;
        assert_eq!(r.assert_error(400, "invalid_cursor"), refused(&cursor, why), "{cursor}");
    }
    // The untouched cursor pages on.
    let next = admin(&app, Method::GET, &format!("/v1/admin/audit?limit=1&action=link.disable&cursor={c}"), None).await.json();
    assert_eq!(next["items"][0]["target"], json!(codes[1]), "{next}");
}

backend_tests!(
    audit_and_links_cursors_are_distinct_and_audit_cursors_bound_to_filters,
    edited_audit_cursors_are_invalid_cursor,
    admin_routes_refuse_unknown_repeated_and_non_utf8_query_parameters,
    audit_query_parameters_are_documented,
    path_segments_that_are_not_utf8_are_400_invalid_path,
    admin_bodies_that_are_not_json_objects_are_refused,
    admin_timestamps_are_milliseconds_like_the_rest_of_the_api,
    no_token_admits_direct_loopback_only,
    token_is_required_on_every_admin_route,
    disable_enable_and_exact_audit_log,
);
