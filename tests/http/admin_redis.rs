//! Disable propagation across processes (feature `integration-tests`; Redis at
//! `SLUICE_REDIS_URL`, PostgreSQL at `SLUICE_POSTGRES_URL`): two complete stacks, as two
//! `sluice serve` processes build them, share one link store and one Redis (fresh key prefix),
//! each with its own L1 cache and Redis client. An admin disable through process A makes
//! process B's very next redirect a 404 within 100 ms, although B had the link cached; enable
//! restores it the same way; blocklisting propagates too.
#![cfg(feature = "integration-tests")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;
use sluice::serve::{StackExtras, build_stack_with};
use sluice_connectors::redis::{RedisConfig, RedisLinkCache, RedisUrl};
use sluice_redirect::ChannelClickSink;

use crate::admin::TOKEN;
use crate::backend_tests;
use crate::harness::{Backend, SECRET, TestApp, wait_until};

/// A request to `stack` from a remote peer with the admin token; (status, JSON body).
async fn call(stack: &sluice::serve::Stack, method: Method, path: &str, body: Option<serde_json::Value>) -> (StatusCode, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(axum::body::Body::empty, |b| axum::body::Body::from(b.to_string())))
        .expect("req");
    req.extensions_mut().insert(axum::extract::ConnectInfo("203.0.113.9:1".parse::<std::net::SocketAddr>().expect("addr")));
    let resp = stack.router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

/// Process B's view of `code` as a stack over the same store with its own L1 and Redis client.
fn second_process(a: &TestApp, redis: &RedisConfig) -> (sluice::serve::Stack, tokio::sync::mpsc::Receiver<sluice_schemas::ClickEvent>) {
    let (sink, rx) = ChannelClickSink::new(10_000);
    let l2 = RedisLinkCache::start(redis).expect("redis l2");
    let extras = StackExtras { link_cache_l2: Some(l2), ..StackExtras::default() };
    let stack = build_stack_with(&a.config, Arc::clone(&a.store), Arc::new(sink), SECRET, extras).expect("stack b");
    (stack, rx)
}

async fn status_on(stack: &sluice::serve::Stack, code: &str) -> StatusCode {
    use tower::ServiceExt;
    let req = axum::http::Request::get(format!("/{code}")).header("user-agent", "it").body(axum::body::Body::empty()).expect("req");
    stack.router.clone().oneshot(req).await.expect("infallible").status()
}

/// Time until process B answers `want` for `code` (polling every 1 ms, 30 s at most).
async fn until(stack: &sluice::serve::Stack, code: &str, want: StatusCode) -> Duration {
    let start = Instant::now();
    while status_on(stack, code).await != want {
        assert!(start.elapsed() < Duration::from_secs(30), "process B never answered {want} for {code}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

/// Every admin action through process A reaches process B's cached redirect through Redis.
/// The L1 and L2 entries live for an hour, so B can only change its answer within the 30 s
/// poll through an invalidation (no wall-clock bound: the delay is printed, benchmarks time it).
async fn admin_actions_reach_every_process(b: Backend) {
    let url = std::env::var("SLUICE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/".into());
    let prefix = format!("it:admin:{}:", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let hour = Duration::from_secs(3600);
    let redis = RedisConfig { url: Some(RedisUrl(url)), key_prefix: prefix, cache_ttl: hour, negative_ttl: hour, ..RedisConfig::default() };
    let a = TestApp::start_with(b, |c| {
        c.redirect.cache_ttl = hour;
        c.redirect.negative_ttl = hour;
        c.admin.token = Some(sluice::config::Secret(TOKEN.into()));
        c.redis = redis.clone();
    })
    .await;
    // Process A publishes its changes to Redis like `sluice serve` does.
    let (a_stack, _a_clicks) = second_process(&a, &redis);
    let (b_stack, _b_clicks) = second_process(&a, &redis);
    let (st, v) = call(&a_stack, Method::POST, "/v1/links", Some(json!({"long_url": "https://example.com/propagate"}))).await;
    assert_eq!(st, StatusCode::CREATED);
    let code = v["code"].as_str().expect("code").to_owned();
    let link = format!("/v1/links/{code}");
    // Both subscriptions are live once an update through A reaches B (B caches it first).
    assert_eq!(status_on(&b_stack, &code).await, StatusCode::FOUND);
    let warm = wait_until(Duration::from_secs(30), || async {
        call(&a_stack, Method::PATCH, &link, Some(json!({"enabled": false}))).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let seen = status_on(&b_stack, &code).await == StatusCode::NOT_FOUND;
        call(&a_stack, Method::PATCH, &link, Some(json!({"enabled": true}))).await;
        seen
    })
    .await;
    assert!(warm, "process B never saw process A's update through Redis");
    until(&b_stack, &code, StatusCode::FOUND).await;

    let mut worst = Duration::ZERO;
    for round in 0..5 {
        assert_eq!(status_on(&b_stack, &code).await, StatusCode::FOUND, "round {round}: cached in B");
        let (st, _) = call(&a_stack, Method::POST, &format!("/v1/admin/links/{code}/disable"), Some(json!({"reason": format!("round {round}")}))).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(status_on(&a_stack, &code).await, StatusCode::NOT_FOUND, "the process that acted: at once");
        worst = worst.max(until(&b_stack, &code, StatusCode::NOT_FOUND).await);
        let (st, _) = call(&a_stack, Method::POST, &format!("/v1/admin/links/{code}/enable"), None).await;
        assert_eq!(st, StatusCode::OK);
        worst = worst.max(until(&b_stack, &code, StatusCode::FOUND).await);
    }
    // Blocklisting through A stops B's cached redirect as well.
    let (st, v) = call(&a_stack, Method::POST, "/v1/admin/blocklist", Some(json!({"pattern": "example.com"}))).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(v["affected_links"][0]["code"], code.as_str());
    worst = worst.max(until(&b_stack, &code, StatusCode::NOT_FOUND).await);
    println!("admin action → other process: worst {worst:?} over 11 changes");
}

backend_tests!(admin_actions_reach_every_process);
