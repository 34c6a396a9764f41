//! A complete in-process Sluice ([`System`]: SQLite store, click log and writer, the real
//! dataflow, the HTTP stack) on `127.0.0.1:0` in a temporary directory, and a client for it.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice::config::{Config, DEFAULT_TOML};
use sluice::job::system::System;
use url::Url;

/// A current desktop browser (cases README: BROWSER_UA).
pub const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

/// Milliseconds of an RFC 3339 instant.
pub fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).expect("rfc3339").timestamp_millis()
}

/// RFC 3339 UTC of `ms`, `+` encoded for a query string.
pub fn q(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).expect("instant").to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Wall clock, ms UTC.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The test configuration: defaults, the data dir, 127.0.0.1 trusted as a proxy.
pub fn config(dir: &Path) -> Config {
    let mut cfg: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
    cfg.server.data_dir = dir.to_path_buf();
    cfg.server.trusted_proxies = vec!["127.0.0.1".into()];
    cfg
}

/// A running in-process server.
pub struct Server {
    pub system: System,
    pub url: Url,
    pub http: reqwest::Client,
}

impl Server {
    /// Starts a server on `dir` with the test configuration changed by `tweak`.
    pub async fn start_in(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut cfg = config(dir);
        cfg.server.listen = listener.local_addr().expect("addr");
        tweak(&mut cfg);
        cfg.validate().expect("valid test config");
        let system = System::start(cfg, listener).await.expect("system starts");
        // Every request but the health routes is 503 `starting` until the start-up work is done.
        tokio::time::timeout(Duration::from_secs(60), system.start_gate().wait_open()).await.expect("the start-up work is done within 60 s");
        let url = system.url();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(60)).build().expect("client");
        Server { system, url, http }
    }

    pub fn path(&self, p: &str) -> String {
        format!("{}{}", self.url.as_str(), p.trim_start_matches('/'))
    }

    /// Creates a link with `alias` to `https://example.com/<alias>`.
    pub async fn link(&self, alias: &str) -> String {
        let r = self
            .http
            .post(self.path("/v1/links"))
            .json(&json!({"long_url": format!("https://example.com/{alias}"), "custom_alias": alias}))
            .send()
            .await
            .expect("post link");
        assert_eq!(r.status(), StatusCode::CREATED, "create {alias}: {}", r.text().await.unwrap_or_default());
        alias.to_string()
    }

    /// Posts events to `POST /v1/events` (all must be accepted).
    pub async fn events(&self, events: &[Value], backfill: bool) {
        let url = if backfill { self.path("/v1/events?backfill=true") } else { self.path("/v1/events") };
        let r = self.http.post(url).json(&events).send().await.expect("post events");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["accepted"].as_u64(), Some(events.len() as u64), "{body}");
    }

    /// Posts events like [`Server::events`], but lets the intake refuse some as `too_late`
    /// (and nothing else); returns the refused indices.
    pub async fn events_allowing_too_late(&self, events: &[Value], backfill: bool) -> Vec<usize> {
        let url = if backfill { self.path("/v1/events?backfill=true") } else { self.path("/v1/events") };
        let r = self.http.post(url).json(&events).send().await.expect("post events");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        let rejected = if status == StatusCode::OK { &body["rejected"] } else { &body["error"]["details"]["rejected"] };
        let rejected: Vec<usize> = rejected
            .as_array()
            .unwrap_or_else(|| panic!("{status}: {body}"))
            .iter()
            .map(|x| {
                assert_eq!(x["reason"], "too_late", "{body}");
                usize::try_from(x["index"].as_u64().expect("index")).expect("index")
            })
            .collect();
        assert_eq!(body["accepted"].as_u64().or(body["error"]["details"]["accepted"].as_u64()), Some((events.len() - rejected.len()) as u64), "{body}");
        rejected
    }

    /// `GET /{code}` with a user agent and optional headers; returns the status.
    pub async fn click(&self, method: reqwest::Method, code: &str, ua: &str, headers: &[(&str, &str)]) -> StatusCode {
        let mut req = self.http.request(method, self.path(code)).header("user-agent", ua);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("redirect request").status()
    }

    /// `n` browser clicks (`GET /{code}`, each asserted 302), then a 5 ms pause so the next
    /// link change is stamped after every click so far (`updated_at` has µs precision, click
    /// times ms).
    pub async fn click_n(&self, code: &str, n: usize) {
        for _ in 0..n {
            assert_eq!(self.click(reqwest::Method::GET, code, BROWSER_UA, &[]).await, StatusCode::FOUND);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    /// `GET /v1/stats/summary{query}` (asserted 200) as (totals.clicks, top_links as (code,
    /// clicks)).
    pub async fn summary_top(&self, query: &str) -> (u64, Vec<(String, u64)>) {
        let (status, _, body) = self.get(&format!("/v1/stats/summary{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let top = body["top_links"]
            .as_array()
            .expect("top_links")
            .iter()
            .map(|l: &Value| (l["code"].as_str().expect("code").to_string(), l["clicks"].as_u64().expect("clicks")))
            .collect();
        (body["totals"]["clicks"].as_u64().expect("clicks"), top)
    }

    /// `GET` of an API path: status, headers, JSON body.
    pub async fn get(&self, path_and_query: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let r = self.http.get(self.path(path_and_query)).send().await.expect("get");
        let (status, headers) = (r.status(), r.headers().clone());
        let body: Value = r.json().await.expect("json body");
        (status, headers, body)
    }

    /// `GET /v1/links/{code}/stats?{query}`, asserting 200.
    pub async fn stats(&self, code: &str, query: &str) -> Value {
        let (s, _, body) = self.get(&format!("/v1/links/{code}/stats?{query}")).await;
        assert_eq!(s, StatusCode::OK, "{code}?{query}: {body}");
        body
    }

    /// Waits until everything clicked or posted so far is counted.
    pub async fn sync(&self) {
        self.system.sync(Duration::from_secs(60)).await.expect("dataflow catches up");
    }

    pub async fn stop(self) {
        self.system.shutdown().await.expect("clean shutdown");
    }
}

/// `rows` of a stats answer as (bucket label, clicks, uniques) for the bucket key `key`.
pub fn rows(body: &Value, key: &str) -> Vec<(String, u64, u64)> {
    body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r[key].as_str().expect("bucket label").to_string(), r["clicks"].as_u64().expect("clicks"), r["uniques"].as_u64().expect("uniques")))
        .collect()
}

/// `totals.clicks`.
pub fn clicks(body: &Value) -> u64 {
    body["totals"]["clicks"].as_u64().expect("totals.clicks")
}

/// `totals.uniques`.
pub fn uniques(body: &Value) -> u64 {
    body["totals"]["uniques"].as_u64().expect("totals.uniques")
}

/// An explicit event for `POST /v1/events`.
pub fn event(id: &str, code: &str, ts: i64, ip: &str, ua: &str, referrer: Option<&str>) -> Value {
    json!({"event_id": id, "code": code, "ts": ts, "ip": ip, "user_agent": ua, "referrer": referrer})
}
