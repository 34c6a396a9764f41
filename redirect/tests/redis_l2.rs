//! The redirect path over a real Redis L2 (feature `integration-tests`, `SLUICE_REDIS_URL`,
//! `infra/services/redis.sh start`): two redirect "processes" (two `RedirectState`s with
//! their own L1 caches and Redis clients) share one link store and one Redis.
//!
//! * read-after-write across processes: after an update through process A (store write, A's
//!   L1 invalidation, L2 publish), process B redirects to the new target within 100 ms;
//! * a dead Redis: every redirect still answers 302 (never 5xx) and costs no more than
//!   without Redis once the breaker is open.
#![cfg(feature = "integration-tests")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use sluice_connectors::redis::{RedisConfig, RedisLinkCache, RedisUrl};
use sluice_connectors::{Invalidation, LinkCacheL2, LinkChange, LinkPatch, LinkStore, open_store};
use sluice_redirect::{ChannelClickSink, RedirectConfig, RedirectState};
use sluice_schemas::{Link, RedirectType, VisitorSalt};
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

fn link(code: &str, url: &str) -> Link {
    let now = Utc::now();
    Link {
        code: code.into(),
        long_url: url.into(),
        domain: None,
        expires_at: None,
        enabled: true,
        tags: vec![],
        redirect_type: RedirectType::Found,
        org: None,
        created_at: now,
        updated_at: now,
        version: 1,
    }
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
        let updated = store.update("promo", &patch, None, Utc::now()).await.expect("update");
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
    let deleted = store.delete("promo", Utc::now()).await.expect("delete");
    a.state.invalidate("promo");
    a.l2.publish(&LinkChange::Deleted(deleted.code));
    let t0 = Instant::now();
    while get(&b.router, "promo").await.0 != StatusCode::NOT_FOUND {
        assert!(t0.elapsed() < Duration::from_millis(100), "deletion not seen by B within 100 ms");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn p99_of_misses(router: &Router, state: &RedirectState, n: usize) -> (Duration, Duration) {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        // Every request is an L1 miss that asks L2 (a remote-style invalidation does not
        // bypass L2 the way a local write does): the worst case for the L2 path.
        state.apply_invalidation(&Invalidation::All);
        let t = Instant::now();
        let (status, _) = get(router, "fast").await;
        lat.push(t.elapsed());
        assert_eq!(status, StatusCode::FOUND, "never a 5xx");
    }
    lat.sort();
    (lat[n / 2], lat[n * 99 / 100])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_adds_no_latency_and_no_errors() {
    let (_dir, store) = store().await;
    store.insert(&link("fast", "https://e.example/fast")).await.expect("insert");
    // Nothing listens on this port: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let dead = config(&format!("redis://127.0.0.1:{port}/"));
    let (with_state, with_router, l2, _rx1) = process(&store, Some(&dead));
    let (plain_state, plain_router, _, _rx2) = process(&store, None);
    // Warm both (the first refused connections open the breaker).
    p99_of_misses(&with_router, &with_state, 50).await;
    p99_of_misses(&plain_router, &plain_state, 50).await;
    assert!(!l2.expect("l2").available(), "breaker open");
    let (p50_dead, p99_dead) = p99_of_misses(&with_router, &with_state, 2_000).await;
    let (p50_plain, p99_plain) = p99_of_misses(&plain_router, &plain_state, 2_000).await;
    println!("L1-miss redirects: dead redis p50 {p50_dead:?} p99 {p99_dead:?}; no redis p50 {p50_plain:?} p99 {p99_plain:?}");
    assert!(p99_dead < p99_plain * 2 + Duration::from_millis(2), "dead redis p99 {p99_dead:?} vs {p99_plain:?} without");
}
