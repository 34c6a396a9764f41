//! Case C25 steps 1–3 (cases README): the per-client link-creation limit is exact under
//! concurrency, ignores an untrusted `X-Forwarded-For`, and leaves redirects alone; over a
//! real socket, against both stores.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{BROWSER_UA, Backend, TestApp};

/// The documented limit of this test's configuration: N per window. The window is an hour so
/// a burst on a loaded machine can never straddle two windows (no timing in the assertions).
const N: usize = 10;
const LIMIT: &str = "10/1h";
/// The window of [`LIMIT`] in seconds (the bound of every `Retry-After`).
const WINDOW_SECS: u64 = 3600;

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).pool_max_idle_per_host(64).build().expect("client")
}

async fn serve(app: &TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = app.stack.router.clone();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.expect("serve");
    });
    format!("http://{addr}")
}

/// Outcome of one burst: (status, Retry-After, error code) per request.
async fn burst(http: &reqwest::Client, base: &str, n: usize, forwarded: bool) -> Vec<(u16, Option<u64>, Option<String>)> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (http, base) = (http.clone(), base.to_owned());
            tokio::spawn(async move {
                let mut req = http.post(format!("{base}/v1/links")).json(&json!({"long_url": format!("https://example.com/c25/{i}")}));
                if forwarded {
                    req = req.header("x-forwarded-for", format!("198.51.{}.{}", i % 250, (i * 7) % 250 + 1));
                }
                let r = req.send().await.expect("post");
                let status = r.status().as_u16();
                let retry = r.headers().get("retry-after").map(|v| v.to_str().expect("ascii").parse::<u64>().expect("seconds"));
                if status == 429 {
                    assert_eq!(r.headers()["x-ratelimit-limit"], "10");
                    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
                }
                let body: Value = r.json().await.expect("json body");
                let code = body.get("error").map(|e| e["code"].as_str().expect("code").to_owned());
                (status, retry, code)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

async fn count_links(http: &reqwest::Client, base: &str) -> usize {
    let v: Value = http.get(format!("{base}/v1/links?limit=1000")).send().await.expect("list").json().await.expect("json");
    v["items"].as_array().expect("items").len()
}

fn assert_exactly_n(results: &[(u16, Option<u64>, Option<String>)]) {
    let created = results.iter().filter(|r| r.0 == 201).count();
    let limited: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(created, N, "exactly N created: {results:?}");
    assert_eq!(limited.len(), 20, "the rest limited: {results:?}");
    for (_, retry, code) in limited {
        assert!(retry.is_some_and(|s| (1..=WINDOW_SECS).contains(&s)), "Retry-After within the window: {retry:?}");
        assert_eq!(code.as_deref(), Some("rate_limited"));
    }
}

async fn c25_creation_limit_is_exact_and_spares_redirects(b: Backend) {
    let app = TestApp::start_with(b, |c| c.api.create_rate_limit = LIMIT.into()).await;
    let base = serve(&app).await;
    let http = client();
    // A link to redirect to while limited, created by another client (the in-process peer),
    // so the socket client starts step 1 with its full quota.
    let existing = app.create_url("https://example.com/existing").await;

    // Step 1: N + 20 concurrent creates from one client, inside one (hour-long) window.
    let results = burst(&http, &base, N + 20, false).await;
    assert_exactly_n(&results);
    assert!(results.iter().all(|r| r.0 < 500), "no 5xx");
    assert_eq!(count_links(&http, &base).await, 1 + N, "no more than N links created");

    // Step 3: while limited, redirects still work.
    let r = http.get(format!("{base}/{existing}")).header("user-agent", BROWSER_UA).send().await.expect("get");
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://example.com/existing");
    let r = http.post(format!("{base}/v1/links")).json(&json!({"long_url": "https://example.com/still"})).send().await.expect("post");
    assert_eq!(r.status(), 429, "still limited");

    // Step 2: the same burst with a random X-Forwarded-For per request (no trusted proxy) is
    // the same exhausted client: all limited. Were the header believed, each of the distinct
    // addresses would get a fresh quota and all would be created.
    let results = burst(&http, &base, N + 20, true).await;
    assert_eq!(results.iter().filter(|r| r.0 == 429).count(), N + 20, "all limited: {results:?}");
    assert!(results.iter().all(|r| r.2.as_deref() == Some("rate_limited")), "{results:?}");
    assert_eq!(count_links(&http, &base).await, 1 + N);
}

async fn trusted_proxy_clients_have_their_own_quota(b: Backend) {
    let app = TestApp::start_with(b, |c| {
        c.api.create_rate_limit = "2/1h".into();
        c.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let base = serve(&app).await;
    let http = client();
    let post = |xff: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .post(format!("{base}/v1/links"))
                .header("x-forwarded-for", xff)
                .json(&json!({"long_url": "https://example.com/p"}))
                .send()
                .await
                .expect("post");
            (r.status().as_u16(), r.headers().get("x-ratelimit-remaining").map(|v| v.to_str().expect("ascii").to_owned()))
        }
    };
    assert_eq!(post("192.0.2.1").await, (201, Some("1".into())));
    assert_eq!(post("192.0.2.1").await, (201, Some("0".into())));
    assert_eq!(post("192.0.2.1").await.0, 429);
    assert_eq!(post("192.0.2.2").await, (201, Some("1".into())), "another client behind the proxy");
    // Off by default: no limit headers.
    let plain = TestApp::start(b).await;
    let r = plain.post_json("/v1/links", &json!({"long_url": "https://example.com/q"})).await;
    assert_eq!(r.status.as_u16(), 201);
    assert!(r.header("x-ratelimit-limit").is_none());
}

/// Only links created count against the limit: 4xx answers and `Idempotency-Key` replays
/// give their slot back, and a replay is answered even over the limit (a client retrying a
/// create whose answer it lost gets its link), while a new key over the limit is 429.
async fn only_created_links_count_and_replays_pass_the_limit(b: Backend) {
    let app = TestApp::start_with(b, |c| c.api.create_rate_limit = "2/1h".into()).await;
    let base = serve(&app).await;
    let http = client();
    let post = |body: Value, key: Option<&'static str>| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let mut req = http.post(format!("{base}/v1/links")).json(&body);
            if let Some(k) = key {
                req = req.header("idempotency-key", k);
            }
            let r = req.send().await.expect("post");
            let header = |n: &str| r.headers().get(n).map(|v| v.to_str().expect("ascii").to_owned());
            let (remaining, replayed) = (header("x-ratelimit-remaining"), header("idempotent-replayed"));
            let status = r.status().as_u16();
            let v: Value = r.json().await.expect("json");
            (status, remaining, replayed, v)
        }
    };
    let valid = |path: &str| json!({"long_url": format!("https://example.com/{path}")});
    for _ in 0..3 {
        let (status, remaining, _, v) = post(json!({"long_url": "ftp://example.com/x"}), None).await;
        assert_eq!((status, remaining.as_deref(), v["error"]["code"].as_str()), (400, Some("2"), Some("unsupported_scheme")), "{v}");
    }
    let (status, remaining, _, first) = post(valid("k1"), Some("k1")).await;
    assert_eq!((status, remaining.as_deref()), (201, Some("1")), "{first}");
    let (status, remaining, replayed, again) = post(valid("k1"), Some("k1")).await;
    assert_eq!((status, remaining.as_deref(), replayed.as_deref()), (201, Some("1"), Some("true")), "a replay is free: {again}");
    assert_eq!(again["code"], first["code"]);
    let (status, remaining, _, _) = post(valid("plain"), None).await;
    assert_eq!((status, remaining.as_deref()), (201, Some("0")));
    // Over the limit now.
    let (status, remaining, replayed, late) = post(valid("k1"), Some("k1")).await;
    assert_eq!((status, remaining.as_deref(), replayed.as_deref()), (201, Some("0"), Some("true")), "replayed over the limit: {late}");
    assert_eq!(late["code"], first["code"]);
    let (status, _, _, v) = post(valid("k2"), Some("k2")).await;
    assert_eq!((status, v["error"]["code"].as_str()), (429, Some("rate_limited")), "{v}");
    let (status, _, _, v) = post(valid("k3"), None).await;
    assert_eq!((status, v["error"]["code"].as_str()), (429, Some("rate_limited")), "{v}");
    assert_eq!(count_links(&http, &base).await, 2, "two links created");
}

backend_tests!(
    c25_creation_limit_is_exact_and_spares_redirects,
    trusted_proxy_clients_have_their_own_quota,
    only_created_links_count_and_replays_pass_the_limit
);
