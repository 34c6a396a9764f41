//! The redirect path over a real Redis L2 (feature `integration-tests`, `SLUICE_REDIS_URL`,
//! `infra/services/redis.sh start`): two redirect "processes" (two `RedirectState`s with
//! their own L1 caches and Redis clients) share one link store and one Redis.
//!
//! * read-after-write across processes: after an update through process A (store write, A's
//!   L1 invalidation, L2 publish), process B redirects to the new target within 100 ms;
//! * a dead Redis: every redirect still answers 302 (never 5xx) and, once the breaker is
//!   open, none waits on Redis's deadline.
#![cfg(feature = "integration-tests")]

mod support;
use support::link;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use sluice_connectors::redis::{RedisConfig, RedisLinkCache, RedisUrl};
use sluice_connectors::{Invalidation, LinkCacheL2, LinkChange, LinkPatch, LinkStore, open_store};
use sluice_redirect::{ChannelClickSink, RedirectConfig, RedirectState};
use sluice_schemas::VisitorSalt;
use tower::ServiceExt;

fn redis_url() -> String {
    std::env::var("SLUICE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/".into())
}

fn config(url: &str) -> RedisConfig {
    let id = uuid::Uuid::new_v4().simple().to_string();
    RedisConfig { url: Some(RedisUrl(url.into())), key_prefix: format!("it:redirect:{}:", &id[..10]), ..RedisConfig::default() }
}

type Clicks = tokio::sync::mpsc::Receiver<sluice_schemas::ClickEvent>;

struct Process {
    state: RedirectState,
    router: Router,
    l2: Arc<RedisLinkCache>,
    _clicks: Clicks,
}

fn process(store: &Arc<dyn LinkStore>, redis: Option<&RedisConfig>) -> (RedirectState, Router, Option<Arc<RedisLinkCache>>, Clicks) {
    let (sink, rx) = ChannelClickSink::new(100_000);
    let l2 = redis.map(|c| RedisLinkCache::start(c).expect("l2"));
    let state = RedirectState::with_l2(
        Arc::clone(store),
        RedirectConfig::default(),
        VisitorSalt::new([7; 32], Some(86_400_000)),
        Arc::new(sink),
        l2.clone().map(|l| l as Arc<dyn LinkCacheL2>),
    );
    if let Some(l) = &l2 {
        let s = state.clone();
        l.subscribe(Arc::new(move |inv| s.apply_invalidation(&inv))).expect("subscribe");
    }
    let router = sluice_redirect::routes(state.clone());
    (state, router, l2, rx)
}

fn proc_with(store: &Arc<dyn LinkStore>, redis: &RedisConfig) -> Process {
    let (state, router, l2, rx) = process(store, Some(redis));
    Process { state, router, l2: l2.expect("l2"), _clicks: rx }
}

async fn get(router: &Router, code: &str) -> (StatusCode, Option<String>) {
    let req = Request::get(format!("/{code}")).header(header::USER_AGENT, "it").body(Body::empty()).expect("request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    (resp.status(), resp.headers().get(header::LOCATION).map(|v| v.to_str().expect("ascii").to_string()))
}

async fn store() -> (tempfile::TempDir, Arc<dyn LinkStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open_store(&dir.path().display().to_string()).await.expect("store");
    (dir, s)
}

async fn subscribers(url: &str, channel: &str) -> i64 {
    let mut c = redis::Client::open(url).expect("url").get_multiplexed_async_connection().await.expect("connect");
    let v: Vec<(String, i64)> = redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut c).await.expect("numsub");
    v.first().map_or(0, |x| x.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_through_one_process_redirects_from_the_other_within_100ms() {
    let url = redis_url();
    let cfg = config(&url);
    let (_dir, store) = store().await;
    let (a, b) = (proc_with(&store, &cfg), proc_with(&store, &cfg));
    let channel = a.l2.keys().invalidation_channel();
    let deadline = Instant::now() + Duration::from_secs(5);
    while subscribers(&url, &channel).await < 2 {
        assert!(Instant::now() < deadline, "subscribers never joined");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.insert(&link("promo", "https://e.example/v0")).await.expect("insert");
    let mut worst = Duration::ZERO;
    for v in 1..=20 {
        // Both processes have the current target in L1 (and Redis has it too).
        assert_eq!(get(&a.router, "promo").await.1.as_deref(), Some(format!("https://e.example/v{}", v - 1).as_str()));
        assert_eq!(get(&b.router, "promo").await.1.as_deref(), Some(format!("https://e.example/v{}", v - 1).as_str()));
        // The API of process A: store write, then its link-change hook.
        let patch = LinkPatch { long_url: Some(format!("https://e.example/v{v}")), ..LinkPatch::default() };
        let updated = store.update("promo", &patch, None, Utc::now()).await.expect("update").link;
        let t0 = Instant::now();
        a.state.invalidate("promo");
        a.l2.publish(&LinkChange::Upserted(updated));
        assert_eq!(get(&a.router, "promo").await.1, Some(format!("https://e.example/v{v}")), "A reads its own write at once");
        let want = Some(format!("https://e.example/v{v}"));
        loop {
            if get(&b.router, "promo").await.1 == want {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(2), "B never saw version {v}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        worst = worst.max(t0.elapsed());
    }
    println!("cross-process read-after-write: worst {worst:?} over 20 updates");
    assert!(worst < Duration::from_millis(100), "worst {worst:?}");

    // A deletion: B answers 404 once the invalidation arrived.
    let deleted = store.delete("promo", None, Utc::now()).await.expect("delete");
    a.state.invalidate("promo");
    a.l2.publish(&LinkChange::Deleted(deleted.code));
    let t0 = Instant::now();
    while get(&b.router, "promo").await.0 != StatusCode::NOT_FOUND {
        assert!(t0.elapsed() < Duration::from_millis(100), "deletion not seen by B within 100 ms");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `n` L1-miss redirects of "fast" (each asks L2 first: a remote-style invalidation does not
/// bypass L2 the way a local write does), returning the slowest one.
async fn slowest_miss(router: &Router, state: &RedirectState, n: usize) -> Duration {
    let mut worst = Duration::ZERO;
    for _ in 0..n {
        state.apply_invalidation(&Invalidation::All);
        let t = Instant::now();
        let (status, _) = get(router, "fast").await;
        worst = worst.max(t.elapsed());
        assert_eq!(status, StatusCode::FOUND, "never a 5xx");
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_adds_no_latency_and_no_errors() {
    let (_dir, store) = store().await;
    store.insert(&link("fast", "https://e.example/fast")).await.expect("insert");
    // A blackhole: the kernel completes the TCP handshake (listen backlog) but nothing ever
    // reads or answers, so every Redis command that is actually sent waits for the full
    // `op_timeout` (3 s). Only the circuit breaker can keep redirects fast.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = blackhole.local_addr().expect("addr").port();
    let deadline = Duration::from_secs(3);
    let dead = RedisConfig {
        op_timeout: deadline,
        connect_timeout: deadline,
        breaker_failures: 1,
        breaker_open_for: Duration::from_secs(3600),
        ..config(&format!("redis://127.0.0.1:{port}/"))
    };
    let (state, router, l2, _rx) = process(&store, Some(&dead));
    // The first miss pays the deadline once and opens the breaker; it still redirects.
    slowest_miss(&router, &state, 1).await;
    assert!(!l2.expect("l2").available(), "breaker open after the first failure");
    // With the breaker open no command reaches the blackhole: 500 misses in a row all
    // redirect, and none of them waited for the Redis deadline (a single one that did
    // would take >= 3 s).
    let worst = slowest_miss(&router, &state, 500).await;
    println!("L1-miss redirects with a blackholed Redis and an open breaker: slowest {worst:?}");
    assert!(worst < deadline / 2, "a redirect waited on the dead Redis: {worst:?}");
    drop(blackhole);
}
