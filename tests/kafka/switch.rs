//! Switching the click input between the embedded log and Kafka on one data dir, with the
//! Redis and ClickHouse sinks (the real binary and services): each input counts only its
//! own clicks, and after every switch the sinks hold the values of the input now running,
//! like the stats API. A start that restores its input's checkpoint while a newer one of the
//! other input exists resends every retained row (`src/job/checkpoint/switch.rs`); without
//! that the restored views never change and the sinks keep the other input's values.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::clickhouse_server::Ch;
use crate::support::*;

const DAY: i64 = 86_400_000;
const CONVERGE: Duration = Duration::from_secs(60);

/// Where the sinks of every run of the test write: Redis and its key prefix, ClickHouse.
struct Sinks {
    redis_url: String,
    prefix: String,
    ch: Ch,
}

impl Sinks {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("REDIS_URL", self.redis_url.clone()),
            ("SLUICE__REDIS__KEY_PREFIX", self.prefix.clone()),
            ("CLICKHOUSE_URL", self.ch.url.clone()),
            ("CLICKHOUSE_USER", self.ch.user.clone()),
            ("CLICKHOUSE_PASSWORD", self.ch.password.clone()),
            ("CLICKHOUSE_DATABASE", self.ch.database.clone()),
            ("SLUICE__CLICKHOUSE__FLUSH_INTERVAL", "200ms".to_string()),
        ]
    }

    /// Redis day hash, `totals` and `top:links` of `code`, and the ClickHouse `total` rows of
    /// its day, hour and quarter (`FINAL`), all say `clicks` human clicks (one visitor each
    /// in the day; the all-time uniques are capped at the clicks).
    async fn say(&self, code: &str, day: i64, ts: i64, clicks: u64) -> Result<(), String> {
        let keys = sluice_connectors::redis::Keys::new(&self.prefix);
        let client = redis::Client::open(self.redis_url.as_str()).map_err(|e| e.to_string())?;
        let mut c = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
        let d: BTreeMap<String, u64> = c.hgetall(keys.day(code, day)).await.map_err(|e| e.to_string())?;
        eq("redis day (clicks, uniques)", (d.get("clicks").copied(), d.get("uniques").copied()), (Some(clicks), Some(clicks)))?;
        let t: BTreeMap<String, u64> = c.hgetall(keys.totals(code)).await.map_err(|e| e.to_string())?;
        eq("redis totals (clicks, uniques)", (t.get("clicks").copied(), t.get("uniques").copied()), (Some(clicks), Some(clicks)))?;
        let score: Option<f64> = c.zscore(keys.top_links(), code).await.map_err(|e| e.to_string())?;
        eq("redis top:links", score, Some(clicks as f64))?;
        for (table, len) in [("rollups_day", DAY), ("rollups_hour", 3_600_000), ("rollups_quarter", 900_000)] {
            let bucket = ts.div_euclid(len) * len;
            let sql = format!(
                "SELECT count(), sum(clicks), sum(uniques) FROM {table} FINAL WHERE code = '{code}' AND view = 'total' AND NOT is_bot \
                 AND toUnixTimestamp64Milli(bucket) = {bucket}"
            );
            let got = self.ch.query(&sql).await?;
            eq(&format!("{table} FINAL total (rows, clicks, uniques)"), got.trim().to_string(), format!("1\t{clicks}\t{clicks}"))?;
        }
        Ok(())
    }

    async fn clean(&self) {
        self.ch.drop_database().await;
        let Ok(mut c) = redis::Client::open(self.redis_url.as_str()).expect("url").get_multiplexed_async_connection().await else { return };
        let keys: Vec<String> = c.keys(format!("{}*", self.prefix)).await.unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = c.del(keys).await;
        }
    }
}

fn eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want { Ok(()) } else { Err(format!("{what}: {got:?}, want {want:?}")) }
}

/// Polls `check` until it passes; panics with its last error after [`CONVERGE`].
async fn converge<F: std::future::Future<Output = Result<(), String>>>(what: &str, check: impl Fn() -> F) {
    let t0 = Instant::now();
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if t0.elapsed() > CONVERGE => panic!("{what}: not reached after {CONVERGE:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Human backfill clicks of `code` at `ts`, one visitor (IP) each, event ids `{tag}-{i}`.
async fn backfill(p: &Proc, tag: &str, code: &str, ts: i64, ips: std::ops::Range<u32>) {
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let events: Vec<Value> =
        ips.map(|i| json!({"event_id": format!("{tag}-{i}"), "code": code, "ts": ts, "ip": format!("81.2.69.{i}"), "user_agent": ua})).collect();
    let n = events.len() as u64;
    let body = p.post_json("/v1/events?backfill=true", Value::Array(events)).await;
    assert_eq!(body["accepted"].as_u64(), Some(n), "{body}");
}

/// Polls the stats API until `code`'s human clicks of `day` are `clicks`.
async fn api_says(p: &Proc, code: &str, day: i64, clicks: u64) {
    let t0 = Instant::now();
    loop {
        let (got, _, _) = totals(p, code, day, day + DAY).await;
        if got == clicks {
            return;
        }
        assert!(t0.elapsed() < CONVERGE, "the stats API says {got} clicks, want {clicks}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start(data: &Path, config: &Path, kafka: Option<&KafkaTarget>, sinks: &Sinks) -> Proc {
    Proc::start_on(data, config, kafka, &sinks.env()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_between_the_embedded_log_and_kafka_rewrites_the_sinks_with_the_running_input() {
    let target = KafkaTarget::fresh(shared_brokers(), "switch");
    let sinks = Sinks {
        redis_url: std::env::var("SLUICE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/".into()),
        prefix: unique("it:switch") + ":",
        ch: Ch::fresh("switch"),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    without_abuse(&config);
    let data = dir.path().join("data");
    let code = "sw1";
    let day = (now_ms() - 3 * DAY).div_euclid(DAY) * DAY;
    let ts = day + 12 * 3_600_000 + 7 * 60_000;

    // 1. Embedded log: 10 backfill clicks three days ago.
    let p = start(&data, &config, None, &sinks).await;
    p.post_json("/v1/links", json!({"long_url": "https://example.org/sw1", "custom_alias": code})).await;
    backfill(&p, "log", code, ts, 1..11).await;
    api_says(&p, code, day, 10).await;
    converge("the sinks after the embedded log's clicks", || sinks.say(code, day, ts, 10)).await;
    p.terminate();

    // 2. Kafka: the topic's one click is all the stats count (README, "Kafka").
    let p = start(&data, &config, Some(&target), &sinks).await;
    backfill(&p, "kafka", code, ts, 20..21).await;
    api_says(&p, code, day, 1).await;
    converge("the sinks in Kafka mode", || sinks.say(code, day, ts, 1)).await;
    p.terminate();

    // 3. The embedded log again: its checkpoint is restored (10), and the sinks, last
    // written from Kafka, get every row again.
    let p = start(&data, &config, None, &sinks).await;
    api_says(&p, code, day, 10).await;
    converge("the sinks back on the embedded log", || sinks.say(code, day, ts, 10)).await;
    p.terminate();

    // 4. Kafka again (its checkpoint is older than the log's newest): the same rule.
    let p = start(&data, &config, Some(&target), &sinks).await;
    api_says(&p, code, day, 1).await;
    converge("the sinks back in Kafka mode", || sinks.say(code, day, ts, 1)).await;
    p.terminate();
    sinks.clean().await;
}
