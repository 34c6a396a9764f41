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
    let cfg = ApiConfig::new(url::Url::parse("https://s.example").expect("url"));
    let hook = move |c: &LinkChange| {
        changes.lock().push(match c {
            LinkChange::Upserted(l) => format!("upsert {} v{}", l.code, l.version),
            LinkChange::Deleted(code) => format!("delete {code}"),
        })
    };
    ApiState::new(Arc::new(MemoryLinkStore::new()), cfg).with_hook(Arc::new(hook))
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
