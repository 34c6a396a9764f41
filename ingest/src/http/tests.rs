//! `POST /v1/events` over a real click log in a temporary directory, driven with `oneshot`.

use std::net::SocketAddr;
use std::ops::Range;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice_connectors::click_log::ClickLog;
use sluice_schemas::{VisitorSalt, truncate_ip, visitor_id};
use tower::ServiceExt;
use uuid::Uuid;

use super::*;
use crate::event_input::{MAX_FIELD_BYTES, event_uuid};

const NOW: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

fn salt() -> VisitorSalt {
    VisitorSalt::new([5; 32], Some(86_400_000))
}

struct Fixture {
    log: ClickLog,
    router: Router,
    _dir: tempfile::TempDir,
}

fn fixture(config: EventsConfig) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open log");
    let state = EventsState::new(DurableAppender::new(log.clone()), salt(), config).with_clock(Arc::new(|| NOW));
    Fixture { log, router: events_router(state), _dir: dir }
}

fn loopback() -> Option<&'static str> {
    Some("127.0.0.1:50000")
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn send(router: &Router, uri: &str, peer: Option<&str>, headers: &[(&str, &str)], body: impl Into<Body>) -> Resp {
    let mut req = Request::post(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(body.into()).expect("request");
    if let Some(p) = peer {
        req.extensions_mut().insert(ConnectInfo(p.parse::<SocketAddr>().expect("peer")));
    }
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not json ({e}): {:?}", String::from_utf8_lossy(&bytes)));
    Resp { status, headers, body }
}

async fn post_json(router: &Router, body: &Value) -> Resp {
    send(router, EVENTS_PATH, loopback(), &[("content-type", "application/json")], body.to_string()).await
}

#[track_caller]
fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "status; body {}", r.body);
    assert_eq!(r.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    assert_eq!(r.body["error"]["code"], code, "body {}", r.body);
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

fn ev(id: &str, code: &str) -> Value {
    json!({"event_id": id, "code": code, "ts": NOW - 60_000, "ip": "192.0.2.30", "user_agent": UA, "referrer": null})
}

fn logged(log: &ClickLog) -> Vec<(String, bool)> {
    log.read_entries(0, 100_000).expect("read").into_iter().map(|e| (e.event.code, e.backfill)).collect()
}

#[tokio::test]
async fn no_token_means_loopback_peers_only() {
    let f = fixture(EventsConfig::default());
    let body = json!([ev("a", "c1")]).to_string();
    for peer in ["127.0.0.1:1", "127.8.9.10:2", "[::1]:3", "[::ffff:127.0.0.1]:4"] {
        let r = send(&f.router, EVENTS_PATH, Some(peer), &[("content-type", "application/json")], body.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{peer}: {}", r.body);
    }
    for peer in [Some("192.0.2.1:5"), Some("[2001:db8::1]:6"), Some("10.0.0.1:7"), None] {
        let r = send(&f.router, EVENTS_PATH, peer, &[("content-type", "application/json")], body.clone()).await;
        assert_error(&r, 403, "forbidden");
    }
    // a forwarded header never turns a remote peer into a loopback one
    let r = send(&f.router, EVENTS_PATH, Some("192.0.2.1:5"), &[("content-type", "application/json"), ("x-forwarded-for", "127.0.0.1")], body.clone()).await;
    assert_error(&r, 403, "forbidden");
    // nor does a loopback peer that forwards for someone else (a reverse proxy on this host)
    for (name, value) in [("x-forwarded-for", "8.8.8.8"), ("forwarded", "for=8.8.8.8"), ("x-real-ip", "8.8.8.8"), ("cf-connecting-ip", "8.8.8.8")] {
        let r = send(&f.router, EVENTS_PATH, Some("127.0.0.1:9"), &[("content-type", "application/json"), (name, value)], body.clone()).await;
        assert_error(&r, 403, "forbidden");
    }
    // nor one addressed by a name that is not loopback (DNS rebinding, session 58)
    let r = send(&f.router, EVENTS_PATH, Some("127.0.0.1:9"), &[("content-type", "application/json"), ("host", "rebind.attacker.example:8080")], body.clone())
        .await;
    assert_error(&r, 403, "forbidden");
    assert_eq!(f.log.head(), 4);
    // the header server.forwarded-header names counts too
    let f = fixture(EventsConfig { client_header: Some("x-edge-client".into()), ..EventsConfig::default() });
    let r = send(&f.router, EVENTS_PATH, Some("127.0.0.1:9"), &[("content-type", "application/json"), ("x-edge-client", "8.8.8.8")], body.clone()).await;
    assert_error(&r, 403, "forbidden");
    assert_eq!(f.log.head(), 0);
}

#[tokio::test]
async fn a_configured_token_is_required_from_everyone() {
    let f = fixture(EventsConfig { token: Some("s3cret-token".into()), ..EventsConfig::default() });
    let body = json!([ev("a", "c1")]).to_string();
    let ct = ("content-type", "application/json");
    let r = send(&f.router, EVENTS_PATH, loopback(), &[ct], body.clone()).await;
    assert_error(&r, 401, "unauthorized");
    assert_eq!(r.headers.get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer realm=\"sluice-ingest\""));
    for bad in ["Basic czNjcmV0LXRva2Vu", "Bearer", "s3cret-token"] {
        let r = send(&f.router, EVENTS_PATH, loopback(), &[ct, ("authorization", bad)], body.clone()).await;
        assert_error(&r, 401, "unauthorized");
    }
    for wrong in ["Bearer s3cret-tokeN", "Bearer s3cret-token2", "Bearer x"] {
        let r = send(&f.router, EVENTS_PATH, loopback(), &[ct, ("authorization", wrong)], body.clone()).await;
        assert_error(&r, 401, "invalid_token");
    }
    assert_eq!(f.log.head(), 0, "nothing stored without the token");
    for ok in ["Bearer s3cret-token", "bearer s3cret-token"] {
        let r = send(&f.router, EVENTS_PATH, Some("192.0.2.9:1"), &[ct, ("authorization", ok)], body.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{ok}: {}", r.body);
    }
    assert_eq!(f.log.head(), 2);
}

#[tokio::test]
async fn content_type_selects_array_or_ndjson() {
    let f = fixture(EventsConfig::default());
    let arr = json!([ev("a", "c1")]).to_string();
    let nd = format!("{}\n\n{}\r\n", ev("b", "c2"), ev("c", "c3"));
    // Quoted parameter values are read per RFC 9110 §5.6.6: an escaped quote, an empty one.
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/json; charset=\"UTF-8\"",
        r#"application/json; foo="a\"b""#,
        "application/json; foo=\"\"; charset=\"utf-8\"",
    ] {
        let r = send(&f.router, EVENTS_PATH, loopback(), &[("content-type", ct)], arr.clone()).await;
        assert_eq!((r.status, r.body.clone()), (StatusCode::OK, json!({"accepted": 1, "rejected": []})), "{ct}");
    }
    let r = send(&f.router, EVENTS_PATH, loopback(), &[("content-type", "application/x-ndjson")], nd.clone()).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!({"accepted": 2, "rejected": []})));
    let r = send(&f.router, EVENTS_PATH, loopback(), &[("content-type", "application/x-ndjson; charset=utf-8")], nd.clone()).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!({"accepted": 2, "rejected": []})));
    // JSON is UTF-8 (RFC 8259 §8.1): another charset is refused before the body is read
    for (ct, charset) in [
        ("application/json; charset=utf-16", "utf-16"),
        ("application/json; charset=latin1", "latin1"),
        ("application/x-ndjson; charset=iso-8859-1", "iso-8859-1"),
        ("application/x-ndjson; foo=\"\"; charset=US-ASCII", "us-ascii"),
    ] {
        let r = send(&f.router, EVENTS_PATH, loopback(), &[("content-type", ct)], arr.clone()).await;
        assert_error(&r, 415, "unsupported_media_type");
        let message = format!("charset {charset} is not supported: events are UTF-8 (RFC 8259 §8.1); send charset=utf-8 or no charset");
        assert_eq!(r.body["error"], json!({"code": "unsupported_media_type", "message": message, "details": {"content_type": ct}}), "{ct}");
    }
    for ct in [
        Some("text/plain"),
        Some("application/xml"),
        Some("application/ld+json"),
        Some("application/json; charset"),
        Some("application/"),
        Some("application/json; foo=\"a"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = ct.map(|c| ("content-type", c)).into_iter().collect();
        let r = send(&f.router, EVENTS_PATH, loopback(), &headers, arr.clone()).await;
        assert_error(&r, 415, "unsupported_media_type");
    }
    // an NDJSON body sent as application/json is malformed json, and the reverse is one bad line
    let r = send(&f.router, EVENTS_PATH, loopback(), &[("content-type", "application/json")], nd).await;
    assert_error(&r, 400, "malformed_json");
    let r = send(&f.router, EVENTS_PATH, loopback(), &[("content-type", "application/x-ndjson")], arr).await;
    assert_error(&r, 400, "all_events_rejected");
    assert_eq!(r.body["error"]["details"]["rejected"][0]["reason"], "not_an_object");
    // the six JSON arrays of one event, the two NDJSON bodies of two (dedup is the dataflow's)
    assert_eq!(logged(&f.log).len(), 10);
}

#[tokio::test]
async fn body_level_errors() {
    let f = fixture(EventsConfig::default());
    let ct = [("content-type", "application/json")];
    let r = send(&f.router, EVENTS_PATH, loopback(), &ct, "[{\"event_id\": ").await;
    assert_error(&r, 400, "malformed_json");
    assert_eq!(r.body["error"]["details"], json!({"line": 1, "column": 14}));
    let r = send(&f.router, EVENTS_PATH, loopback(), &ct, ev("a", "c").to_string()).await;
    assert_error(&r, 400, "invalid_body");
    let r = send(&f.router, EVENTS_PATH, loopback(), &ct, "[]").await;
    assert_error(&r, 400, "empty_batch");
    let r = send(&f.router, EVENTS_PATH, loopback(), &[("content-type", "application/x-ndjson")], "\n  \n\r\n").await;
    assert_error(&r, 400, "empty_batch");
    let r = send(&f.router, EVENTS_PATH, loopback(), &[("content-type", "application/x-ndjson")], vec![b'{', 0xff, b'}']).await;
    assert_error(&r, 400, "invalid_utf8");
    let r = send(&f.router, EVENTS_PATH, loopback(), &ct, vec![b'[', b'"', 0xC3, b'"', b']']).await;
    assert_error(&r, 400, "invalid_utf8");
    assert_eq!(r.body["error"]["details"], json!({"byte": 2}));
    for (q, value) in [("backfill=maybe", "maybe"), ("backfill=TRUE", "TRUE")] {
        let r = send(&f.router, &format!("{EVENTS_PATH}?{q}"), loopback(), &ct, json!([ev("a", "c")]).to_string()).await;
        assert_error(&r, 400, "invalid_parameter");
        assert_eq!(r.body["error"]["message"], format!("\"backfill\" must be true or false (or 1 / 0), got \"{value}\""));
        assert_eq!(r.body["error"]["details"], json!({"parameter": "backfill", "value": value, "allowed": ["true", "false", "1", "0"]}));
    }
    // Names and values are percent-decoded; bytes that are not UTF-8 are refused.
    for (q, param, value) in [("backfill=%FF", "backfill", "\u{FFFD}"), ("b%FFckfill=1", "b\u{FFFD}ckfill", "1")] {
        let r = send(&f.router, &format!("{EVENTS_PATH}?{q}"), loopback(), &ct, json!([ev("a", "c")]).to_string()).await;
        assert_error(&r, 400, "invalid_parameter");
        assert_eq!(r.body["error"]["details"], json!({"parameter": param, "value": value, "reason": "not UTF-8 once percent-decoded"}), "{q}");
    }
    let r = send(&f.router, &format!("{EVENTS_PATH}?dry_run=1"), loopback(), &ct, json!([ev("a", "c")]).to_string()).await;
    assert_error(&r, 400, "unknown_parameter");
    assert_eq!(r.body["error"]["details"], json!({"parameter": "dry_run", "supported": ["backfill"]}));
    for q in ["backfill=true&backfill=false", "backfill=1&backfill=1", "backfill=false&backfill"] {
        let r = send(&f.router, &format!("{EVENTS_PATH}?{q}"), loopback(), &ct, json!([ev("a", "c")]).to_string()).await;
        assert_eq!(
            (r.status, &r.body),
            (
                StatusCode::BAD_REQUEST,
                &json!({"error": {"code": "duplicate_parameter", "message": "query parameter \"backfill\" is given more than once", "details": {"parameter": "backfill"}}})
            ),
            "{q}"
        );
    }
    assert_eq!(f.log.head(), 0);
}

#[tokio::test]
async fn an_array_over_the_limit_is_counted_whatever_its_elements() {
    let f = fixture(EventsConfig { max_events: 3, ..EventsConfig::default() });
    let ct = [("content-type", "application/json")];
    // past the limit only the count matters (the elements are checked as JSON, not kept)
    let body = format!("[{},{},{},{}, 1, [2, 3], \"x\", {{\"y\": null}}]", ev("a", "c"), ev("b", "c"), ev("c", "c"), ev("d", "c"));
    let r = send(&f.router, EVENTS_PATH, loopback(), &ct, body).await;
    assert_eq!(
        (r.status, &r.body),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"error": {"code": "too_many_events", "message": "8 events in one request; at most 3 are allowed", "details": {"events": 8, "max_events": 3}}})
        )
    );
    // a syntax error past the limit is still a syntax error
    let r = send(&f.router, EVENTS_PATH, loopback(), &ct, "[1, 2, 3, 4, 5,]").await;
    assert_error(&r, 400, "malformed_json");
    assert_eq!(r.body["error"]["details"], json!({"line": 1, "column": 16}));
    // exactly the limit is read as events
    let r = send(&f.router, EVENTS_PATH, loopback(), &ct, json!([ev("a", "c"), ev("b", "c"), ev("c", "c")]).to_string()).await;
    assert_eq!(r.body, json!({"accepted": 3, "rejected": []}));
    assert_eq!(f.log.head(), 3);
}

#[tokio::test]
async fn too_many_events_and_too_large_bodies_are_413_and_store_nothing() {
    let f = fixture(EventsConfig::default());
    let many: Vec<Value> = (0..=MAX_EVENTS_PER_REQUEST).map(|i| ev(&format!("e{i}"), "c")).collect();
    let r = post_json(&f.router, &Value::Array(many.clone())).await;
    assert_error(&r, 413, "too_many_events");
    assert_eq!(r.body["error"]["details"], json!({"events": 10_001, "max_events": 10_000}));
    let nd: String = many.iter().map(|v| format!("{v}\n")).collect();
    let r = send(&f.router, EVENTS_PATH, loopback(), &[("content-type", "application/x-ndjson")], nd).await;
    assert_error(&r, 413, "too_many_events");
    assert_eq!(f.log.head(), 0);
    // exactly the limit is fine
    let r = post_json(&f.router, &Value::Array(many[..MAX_EVENTS_PER_REQUEST].to_vec())).await;
    assert_eq!(r.body, json!({"accepted": 10_000, "rejected": []}));
    assert_eq!(f.log.head(), 10_000);

    let small = fixture(EventsConfig { max_body_bytes: 1024, max_events: 3, ..EventsConfig::default() });
    let big = json!([ev("a", "c"), ev("b", "c"), ev("c", "c"), ev("d", "c"), ev("e", "c"), ev("f", "c"), ev("g", "c")]).to_string();
    assert!(big.len() > 1024);
    let too_large = json!({"error": {"code": "payload_too_large", "message": "request body is larger than 1024 bytes", "details": {"max_body_bytes": 1024}}});
    let r = post_json(&small.router, &serde_json::from_str(&big).expect("json")).await;
    assert_eq!((r.status, &r.body), (StatusCode::PAYLOAD_TOO_LARGE, &too_large));
    // without a Content-Length (streamed body) the limit still holds, with the same answer
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big.as_bytes().chunks(100).map(|c| Ok(c.to_vec())).collect();
    let r = send(&small.router, EVENTS_PATH, loopback(), &[("content-type", "application/json")], Body::from_stream(futures::stream::iter(chunks))).await;
    assert_eq!((r.status, &r.body), (StatusCode::PAYLOAD_TOO_LARGE, &too_large));
    let r = post_json(&small.router, &json!([ev("a", "c"), ev("b", "c"), ev("c", "c"), ev("d", "c")])).await;
    assert_error(&r, 413, "too_many_events");
    assert_eq!(small.log.head(), 0);
}

#[tokio::test]
async fn mixed_batches_report_exact_indices_and_store_only_the_valid_events_in_order() {
    let f = fixture(EventsConfig::default());
    let batch = json!([
        ev("ok-0", "alpha"),
        {"event_id": "bad-1", "code": "no/slash", "ts": NOW, "ip": "192.0.2.1", "ua": ""},
        ev("ok-2", "beta"),
        17,
        {"event_id": "bad-4", "code": "c", "ts": NOW + 3_600_000, "ip": "192.0.2.1", "ua": ""},
        {"event_id": "bad-5", "code": "c", "ts": NOW, "ip": "192.0.2.1", "ip_trunc": "192.0.2.0", "ua": ""},
        {"event_id": "bad-6", "code": "c", "ts": NOW, "ip": "192.0.2.1", "ua": "", "visitor_id": 3},
        {"event_id": "ok-7", "code": "gamma", "ts": "2024-12-31T23:59:00Z", "ip_trunc": "2001:db8:aa:bb::1", "ua": "x", "accept_language": "fr"},
        {"code": "c", "ts": NOW, "ip": "192.0.2.1", "ua": ""},
    ]);
    let r = post_json(&f.router, &batch).await;
    assert_eq!(r.status, StatusCode::OK);
    let reasons: Vec<(u64, String)> = r.body["rejected"]
        .as_array()
        .expect("array")
        .iter()
        .map(|x| (x["index"].as_u64().expect("index"), x["reason"].as_str().expect("reason").to_owned()))
        .collect();
    assert_eq!(r.body["accepted"], 3);
    assert_eq!(
        reasons,
        vec![
            (1, "invalid_code".to_owned()),
            (3, "not_an_object".to_owned()),
            (4, "ts_in_future".to_owned()),
            (5, "ip_conflict".to_owned()),
            (6, "unknown_field".to_owned()),
            (8, "missing_field".to_owned()),
        ]
    );
    assert!(r.body["rejected"].as_array().expect("array").iter().all(|x| x.get("line").is_none() && x["message"].as_str().is_some_and(|m| !m.is_empty())));
    assert_eq!(r.body["rejected"][5]["message"], "\"event_id\" is required");
    let stored = f.log.read(0, 10).expect("read");
    let ip: std::net::IpAddr = "192.0.2.30".parse().expect("ip");
    let net: std::net::IpAddr = "2001:db8:aa::".parse().expect("ip");
    let expected = vec![
        ClickEvent {
            event_id: event_uuid("ok-0"),
            code: "alpha".into(),
            ts: NOW - 60_000,
            ip_trunc: Some(truncate_ip(ip)),
            visitor_id: visitor_id(&salt(), NOW - 60_000, ip, UA),
            user_agent: UA.into(),
            referrer: None,
            accept_language: None,
            edge_region: None,
        },
        ClickEvent {
            event_id: event_uuid("ok-2"),
            code: "beta".into(),
            ts: NOW - 60_000,
            ip_trunc: Some("192.0.2.0".into()),
            visitor_id: visitor_id(&salt(), NOW - 60_000, ip, UA),
            user_agent: UA.into(),
            referrer: None,
            accept_language: None,
            edge_region: None,
        },
        ClickEvent {
            event_id: event_uuid("ok-7"),
            code: "gamma".into(),
            ts: NOW - 60_000,
            ip_trunc: Some("2001:db8:aa::".into()),
            visitor_id: visitor_id(&salt(), NOW - 60_000, net, "x"),
            user_agent: "x".into(),
            referrer: None,
            accept_language: Some("fr".into()),
            edge_region: None,
        },
    ];
    assert_eq!(stored.into_iter().map(|(_, e)| e).collect::<Vec<_>>(), expected);
    assert_ne!(expected[2].visitor_id, visitor_id(&salt(), NOW, net, "x"), "the salt of the event's own day (2024-12-31)");
}

#[tokio::test]
async fn ndjson_rejections_carry_index_and_line() {
    let f = fixture(EventsConfig::default());
    let body = format!(
        "{}\n\n{{not json\n{}\n   \n{}\n",
        ev("a", "c1"),
        json!({"event_id": "b", "code": "c", "ts": "yesterday", "ip": "192.0.2.1", "ua": ""}),
        ev("c", "c2")
    );
    let r = send(&f.router, EVENTS_PATH, loopback(), &[("content-type", "application/x-ndjson")], body).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["accepted"], 2);
    let rej = r.body["rejected"].as_array().expect("array");
    assert_eq!(rej.len(), 2);
    assert_eq!((&rej[0]["index"], &rej[0]["line"], &rej[0]["reason"]), (&json!(1), &json!(3), &json!("malformed_json")));
    assert_eq!((&rej[1]["index"], &rej[1]["line"], &rej[1]["reason"]), (&json!(2), &json!(4), &json!("invalid_ts")));
    assert_eq!(logged(&f.log), vec![("c1".to_owned(), false), ("c2".to_owned(), false)]);
}

#[tokio::test]
async fn all_rejected_is_400_with_the_rejections_in_details() {
    let f = fixture(EventsConfig::default());
    let r = post_json(&f.router, &json!([{"event_id": "x"}, ev("y", "bad code")])).await;
    assert_error(&r, 400, "all_events_rejected");
    assert_eq!(r.body["error"]["details"]["accepted"], 0);
    let rej = &r.body["error"]["details"]["rejected"];
    assert_eq!((&rej[0]["index"], &rej[0]["reason"]), (&json!(0), &json!("missing_field")));
    assert_eq!((&rej[1]["index"], &rej[1]["reason"]), (&json!(1), &json!("invalid_code")));
    assert_eq!(f.log.head(), 0);
}

#[tokio::test]
async fn accepted_events_are_durable_when_the_response_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = ClickLog::open(dir.path()).expect("open");
        let router = events_router(EventsState::new(DurableAppender::new(log.clone()), salt(), EventsConfig::default()).with_clock(Arc::new(|| NOW)));
        let r = post_json(&router, &json!([ev("d1", "dur"), ev("d2", "dur")])).await;
        assert_eq!(r.body["accepted"], 2);
        // visible to a reader at once, before anything else happens
        assert_eq!(log.read(0, 10).expect("read").len(), 2);
    }
    // and on disk: a fresh open of the file (the previous handle is gone) sees them
    let reopened = ClickLog::open(dir.path()).expect("reopen");
    let ids: Vec<Uuid> = reopened.read(0, 10).expect("read").into_iter().map(|(_, e)| e.event_id).collect();
    assert_eq!(ids, vec![event_uuid("d1"), event_uuid("d2")]);
}

#[tokio::test]
async fn duplicates_are_accepted_at_intake() {
    let f = fixture(EventsConfig::default());
    let e = ev("c19-0001", "dup");
    let r = post_json(&f.router, &json!([e, e, e])).await;
    assert_eq!(r.body, json!({"accepted": 3, "rejected": []}));
    let r = post_json(&f.router, &json!([e])).await;
    assert_eq!(r.body["accepted"], 1);
    let ids: Vec<Uuid> = f.log.read(0, 10).expect("read").into_iter().map(|(_, e)| e.event_id).collect();
    assert_eq!(ids, vec![event_uuid("c19-0001"); 4]);
}

#[tokio::test]
async fn unicode_and_huge_fields() {
    let f = fixture(EventsConfig::default());
    let ua = "Mozilla/5.0 (Linux; Android 14; 小米 13) 🚀 Ünïcødé";
    let referrer = "https://bücher.example/suche?q=日本語&x=%F0%9F%98%80";
    let huge = "€".repeat(40_000); // 120 KB
    let r = post_json(
        &f.router,
        &json!([
            {"event_id": "ü-1", "code": "uni", "ts": NOW, "ip": "2001:db8::77", "ua": ua, "referrer": referrer, "accept_language": "zh-CN,zh;q=0.9"},
            {"event_id": "big", "code": "uni", "ts": NOW, "ip": "192.0.2.1", "ua": huge, "referrer": huge},
            {"event_id": "x".repeat(10_000), "code": "uni", "ts": NOW, "ip": "192.0.2.1", "ua": ""},
        ]),
    )
    .await;
    assert_eq!(r.body["accepted"], 2);
    assert_eq!(r.body["rejected"][0]["reason"], "invalid_event_id");
    let stored: Vec<ClickEvent> = f.log.read(0, 10).expect("read").into_iter().map(|(_, e)| e).collect();
    assert_eq!(stored[0].event_id, event_uuid("ü-1"));
    assert_eq!(stored[0].user_agent, ua);
    assert_eq!(stored[0].referrer.as_deref(), Some(referrer));
    assert_eq!(stored[0].ip_trunc.as_deref(), Some("2001:db8::"));
    let cut_len = MAX_FIELD_BYTES / 3 * 3; // "€" is 3 bytes
    assert_eq!(stored[1].user_agent, "€".repeat(cut_len / 3));
    assert_eq!(stored[1].referrer.as_deref().map(str::len), Some(cut_len));
}

#[tokio::test]
async fn backfill_marks_reach_the_log() {
    let f = fixture(EventsConfig::default());
    let ct = [("content-type", "application/json")];
    let old = json!([{"event_id": "old", "code": "bf", "ts": "2024-01-15T10:00:00Z", "ip": "192.0.2.8", "ua": ""}]).to_string();
    for (q, code) in
        [("?backfill=true", "t"), ("", "d"), ("?backfill=false", "f"), ("?backfill=1", "one"), ("?backfill=0&", "zero"), ("?b%61ckfill=%74rue", "enc")]
    {
        let body = old.replace("\"bf\"", &format!("\"{code}\""));
        let r = send(&f.router, &format!("{EVENTS_PATH}{q}"), loopback(), &ct, body).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
    }
    assert_eq!(
        logged(&f.log),
        vec![("t".into(), true), ("d".into(), false), ("f".into(), false), ("one".into(), true), ("zero".into(), false), ("enc".into(), true)]
    );
}

/// A log whose appends always fail.
#[derive(Clone)]
struct BrokenLog;

impl EventLog for BrokenLog {
    fn append(&self, _events: &[ClickEvent]) -> sluice_connectors::Result<Range<u64>> {
        Err(sluice_connectors::Error::Config("disk on fire".into()))
    }
}

#[tokio::test]
async fn a_failing_log_is_503_with_retry_after() {
    let router = events_router(EventsState::new(DurableAppender::new(BrokenLog), salt(), EventsConfig::default()).with_clock(Arc::new(|| NOW)));
    let r = post_json(&router, &json!([ev("a", "c")])).await;
    assert_error(&r, 503, "log_unavailable");
    assert_eq!(r.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    // a log that cannot mark backfill refuses instead of storing the events as live
    let r =
        send(&router, &format!("{EVENTS_PATH}?backfill=true"), loopback(), &[("content-type", "application/json")], json!([ev("a", "c")]).to_string()).await;
    assert_error(&r, 503, "log_unavailable");
}

#[test]
fn config_debug_hides_the_token() {
    let c = EventsConfig { token: Some("hunter2".into()), ..EventsConfig::default() };
    let s = format!("{c:?}");
    assert!(!s.contains("hunter2") && s.contains("***"), "{s}");
}

mod gate;
