//! Webhooks over real HTTP: CRUD, SSRF rejections, signed deliveries to a local receiver
//! that verifies the HMAC independently, retries with backoff, recorded attempts.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::Sha256;
use sluice_connectors::anomaly_store::AnomalyStore;
use sluice_schemas::{AnomalyKind, Severity};

use super::*;
use crate::anomalies::tests::{anomaly, serve};

mod hardening;
mod tls;

const SECRET: &str = "whsec-0123456789abcdef";
const T0: i64 = 1_717_200_000_000;

async fn api(allow_private: bool, config: Option<WebhookConfig>) -> (tempfile::TempDir, Arc<AnomalyStore>, String, Option<Arc<Dispatcher>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(AnomalyStore::open(dir.path()).expect("open"));
    let dispatcher = config.map(|c| Arc::new(Dispatcher::start(Arc::clone(&store), c).expect("dispatcher")));
    let state = WebhooksState::new(Arc::clone(&store), AdminAuth::new(None), allow_private, dispatcher.clone());
    let base = serve(routes(state)).await;
    (dir, store, base, dispatcher)
}

async fn create(base: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new().post(format!("{base}/v1/webhooks")).json(&body).send().await.expect("post")
}

#[tokio::test]
async fn ssrf_targets_are_rejected_unless_allowed() {
    let (_dir, _store, base, _) = api(false, None).await;
    let forbidden = [
        "http://127.0.0.1/hook",
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://LOCALHOST./hook",
        "http://10.1.2.3/hook",
        "http://172.20.0.1/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.1.1/hook",
        "http://0.0.0.0/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:7f00:1]/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
        "http://2130706433/hook",   // decimal 127.0.0.1
        "http://0177.0.0.1/hook",   // octal
        "http://0x7f.0.0.1/hook",   // hex
        "http://127.1/hook",        // short form
        "http://017700000001/hook", // octal, one number
        "http://192.0.2.10/hook",
        "http://198.51.100.10/hook",
        "http://203.0.113.10/hook",
        "https://127.0.0.1/hook",
        "https://[::1]:8443/hook",
        "https://10.0.0.1/hook",
    ];
    for url in forbidden {
        let resp = create(&base, json!({"url": url, "secret": SECRET})).await;
        assert_eq!(resp.status(), 400, "{url}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["code"], "webhook_url_forbidden", "{url}: {body}");
    }
    // The machine's own host name usually resolves to loopback through /etc/hosts: judged by
    // the address it resolves to.
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim().to_string();
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((name.as_str(), 80)).await.map(Iterator::collect).unwrap_or_default();
        if !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()) {
            let resp = create(&base, json!({"url": format!("http://{name}/hook"), "secret": SECRET})).await;
            assert_eq!(resp.json::<Value>().await.expect("json")["error"]["code"], "webhook_url_forbidden", "{name}");
        }
    }
    for (body, code) in [
        (json!({"url": "https://no-such-host.invalid/x", "secret": SECRET}), "webhook_host_unresolvable"),
        (json!({"url": "wss://hooks.example/x", "secret": SECRET}), "unsupported_url_scheme"),
        (json!({"url": "ftp://hooks.example/x", "secret": SECRET}), "unsupported_url_scheme"),
        (json!({"url": "not a url", "secret": SECRET}), "invalid_webhook_url"),
        (json!({"url": "http://user:pw@8.8.8.8/x", "secret": SECRET}), "invalid_webhook_url"),
        (json!({"url": "http://8.8.8.8/x", "secret": "short"}), "invalid_secret"),
        (json!({"url": "http://8.8.8.8/x", "secret": SECRET, "kinds": ["burst"]}), "invalid_kind"),
        (json!({"url": "http://8.8.8.8/x", "secret": SECRET, "min_severity": "high"}), "invalid_severity"),
        (json!({"url": "http://8.8.8.8/x", "secret": SECRET, "extra": 1}), "unknown_field"),
        (json!({"url": "http://no-such-host.invalid/x", "secret": SECRET}), "webhook_host_unresolvable"),
        // Field errors win over the host lookup (which comes last).
        (json!({"url": "http://no-such-host.invalid/x", "secret": SECRET, "kinds": ["nope"]}), "invalid_kind"),
        (json!({"url": "http://no-such-host.invalid/x", "secret": SECRET, "min_severity": "huge"}), "invalid_severity"),
        (json!({"url": "http://no-such-host.invalid/x", "secret": ""}), "invalid_secret"),
    ] {
        let resp = create(&base, body.clone()).await;
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(resp.json::<Value>().await.expect("json")["error"]["code"], code, "{body}");
    }
    // Credentials are refused without being echoed (error bodies end up in client logs).
    let resp = create(&base, json!({"url": "http://user:hunter2@8.8.8.8/x", "secret": SECRET})).await;
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["details"]["url"], "http://8.8.8.8/x", "{body}");
    assert!(!body.to_string().contains("hunter2"), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with("webhook url \"http://8.8.8.8/x\" is not valid: credentials")), "{body}");
    // A public literal is accepted (nothing is sent until an event arrives).
    assert_eq!(create(&base, json!({"url": "http://8.8.8.8/x", "secret": SECRET})).await.status(), 201);
    let resp = create(&base, json!({"url": "https://8.8.8.8:8443/x", "secret": SECRET})).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.json::<Value>().await.expect("json")["url"], "https://8.8.8.8:8443/x");

    // With allow-private every one of them is accepted, normalized.
    let (_dir2, _store2, base, _) = api(true, None).await;
    for url in forbidden {
        let resp = create(&base, json!({"url": url, "secret": SECRET})).await;
        assert_eq!(resp.status(), 201, "{url}");
    }
    let resp = create(&base, json!({"url": "http://2130706433:8080/h", "secret": SECRET})).await;
    assert_eq!(resp.json::<Value>().await.expect("json")["url"], "http://127.0.0.1:8080/h");
}

#[tokio::test]
async fn crud_round_trip() {
    let (_dir, _store, base, _) = api(true, None).await;
    let client = reqwest::Client::new();
    let resp = create(
        &base,
        json!({"url": "http://127.0.0.1:1/a", "secret": SECRET, "kinds": ["click_burst", "bot_share", "click_burst"], "min_severity": "warning"}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().expect("location").to_string();
    let created: Value = resp.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(location, format!("/v1/webhooks/{id}"));
    assert_eq!(created["kinds"], json!(["click_burst", "bot_share"]));
    assert_eq!(created["min_severity"], "warning");
    assert_eq!(created["secret_set"], true);
    assert!(created.get("secret").is_none());
    let got: Value = client.get(format!("{base}{location}")).send().await.expect("get").json().await.expect("json");
    assert_eq!(got, created);
    // UUIDs are case-insensitive (RFC 9562): the uppercase spelling is the same webhook.
    let upper = format!("{base}/v1/webhooks/{}", id.to_ascii_uppercase());
    let got: Value = client.get(&upper).send().await.expect("get").json().await.expect("json");
    assert_eq!(got, created);
    let deliveries: Value = client.get(format!("{upper}/deliveries")).send().await.expect("get").json().await.expect("json");
    assert_eq!(deliveries, json!({"items": [], "next_cursor": null}));
    let list: Value = client.get(format!("{base}/v1/webhooks")).send().await.expect("get").json().await.expect("json");
    assert_eq!(list, json!({"items": [created]}));
    let deliveries: Value = client.get(format!("{base}{location}/deliveries")).send().await.expect("get").json().await.expect("json");
    assert_eq!(deliveries, json!({"items": [], "next_cursor": null}));
    assert_eq!(client.delete(format!("{base}{location}")).send().await.expect("delete").status(), 204);
    for resp in [client.get(format!("{base}{location}")).send().await.expect("get"), client.delete(format!("{base}{location}")).send().await.expect("delete")] {
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.json::<Value>().await.expect("json")["error"]["code"], "webhook_not_found");
    }
}

/// A webhook body that is not a JSON object is never read by position (`["http://…",
/// "secret"]` as `{"url", "secret"}`): 400 invalid_request, and no webhook.
#[tokio::test]
async fn bodies_that_are_not_json_objects_are_refused() {
    let (_dir, _store, base, _) = api(true, None).await;
    let client = reqwest::Client::new();
    for (body, got) in [
        (json!(["http://127.0.0.1:1/a", SECRET]).to_string(), "an array"),
        ("[]".to_owned(), "an array"),
        (r#""http://127.0.0.1:1/a""#.to_owned(), "a string"),
        ("1e3".to_owned(), "a number"),
        ("true".to_owned(), "a boolean"),
        ("null".to_owned(), "null"),
    ] {
        let resp = client.post(format!("{base}/v1/webhooks")).header("content-type", "application/json").body(body.clone()).send().await.expect("post");
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(resp.headers()["content-type"], "application/json", "{body}");
        let want = json!({"error": {"code": "invalid_request", "message": format!("request body must be a JSON object, got {got}")}});
        assert_eq!(resp.json::<Value>().await.expect("json"), want, "{body}");
    }
    let list: Value = client.get(format!("{base}/v1/webhooks")).send().await.expect("get").json().await.expect("json");
    assert_eq!(list, json!({"items": []}));
}

/// What the test receiver saw.
#[derive(Default)]
struct Received {
    /// (status answered, signature valid, body) per request.
    requests: Vec<(u16, bool, Value)>,
}

/// A receiver that verifies `Sluice-Signature` with its own HMAC computation and answers
/// 500 to the first `fail_first` requests.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Received>>) {
    let (app, seen) = receiver_app(fail_first);
    (serve(app).await, seen)
}

/// The receiver's routes: `POST /hook` answers 500 to the first `fail_first` requests, then
/// 200, recording each request and whether its signature verifies.
fn receiver_app(fail_first: usize) -> (axum::Router, Arc<Mutex<Received>>) {
    let seen = Arc::new(Mutex::new(Received::default()));
    let s = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let s = Arc::clone(&s);
            async move {
                let sig = headers.get("sluice-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
                let mut t = None;
                let mut v1 = None;
                for part in sig.split(',') {
                    match part.split_once('=') {
                        Some(("t", x)) => t = Some(x.to_string()),
                        Some(("v1", x)) => v1 = Some(x.to_string()),
                        _ => {}
                    }
                }
                let valid = match (t, v1) {
                    (Some(t), Some(v1)) => {
                        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("key");
                        mac.update(format!("{t}.").as_bytes());
                        mac.update(&body);
                        let fresh = t.parse::<i64>().is_ok_and(|t| (t - chrono::Utc::now().timestamp()).abs() < 300);
                        hex::decode(v1).is_ok_and(|raw| mac.verify_slice(&raw).is_ok()) && fresh
                    }
                    _ => false,
                };
                let mut g = s.lock();
                let status = if g.requests.len() < fail_first { 500 } else { 200 };
                let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                g.requests.push((status, valid, json));
                axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
            }
        }),
    );
    (app, seen)
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn fast_config(allow_private: bool) -> WebhookConfig {
    WebhookConfig {
        allow_private,
        timeout: Duration::from_secs(2),
        max_attempts: 3,
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        max_concurrent: 4,
        extra_ca_pem: None,
    }
}

#[tokio::test]
async fn deliveries_are_signed_retried_and_recorded() {
    let (recv_base, seen) = receiver(2).await;
    let (_dir, store, base, _dispatcher) = api(true, Some(fast_config(true))).await;
    let client = reqwest::Client::new();
    // An event from before the webhook existed is not delivered.
    store.append(&[anomaly(AnomalyKind::ClickBurst, "link:old", T0, 0, Severity::Critical)]).expect("append");
    let resp = create(&base, json!({"url": format!("{recv_base}/hook"), "secret": SECRET, "kinds": ["click_burst"], "min_severity": "warning"})).await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let wanted = anomaly(AnomalyKind::ClickBurst, "link:hot", T0 + 60_000, 0, Severity::Critical);
    store
        .append(&[
            anomaly(AnomalyKind::ClickBurst, "link:meh", T0, 0, Severity::Info),    // below min_severity
            anomaly(AnomalyKind::BotShare, "link:bots", T0, 0, Severity::Critical), // other kind
            wanted.clone(),
        ])
        .expect("append");
    let started = std::time::Instant::now();
    wait_for("three attempts", Duration::from_secs(10), || seen.lock().requests.len() >= 3).await;
    let elapsed = started.elapsed();
    // Two backoffs of at least 50 ms and 100 ms (equal jitter of 100 ms and 200 ms).
    assert!(elapsed >= Duration::from_millis(150), "retried too fast: {elapsed:?}");
    let url = format!("{base}/v1/webhooks/{id}/deliveries");
    wait_for("the delivery to be recorded", Duration::from_secs(5), || {
        store.deliveries(&id, None, 10).map(|(d, _)| d.first().is_some_and(|d| d.attempts.len() == 3)).unwrap_or(false)
    })
    .await;
    let page: Value = client.get(&url).send().await.expect("get").json().await.expect("json");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{page}");
    let d = &items[0];
    assert_eq!(d["state"], "succeeded");
    assert_eq!(d["event_id"], 4);
    let statuses: Vec<u64> = d["attempts"].as_array().expect("attempts").iter().map(|a| a["status_code"].as_u64().expect("status")).collect();
    assert_eq!(statuses, vec![500, 500, 200]);
    assert_eq!(d["next_attempt_at"], Value::Null);
    // Nothing else arrives; every request was signed correctly and carried the event.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let g = seen.lock();
    assert_eq!(g.requests.len(), 3);
    let want_body = serde_json::to_value(crate::anomalies::dto::AnomalyEventBody::new(4, &wanted)).expect("json");
    for (status, valid, body) in &g.requests {
        assert!(*valid, "signature must verify (status {status})");
        assert_eq!(body, &want_body);
    }
}

/// Finding (newcomer, session 18): `min_severity` was applied to each event, so a
/// subscriber told of an anomaly at `warning` never learnt that it ended when it closed at
/// `info`. `closed` is now judged by the highest severity the anomaly reached; other
/// events by their own severity.
#[tokio::test]
async fn a_subscriber_told_of_an_anomaly_gets_its_close() {
    let (recv_base, seen) = receiver(0).await;
    let (_dir, store, base, _dispatcher) = api(true, Some(fast_config(true))).await;
    let resp = create(&base, json!({"url": format!("{recv_base}/hook"), "secret": SECRET, "kinds": ["visitor_flood"], "min_severity": "warning"})).await;
    assert_eq!(resp.status(), 201);
    let flood = |key: &str, revision: u32, severity: Severity, closed: bool| {
        let mut a = anomaly(AnomalyKind::VisitorFlood, key, T0, revision, severity);
        if closed {
            a.status = sluice_schemas::AnomalyStatus::Closed;
        }
        a
    };
    store
        .append(&[
            flood("visitor:a", 0, Severity::Info, false),    // 1: below min_severity
            flood("visitor:a", 1, Severity::Warning, false), // 2: delivered
            flood("visitor:a", 2, Severity::Info, false),    // 3: below min_severity
            flood("visitor:a", 3, Severity::Info, true),     // 4: closed, peak warning: delivered
            flood("visitor:b", 0, Severity::Info, false),    // 5: never reached warning
            flood("visitor:b", 1, Severity::Info, true),     // 6: closed at its peak, info
        ])
        .expect("append");
    wait_for("two deliveries", Duration::from_secs(10), || seen.lock().requests.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got: Vec<(u64, String)> = seen
        .lock()
        .requests
        .iter()
        .map(|(_, _, body)| (body["event_id"].as_u64().expect("event_id"), body["status"].as_str().expect("status").to_owned()))
        .collect();
    got.sort();
    assert_eq!(got, vec![(2, "updated".to_owned()), (4, "closed".to_owned())]);
}

#[tokio::test]
async fn exhausted_and_blocked_deliveries_fail_with_every_attempt_recorded() {
    // The receiver always fails: 3 attempts, then failed.
    let (recv_base, seen) = receiver(usize::MAX).await;
    let (_dir, store, base, _d) = api(true, Some(fast_config(true))).await;
    let id = create(&base, json!({"url": format!("{recv_base}/hook"), "secret": SECRET})).await.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    store.append(&[anomaly(AnomalyKind::GeoShift, "link:g", T0, 0, Severity::Info)]).expect("append");
    wait_for("the delivery to fail", Duration::from_secs(10), || {
        store.deliveries(&id, None, 10).map(|(d, _)| d.first().is_some_and(|d| d.attempts.len() == 3 && d.next_attempt_at_ms.is_none())).unwrap_or(false)
    })
    .await;
    let page: Value = reqwest::get(format!("{base}/v1/webhooks/{id}/deliveries")).await.expect("get").json().await.expect("json");
    assert_eq!(page["items"][0]["state"], "failed");
    assert_eq!(seen.lock().requests.len(), 3);

    // Delivery-time check: a webhook stored while private receivers were allowed is refused
    // by a dispatcher that does not allow them, without a request (DNS rebinding: the check
    // runs on the address resolved for the connection).
    let (recv_base, seen) = receiver(0).await;
    let (_dir, store, base, _d) = api(true, Some(fast_config(false))).await;
    let localhost_url = recv_base.replace("127.0.0.1", "localhost");
    for (i, url) in [format!("{recv_base}/hook"), format!("{localhost_url}/hook")].into_iter().enumerate() {
        let id = create(&base, json!({"url": url, "secret": SECRET})).await.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
        store.append(&[anomaly(AnomalyKind::GeoShift, &format!("link:blocked{i}"), T0, 0, Severity::Info)]).expect("append");
        wait_for("the blocked delivery to fail", Duration::from_secs(10), || {
            store.deliveries(&id, None, 10).map(|(d, _)| d.first().is_some_and(|d| d.attempts.len() == 3)).unwrap_or(false)
        })
        .await;
        let (d, _) = store.deliveries(&id, None, 10).expect("read");
        for a in &d[0].attempts {
            assert_eq!(a.status_code, None, "{url}");
            assert!(a.error.as_deref().is_some_and(|e| e.contains("blocked")), "{url}: {:?}", a.error);
        }
    }
    assert!(seen.lock().requests.is_empty(), "no request may reach a blocked receiver");
}

#[test]
fn deliveries_query_takes_plain_digits_and_known_names() {
    assert_eq!(parse_deliveries_query(None).expect("none"), (DELIVERIES_DEFAULT_LIMIT, None));
    let c = encode_deliveries_cursor(17, "hook");
    assert_eq!(parse_deliveries_query(Some(&format!("limit=3&cursor={c}"))).expect("ok"), (3, Some(c.clone())));
    assert_eq!(decode_deliveries_cursor(&c, "hook").expect("round trip"), 17);
    for (q, code) in [
        ("limit=%2B5", "invalid_limit"),
        ("limit=0", "invalid_limit"),
        ("cursor=d%FF", "invalid_parameter"),
        ("limit=1&limit=2", "duplicate_parameter"),
        ("sort=asc", "unknown_parameter"),
    ] {
        assert_eq!(parse_deliveries_query(Some(q)).expect_err(q).code, code, "{q}");
    }
    // The bare cursors of earlier versions, and crafted ones, are no cursors.
    for c in ["d17", "d+5", "17", ""] {
        assert_eq!(decode_deliveries_cursor(c, "hook").expect_err(c).code, "invalid_cursor", "{c}");
    }
    let signed = DELIVERIES_CURSOR.encode(&["+5"], "hook");
    assert_eq!(decode_deliveries_cursor(&signed, "hook").expect_err("sign").code, "invalid_cursor");
}

/// A webhook id that is not UTF-8 once percent-decoded is 400 `invalid_path` in the JSON
/// error shape (never axum's plain-text "Invalid URL"), on every route that takes one.
#[tokio::test]
async fn ids_that_are_not_utf8_are_400_invalid_path() {
    let (_dir, _store, base, _) = api(false, None).await;
    let client = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::GET, "/v1/webhooks/%FF"),
        (reqwest::Method::DELETE, "/v1/webhooks/%FF"),
        (reqwest::Method::GET, "/v1/webhooks/%FF/deliveries"),
        (reqwest::Method::GET, "/v1/webhooks/a%C3/deliveries"),
    ] {
        let resp = client.request(method.clone(), format!("{base}{path}")).send().await.expect("send");
        assert_eq!(resp.status(), 400, "{method} {path}");
        assert_eq!(resp.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"), "{method} {path}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["code"], "invalid_path", "{method} {path}: {body}");
        assert_eq!(body["error"]["details"], json!({"parameter": "id"}), "{method} {path}: {body}");
    }
}

/// Every webhook route refuses an unknown, repeated or non-UTF-8 query parameter (the
/// routes without parameters: any), like every `/v1/` route, and nothing changes.
#[tokio::test]
async fn routes_refuse_unknown_repeated_and_non_utf8_query_parameters() {
    let (_dir, _store, base, _) = api(true, None).await;
    let client = reqwest::Client::new();
    let created = create(&base, json!({"url": "http://8.8.8.8/hook", "secret": SECRET})).await;
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let cases = [
        (reqwest::Method::GET, "/v1/webhooks".to_string()),
        (reqwest::Method::POST, "/v1/webhooks".to_string()),
        (reqwest::Method::GET, format!("/v1/webhooks/{id}")),
        (reqwest::Method::DELETE, format!("/v1/webhooks/{id}")),
    ];
    for (method, path) in &cases {
        for (q, want, param) in
            [("foo=1", "unknown_parameter", "foo"), ("limit=1&limit=2", "unknown_parameter", "limit"), ("%FF=1", "invalid_parameter", "\u{FFFD}")]
        {
            let mut req = client.request(method.clone(), format!("{base}{path}?{q}"));
            if *method == reqwest::Method::POST {
                req = req.json(&json!({"url": "http://8.8.4.4/hook", "secret": SECRET}));
            }
            let resp = req.send().await.expect("send");
            assert_eq!(resp.status(), 400, "{method} {path}?{q}");
            let body: Value = resp.json().await.expect("json");
            assert_eq!((body["error"]["code"].as_str(), &body["error"]["details"]["parameter"]), (Some(want), &json!(param)), "{method} {path}?{q}: {body}");
        }
    }
    let deliveries = client.get(format!("{base}/v1/webhooks/{id}/deliveries?limit=1&limit=2")).send().await.expect("send");
    assert_eq!(deliveries.json::<Value>().await.expect("json")["error"]["code"], "duplicate_parameter");
    // Nothing was created or deleted; an empty query is no parameter.
    let list: Value = client.get(format!("{base}/v1/webhooks?")).send().await.expect("send").json().await.expect("json");
    assert_eq!(list["items"].as_array().map(|a| a.iter().map(|w| w["id"].clone()).collect::<Vec<_>>()), Some(vec![json!(id)]), "{list}");
}

/// The webhook URL is checked like a link's `long_url`: port 0 is 400 `invalid_port`
/// (before any DNS lookup of the host), a control character inside it (TAB, LF, CR) 400
/// `control_characters` instead of being silently removed; nothing is stored.
#[tokio::test]
async fn urls_are_checked_like_link_urls_port_and_control_characters() {
    for allow_private in [false, true] {
        let (_dir, store, base, _) = api(allow_private, None).await;
        for (url, want) in [
            ("http://8.8.8.8:0/hook", "invalid_port"),
            ("https://example.com:0/", "invalid_port"),
            ("http://unresolvable.invalid:0/hook", "invalid_port"),
            ("http://[2001:4860:4860::8888]:0/hook", "invalid_port"),
            ("http://8.8.8.8/ho\nok", "control_characters"),
            ("http://8.8.8.8/ho\tok", "control_characters"),
            ("http://8.8.\r8.8/hook", "control_characters"),
            ("http\t://8.8.8.8/hook", "control_characters"),
        ] {
            let resp = create(&base, json!({"url": url, "secret": "abcdefghijklmnop"})).await;
            assert_eq!(resp.status(), 400, "{url:?}");
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body["error"]["code"], want, "{url:?}: {body}");
            if want == "invalid_port" {
                assert_eq!(body["error"]["details"], json!({"port": 0}), "{url:?}");
            }
        }
        assert!(store.webhooks().expect("webhooks").is_empty(), "nothing stored");
    }
}
