//! `sluice serve` in Kafka mode (feature `integration-tests`, broker at `KAFKA_BROKERS`;
//! `./infra/test` starts one): loadgen traffic → spill → Kafka → dataflow → stats API equals
//! the generator's ground truth; exact after `kill -9` and restarts; no redirect fails and no
//! event is lost while the broker is down for 30 s. Every test uses its own topic and
//! consumer group and polls with timeouts.

mod checkpoint;
#[path = "../support/child.rs"]
mod child;
mod clickhouse;
#[path = "../support/clickhouse.rs"]
mod clickhouse_server;
mod cluster_failure;
mod failed_start;
mod readiness;
mod support;
mod switch;
#[path = "../support/tansu.rs"]
mod tansu;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use sluice::loadgen::LinkTruth;
use sluice_connectors::kafka::OffsetCommitter;

use support::*;

/// Loadgen with its default mix (bots, HEADs, returning visitors, late events and exact
/// duplicates through `POST /v1/events`) through the broker; afterwards the consumer group's
/// committed offsets reach the topic's end (everything applied is committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_through_kafka_equals_the_ground_truth_and_offsets_are_committed() {
    let target = KafkaTarget::fresh(shared_brokers(), "e2e");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let data = dir.path().join("data");
    let p = Proc::start(&data, &config, &target).await;
    let report = run_loadgen(&p, &config, 12, 150.0, 3, 42).await;
    assert_all_redirects_succeeded(&report);
    let total = report.truth.totals();
    assert!(total.clicks > 200 && total.bot_clicks > 0 && report.injected.duplicates > 0, "{total:?} {:?}", report.injected);
    let took = await_truth(&p, &report.truth.links, Duration::from_secs(60)).await;
    eprintln!("e2e: {} clicks + {} bot clicks counted {took:?} after loadgen ended", total.clicks, total.bot_clicks);

    // The events went through the topic: every click and posted event was delivered.
    let topic = &target.topic;
    let delivered = p.metric(&format!("sluice_kafka_delivered_total{{topic=\"{topic}\"}}")).await as u64;
    assert!(delivered >= total.clicks + total.bot_clicks, "delivered {delivered} < {total:?}");

    // Commits follow the applied frontier up to the end of every partition.
    let kcfg = target.config();
    let committed = tokio::task::spawn_blocking(move || {
        let c = OffsetCommitter::new(&kcfg).expect("committer");
        let parts: Vec<i32> = (0..c.partition_count().expect("partitions")).collect();
        let t0 = Instant::now();
        loop {
            let highs = c.high_watermarks(&parts, Duration::from_secs(5)).expect("watermarks");
            let got = c.committed_offsets(&parts, Duration::from_secs(5)).expect("committed");
            let full: BTreeMap<i32, i64> = highs.iter().filter(|(_, h)| **h > 0).map(|(p, h)| (*p, *h)).collect();
            if got == full {
                return got;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "committed {got:?} never reached {highs:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .expect("commit check");
    assert_eq!(committed.values().sum::<i64>() as u64, delivered, "no re-sends here: the topic holds each event once");
    p.terminate();
}

/// Three rounds of traffic, each ended by `kill -9` at a random moment of the Kafka side
/// (events still in the spill, unconsumed, uncommitted); the fourth process counts exactly.
/// Loadgen's mix has no posted events here, so the redirect clicks of a round are its whole
/// truth and the test can wait until they are on disk (the redirect hands a click to a
/// channel and answers at once: a click killed inside those few ms is lost by design).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_three_times_during_a_run_keeps_exact_clicks() {
    let target = KafkaTarget::fresh(shared_brokers(), "kill9");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let data = dir.path().join("data");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut truth: BTreeMap<String, LinkTruth> = BTreeMap::new();
    for round in 0..3u64 {
        let p = Proc::start(&data, &config, &target).await;
        let mut args = sluice::loadgen::LoadgenArgs::new(p.url());
        args.links = 6;
        args.rate = 200.0;
        args.duration = Duration::from_secs(2);
        args.seed = 100 + round;
        args.quiet = true;
        args.late_share = 0.0;
        args.duplicate_share = 0.0;
        args.server_config = Some(config.clone());
        let report = sluice::loadgen::run(&args).await.expect("loadgen");
        assert!(report.exact, "{:?}", report.notes);
        assert_all_redirects_succeeded(&report);
        let t = report.truth.totals();
        await_logged(&p, t.clicks + t.bot_clicks, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        p.kill9();
        for (code, l) in report.truth.links {
            assert!(truth.insert(code, l).is_none(), "codes are new every round");
        }
    }
    let t0 = Instant::now();
    let p = Proc::start(&data, &config, &target).await;
    let up = t0.elapsed();
    let exact = await_truth(&p, &truth, Duration::from_secs(90)).await;
    let total: u64 = truth.values().map(|l| l.clicks + l.bot_clicks).sum();
    eprintln!("kill -9 recovery: process up in {up:?}, {total} clicks exact {:?} after start", up + exact);
    p.terminate();
}

/// A private broker stops for 30 s under load: every redirect still succeeds, the spill
/// buffers (nothing dropped), and after the broker returns the backlog drains and the
/// stats equal the ground truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_for_30s_under_load_loses_nothing() {
    let broker_dir = tempfile::tempdir().expect("tempdir");
    let mut tansu = Tansu::start(broker_dir.path());
    let target = KafkaTarget::fresh(tansu.brokers(), "outage");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    without_abuse(&config);
    let data = dir.path().join("data");
    let p = Proc::start(&data, &config, &target).await;
    let topic = target.topic.clone();

    let mut args = sluice::loadgen::LoadgenArgs::new(p.url());
    args.links = 8;
    args.rate = 100.0;
    args.duration = Duration::from_secs(42);
    args.seed = 7;
    args.quiet = true;
    args.server_config = Some(config.clone());
    let load = tokio::spawn(async move { sluice::loadgen::run(&args).await.expect("loadgen") });

    tokio::time::sleep(Duration::from_secs(5)).await;
    tokio::task::block_in_place(|| tansu.stop());
    let down = Instant::now();
    // While the broker is away the events wait in the spill.
    let backlog = format!("sluice_kafka_spill_backlog_events{{topic=\"{topic}\"}}");
    let t0 = Instant::now();
    while p.metric(&backlog).await < 100.0 {
        assert!(t0.elapsed() < Duration::from_secs(20), "the spill does not grow while the broker is down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down.elapsed())).await;
    tokio::task::block_in_place(|| tansu.restart());
    let back = Instant::now();

    let report = load.await.expect("loadgen task");
    assert!(report.exact, "{:?}", report.notes);
    assert_all_redirects_succeeded(&report);
    assert!(report.injected.rejected.is_empty() && report.injected.refused == 0, "posted events refused: {:?}", report.injected);
    let drained = await_truth(&p, &report.truth.links, Duration::from_secs(90)).await;
    assert_eq!(p.metric(&format!("sluice_kafka_spill_dropped_total{{topic=\"{topic}\"}}")).await, 0.0, "nothing dropped");
    let t = report.truth.totals();
    eprintln!(
        "outage: {} requests, statuses {:?}; {} clicks exact {:?} after the broker returned ({:?} after loadgen ended)",
        report.requests.sent,
        report.requests.statuses,
        t.clicks + t.bot_clicks,
        back.elapsed(),
        drained
    );
    p.terminate();
}
