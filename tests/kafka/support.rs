//! Helpers of the Kafka end-to-end tests: the real `sluice serve` binary pointed at a broker,
//! a private tansu broker that a test may stop, loadgen runs and their ground truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::loadgen::{self, LinkTruth, LoadgenArgs, LoadgenReport};

use crate::child::{ChildProcess, await_healthz, free_port};
pub use crate::tansu::Tansu;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// The shared broker of the test environment (`KAFKA_BROKERS`, `infra/services/kafka.sh`).
///
/// # Panics
/// Without `KAFKA_BROKERS`: these tests fail rather than skip without their service.
pub fn shared_brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect("KAFKA_BROKERS must point at a Kafka-API broker (./infra/dev up; eval \"$(./infra/dev env)\")")
}

/// A name unique to this test run: `<prefix>-<pid>-<ns>`.
pub fn unique(prefix: &str) -> String {
    let ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    format!("{prefix}-{}-{ns}", std::process::id())
}

/// Ms since the epoch, UTC.
pub fn now_ms() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis()).expect("ms")
}

/// RFC 3339 of `ms`, for `from`/`to` query parameters.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).expect("ms").to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Where one test's process reads and writes: a broker, a fresh topic and consumer group.
#[derive(Debug, Clone)]
pub struct KafkaTarget {
    /// Bootstrap brokers.
    pub brokers: String,
    /// The click topic (fresh per test).
    pub topic: String,
    /// The consumer group (fresh per test).
    pub group: String,
}

impl KafkaTarget {
    /// A fresh topic and group on `brokers`.
    pub fn fresh(brokers: String, name: &str) -> KafkaTarget {
        KafkaTarget { brokers, topic: unique(&format!("clicks-{name}")), group: unique(&format!("group-{name}")) }
    }

    /// The `[kafka]` section these names make.
    pub fn config(&self) -> sluice_connectors::kafka::KafkaConfig {
        sluice_connectors::kafka::KafkaConfig {
            brokers: Some(self.brokers.clone()),
            click_topic: self.topic.clone(),
            group_id: self.group.clone(),
            ..Default::default()
        }
    }
}

/// Turns the abuse detectors off in the configuration file `config`: only the click
/// producer (and the readiness probe) then talk to a private broker. tansu 0.6 can wedge when
/// idempotent producers retry in-flight batches across its restart ("Unknown broker error" on
/// every later produce), and the anomaly producer would double that exposure; the anomaly
/// topic has its own broker test (connectors/src/kafka/integration_tests/anomalies.rs).
pub fn without_abuse(config: &Path) {
    let mut text = std::fs::read_to_string(config).expect("read config");
    text.push_str("\n[dataflow.abuse]\nenabled = false\n");
    std::fs::write(config, text).expect("write config");
}

/// The server configuration of these tests: loopback trusted as a proxy (loadgen sends
/// `X-Forwarded-For`), daily visitor salt. Written to `<dir>/sluice.toml`.
pub fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(&path, "[server]\ntrusted-proxies = [\"127.0.0.1\"]\n\n[visitor]\nsalt-period = \"1d\"\n").expect("write config");
    path
}

/// A running `sluice serve` in Kafka mode.
pub struct Proc {
    child: ChildProcess,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    http: reqwest::Client,
}

impl Proc {
    /// Starts the binary on `data` with `config`, Kafka at `target`, and waits for `/healthz`.
    pub async fn start(data: &Path, config: &Path, target: &KafkaTarget) -> Proc {
        Self::start_with_env(data, config, target, &[]).await
    }

    /// [`Self::start`] with extra environment variables (set after the defaults, e.g. a
    /// ClickHouse sink).
    pub async fn start_with_env(data: &Path, config: &Path, target: &KafkaTarget, env: &[(&str, String)]) -> Proc {
        Self::start_on(data, config, Some(target), env).await
    }

    /// [`Self::start_with_env`] on the embedded click log (no Kafka) when `target` is `None`.
    pub async fn start_on(data: &Path, config: &Path, target: Option<&KafkaTarget>, env: &[(&str, String)]) -> Proc {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"]).arg(data).arg("--config").arg(config).env("SLUICE_LOG", "warn");
        match target {
            Some(target) => cmd
                .env("KAFKA_BROKERS", &target.brokers)
                .env("SLUICE__KAFKA__CLICK_TOPIC", &target.topic)
                .env("SLUICE__KAFKA__ANOMALIES_TOPIC", format!("{}-anomalies", target.topic))
                .env("SLUICE__KAFKA__GROUP_ID", &target.group),
            None => cmd.env_remove("KAFKA_BROKERS").env_remove("SLUICE__KAFKA__BROKERS"),
        };
        // only Kafka (or the embedded log): no Redis/ClickHouse sinks, the SQLite link store
        cmd.env_remove("SLUICE__REDIS__URL")
            .env_remove("SLUICE__STORE__URL")
            .env_remove("REDIS_URL")
            .env_remove("CLICKHOUSE_URL")
            .env_remove("SCHEMA_REGISTRY_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = ChildProcess::spawn(&mut cmd, "sluice serve");
        let p = Proc { child, base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
        await_healthz(&p.http, &p.base).await;
        p
    }

    /// The base URL as a `Url`.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&self.base).expect("url")
    }

    /// GET `path` as JSON (2xx asserted).
    pub async fn get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.expect("get");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.expect("json")
    }

    /// POST `body` as JSON to `path`; the answer as JSON (2xx asserted).
    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        let r = self.http.post(format!("{}{path}", self.base)).json(&body).send().await.expect("post");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.expect("json")
    }

    /// The value of one Prometheus sample (`name{labels}` exactly as exported), 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.http.get(format!("{}/metrics", self.base)).send().await.expect("metrics").text().await.expect("text");
        text.lines().find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
    }

    /// `kill -9`, then reap.
    pub fn kill9(self) {
        self.child.kill9();
    }

    /// SIGTERM and wait for a clean exit (0 within 30 s).
    pub fn terminate(self) {
        self.child.terminate();
    }
}

/// Loadgen against `p`: `links` new links, `rate` redirects/s for `secs`, seeded.
pub async fn run_loadgen(p: &Proc, config: &Path, links: usize, rate: f64, secs: u64, seed: u64) -> LoadgenReport {
    let mut args = LoadgenArgs::new(p.url());
    args.links = links;
    args.rate = rate;
    args.duration = Duration::from_secs(secs);
    args.seed = seed;
    args.quiet = true;
    args.server_config = Some(config.to_path_buf());
    let report = loadgen::run(&args).await.expect("loadgen runs");
    assert!(report.exact, "the ground truth must be exact: {:?}", report.notes);
    report
}

/// Every answered redirect was a redirect (no 5xx, no failure).
pub fn assert_all_redirects_succeeded(report: &LoadgenReport) {
    let bad: BTreeMap<u16, u64> = report.requests.statuses.iter().filter(|(s, _)| !(200..400).contains(*s)).map(|(s, n)| (*s, *n)).collect();
    assert!(bad.is_empty(), "redirect statuses {:?}", report.requests.statuses);
    assert!(report.requests.failures.is_empty(), "request failures {:?}", report.requests.failures);
    assert_eq!(report.requests.answered, report.requests.sent, "every request answered");
}

/// The stats API's totals of `code` over the last day: (clicks, bot clicks, uniques).
pub async fn totals(p: &Proc, code: &str, from: i64, to: i64) -> (u64, u64, u64) {
    let body = p.get(&format!("/v1/links/{code}/stats?bucket=day&from={}&to={}", rfc3339(from), rfc3339(to))).await;
    let t = &body["totals"];
    (t["clicks"].as_u64().expect("clicks"), t["bot_clicks"].as_u64().expect("bot_clicks"), t["uniques"].as_u64().expect("uniques"))
}

/// Polls the stats API until every code's clicks and bot clicks equal `truth` (uniques
/// within the HLL bound), or panics after `timeout` showing the differences. Returns how long
/// it took.
pub async fn await_truth(p: &Proc, truth: &BTreeMap<String, LinkTruth>, timeout: Duration) -> Duration {
    let t0 = Instant::now();
    let from = (now_ms() - 86_400_000).div_euclid(86_400_000) * 86_400_000;
    loop {
        let to = now_ms().div_euclid(60_000) * 60_000 + 120_000;
        let mut diffs = Vec::new();
        for (code, t) in truth {
            let (clicks, bots, uniques) = totals(p, code, from, to).await;
            let tol = if t.visitors <= 48 { 0 } else { (3.0 * 1.04 / 128.0 * t.visitors as f64).ceil() as u64 };
            if clicks != t.clicks || bots != t.bot_clicks || uniques.abs_diff(t.visitors) > tol {
                diffs.push(format!("{code}: clicks {clicks}/{} bots {bots}/{} uniques {uniques}/{}", t.clicks, t.bot_clicks, t.visitors));
            }
        }
        if diffs.is_empty() {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < timeout, "stats differ from the ground truth after {timeout:?}:\n{}", diffs.join("\n"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the process has made `n` redirect clicks durable (in the Kafka spill):
/// `sluice_click_events_logged_total{source="redirect"}`.
pub async fn await_logged(p: &Proc, n: u64, timeout: Duration) {
    let t0 = Instant::now();
    loop {
        let logged = p.metric("sluice_click_events_logged_total{source=\"redirect\"}").await as u64;
        if logged >= n {
            assert_eq!(logged, n, "more clicks logged than redirected");
            return;
        }
        assert!(t0.elapsed() < timeout, "only {logged} of {n} redirect clicks logged after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
