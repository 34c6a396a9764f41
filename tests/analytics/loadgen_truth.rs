//! `sluice loadgen` (the library) against a complete in-process server: the stats API's
//! per-link clicks and bot clicks equal the generator's exact ground truth, and uniques are
//! within the HLL bound of its visitor counts.

use std::time::Duration;

use sluice::loadgen::{self, LoadgenArgs};

use crate::harness::{Server, now_ms, q};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_match_the_generators_ground_truth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |_| {}).await;
    let mut args = LoadgenArgs::new(s.url.clone());
    args.links = 12;
    args.rate = 150.0;
    args.duration = Duration::from_secs(3);
    args.seed = 42;
    args.quiet = true;
    args.proxy_trusted = Some(true);
    args.salt_period = Some("1d".into());
    let started = now_ms();
    let report = loadgen::run(&args).await.expect("loadgen runs");
    assert!(report.exact, "the truth must be exact: {:?}", report.notes);
    s.sync().await;
    let from = (started - 11 * 60_000).div_euclid(60_000) * 60_000;
    let to = now_ms().div_euclid(60_000) * 60_000 + 120_000;
    let total = report.truth.totals();
    assert!(total.clicks > 200 && total.bot_clicks > 0, "{total:?}");
    for (code, t) in &report.truth.links {
        let body = s.stats(code, &format!("bucket=day&from={}&to={}", q(from), q(to))).await;
        assert_eq!(body["totals"]["clicks"].as_u64(), Some(t.clicks), "{code}: clicks");
        assert_eq!(body["totals"]["bot_clicks"].as_u64(), Some(t.bot_clicks), "{code}: bot clicks");
        let u = body["totals"]["uniques"].as_u64().expect("uniques");
        let tol = if t.visitors <= 48 { 0 } else { (3.0 * 1.04 / 128.0 * t.visitors as f64).ceil() as u64 };
        assert!(u.abs_diff(t.visitors) <= tol, "{code}: uniques {u} vs {} visitors", t.visitors);
    }
    s.stop().await;
}
