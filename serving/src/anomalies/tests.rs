//! `GET /v1/anomalies` and `/v1/anomalies/stream` over real HTTP (a socket on 127.0.0.1,
//! so the admin check sees a loopback peer), against a naive filter of what was stored.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sluice_connectors::anomaly_store::AnomalyStore;
use sluice_schemas::anomaly::anomaly_id;
use sluice_schemas::{Anomaly, AnomalyKind, AnomalyStatus, Evidence, Severity};

use super::*;
use crate::stats::params::rfc3339_utc;

pub(crate) fn anomaly(kind: AnomalyKind, key: &str, window_start: i64, revision: u32, severity: Severity) -> Anomaly {
    Anomaly {
        anomaly_id: anomaly_id(kind, key, window_start),
        revision,
        status: if revision == 0 { AnomalyStatus::Open } else { AnomalyStatus::Updated },
        kind,
        key: key.to_string(),
        severity,
        code: key.strip_prefix("link:").map(str::to_string),
        org: None,
        window_start,
        window_end: window_start + 30_000 + 60_000 * i64::from(revision),
        observed: 40.0,
        expected: 4.0,
        score: 9.0,
        summary: format!("{} on {key}", kind.as_str()),
        evidence: Evidence { window_ms: 60_000, clicks: 40, ..Evidence::default() },
        detected_at: window_start + 30_000,
    }
}

/// Serves `router` on 127.0.0.1:0 with connection info; returns its base URL.
pub(crate) async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    format!("http://{addr}")
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

const T0: i64 = 1_717_200_000_000; // 2024-06-01T00:00:00Z

/// A naive filter of the reference.
type Keep = Box<dyn Fn(&Anomaly) -> bool>;

#[tokio::test]
async fn list_filters_and_pages_exactly_like_a_naive_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(AnomalyStore::open(dir.path()).expect("open"));
    let mut rng = Lcg(7);
    let mut events = Vec::new();
    for _ in 0..300 {
        let kind = AnomalyKind::ALL[rng.next(6) as usize];
        let key = format!("link:c{}", rng.next(9));
        let ws = T0 + (rng.next(240) as i64) * 60_000;
        let sev = Severity::ALL[rng.next(3) as usize];
        events.push(anomaly(kind, &key, ws, 0, sev));
        if rng.next(3) == 0 {
            events.push(anomaly(kind, &key, ws, 1 + rng.next(3) as u32, Severity::ALL[rng.next(3) as usize]));
        }
    }
    store.append(&events).expect("append");
    // Reference: the first event of each (anomaly_id, revision) counts; latest = highest revision.
    let mut seen = std::collections::HashSet::new();
    let mut latest: std::collections::BTreeMap<uuid::Uuid, Anomaly> = Default::default();
    for a in &events {
        if seen.insert((a.anomaly_id, a.revision)) && latest.get(&a.anomaly_id).is_none_or(|l| l.revision < a.revision) {
            latest.insert(a.anomaly_id, a.clone());
        }
    }
    let base = serve(routes(AnomaliesState::new(Arc::clone(&store), AdminAuth::new(None)))).await;
    let client = reqwest::Client::new();

    let cases: Vec<(String, Keep)> = vec![
        (String::new(), Box::new(|_| true)),
        ("kind=click_burst".into(), Box::new(|a| a.kind == AnomalyKind::ClickBurst)),
        (
            "kind=bot_share,geo_shift&severity=critical".into(),
            Box::new(|a| matches!(a.kind, AnomalyKind::BotShare | AnomalyKind::GeoShift) && a.severity == Severity::Critical),
        ),
        ("severity=info,warning".into(), Box::new(|a| a.severity != Severity::Critical)),
        ("code=c3".into(), Box::new(|a| a.code.as_deref() == Some("c3"))),
        (
            format!("from={}&to={}", rfc3339_utc(T0 + 60 * 60_000), rfc3339_utc(T0 + 120 * 60_000)),
            Box::new(|a| a.window_end >= T0 + 60 * 60_000 && a.window_start < T0 + 120 * 60_000),
        ),
        (
            format!("from={}&code=c0&kind=referrer_spam", rfc3339_utc(T0 + 200 * 60_000)),
            Box::new(|a| a.window_end >= T0 + 200 * 60_000 && a.code.as_deref() == Some("c0") && a.kind == AnomalyKind::ReferrerSpam),
        ),
    ];
    for (query, keep) in &cases {
        let mut want: Vec<&Anomaly> = latest.values().filter(|a| keep(a)).collect();
        want.sort_by(|x, y| (y.window_start, y.anomaly_id.as_bytes()).cmp(&(x.window_start, x.anomaly_id.as_bytes())));
        for limit in [1usize, 7, 1000] {
            let mut got: Vec<Value> = Vec::new();
            let mut cursor: Option<String> = None;
            let mut pages = 0;
            loop {
                let mut url = format!("{base}/v1/anomalies?limit={limit}");
                if !query.is_empty() {
                    url.push('&');
                    url.push_str(query);
                }
                if let Some(c) = &cursor {
                    url.push_str(&format!("&cursor={c}"));
                }
                let resp = client.get(&url).send().await.expect("get");
                assert_eq!(resp.status(), 200, "{url}");
                let page: Value = resp.json().await.expect("json");
                let items = page["items"].as_array().expect("items");
                assert!(items.len() <= limit);
                got.extend(items.iter().cloned());
                pages += 1;
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
            if limit == 1000 {
                assert_eq!(pages, 1);
            }
            let want_json: Vec<Value> = want.iter().map(|a| serde_json::to_value(dto::AnomalyEventBody::new(0, a)).expect("json")).collect();
            let got_without_ids: Vec<Value> = got
                .iter()
                .map(|v| {
                    let mut v = v.clone();
                    v["event_id"] = 0.into();
                    v
                })
                .collect();
            assert_eq!(got_without_ids, want_json, "query {query:?} limit {limit}");
        }
    }
    // Every item's event_id is the stored event of its latest revision.
    let all: Value = client.get(format!("{base}/v1/anomalies?limit=1000")).send().await.expect("get").json().await.expect("json");
    let stored = store.events_after(0, 10_000).expect("read");
    for item in all["items"].as_array().expect("items") {
        let id = item["event_id"].as_u64().expect("event id");
        let e = stored.iter().find(|e| e.event_id == id).expect("stored event");
        assert_eq!(e.anomaly.anomaly_id.to_string(), item["anomaly_id"].as_str().expect("id"));
        assert_eq!(e.anomaly.revision as u64, item["revision"].as_u64().expect("revision"));
    }
}

#[tokio::test]
async fn bad_parameters_and_credentials_get_precise_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(AnomalyStore::open(dir.path()).expect("open"));
    let base = serve(routes(AnomaliesState::new(Arc::clone(&store), AdminAuth::new(None)))).await;
    let client = reqwest::Client::new();
    for (q, status, code) in [
        ("kind=burst", 400, "invalid_kind"),
        ("severity=loud", 400, "invalid_severity"),
        ("from=2024-13-01T00:00:00Z", 400, "invalid_timestamp"),
        ("from=2024-06-02T00:00:00Z&to=2024-06-01T00:00:00Z", 400, "invalid_range"),
        ("limit=1001", 400, "invalid_limit"),
        ("cursor=bm9wZQ", 400, "invalid_cursor"),
        ("foo=1", 400, "unknown_parameter"),
    ] {
        let resp = client.get(format!("{base}/v1/anomalies?{q}")).send().await.expect("get");
        assert_eq!(resp.status().as_u16(), status, "{q}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["code"], code, "{q}");
    }
    // A '+' of an offset sent unencoded (form-decoded to a space) is echoed as sent; a
    // misplaced leap second says why; with both ends bad, `from` is named.
    let leap = "\"from\" must be an RFC 3339 date-time with an offset between 1970 and 9999 (e.g. 2024-06-01T00:00:00Z), got \"2026-12-05T00:59:60Z\": second 60 (a leap second) is only valid at 23:59:60 UTC";
    for (q, want) in [
        (
            "from=2026-12-05T01:00:00+00:00&to=2026-12-05T01:00:00Z",
            json!({"code": "invalid_range", "message": "\"from\" must be earlier than \"to\"", "details": {"from": "2026-12-05T01:00:00+00:00", "to": "2026-12-05T01:00:00Z"}}),
        ),
        (
            "from=1970-01-01T00:30:00+01:00",
            json!({"code": "invalid_timestamp",
                "message": "\"from\" must lie between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z, got \"1970-01-01T00:30:00+01:00\"",
                "details": {"parameter": "from", "value": "1970-01-01T00:30:00+01:00", "min": "1970-01-01T00:00:00Z", "max": "9999-12-31T23:59:59.999Z"}}),
        ),
        ("from=2026-12-05T00:59:60Z", json!({"code": "invalid_timestamp", "message": leap, "details": {"parameter": "from", "value": "2026-12-05T00:59:60Z"}})),
        (
            "to=&from=",
            json!({"code": "invalid_timestamp", "message": "\"from\" must be an RFC 3339 date-time with an offset between 1970 and 9999 (e.g. 2024-06-01T00:00:00Z), got \"\": premature end of input", "details": {"parameter": "from", "value": ""}}),
        ),
    ] {
        let resp = client.get(format!("{base}/v1/anomalies?{q}")).send().await.expect("get");
        assert_eq!(resp.status().as_u16(), 400, "{q}");
        assert_eq!(resp.json::<Value>().await.expect("json")["error"], want, "{q}");
    }
    let resp = client.get(format!("{base}/v1/anomalies/stream")).header("last-event-id", "abc").send().await.expect("get");
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.expect("json")["error"]["code"], "invalid_last_event_id");
    let resp = client.get(format!("{base}/v1/anomalies/stream?last_event_id=5")).send().await.expect("get");
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.expect("json")["error"]["code"], "last_event_id_ahead");

    // With a token, loopback alone is not enough.
    let base = serve(routes(AnomaliesState::new(Arc::clone(&store), AdminAuth::new(Some("t0ken".into()))))).await;
    let resp = client.get(format!("{base}/v1/anomalies")).send().await.expect("get");
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_eq!(resp.json::<Value>().await.expect("json")["error"]["code"], "unauthorized");
    let resp = client.get(format!("{base}/v1/anomalies")).bearer_auth("t0kem").send().await.expect("get");
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_eq!(resp.json::<Value>().await.expect("json")["error"]["code"], "invalid_token");
    let resp = client.get(format!("{base}/v1/anomalies")).bearer_auth("t0ken").send().await.expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.expect("json"), serde_json::json!({"items": [], "next_cursor": null}));
}

/// Reads server-sent events from a response; keeps partial input between calls.
pub(crate) struct SseReader {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    buf: String,
}

/// One parsed SSE block.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SseBlock {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub comment: Option<String>,
}

impl SseReader {
    pub(crate) fn new(resp: reqwest::Response) -> SseReader {
        SseReader { body: Box::pin(resp.bytes_stream()), buf: String::new() }
    }

    /// The next block, or `None` after `timeout` / at the end.
    pub(crate) async fn next(&mut self, timeout: Duration) -> Option<SseBlock> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut b = SseBlock { id: None, event: None, data: String::new(), comment: None };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        b.id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        b.event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        b.data.push_str(v.trim_start());
                    } else if let Some(v) = line.strip_prefix(':') {
                        b.comment = Some(v.trim().to_string());
                    }
                }
                return Some(b);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await.ok()??.ok()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `anomaly` event's (id, body), skipping comments.
    pub(crate) async fn next_anomaly(&mut self, timeout: Duration) -> Option<(u64, Value)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let b = self.next(deadline.saturating_duration_since(tokio::time::Instant::now())).await?;
            if b.event.as_deref() == Some("anomaly") {
                let id = b.id?.parse().ok()?;
                return Some((id, serde_json::from_str(&b.data).ok()?));
            }
        }
    }
}

#[tokio::test]
async fn stream_resumes_after_last_event_id_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(AnomalyStore::open(dir.path()).expect("open"));
    let state = AnomaliesState::new(Arc::clone(&store), AdminAuth::new(None)).with_keep_alive(Duration::from_millis(100));
    let base = serve(routes(state)).await;
    let client = reqwest::Client::new();
    let ev = |i: i64, kind: AnomalyKind| anomaly(kind, &format!("link:s{i}"), T0 + i * 60_000, 0, Severity::Warning);
    // 10 events before anyone listens: 0..9, bursts on even i, bot share on odd.
    let first: Vec<Anomaly> = (0..10).map(|i| ev(i, if i % 2 == 0 { AnomalyKind::ClickBurst } else { AnomalyKind::BotShare })).collect();
    store.append(&first).expect("append");

    // Replay from the start, read 4 events, disconnect.
    let resp = client.get(format!("{base}/v1/anomalies/stream?last_event_id=0")).send().await.expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut r = SseReader::new(resp);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(r.next_anomaly(Duration::from_secs(5)).await.expect("event"));
    }
    drop(r);
    assert_eq!(seen.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(seen[2].1["key"], "link:s2");
    let last = seen.last().expect("seen").0;

    // More events while disconnected, then reconnect with Last-Event-ID (header wins over the
    // query parameter, as a browser reconnect keeps the original URL).
    store.append(&(10..15).map(|i| ev(i, AnomalyKind::ClickBurst)).collect::<Vec<_>>()).expect("append");
    let resp = client.get(format!("{base}/v1/anomalies/stream?last_event_id=0")).header("Last-Event-ID", last.to_string()).send().await.expect("get");
    let mut r = SseReader::new(resp);
    let mut rest = Vec::new();
    for _ in 0..11 {
        rest.push(r.next_anomaly(Duration::from_secs(5)).await.expect("event").0);
    }
    assert_eq!(rest, (5..=15).collect::<Vec<u64>>());
    // Live: an event appended now arrives; nothing else does.
    store.append(&[ev(15, AnomalyKind::GeoShift)]).expect("append");
    assert_eq!(r.next_anomaly(Duration::from_secs(5)).await.expect("live").0, 16);
    // Keep-alive comments flow while idle.
    let b = r.next(Duration::from_secs(5)).await.expect("keep-alive");
    assert_eq!(b.comment.as_deref(), Some("keep-alive"));
    assert!(r.next_anomaly(Duration::from_millis(300)).await.is_none());

    // Filtered resume: only bursts, from event 3 on.
    let resp = client.get(format!("{base}/v1/anomalies/stream?kind=click_burst&last_event_id=3")).send().await.expect("get");
    let mut r = SseReader::new(resp);
    let mut ids = Vec::new();
    while let Some((id, body)) = r.next_anomaly(Duration::from_millis(500)).await {
        assert_eq!(body["kind"], "click_burst");
        ids.push(id);
    }
    let want: Vec<u64> = store.events_after(3, 100).expect("read").iter().filter(|e| e.anomaly.kind == AnomalyKind::ClickBurst).map(|e| e.event_id).collect();
    assert_eq!(ids, want);
    assert_eq!(ids, vec![5, 7, 9, 11, 12, 13, 14, 15]);

    // Without a position the stream starts at the head: only new events.
    let resp = client.get(format!("{base}/v1/anomalies/stream")).send().await.expect("get");
    let mut r = SseReader::new(resp);
    assert!(r.next_anomaly(Duration::from_millis(300)).await.is_none());
    store.append(&[ev(16, AnomalyKind::BotShare)]).expect("append");
    assert_eq!(r.next_anomaly(Duration::from_secs(5)).await.expect("new").0, 17);
}
