//! Kafka mode with the ClickHouse sink: `events_enriched` is filled from the click topic
//! (the embedded log stays empty in Kafka mode), one row per click of the ground truth.

use std::time::{Duration, Instant};

use crate::support::*;

/// Answer of `sql` (TSV) in `database` of the ClickHouse at `CLICKHOUSE_URL`.
async fn ch_query(database: &str, sql: &str) -> Result<String, String> {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} must be set (./infra/dev up; eval \"$(./infra/dev env)\")"));
    let r = reqwest::Client::new()
        .post(format!("{}/?database={database}&default_format=TabSeparated", env("CLICKHOUSE_URL").trim_end_matches('/')))
        .header("X-ClickHouse-User", env("CLICKHOUSE_USER"))
        .header("X-ClickHouse-Key", env("CLICKHOUSE_PASSWORD"))
        .body(sql.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let ok = r.status().is_success();
    let text = r.text().await.map_err(|e| e.to_string())?;
    if ok { Ok(text) } else { Err(text) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_enriched_is_filled_from_the_click_topic() {
    let target = KafkaTarget::fresh(shared_brokers(), "events");
    let database = format!("it_kafka_events_{}", uuid::Uuid::new_v4().simple().to_string().get(..10).expect("uuid"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let data = dir.path().join("data");
    let env = [
        ("CLICKHOUSE_URL", std::env::var("CLICKHOUSE_URL").expect("CLICKHOUSE_URL must be set (./infra/dev env)")),
        ("CLICKHOUSE_USER", std::env::var("CLICKHOUSE_USER").unwrap_or_else(|_| "default".into())),
        ("CLICKHOUSE_PASSWORD", std::env::var("CLICKHOUSE_PASSWORD").unwrap_or_default()),
        ("CLICKHOUSE_DATABASE", database.clone()),
        ("SLUICE__CLICKHOUSE__FLUSH_INTERVAL", "200ms".to_string()),
    ];
    let p = Proc::start_with_env(&data, &config, &target, &env).await;
    // Redirects plus exact duplicates posted to /v1/events (they collapse in FINAL, as in
    // the dataflow's dedup); no late events (the table keeps rows the dataflow dead-letters).
    let mut args = sluice::loadgen::LoadgenArgs::new(p.url());
    args.links = 6;
    args.rate = 150.0;
    args.duration = Duration::from_secs(3);
    args.seed = 77;
    args.quiet = true;
    args.late_share = 0.0;
    args.server_config = Some(config.clone());
    let report = sluice::loadgen::run(&args).await.expect("loadgen");
    assert!(report.exact, "{:?}", report.notes);
    assert_all_redirects_succeeded(&report);
    await_truth(&p, &report.truth.links, Duration::from_secs(60)).await;
    let want: u64 = report.truth.links.values().map(|l| l.clicks + l.bot_clicks).sum();
    let codes: Vec<String> = report.truth.links.keys().map(|c| format!("'{c}'")).collect();
    let sql = format!("SELECT count() FROM events_enriched FINAL WHERE code IN ({})", codes.join(","));
    let t0 = Instant::now();
    loop {
        let got = ch_query(&database, &sql).await.ok().and_then(|t| t.trim().parse::<u64>().ok()).unwrap_or(0);
        if got == want {
            break;
        }
        assert!(got < want, "events_enriched holds {got} rows for {want} clicks");
        assert!(t0.elapsed() < Duration::from_secs(60), "events_enriched holds {got} of {want} clicks after 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Per code, the enriched rows agree with the ground truth's clicks and bot clicks.
    let text = ch_query(&database, "SELECT code, countIf(NOT is_bot), countIf(is_bot) FROM events_enriched FINAL GROUP BY code ORDER BY code").await.expect("per code");
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let t = &report.truth.links[f[0]];
        assert_eq!((f[1].parse::<u64>().expect("n"), f[2].parse::<u64>().expect("n")), (t.clicks, t.bot_clicks), "{}", f[0]);
    }
    p.terminate();
    let _ = ch_query("default", &format!("DROP DATABASE IF EXISTS {database}")).await;
}
