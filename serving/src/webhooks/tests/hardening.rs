//! QA findings of session 54 (black-box tester): the webhook cap under concurrent creates,
//! the body of a retried delivery, URLs without a written authority, deliveries cursors.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use serde_json::{Value, json};
use sluice_connectors::anomaly_store::actions::AnomalyAction;
use sluice_schemas::{AnomalyKind, Severity};

use super::{SECRET, T0, api, create, fast_config, wait_for};
use crate::anomalies::tests::{anomaly, serve};
use crate::webhooks::{Dispatcher, MAX_WEBHOOKS, WebhookConfig};

/// 150 concurrent `POST /v1/webhooks` (the tester's `xargs -P 20` stored 108): exactly
/// [`MAX_WEBHOOKS`] are created, every other one is 409 `too_many_webhooks`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_stop_at_the_cap() {
    let (_dir, store, base, _) = api(false, None).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..150 {
        let base = base.clone();
        set.spawn(async move {
            let resp = create(&base, json!({"url": format!("http://8.8.8.8/hook{i}"), "secret": SECRET})).await;
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("json"))
        });
    }
    let (mut created, mut refused) = (0, 0);
    while let Some(r) = set.join_next().await {
        match r.expect("task") {
            (201, _) => created += 1,
            (409, body) => {
                refused += 1;
                assert_eq!(
                    body,
                    json!({"error": {"code": "too_many_webhooks", "message": "at most 100 webhooks can exist; delete one first", "details": {"max": 100}}})
                );
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((created, refused), (MAX_WEBHOOKS, 50));
    assert_eq!(store.webhooks().expect("list").len(), MAX_WEBHOOKS);
    let list: Value = reqwest::get(format!("{base}/v1/webhooks")).await.expect("get").json().await.expect("json");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(MAX_WEBHOOKS));
}

/// One request as the receiver got it: raw body and `Sluice-Signature`.
type Raw = (Bytes, String, String);

/// A receiver answering 500 to the first request and 200 after, keeping each request's raw
/// body, signature and delivery id.
async fn raw_receiver() -> (String, Arc<Mutex<Vec<Raw>>>) {
    let seen: Arc<Mutex<Vec<Raw>>> = Arc::default();
    let s = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let s = Arc::clone(&s);
            async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let mut g = s.lock();
                g.push((body, h("sluice-signature"), h("sluice-delivery-id")));
                if g.len() == 1 { axum::http::StatusCode::INTERNAL_SERVER_ERROR } else { axum::http::StatusCode::OK }
            }
        }),
    );
    (serve(app).await, seen)
}

/// A retried delivery (here after a restart of the dispatcher) sends the bytes of its first
/// attempt, although the anomaly got an auto-action in between (the tester's retry carried
/// it in `actions`, under the same `Sluice-Delivery-Id`): the body is fixed when the
/// delivery is created. The signature's `v1` is over those same bytes (only its timestamp
/// `t` is the attempt's own).
#[tokio::test]
async fn a_retry_sends_the_first_attempts_body() {
    let (recv_base, seen) = raw_receiver().await;
    let (_dir, store, base, _) = api(true, None).await;
    let resp = create(&base, json!({"url": format!("{recv_base}/hook"), "secret": SECRET})).await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned();
    // Retries far apart, so the only second attempt is the one after the restart.
    let config = WebhookConfig { backoff_base: Duration::from_secs(30), backoff_max: Duration::from_secs(30), ..fast_config(true) };
    let dispatcher = Dispatcher::start(Arc::clone(&store), config.clone()).expect("dispatcher");
    let a = anomaly(AnomalyKind::ClickBurst, "link:hot", T0, 0, Severity::Critical);
    store.append(std::slice::from_ref(&a)).expect("append");
    wait_for("the first attempt to be recorded", Duration::from_secs(10), || {
        store.deliveries(&id, None, 10).is_ok_and(|(d, _)| d.first().is_some_and(|d| d.attempts.len() == 1))
    })
    .await;
    dispatcher.shutdown().await;
    let action =
        AnomalyAction { action: "disable".into(), outcome: "applied".into(), code: "hot".into(), actor: "auto-action".into(), at_ms: T0 + 1, event_id: 1 };
    assert!(store.record_action(a.anomaly_id.as_bytes(), &action).expect("record"));
    // Due now, after a restart.
    let mut d = store.deliveries(&id, None, 10).expect("read").0.remove(0);
    d.next_attempt_at_ms = Some(0);
    store.update_delivery(&d).expect("update");
    let _dispatcher = Dispatcher::start(Arc::clone(&store), config).expect("dispatcher");
    wait_for("the retry", Duration::from_secs(10), || seen.lock().len() >= 2).await;
    let got = seen.lock().clone();
    assert_eq!(got.len(), 2);
    let (first, second) = (&got[0], &got[1]);
    assert_eq!((first.2.as_str(), second.2.as_str()), ("1", "1"), "one delivery id");
    assert_eq!(serde_json::from_slice::<Value>(&first.0).expect("json")["actions"], json!([]));
    assert_eq!(second.0, first.0, "every attempt of one delivery sends the same bytes");
    // v1 of each attempt is the HMAC of "<t>.<the first attempt's bytes>".
    for (_, sig, _) in &got {
        let t: i64 = sig.strip_prefix("t=").and_then(|r| r.split(',').next()).and_then(|t| t.parse().ok()).expect("t");
        assert_eq!(sig, &crate::webhooks::signature::header_value(SECRET.as_bytes(), t, &first.0));
    }
}

/// `http:///x` (the URL standard reads host `x`) was stored as `http://x/` with
/// `allow-private` (and looked up as host `x` without): a URL whose authority is not written
/// after `//` is 400 `invalid_webhook_url` in both modes, and nothing is stored.
#[tokio::test]
async fn urls_without_a_written_authority_are_refused_in_both_modes() {
    for allow_private in [false, true] {
        let (_dir, store, base, _) = api(allow_private, None).await;
        for url in
            ["http:///x", "https:///x/y", "http:////8.8.8.8/x", "http:/8.8.8.8/x", "http:8.8.8.8/x", "http:\\\\8.8.8.8/x", "http:/\\8.8.8.8/x", " http:///x"]
        {
            let resp = create(&base, json!({"url": url, "secret": SECRET})).await;
            assert_eq!(resp.status(), 400, "{url:?} (allow_private {allow_private})");
            let want = json!({"error": {
                "code": "invalid_webhook_url",
                "message": format!("webhook url \"{url}\" is not valid: the host must be written right after \"//\" (the authority is empty or missing)"),
                "details": {"url": url},
            }});
            assert_eq!(resp.json::<Value>().await.expect("json"), want, "{url:?} (allow_private {allow_private})");
        }
        assert!(store.webhooks().expect("webhooks").is_empty(), "nothing stored");
        let resp = create(&base, json!({"url": "http://8.8.8.8/x", "secret": SECRET})).await;
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.json::<Value>().await.expect("json")["url"], "http://8.8.8.8/x");
    }
}

/// Deliveries cursors (a bare `d<N>` before) were accepted edited, and on another webhook.
/// Now an edited cursor, another webhook's and the bare form are 400 `invalid_cursor`; an
/// untouched cursor pages through every delivery once, newest first.
#[tokio::test]
async fn deliveries_cursors_are_tamper_evident_and_bound_to_their_webhook() {
    let (_dir, store, base, _) = api(false, None).await;
    let mut ids = Vec::new();
    for i in 0..2 {
        let resp = create(&base, json!({"url": format!("http://8.8.8.8/h{i}"), "secret": SECRET})).await;
        ids.push(resp.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned());
    }
    let (a, b) = (&ids[0], &ids[1]);
    store.append(&[anomaly(AnomalyKind::ClickBurst, "link:x", T0, 0, Severity::Info)]).expect("append");
    let events: Vec<(u64, String)> = (0..3).map(|_| (1, "{}".to_owned())).collect();
    store.enqueue_deliveries(a, &events, 1, T0).expect("enqueue").expect("a"); // ids 1, 2, 3
    store.enqueue_deliveries(b, &events[..2], 1, T0).expect("enqueue").expect("b"); // ids 4, 5
    let get = |path: String| {
        let url = format!("{base}{path}");
        async move {
            let resp = reqwest::get(url).await.expect("get");
            (resp.status().as_u16(), resp.json::<Value>().await.expect("json"))
        }
    };
    // Untouched cursors page through a's deliveries: 3, 2, 1.
    let (mut seen, mut cursor, mut first_cursor) = (Vec::new(), None::<String>, None);
    loop {
        let q = cursor.as_ref().map_or(String::new(), |c| format!("&cursor={c}"));
        let (status, page) = get(format!("/v1/webhooks/{a}/deliveries?limit=1{q}")).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["items"].as_array().expect("items").iter().map(|d| d["delivery_id"].as_u64().expect("id")));
        match page["next_cursor"].as_str() {
            Some(c) => {
                first_cursor.get_or_insert_with(|| c.to_owned());
                cursor = Some(c.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(seen, vec![3, 2, 1]);
    let c = first_cursor.expect("a cursor");
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(&c).expect("b64")).expect("utf8");
    let fp = text.strip_prefix("d2:3:").expect("format").to_owned();
    let refused = |cursor: &str, why: &str| {
        json!({"error": {
            "code": "invalid_cursor",
            "message": format!("cursor is not valid here: {why}; use the next_cursor of a previous page of this webhook's deliveries"),
            "details": {"cursor": cursor},
        }})
    };
    let other = "it was made for another webhook's deliveries (or altered)";
    let edited = URL_SAFE_NO_PAD.encode(format!("d2:2:{fp}"));
    let upper = a.to_ascii_uppercase();
    for (path, cursor, why) in [
        (format!("/v1/webhooks/{a}/deliveries"), edited.clone(), other),
        (format!("/v1/webhooks/{b}/deliveries"), c.clone(), other),
        (format!("/v1/webhooks/{a}/deliveries"), "d2".to_owned(), "not a cursor of this endpoint"),
        (format!("/v1/webhooks/{a}/deliveries"), URL_SAFE_NO_PAD.encode(format!("d2:3:{fp}x")), "not a cursor of this endpoint"),
    ] {
        assert_eq!(get(format!("{path}?cursor={cursor}")).await, (400, refused(&cursor, why)), "{path} {cursor}");
    }
    // The webhook's id in another spelling is the same webhook: its cursor holds.
    let (status, page) = get(format!("/v1/webhooks/{upper}/deliveries?limit=1&cursor={c}")).await;
    assert_eq!((status, page["items"][0]["delivery_id"].as_u64()), (200, Some(2)), "{page}");
}
