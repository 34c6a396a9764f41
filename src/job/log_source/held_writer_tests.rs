//! The dataflow over the embedded log while the log writer is held back: clicks accepted by
//! the intake but not yet appended must neither be claimed by the freshness `as_of` nor be
//! overtaken by the log partition's idle watermark (and so dead-lettered as late).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use sluice_connectors::click_log::ClickLog;
use sluice_ingest::{EventLog, LogWriterConfig, click_channel, spawn_log_writer};
use sluice_schemas::ClickEvent;

use crate::config::{Config, DEFAULT_TOML};
use crate::job::DataflowJob;

use super::CLOCK_SLACK_MS;

/// A click log whose appends wait until [`HeldLog::open`] (a blackhole while closed).
#[derive(Clone)]
struct HeldLog {
    log: ClickLog,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl HeldLog {
    fn open(&self) {
        *self.gate.0.lock() = true;
        self.gate.1.notify_all();
    }
}

impl EventLog for HeldLog {
    fn append(&self, events: &[ClickEvent]) -> sluice_connectors::Result<Range<u64>> {
        let mut open = self.gate.0.lock();
        while !*open {
            self.gate.1.wait(&mut open);
        }
        drop(open);
        self.log.append(events)
    }
}

fn click(i: u32, ts: i64) -> ClickEvent {
    firefox_click("held", i, ts)
}

/// Click `i` (event id `i + 1`, visitor `i`) on `code` at `ts` (ms, UTC), from one /24 and
/// one Firefox user agent (also the replay tests' clicks).
pub(super) fn firefox_click(code: &str, i: u32, ts: i64) -> ClickEvent {
    ClickEvent {
        event_id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | (u128::from(i) + 1)),
        code: code.into(),
        ts,
        ip_trunc: Some("81.2.69.0".into()),
        visitor_id: u64::from(i),
        user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".into(),
        referrer: None,
        accept_language: None,
        edge_region: None,
    }
}

/// Writer held for 3 s (well past the 200 ms idle timeout and the 1 s allowed lateness):
/// meanwhile the freshness frontier stays below the held clicks; once released every click
/// is accepted by the gate, none is dead-lettered, and the frontier passes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_held_in_the_writer_are_neither_late_nor_covered_by_as_of() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
    cfg.server.data_dir = dir.path().to_path_buf();
    cfg.dataflow.idle_timeout = Duration::from_millis(200);
    cfg.dataflow.allowed_lateness = Duration::from_secs(1);
    cfg.dataflow.checkpoint_interval = Duration::ZERO;
    let store = sluice_connectors::open_store(dir.path().join("links.db").to_str().expect("utf-8")).await.expect("store");
    let log = ClickLog::open(dir.path()).expect("click log");
    let held = HeldLog { log: log.clone(), gate: Arc::new((Mutex::new(false), Condvar::new())) };
    let (sender, receiver) = click_channel(1024);
    let pending = Arc::clone(sender.pending());
    let writer = spawn_log_writer(receiver, held.clone(), LogWriterConfig::default());
    let job = DataflowJob::start_with_acks(&cfg, log.clone(), store, None, Default::default(), None, Some(pending)).await.expect("job");

    // One click appended at once, then the log is quiet well past the idle timeout, so the
    // partition would be idle with a watermark following the clock.
    held.open();
    let t0 = crate::job::now_ms();
    assert!(sender.try_send(click(0, t0)));
    // `sync` alone could return before the append: an `as_of` of `t0` claims only the
    // clicks stamped before `t0`.
    let waited = std::time::Instant::now();
    while log.head() < 1 {
        assert!(waited.elapsed() < Duration::from_secs(30), "the first click was not appended");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    job.sync(Duration::from_secs(30)).await.expect("first click in");
    *held.gate.0.lock() = false;
    tokio::time::sleep(Duration::from_millis(600)).await;

    // 50 clicks accepted while the writer is held.
    let first_held = crate::job::now_ms();
    for i in 1..=50 {
        assert!(sender.try_send(click(i, first_held + i64::from(i % 5))));
    }
    let progress = Arc::clone(job.progress());
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let covered = progress.covered_until(job.views().as_of().epoch);
        // The log source's clock and the wall clock read here may differ by a ms or two.
        assert!(covered.is_some_and(|c| c <= first_held + CLOCK_SLACK_MS), "as_of {covered:?} claims clicks still held in the writer (first at {first_held})");
    }
    assert_eq!(log.head(), 1, "the held clicks are not in the log");

    held.open();
    job.sync(Duration::from_secs(30)).await.expect("caught up after the release");
    let stats = job.stats();
    assert_eq!((stats.received, stats.accepted, stats.dead_lettered), (51, 51, 0), "{stats:?}");
    drop(sender);
    let summary = writer.await.expect("writer");
    assert_eq!(summary.logged, 51);
    job.shutdown().await.expect("shutdown");
}
