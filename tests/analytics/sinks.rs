//! The Redis and ClickHouse sinks through the real binary (feature `integration-tests`;
//! Redis at `SLUICE_REDIS_URL`, ClickHouse at `CLICKHOUSE_URL`…, started by `infra/test`):
//! loadgen traffic → click log → dataflow → Redis hot views, ClickHouse tables and the stats
//! API, all compared with the generator's exact ground truth; again after SIGKILL and a
//! restart (no row counted twice in ClickHouse under `FINAL` / `argMax(…, version)`, no
//! double increment in Redis); and redirects through a Redis and a ClickHouse outage.
//!
//! Every test uses a fresh Redis key prefix and a fresh ClickHouse database. The outage test
//! runs its own `redis-server` on a free port and reaches ClickHouse through a TCP proxy it
//! can cut, so the shared services of parallel tests are never disturbed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::{Value, json};
use sluice::loadgen::{self, LinkTruth, LoadgenArgs, LoadgenReport};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use crate::child::{ChildProcess, await_healthz, free_port};
use crate::clickhouse::Ch;
use crate::harness::{BROWSER_UA, event, now_ms, q};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
/// Every poll of this file gives up after this long.
const CONVERGE: Duration = Duration::from_secs(60);

pub(crate) fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_string()
}

/// `sluice serve` as a child process.
pub(crate) struct Sluice {
    child: ChildProcess,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
}

impl Sluice {
    pub(crate) async fn start(dir: &Path, config: &Path, redis_url: &str, prefix: &str, ch_url: &str, ch: &Ch) -> Sluice {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir)
            .arg("--config")
            .arg(config)
            // The conventional variables `./infra/dev env` prints; nothing else from the
            // test environment reaches the process.
            .env_remove("SLUICE__REDIS__URL")
            .env_remove("SLUICE__STORE__URL")
            .env_remove("KAFKA_BROKERS")
            .env("REDIS_URL", redis_url)
            .env("SLUICE__REDIS__KEY_PREFIX", prefix)
            .env("CLICKHOUSE_URL", ch_url)
            .env("CLICKHOUSE_USER", &ch.user)
            .env("CLICKHOUSE_PASSWORD", &ch.password)
            .env("CLICKHOUSE_DATABASE", &ch.database)
            .env("SLUICE__CLICKHOUSE__FLUSH_INTERVAL", "200ms")
            .env("SLUICE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = ChildProcess::spawn(&mut cmd, "sluice serve");
        let s = Sluice {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client"),
        };
        await_healthz(&s.http, &s.base).await;
        s
    }

    pub(crate) async fn get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.expect("get");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// Waits until every click logged up to 100 ms from now is counted by the dataflow.
    pub(crate) async fn caught_up(&self) {
        let t0 = Instant::now();
        let target = now_ms() + 100;
        loop {
            let f = &self.get("/v1/stats/summary?limit=1").await["freshness"];
            if f["as_of"].as_str().map(crate::harness::ms).is_some_and(|a| a >= target) {
                return;
            }
            assert!(t0.elapsed() < CONVERGE, "dataflow did not catch up: {f}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(self) {
        self.child.kill9();
    }

    /// SIGTERM: the process must stop gracefully (sinks drained) and exit 0 within 30 s.
    pub(crate) fn terminate(self) {
        self.child.terminate();
    }
}

/// The server configuration file (loadgen reads it too: X-Forwarded-For trusted); with
/// `short_minutes`, minute rows older than 1 h leave memory and the stats API answers older
/// minute ranges from ClickHouse.
pub(crate) fn write_config(dir: &Path, short_minutes: bool) -> PathBuf {
    let path = dir.join("sluice.toml");
    let mut text = "[server]\ntrusted-proxies = [\"127.0.0.1\"]\n".to_string();
    if short_minutes {
        text.push_str("\n[dataflow]\nminute-retention = \"1h\"\nallowed-lateness = \"1h\"\n");
    }
    std::fs::write(&path, text).expect("write config");
    path
}

fn loadgen_args(base: &str, config: &Path, seed: u64, rate: f64, secs: u64) -> LoadgenArgs {
    let mut args = LoadgenArgs::new(base.parse().expect("url"));
    args.links = 8;
    args.rate = rate;
    args.duration = Duration::from_secs(secs);
    args.seed = seed;
    args.quiet = true;
    args.server_config = Some(config.to_path_buf());
    args.max_lateness = Duration::from_secs(120);
    args
}

/// Polls `check` until it returns `Ok`, at most [`CONVERGE`]; panics with the last mismatch.
pub(crate) async fn converge<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let t0 = Instant::now();
    loop {
        match check().await {
            Ok(()) => return t0.elapsed(),
            Err(e) if t0.elapsed() >= CONVERGE => panic!("{what} did not converge within {CONVERGE:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub(crate) fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want { Ok(()) } else { Err(format!("{what}: got {got:?}, want {want:?}")) }
}

/// Clicks, bot clicks, uniques and clicks per country of one link, from the stats API.
type ApiTotals = (u64, u64, u64, BTreeMap<String, u64>);

/// The stats API's all-time answer of `code` (clicks, bot clicks, uniques, country totals).
async fn api_totals(s: &Sluice, code: &str) -> ApiTotals {
    let (from, to) = (now_ms().div_euclid(86_400_000) * 86_400_000 - 86_400_000, now_ms().div_euclid(86_400_000) * 86_400_000 + 86_400_000);
    let b = s.get(&format!("/v1/links/{code}/stats?bucket=day&dimensions=country&from={}&to={}", q(from), q(to))).await;
    let countries = b["dimension_totals"]
        .as_array()
        .expect("dimension totals")
        .iter()
        .map(|d| (d["country"].as_str().expect("country").to_string(), d["clicks"].as_u64().expect("clicks")))
        .collect();
    (
        b["totals"]["clicks"].as_u64().expect("clicks"),
        b["totals"]["bot_clicks"].as_u64().expect("bot clicks"),
        b["totals"]["uniques"].as_u64().expect("uniques"),
        countries,
    )
}

/// Redis hot views of every link equal the truth (and the API's uniques and countries).
async fn redis_agrees(url: &str, prefix: &str, truth: &BTreeMap<String, LinkTruth>, api: &BTreeMap<String, ApiTotals>) -> Result<(), String> {
    let keys = sluice_connectors::redis::Keys::new(prefix);
    let mut c = redis::Client::open(url).map_err(|e| e.to_string())?.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
    for (code, t) in truth {
        let (_, _, api_uniques, api_countries) = &api[code];
        let totals: BTreeMap<String, u64> = c.hgetall(keys.totals(code)).await.map_err(|e| e.to_string())?;
        expect_eq(&format!("{code} totals.clicks"), totals.get("clicks").copied().unwrap_or(0), t.clicks)?;
        expect_eq(&format!("{code} totals.bot_clicks"), totals.get("bot_clicks").copied().unwrap_or(0), t.bot_clicks)?;
        expect_eq(&format!("{code} totals.uniques"), totals.get("uniques").copied().unwrap_or(0), *api_uniques)?;
        // The last-60-minutes series: every click of the run is in it.
        let minutes: Vec<i64> = c.zrange(keys.minutes(code), 0, -1).await.map_err(|e| e.to_string())?;
        let (mut clicks, mut bots) = (0u64, 0u64);
        for m in &minutes {
            let h: BTreeMap<String, u64> = c.hgetall(keys.minute(code, *m)).await.map_err(|e| e.to_string())?;
            clicks += h.get("clicks").copied().unwrap_or(0);
            bots += h.get("bot_clicks").copied().unwrap_or(0);
        }
        expect_eq(&format!("{code} minute series clicks"), clicks, t.clicks)?;
        expect_eq(&format!("{code} minute series bot clicks"), bots, t.bot_clicks)?;
        let top: Vec<(String, f64)> = c.zrevrange_withscores(keys.top(code, "country"), 0, -1).await.map_err(|e| e.to_string())?;
        let top: BTreeMap<String, u64> = top.into_iter().filter(|x| x.1 > 0.0).map(|(k, v)| (k, v as u64)).collect();
        expect_eq(&format!("{code} top countries"), &top, api_countries)?;
        let refs: Vec<(String, f64)> = c.zrevrange_withscores(keys.top(code, "referrer"), 0, -1).await.map_err(|e| e.to_string())?;
        expect_eq(&format!("{code} top referrers sum"), refs.iter().map(|x| x.1 as u64).sum::<u64>(), t.clicks)?;
        let score: Option<f64> = c.zscore(keys.top_links(), code).await.map_err(|e| e.to_string())?;
        expect_eq(&format!("{code} top:links score"), score.map(|s| s as u64).unwrap_or(0), t.clicks)?;
    }
    Ok(())
}

/// ClickHouse tables equal the truth, counting each row once (`FINAL` and `argMax`).
async fn clickhouse_agrees(ch: &Ch, truth: &BTreeMap<String, LinkTruth>) -> Result<(), String> {
    let want = |f: &dyn Fn(&LinkTruth) -> Vec<u64>| truth.iter().map(|(c, t)| (c.clone(), f(t))).collect::<BTreeMap<_, _>>();
    let by_clicks = want(&|t| vec![t.clicks, t.bot_clicks]);
    for table in ["rollups_minute", "rollups_day"] {
        let got = ch
            .per_code(
                &format!("SELECT code, sumIf(clicks, NOT is_bot), sumIf(clicks, is_bot) FROM {table} FINAL WHERE view = 'total' GROUP BY code ORDER BY code"),
                truth,
            )
            .await?;
        expect_eq(&format!("{table} FINAL"), &got, &by_clicks)?;
    }
    let got = ch
        .per_code(
            "SELECT code, sumIf(c, NOT is_bot), sumIf(c, is_bot) FROM (SELECT code, bucket, view, is_bot, value1, value2, argMax(clicks, version) AS c \
             FROM rollups_hour GROUP BY code, bucket, view, is_bot, value1, value2) WHERE view = 'total' GROUP BY code ORDER BY code",
            truth,
        )
        .await?;
    expect_eq("rollups_hour argMax by version", &got, &by_clicks)?;
    let got =
        ch.per_code("SELECT code, sum(clicks) FROM rollups_quarter FINAL WHERE view = 'country' AND NOT is_bot GROUP BY code ORDER BY code", truth).await?;
    expect_eq("rollups_quarter country", &got, &want(&|t| vec![t.clicks]))?;
    let got = ch
        .per_code(
            "SELECT code, countIf(NOT is_bot), countIf(is_bot), uniqExactIf(visitor_id, NOT is_bot) FROM events_enriched FINAL GROUP BY code ORDER BY code",
            truth,
        )
        .await?;
    expect_eq("events_enriched FINAL", &got, &want(&|t| vec![t.clicks, t.bot_clicks, t.visitors]))?;
    Ok(())
}

async fn all_agree(s: &Sluice, report: &LoadgenReport, redis_url: &str, prefix: &str, ch: &Ch) {
    let truth = &report.truth.links;
    let mut api = BTreeMap::new();
    for (code, t) in truth {
        let a = api_totals(s, code).await;
        assert_eq!((a.0, a.1), (t.clicks, t.bot_clicks), "{code}: stats API vs ground truth");
        api.insert(code.clone(), a);
    }
    converge("redis views", || redis_agrees(redis_url, prefix, truth, &api)).await;
    converge("clickhouse tables", || clickhouse_agrees(ch, truth)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_clickhouse_and_api_agree_with_the_ground_truth_across_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), false);
    let data = dir.path().join("data");
    let redis_url = std::env::var("SLUICE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/".into());
    let prefix = format!("it:e2e:{}:", suffix());
    let ch = Ch::fresh("e2e");
    let s = Sluice::start(&data, &config, &redis_url, &prefix, &ch.url, &ch).await;
    let report = loadgen::run(&loadgen_args(&s.base, &config, 7, 150.0, 3)).await.expect("loadgen runs");
    assert!(report.exact, "the truth must be exact: {:?}", report.notes);
    assert!(report.truth.totals().clicks > 200 && report.truth.totals().bot_clicks > 0, "{:?}", report.truth.totals());

    // A link with clicks 3 hours back (backfill): after the restart below, with a 1 h
    // minute retention, its minute series is answered from ClickHouse.
    let r = s
        .http
        .post(format!("{}/v1/links", s.base))
        .json(&json!({"long_url": "https://example.com/old", "custom_alias": "old-e2e"}))
        .send()
        .await
        .expect("post link");
    assert_eq!(r.status().as_u16(), 201);
    let t_old = (now_ms() - 3 * 3_600_000).div_euclid(60_000) * 60_000;
    let evs: Vec<Value> =
        (0..12).map(|i| event(&format!("old-{i}"), "old-e2e", t_old + (i % 4) * 60_000 + 5, &format!("81.2.69.{i}"), BROWSER_UA, None)).collect();
    let r = s.http.post(format!("{}/v1/events?backfill=true", s.base)).json(&evs).send().await.expect("post events");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    s.caught_up().await;
    all_agree(&s, &report, &redis_url, &prefix, &ch).await;
    let old_minutes = s.get(&format!("/v1/links/old-e2e/stats?bucket=minute&from={}&to={}", q(t_old - 60_000), q(t_old + 6 * 60_000))).await;

    // SIGKILL and restart with minute rows kept 1 h: the dataflow replays the click log into
    // both sinks again, and no longer holds the old minutes.
    s.kill();
    write_config(dir.path(), true);
    let s = Sluice::start(&data, &config, &redis_url, &prefix, &ch.url, &ch).await;
    s.caught_up().await;
    all_agree(&s, &report, &redis_url, &prefix, &ch).await;
    let old_query = format!("/v1/links/old-e2e/stats?bucket=minute&from={}&to={}", q(t_old - 60_000), q(t_old + 6 * 60_000));
    let old = converge("old minutes from clickhouse", || async {
        let r = s.http.get(format!("{}{old_query}", s.base)).send().await.map_err(|e| e.to_string())?;
        let b: Value = r.json().await.map_err(|e| e.to_string())?;
        let rows: Vec<(i64, u64)> = b["rows"]
            .as_array()
            .ok_or(format!("{b}"))?
            .iter()
            .map(|r| (crate::harness::ms(r["minute"].as_str().unwrap_or("")), r["clicks"].as_u64().unwrap_or(0)))
            .collect();
        expect_eq("old minute rows", rows, (0..4).map(|i| (t_old + i * 60_000, 3)).collect())?;
        expect_eq("old minutes, ClickHouse vs the first run's memory", &b["rows"], &old_minutes["rows"])?;
        expect_eq("old totals", &b["totals"], &old_minutes["totals"])
    });
    old.await;
    // The replay really inserted rows again (counted once all the same).
    let raw = ch.query("SELECT count() FROM events_enriched").await.expect("count");
    let events: u64 = report.truth.links.values().map(|t| t.clicks + t.bot_clicks).sum::<u64>() + 12;
    assert!(raw.trim().parse::<u64>().expect("count") >= events, "{raw} raw rows, {events} events");
    s.terminate();
    ch.drop_database().await;
    let mut c = redis::Client::open(redis_url.as_str()).expect("url").get_multiplexed_async_connection().await.expect("redis");
    let keys: Vec<String> = c.keys(format!("{prefix}*")).await.expect("keys");
    if !keys.is_empty() {
        let _: () = c.del(keys).await.expect("del");
    }
}

/// A TCP proxy to `target` that can be cut (connections refused and open ones closed) and
/// restored, standing in for a ClickHouse outage without stopping the shared server.
struct CutProxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<parking_lot::Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl CutProxy {
    async fn start(target: String) -> CutProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<parking_lot::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (Arc::clone(&up), Arc::clone(&conns));
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::Acquire) {
                    let _ = inbound.shutdown().await;
                    continue;
                }
                let target = target.clone();
                conns2.lock().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        CutProxy { port, up, conns, accept }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::Release);
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::Release);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A private `redis-server` (AOF on, so a restart keeps the views) on a fixed free port.
pub(crate) struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    pub(crate) fn start(dir: &Path) -> PrivateRedis {
        let mut r = PrivateRedis { port: free_port(), dir: dir.to_path_buf(), child: None };
        r.restart();
        r
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt install redis-server; infra/test installs it)");
        self.child = Some(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "private redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (Redis writes its AOF and exits), then reap.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_survive_redis_and_clickhouse_outages_and_the_sinks_catch_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), false);
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir_all(&redis_dir).expect("redis dir");
    let mut redis = PrivateRedis::start(&redis_dir);
    let ch = Ch::fresh("e2e");
    let proxy = CutProxy::start(ch.url.trim_start_matches("http://").trim_end_matches('/').to_string()).await;
    let prefix = "it:outage:".to_string();
    let s = Sluice::start(&dir.path().join("data"), &config, &redis.url(), &prefix, &format!("http://127.0.0.1:{}", proxy.port), &ch).await;

    let args = loadgen_args(&s.base, &config, 11, 200.0, 6);
    let load = tokio::spawn(async move { loadgen::run(&args).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    redis.stop();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.restart();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    proxy.restore();
    let restored = Instant::now();
    let report = load.await.expect("loadgen task").expect("loadgen runs");

    // 100% of redirects answered, none with a 5xx, none failed.
    let r = &report.requests;
    assert!(r.failures.is_empty(), "failed requests: {:?}", r.failures);
    assert_eq!(r.answered, r.sent, "{r:?}");
    assert!(r.statuses.keys().all(|s| *s < 500), "statuses: {:?}", r.statuses);
    assert!(report.exact, "{:?}", report.notes);

    s.caught_up().await;
    all_agree(&s, &report, &redis.url(), &prefix, &ch).await;
    let catch_up = restored.elapsed();
    println!("sinks caught up {:.2} s after ClickHouse came back ({} clicks)", catch_up.as_secs_f64(), report.truth.totals().clicks);
    s.terminate();
    ch.drop_database().await;
}
