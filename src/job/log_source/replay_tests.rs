//! A restart that replays the click log (no checkpoint after the events, e.g. after a
//! `kill -9`) decides every record as the first run did, even when it reads the log minutes
//! later: an event stamped ahead of the clock (accepted within the future skew) moves the
//! watermark only to its arrival, recorded by the log, not to the later clock of the replay,
//! so an event accepted near the lateness edge behind it is counted again, not dead-lettered
//! `too_late` (attack finding, docs/events-import-loadgen.md).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_connectors::click_log::ClickLog;
use sluice_dataflows::clock::ManualClock;
use sluice_dataflows::config::PipelineConfig;
use sluice_dataflows::dead_letter::DeadLetterReason;
use sluice_dataflows::enrich::{EnrichConfig, Enricher};
use sluice_dataflows::pipeline::{self, PipelineInputs, PipelineOutputs};
use sluice_dataflows::source::{ClickSource, SourceFactory};
use sluice_dataflows::views::{Bucket, StatsQuery};
use sluice_schemas::ClickEvent;
use tokio::sync::watch;

use super::{NoSource, start_tail};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn click(i: u32, ts: i64) -> ClickEvent {
    super::held_writer_tests::firefox_click("replay", i, ts)
}

/// What one run of the dataflow over the log shows once it has read all of it.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    /// `(UTC day start, clicks, uniques)` of the code, day by day.
    days: Vec<(i64, u64, u64)>,
    total_clicks: u64,
    too_late: u64,
    future: u64,
}

/// Runs a fresh dataflow (no checkpoint) over the whole of `log` with its processing clock
/// at `clock_ms`, as `sluice serve` does at a start, and reports what it shows about
/// `[from_ms, to_ms)` once it has read every event.
async fn run_at(log: &ClickLog, clock_ms: i64, from_ms: i64, to_ms: i64) -> Seen {
    let (stop, stop_rx) = watch::channel(false);
    let (source, _progress, tail) = start_tail(log.clone(), 0, log.low(), 1024, stop_rx, None);
    let slot = Mutex::new(Some(source));
    let factory: SourceFactory = Arc::new(move |index, _peers| match if index == 0 { slot.lock().take() } else { None } {
        Some(s) => Box::new(s) as Box<dyn ClickSource>,
        None => Box::new(NoSource),
    });
    let seen = tokio::task::spawn_blocking(move || {
        let enricher = Enricher::new(&EnrichConfig::default()).expect("bundled enrichment data");
        let inputs = PipelineInputs { source: factory, enricher, clock: Arc::new(ManualClock::new(clock_ms)), link_meta: None };
        let handle = pipeline::start(&PipelineConfig { workers: 1, ..Default::default() }, inputs, PipelineOutputs::default()).expect("pipeline starts");
        // The tail hands the records over asynchronously: sync until all are in.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while handle.stats().received < 2 {
            assert!(std::time::Instant::now() < deadline, "the dataflow did not read the log: {:?}", handle.stats());
            std::thread::sleep(Duration::from_millis(10));
        }
        handle.sync(Duration::from_secs(60)).expect("the dataflow catches up");
        let r = handle.views().query(&StatsQuery::new("replay", from_ms, to_ms, Bucket::Day)).expect("query");
        let seen = Seen {
            days: r.rows.iter().map(|row| (row.bucket_start_ms, row.clicks, row.uniques)).collect(),
            total_clicks: r.totals.clicks,
            too_late: handle.dead_letters().get(DeadLetterReason::TooLate),
            future: handle.dead_letters().get(DeadLetterReason::Future),
        };
        handle.shutdown();
        handle.join().expect("clean shutdown");
        seen
    })
    .await
    .expect("dataflow task");
    stop.send_replace(true);
    tail.await.expect("tail task");
    seen
}

/// The attack's repro: a click stamped 4 min ahead (accepted by `POST /v1/events` within its
/// 5 min skew), then one 2 min inside the 48 h lateness edge behind the clock. The first run
/// reads them at once; a restart 10 min later replays the log. Both runs show both clicks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_minutes_later_shows_the_views_of_the_first_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("click log");
    // The log records the append time from the wall clock: the events are stamped from it.
    let now = crate::job::now_ms();
    let ahead = now + 4 * MIN;
    let edge = now - 48 * HOUR + 2 * MIN;
    log.append(&[click(0, ahead)]).expect("append the click stamped ahead");
    log.append(&[click(1, edge)]).expect("append the click near the lateness edge");
    let first_read = crate::job::now_ms();
    assert!(first_read - now < MIN, "the appends took a minute");
    let arrivals = log.arrival_times(0..2).expect("arrival times");
    assert_eq!(arrivals.iter().map(|&(o, _)| o).collect::<Vec<_>>(), vec![0], "only the click stamped ahead has one");
    assert!((now..=first_read).contains(&arrivals[0].1), "{arrivals:?}");

    let day = |ts: i64| ts - ts.rem_euclid(DAY);
    let want = Seen { days: vec![(day(edge), 1, 1), (day(ahead), 1, 1)], total_clicks: 2, too_late: 0, future: 0 };
    let (from, to) = (day(edge), day(ahead) + DAY);
    let first = run_at(&log, first_read, from, to).await;
    assert_eq!(first, want, "the first run counts both clicks");
    let replay = run_at(&log, first_read + 10 * MIN, from, to).await;
    assert_eq!(replay, want, "the replay 10 min later shows the same views, no dead letter");
}
