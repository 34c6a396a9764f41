//! Kafka mode with the ClickHouse sink: `events_enriched` is filled from the click topic
//! (the embedded log stays empty in Kafka mode), one row per click of the ground truth.

use std::time::{Duration, Instant};

use crate::clickhouse_server::Ch;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_enriched_is_filled_from_the_click_topic() {
    let target = KafkaTarget::fresh(shared_brokers(), "events");
    let ch = Ch::fresh("kafka_events");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let data = dir.path().join("data");
    let env = [
        ("CLICKHOUSE_URL", ch.url.clone()),
        ("CLICKHOUSE_USER", ch.user.clone()),
        ("CLICKHOUSE_PASSWORD", ch.password.clone()),
        ("CLICKHOUSE_DATABASE", ch.database.clone()),
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
        let got = ch.query(&sql).await.ok().and_then(|t| t.trim().parse::<u64>().ok()).unwrap_or(0);
        if got == want {
            break;
        }
        assert!(got < want, "events_enriched holds {got} rows for {want} clicks");
        assert!(t0.elapsed() < Duration::from_secs(60), "events_enriched holds {got} of {want} clicks after 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Per code, the enriched rows agree with the ground truth's clicks and bot clicks.
    let sql = "SELECT code, countIf(NOT is_bot), countIf(is_bot) FROM events_enriched FINAL GROUP BY code ORDER BY code";
    for (code, n) in ch.per_code(sql, &report.truth.links).await.expect("per code") {
        let t = &report.truth.links[&code];
        assert_eq!((n[0], n[1]), (t.clicks, t.bot_clicks), "{code}");
    }
    p.terminate();
    ch.drop_database().await;
}
