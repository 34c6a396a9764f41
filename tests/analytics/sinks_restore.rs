//! A checkpoint restore must not overwrite the sinks' totals with the clicks since the
//! restart (the real binary, Redis and ClickHouse; feature `integration-tests`): 10 clicks,
//! a graceful stop (which writes a checkpoint), a restart (which restores it), 3 more clicks
//! in the same minute → Redis and ClickHouse `total` rows say 13, like the stats API.

use std::collections::BTreeMap;

use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::clickhouse::Ch;
use crate::harness::{BROWSER_UA, event, now_ms};
use crate::sinks::{Sluice, converge, expect_eq, suffix, write_config};

/// `n` human clicks of `code` at `ts`, one visitor (IP) each, event ids `{tag}-{i}`.
fn clicks(tag: &str, code: &str, ts: i64, ips: std::ops::Range<u32>) -> Vec<Value> {
    ips.map(|i| event(&format!("{tag}-{i}"), code, ts, &format!("81.2.69.{i}"), BROWSER_UA, None)).collect()
}

async fn post_events(s: &Sluice, events: &[Value]) {
    let r = s.http.post(format!("{}/v1/events", s.base)).json(events).send().await.expect("post events");
    let status = r.status();
    let body: Value = r.json().await.expect("json");
    assert!(status.is_success() && body["accepted"].as_u64() == Some(events.len() as u64), "{status}: {body}");
}

/// Redis totals, day hash and `top:links` score, and ClickHouse `view='total'` rows of every
/// granularity, all equal `(clicks, uniques)`.
async fn sinks_say(redis_url: &str, prefix: &str, ch: &Ch, code: &str, ts: i64, want: (u64, u64)) -> Result<(), String> {
    let keys = sluice_connectors::redis::Keys::new(prefix);
    let mut c = redis::Client::open(redis_url).map_err(|e| e.to_string())?.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
    let totals: BTreeMap<String, u64> = c.hgetall(keys.totals(code)).await.map_err(|e| e.to_string())?;
    expect_eq("redis totals (clicks, uniques)", (totals.get("clicks").copied(), totals.get("uniques").copied()), (Some(want.0), Some(want.1)))?;
    let day: BTreeMap<String, u64> = c.hgetall(keys.day(code, ts.div_euclid(86_400_000) * 86_400_000)).await.map_err(|e| e.to_string())?;
    expect_eq("redis day (clicks, uniques)", (day.get("clicks").copied(), day.get("uniques").copied()), (Some(want.0), Some(want.1)))?;
    let minute: BTreeMap<String, u64> = c.hgetall(keys.minute(code, ts.div_euclid(60_000) * 60_000)).await.map_err(|e| e.to_string())?;
    expect_eq("redis minute clicks", minute.get("clicks").copied(), Some(want.0))?;
    let score: Option<f64> = c.zscore(keys.top_links(), code).await.map_err(|e| e.to_string())?;
    expect_eq("redis top:links score", score, Some(want.0 as f64))?;
    for table in ["rollups_minute", "rollups_quarter", "rollups_hour", "rollups_day"] {
        let got =
            ch.query(&format!("SELECT count(), sum(clicks), sum(uniques) FROM {table} FINAL WHERE code = '{code}' AND view = 'total' AND NOT is_bot")).await?;
        expect_eq(&format!("{table} FINAL total (rows, clicks, uniques)"), got.trim().to_string(), format!("1\t{}\t{}", want.0, want.1))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_restore_keeps_the_whole_totals_in_redis_and_clickhouse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), false);
    let data = dir.path().join("data");
    let redis_url = std::env::var("SLUICE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/".into());
    let prefix = format!("it:restore:{}:", suffix());
    let ch = Ch::fresh("restore");
    let code = "r7";
    // Every click in one minute, in the past (the second run's clicks join the same rows).
    let ts = (now_ms() - 1_000).max(now_ms().div_euclid(60_000) * 60_000);

    let s = Sluice::start(&data, &config, &redis_url, &prefix, &ch.url, &ch).await;
    let r =
        s.http.post(format!("{}/v1/links", s.base)).json(&json!({"long_url": "https://example.org/r7", "custom_alias": code})).send().await.expect("post link");
    assert_eq!(r.status().as_u16(), 201);
    post_events(&s, &clicks("a", code, ts, 1..11)).await;
    s.caught_up().await;
    converge("sinks after 10 clicks", || sinks_say(&redis_url, &prefix, &ch, code, ts, (10, 10))).await;

    // Graceful stop: the sinks are drained and a checkpoint written; the restart restores it.
    s.terminate();
    let checkpoints = std::fs::read_dir(data.join("checkpoints")).map(|d| d.count()).unwrap_or(0);
    assert!(checkpoints > 0, "the graceful stop wrote a checkpoint");
    let s = Sluice::start(&data, &config, &redis_url, &prefix, &ch.url, &ch).await;
    post_events(&s, &clicks("b", code, ts, 11..14)).await;
    s.caught_up().await;
    let api = s.get(&format!("/v1/links/{code}/stats?bucket=day")).await;
    assert_eq!((api["totals"]["clicks"].as_u64(), api["totals"]["uniques"].as_u64()), (Some(13), Some(13)), "{api}");
    converge("sinks after the restore and 3 more clicks", || sinks_say(&redis_url, &prefix, &ch, code, ts, (13, 13))).await;

    s.terminate();
    ch.drop_database().await;
    let mut c = redis::Client::open(redis_url.as_str()).expect("url").get_multiplexed_async_connection().await.expect("redis");
    let keys: Vec<String> = c.keys(format!("{prefix}*")).await.expect("keys");
    if !keys.is_empty() {
        let _: () = c.del(keys).await.expect("del");
    }
}

/// Redis `totals`, `top:links` and `top:country` of `code` equal `clicks` (all human, one
/// visitor each, all from GB).
async fn redis_all_time(redis_url: &str, prefix: &str, code: &str, clicks: u64) -> Result<(), String> {
    let keys = sluice_connectors::redis::Keys::new(prefix);
    let mut c = redis::Client::open(redis_url).map_err(|e| e.to_string())?.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
    let totals: BTreeMap<String, u64> = c.hgetall(keys.totals(code)).await.map_err(|e| e.to_string())?;
    expect_eq("redis totals (clicks, uniques)", (totals.get("clicks").copied(), totals.get("uniques").copied()), (Some(clicks), Some(clicks)))?;
    let score: Option<f64> = c.zscore(keys.top_links(), code).await.map_err(|e| e.to_string())?;
    expect_eq("redis top:links score", score, Some(clicks as f64))?;
    let gb: Option<f64> = c.zscore(keys.top(code, "country"), "GB").await.map_err(|e| e.to_string())?;
    expect_eq("redis top:country GB", gb, Some(clicks as f64))
}

/// A Redis that loses its data (here: every key of the prefix deleted, as a restart without
/// persistence or a FLUSHDB would) gets its all-time values whole again at the next write:
/// the sink finds its marker gone and the dataflow resends every retained day, so the
/// totals count yesterday's clicks too, not only the day written since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_redis_gets_whole_all_time_values_at_the_next_click() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), false);
    let redis_url = std::env::var("SLUICE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/".into());
    let prefix = format!("it:emptied:{}:", suffix());
    let ch = Ch::fresh("emptied");
    let code = "em1";
    let s = Sluice::start(&dir.path().join("data"), &config, &redis_url, &prefix, &ch.url, &ch).await;
    let r = s
        .http
        .post(format!("{}/v1/links", s.base))
        .json(&json!({"long_url": "https://example.org/em1", "custom_alias": code}))
        .send()
        .await
        .expect("post link");
    assert_eq!(r.status().as_u16(), 201);
    // Yesterday (UTC) and today: two day rows.
    let (yesterday, today) = (now_ms() - 86_400_000, now_ms() - 1_000);
    post_events(&s, &clicks("y", code, yesterday, 1..11)).await;
    post_events(&s, &clicks("t", code, today, 11..16)).await;
    s.caught_up().await;
    converge("redis before the loss", || redis_all_time(&redis_url, &prefix, code, 15)).await;

    let mut c = redis::Client::open(redis_url.as_str()).expect("url").get_multiplexed_async_connection().await.expect("redis");
    let keys: Vec<String> = c.keys(format!("{prefix}*")).await.expect("keys");
    assert!(keys.contains(&sluice_connectors::redis::Keys::new(&prefix).views_marker()), "the sink set its marker: {keys:?}");
    let _: () = c.del(keys).await.expect("del");

    post_events(&s, &clicks("n", code, now_ms() - 1_000, 16..17)).await;
    s.caught_up().await;
    let api = s.get(&format!("/v1/links/{code}/stats?bucket=day")).await;
    assert_eq!((api["totals"]["clicks"].as_u64(), api["totals"]["uniques"].as_u64()), (Some(16), Some(16)), "{api}");
    converge("redis after the loss and one more click", || redis_all_time(&redis_url, &prefix, code, 16)).await;

    s.terminate();
    ch.drop_database().await;
    let keys: Vec<String> = c.keys(format!("{prefix}*")).await.expect("keys");
    if !keys.is_empty() {
        let _: () = c.del(keys).await.expect("del");
    }
}
