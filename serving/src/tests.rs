//! `app()` driven with `oneshot` over the in-memory store: routing, fallbacks and hooks of
//! this crate in isolation (the full suite over real stores is the root crate's tests/http).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::{Value, json};
use sluice_connectors::LinkChange;
use tower::ServiceExt;

use crate::testing::MemoryLinkStore;
use crate::{ApiConfig, ApiState, app};

fn state(changes: Arc<Mutex<Vec<String>>>) -> ApiState {
    state_over(Arc::new(MemoryLinkStore::new()), changes)
}

fn state_over(store: Arc<dyn sluice_connectors::LinkStore>, changes: Arc<Mutex<Vec<String>>>) -> ApiState {
    let cfg = ApiConfig::new(url::Url::parse("https://s.example").expect("url"));
    let hook = move |c: &LinkChange| {
        changes.lock().push(match c {
            LinkChange::Upserted(l) => format!("upsert {} v{}", l.code, l.version),
            LinkChange::Deleted(code) => format!("delete {code}"),
        })
    };
    ApiState::new(store, cfg).with_hook(Arc::new(hook))
}

async fn send(state: &ApiState, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut b = Request::builder().method(method).uri(uri);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(body.map_or_else(Body::empty, |v| Body::from(v.to_string()))).expect("request");
    let resp = app(state.clone()).oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("json") })
}

#[tokio::test]
async fn crud_notifies_hooks_in_order() {
    let changes = Arc::new(Mutex::new(Vec::new()));
    let s = state(changes.clone());
    let (st, v) = send(&s, "POST", "/v1/links", Some(json!({"long_url": "https://e.example/", "custom_alias": "h"}))).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(v["short_url"], "https://s.example/h");
    let (st, _) = send(&s, "PATCH", "/v1/links/h", Some(json!({"enabled": false}))).await;
    assert_eq!(st, StatusCode::OK);
    // a refused request notifies nothing
    let (st, _) = send(&s, "PATCH", "/v1/links/h", Some(json!({"long_url": "javascript:x"}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = send(&s, "DELETE", "/v1/links/h", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(*changes.lock(), vec!["upsert h v1".to_string(), "upsert h v2".into(), "delete h".into()]);
}

/// A PATCH that changes nothing the link shows (empty, or values it already has) writes no
/// revision and notifies nothing (no cache invalidation, no change event); the store finds
/// so in its transaction (in memory and on SQLite alike).
#[tokio::test]
async fn a_patch_that_changes_nothing_notifies_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = sluice_connectors::SqliteLinkStore::open_dir(dir.path()).await.expect("open sqlite");
    let stores: [(&str, Arc<dyn sluice_connectors::LinkStore>); 2] = [("memory", Arc::new(MemoryLinkStore::new())), ("sqlite", Arc::new(sqlite))];
    for (name, store) in stores {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let s = state_over(store, changes.clone());
        let (st, created) = send(&s, "POST", "/v1/links", Some(json!({"long_url": "https://e.example/", "custom_alias": "n", "tags": ["a"]}))).await;
        assert_eq!(st, StatusCode::CREATED, "{name}");
        for body in [json!({}), json!({"enabled": true}), json!({"long_url": "https://e.example/", "tags": ["a"], "redirect_type": 302, "expires_at": null})] {
            let (st, v) = send(&s, "PATCH", "/v1/links/n", Some(body.clone())).await;
            assert_eq!((st, &v), (StatusCode::OK, &created), "{name}: {body}");
        }
        assert_eq!(*changes.lock(), vec!["upsert n v1".to_string()], "{name}");
        let (st, v) = send(&s, "PATCH", "/v1/links/n", Some(json!({"tags": ["b"]}))).await;
        assert_eq!((st, &v["tags"]), (StatusCode::OK, &json!(["b"])), "{name}");
        assert_eq!(*changes.lock(), vec!["upsert n v1".to_string(), "upsert n v2".into()], "{name}");
    }
}

#[tokio::test]
async fn fallbacks_use_the_error_shape() {
    let s = state(Arc::new(Mutex::new(Vec::new())));
    let (st, v) = send(&s, "GET", "/nowhere", None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (st, v) = send(&s, "PUT", "/v1/links", None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")));
    let (st, v) = send(&s, "GET", "/v1/openapi.json", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["paths"]["/v1/links/{code}"]["patch"].is_object());
}

/// Attack of session 53: the document declared `limit` with `minimum: 0` (from `usize`) on the
/// stats, summary, anomalies and webhook deliveries endpoints, which refuse 0 with
/// `invalid_limit`. Every `limit` parameter declares the range the handlers accept.
#[tokio::test]
async fn every_limit_parameter_declares_minimum_one_and_a_maximum() {
    let s = state(Arc::new(Mutex::new(Vec::new())));
    let (st, v) = send(&s, "GET", "/v1/openapi.json", None).await;
    assert_eq!(st, StatusCode::OK);
    let mut seen = Vec::new();
    for (path, ops) in v["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            for p in op["parameters"].as_array().into_iter().flatten().filter(|p| p["name"] == "limit") {
                let schema = &p["schema"];
                assert_eq!(schema["minimum"], 1, "{method} {path}: {schema}");
                assert!(schema["maximum"].as_u64().is_some_and(|m| m >= 1000), "{method} {path}: {schema}");
                seen.push(format!("{method} {path}"));
            }
        }
    }
    assert!(seen.len() >= 6, "{seen:?}");
}
