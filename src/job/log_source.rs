//! The embedded click log as the dataflow's [`ClickSource`], and how far the views are
//! behind it ([`TailProgress`], the stats API's `freshness`).
//!
//! A tokio task (`click-log-tail`) follows the log: it reads batches of entries from the
//! next offset (redb reads and Avro decoding run on the blocking pool), sends them through a
//! bounded channel (back-pressure: at most [`CHANNEL_BATCHES`] batches ahead of the
//! dataflow), and, once at the head, waits for the log's head watch ([`ClickLog::subscribe`])
//! instead of polling. The timely worker's [`LogSource::poll`] only drains the channel, so
//! polls never block on disk.
//!
//! Records carry partition = the process id (0 for a single process), the log offset, the
//! backfill mark and the arrival time the log recorded (for events stamped after their
//! append: the gate caps them at it, so a replay decides as the first read did). A stored entry that does not decode is skipped and counted as
//! `sluice_events_dead_lettered_total{reason="undecodable"}`.
//!
//! Restarts replay the log from [`ClickLog::low`] (the views are in memory); the start
//! offset is a parameter so a checkpoint (`crate::job::checkpoint`) can resume from its recorded offset.
//!
//! Freshness: whenever a poll finds everything up to the log head delivered, it records the
//! time `t` (read before the head). A record delivered by such a poll entered the graph at a
//! processing epoch ≤ `t`, so once the views have applied every epoch below `E`, every click
//! logged before the latest such `t < E` is counted ([`TailProgress::covered_until`]).
//!
//! Clicks accepted by the redirect but still waiting to be appended (the intake's
//! [`PendingFloor`]) are not in the head yet: the recorded instant is `min(t, floor)`, so an
//! `as_of` never claims a click that is still on its way to the log, however long the log
//! writer takes (a starved append thread on a busy machine). The same floor holds the log
//! partition's idle watermark back ([`ClickSource::pending_floor`]): the partition does not
//! turn idle, and its watermark does not advance, past a click it has been promised.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use sluice_connectors::click_log::{ClickLog, arrival_at};
use sluice_dataflows::source::{ClickSource, SourceRecord, SourceStatus};
use sluice_dataflows::wake::WakeSlot;
use sluice_ingest::PendingFloor;
use sluice_schemas::avro::decode_click_event;
use tokio::sync::{mpsc, watch};

use marks::Marks;

mod marks;

/// Batches read ahead of the dataflow.
pub const CHANNEL_BATCHES: usize = 4;
/// Caught-up instants remembered (one per poll ms at most: ~8 s of history).
const CAUGHT_UP_HISTORY: usize = 8192;
/// Margin (ms) kept below an applied epoch: caught-up instants and the pipeline's epochs are
/// read from the same clock ([`EpochClock::process`]), so this only absorbs the ms
/// truncation of the two readings.
const CLOCK_SLACK_MS: i64 = 3;

pub use sluice_dataflows::clock::EpochClock;

/// Shared between the source, the tail task and the stats API (module docs).
#[derive(Debug)]
pub struct TailProgress {
    log: ClickLog,
    clock: EpochClock,
    /// Next offset the dataflow has been handed (everything below was delivered).
    delivered: AtomicU64,
    /// Caught-up instants, as `(t, t)` marks ([`TailProgress::covered_until`]).
    caught_up: Mutex<Marks<i64>>,
    /// `(t, offset)`: a poll at instant `t` had handed the dataflow every entry below
    /// `offset` (recorded when the offset moved; [`TailProgress::backlog_at`]).
    handed: Mutex<Marks<u64>>,
    /// Offset the views held when the tail started (the replay's start).
    start_offset: u64,
    /// Set when the tail task stopped on an error it cannot retry.
    failure: Mutex<Option<String>>,
    /// The low-water mark of the intake feeding the log (`None`: no writer in this process).
    pending: Option<Arc<PendingFloor>>,
    /// The worker polling the [`LogSource`], woken after every batch the tail task sends
    /// (an idle worker parks for up to [`sluice_dataflows::pipeline::IDLE_PARK`]).
    wake: WakeSlot,
}

impl TailProgress {
    fn new(log: ClickLog, from: u64, pending: Option<Arc<PendingFloor>>) -> TailProgress {
        TailProgress {
            pending,
            log,
            clock: EpochClock::process(),
            delivered: AtomicU64::new(from),
            caught_up: Mutex::new(Marks::new(CAUGHT_UP_HISTORY)),
            handed: Mutex::new(Marks::new(CAUGHT_UP_HISTORY)),
            start_offset: from,
            failure: Mutex::new(None),
            wake: WakeSlot::new(),
        }
    }

    /// Why the tail task stopped for good (e.g. a damaged click log page made the reader
    /// panic), `None` while it runs.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }

    fn fail(&self, why: String) {
        *self.failure.lock() = Some(why);
    }

    /// Now on the clock caught-up instants are measured with.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Next offset the dataflow has been handed.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    /// The lowest event time (ms UTC) of the clicks accepted in this process and not yet
    /// in the log; `None` when there is none.
    pub fn pending_floor(&self) -> Option<i64> {
        self.pending.as_ref().and_then(|p| p.floor())
    }

    /// Log events not yet handed to the dataflow.
    pub fn backlog(&self) -> u64 {
        self.log.head().saturating_sub(self.delivered())
    }

    /// Log events not reflected in views that applied every epoch below `applied_epoch`:
    /// `head − offset`, where `offset` is what the latest poll before the epoch (less the
    /// clock slack) had handed over — a record handed over by a poll at instant `t` entered
    /// the graph at an epoch ≤ `t` (module docs). During a replay this stays above 0 until
    /// the views have applied the replayed events, unlike [`TailProgress::backlog`].
    pub fn backlog_at(&self, applied_epoch: u64) -> u64 {
        let limit = i64::try_from(applied_epoch).unwrap_or(i64::MAX).saturating_sub(CLOCK_SLACK_MS);
        let applied = self.handed.lock().latest_before(limit).unwrap_or(self.start_offset);
        self.log.head().saturating_sub(applied)
    }

    fn mark_handed(&self, t: i64, offset: u64) {
        self.handed.lock().push(t, offset);
    }

    fn mark_caught_up(&self, t: i64) {
        self.caught_up.lock().push(t, t);
    }

    /// The latest instant (ms UTC) before which every logged click is reflected in views
    /// that applied every epoch below `applied_epoch`; `None` if the source has not caught
    /// up with the log since the process started (replay in progress).
    pub fn covered_until(&self, applied_epoch: u64) -> Option<i64> {
        let limit = i64::try_from(applied_epoch).unwrap_or(i64::MAX).saturating_sub(CLOCK_SLACK_MS);
        self.caught_up.lock().latest_before(limit)
    }
}

impl sluice_serving::stats::Frontier for TailProgress {
    fn covered_until(&self, applied_epoch: u64) -> Option<i64> {
        TailProgress::covered_until(self, applied_epoch)
    }
    fn backlog(&self) -> u64 {
        TailProgress::backlog(self)
    }
    fn backlog_at(&self, applied_epoch: u64) -> u64 {
        TailProgress::backlog_at(self, applied_epoch)
    }
}

struct Batch {
    records: Vec<SourceRecord>,
    /// Offset after the last entry read (decodable or not).
    next: u64,
}

/// The dataflow's source over the embedded click log (module docs). Built by
/// [`start_tail`]; polled by one timely worker.
pub struct LogSource {
    partition: u32,
    rx: mpsc::Receiver<Batch>,
    pending: VecDeque<SourceRecord>,
    pending_next: u64,
    progress: Arc<TailProgress>,
    /// Whether the polling thread is registered in `progress.wake`.
    registered: bool,
}

impl std::fmt::Debug for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSource").field("partition", &self.partition).field("delivered", &self.progress.delivered()).finish()
    }
}

impl ClickSource for LogSource {
    fn partitions(&self) -> Vec<u32> {
        vec![self.partition]
    }

    fn poll(&mut self, out: &mut Vec<SourceRecord>, max: usize) -> SourceStatus {
        if !self.registered {
            self.progress.wake.register();
            self.registered = true;
        }
        let mut n = 0;
        while n < max {
            if self.pending.is_empty() {
                match self.rx.try_recv() {
                    Ok(b) => {
                        self.pending.extend(b.records);
                        self.pending_next = b.next;
                        if self.pending.is_empty() {
                            self.progress.delivered.store(b.next, Ordering::Release);
                        }
                        continue;
                    }
                    Err(_) => break,
                }
            }
            let k = self.pending.len().min(max - n);
            out.extend(self.pending.drain(..k));
            n += k;
            if self.pending.is_empty() {
                self.progress.delivered.store(self.pending_next, Ordering::Release);
            }
        }
        // Time first, then the intake's floor, then the head: every click accepted before
        // `t` is in `head` or still pending with `ts >= floor`.
        let t = self.progress.clock.now_ms();
        let floor = self.progress.pending_floor();
        let delivered = self.progress.delivered();
        self.progress.mark_handed(t, delivered);
        let caught_up = self.pending.is_empty() && delivered >= self.progress.log.head();
        if caught_up {
            self.progress.mark_caught_up(floor.map_or(t, |f| t.min(f)));
        }
        if n > 0 || !caught_up { SourceStatus::Active } else { SourceStatus::Idle }
    }

    fn pending_floor(&self) -> Option<i64> {
        self.progress.pending_floor()
    }
}

/// A source with no partitions (the workers that do not read the log).
#[derive(Debug, Default)]
pub struct NoSource;

impl ClickSource for NoSource {
    fn partitions(&self) -> Vec<u32> {
        Vec::new()
    }
    fn poll(&mut self, _out: &mut Vec<SourceRecord>, _max: usize) -> SourceStatus {
        SourceStatus::Idle
    }
}

/// Starts the `click-log-tail` task reading `log` from offset `from` (clamped to
/// [`ClickLog::low`]) as `partition`, in batches of `batch` entries, until `stop` turns
/// true. `pending` is the low-water mark of the intake writing to `log` in this process
/// (module docs). Returns the source to hand the dataflow and the shared progress.
///
/// # Panics
/// If called outside a tokio runtime.
pub fn start_tail(
    log: ClickLog,
    partition: u32,
    from: u64,
    batch: usize,
    stop: watch::Receiver<bool>,
    pending: Option<Arc<PendingFloor>>,
) -> (LogSource, Arc<TailProgress>, tokio::task::JoinHandle<()>) {
    let from = from.max(log.low());
    let progress = Arc::new(TailProgress::new(log.clone(), from, pending));
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let task = tokio::spawn(tail_loop(log, partition, from, batch.max(1), tx, stop, Arc::clone(&progress)));
    let source = LogSource { partition, rx, pending: VecDeque::new(), pending_next: from, progress: Arc::clone(&progress), registered: false };
    (source, progress, task)
}

async fn tail_loop(
    log: ClickLog,
    partition: u32,
    mut next: u64,
    batch: usize,
    tx: mpsc::Sender<Batch>,
    mut stop: watch::Receiver<bool>,
    progress: Arc<TailProgress>,
) {
    let mut heads = log.subscribe();
    let mut failures = 0u32;
    let undecodable = metrics::counter!("sluice_events_dead_lettered_total", "reason" => "undecodable");
    loop {
        if *stop.borrow() {
            break;
        }
        next = next.max(log.low());
        if next >= log.head() {
            tokio::select! {
                r = heads.changed() => if r.is_err() { break },
                _ = stop.changed() => {}
            }
            continue;
        }
        let l = log.clone();
        let read = tokio::task::spawn_blocking(move || read_batch(&l, partition, next, batch)).await;
        match read {
            Ok(Ok((b, bad))) => {
                failures = 0;
                if bad > 0 {
                    undecodable.increment(bad);
                }
                next = b.next;
                tokio::select! {
                    r = tx.send(b) => if r.is_err() { break },
                    _ = stop.changed() => {}
                }
                progress.wake.wake();
            }
            Ok(Err(e)) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(error = %e, offset = next, failures, "could not read the click log; retrying");
                }
                metrics::counter!("sluice_click_log_read_errors_total").increment(1);
                let backoff = Duration::from_millis(10u64 << failures.min(7));
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, offset = next, "click log read task failed; /readyz now answers 503");
                progress.fail(format!("reading the click log at offset {next} failed: {e}"));
                break;
            }
        }
    }
    tracing::debug!(next, "click log tail stopped");
}

/// Reads up to `max` entries from `from`: the records, the next offset, and how many
/// entries did not decode (skipped).
fn read_batch(log: &ClickLog, partition: u32, from: u64, max: usize) -> sluice_connectors::Result<(Batch, u64)> {
    let raw = log.read_raw(from, max)?;
    let (Some(first), Some(last)) = (raw.first().map(|r| r.0), raw.last().map(|r| r.0)) else {
        return Ok((Batch { records: Vec::new(), next: from }, 0));
    };
    let marks = log.backfill_offsets(first..last + 1)?;
    let arrivals = log.arrival_times(first..last + 1)?;
    let mut records = Vec::with_capacity(raw.len());
    let mut bad = 0;
    for (offset, bytes) in raw {
        match decode_click_event(&bytes) {
            Ok(event) => records.push(SourceRecord {
                partition,
                offset,
                event,
                backfill: marks.binary_search(&offset).is_ok(),
                arrival_ms: arrival_at(&arrivals, offset),
            }),
            Err(e) => {
                bad += 1;
                tracing::warn!(offset, error = %e, "skipping a click-log entry that does not decode");
            }
        }
    }
    Ok((Batch { records, next: last + 1 }, bad))
}

/// `/readyz`'s view of the click log tail (a required dependency: when it stopped, the stats
/// no longer count new clicks). Its status: `up`, or `catching_up` while the dataflow has
/// not read every logged click (a replay at start, or a burst), with `delivered` (the next
/// log offset to read) and `backlog` (log events not read yet); both keep the process ready,
/// since redirects and the API do not wait for the stats.
pub struct ClickLogHealth(pub Arc<TailProgress>);

impl crate::health::Dependency for ClickLogHealth {
    fn name(&self) -> &'static str {
        "click_log"
    }

    fn status(&self) -> (bool, serde_json::Value) {
        match self.0.failure() {
            None => {
                let backlog = self.0.backlog();
                (true, serde_json::json!({ "status": if backlog > 0 { "catching_up" } else { "up" }, "delivered": self.0.delivered(), "backlog": backlog }))
            }
            Some(why) => (false, serde_json::json!({ "status": "failed", "error": why })),
        }
    }

    fn required(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod held_writer_tests;
#[cfg(test)]
mod replay_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> (tempfile::TempDir, TailProgress) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ClickLog::open(dir.path()).expect("log");
        (dir, TailProgress::new(log, 0, None))
    }

    #[test]
    fn covered_until_is_the_latest_caught_up_instant_before_the_frontier() {
        let (_dir, p) = progress();
        assert_eq!(p.covered_until(1_000), None, "never caught up");
        for t in [100, 200, 300, 400] {
            p.mark_caught_up(t);
        }
        p.mark_caught_up(300); // not ascending: ignored
        assert_eq!(p.covered_until(50), None);
        assert_eq!(p.covered_until(250), Some(200));
        assert_eq!(p.covered_until(303), Some(200), "the clock slack keeps 300 out");
        assert_eq!(p.covered_until(304), Some(300));
        assert_eq!(p.covered_until(10_000), Some(400));
    }

    #[test]
    fn evicted_instants_still_bound_the_frontier() {
        let (_dir, p) = progress();
        for t in 0..(CAUGHT_UP_HISTORY as i64 + 10) {
            p.mark_caught_up(1_000 + t);
        }
        // 1000..=1009 were evicted; the largest evicted one answers for older frontiers.
        assert_eq!(p.covered_until(1_013), Some(1_009));
        assert_eq!(p.covered_until(1_012), None, "no instant before 1_009 is left");
        assert_eq!(p.covered_until(1_016), Some(1_012));
    }

    fn logged(i: u64) -> sluice_schemas::ClickEvent {
        sluice_schemas::ClickEvent {
            event_id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(i + 1)),
            code: "bk".into(),
            ts: 1_000 + i as i64,
            ip_trunc: None,
            visitor_id: i,
            user_agent: String::new(),
            referrer: None,
            accept_language: None,
            edge_region: None,
        }
    }

    /// An answer's backlog counts what was handed to the dataflow but not yet applied at its
    /// epoch (a replay in progress never answers 0 with its counts missing), and nothing
    /// once the epoch passed the poll that handed the last entry over.
    #[test]
    fn backlog_at_counts_handed_but_unapplied_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ClickLog::open(dir.path()).expect("log");
        log.append(&(0..10).map(logged).collect::<Vec<_>>()).expect("append");
        // The views started from a checkpoint at offset 2.
        let p = TailProgress::new(log, 2, None);
        assert_eq!(p.backlog(), 8);
        assert_eq!(p.backlog_at(1_000), 8, "nothing handed over yet");
        p.mark_handed(100, 6);
        p.mark_handed(200, 10);
        p.delivered.store(10, Ordering::Release);
        assert_eq!(p.backlog(), 0, "everything read");
        assert_eq!(p.backlog_at(100 + CLOCK_SLACK_MS as u64), 8, "the poll at 100 may still be in the epoch being applied");
        assert_eq!(p.backlog_at(101 + CLOCK_SLACK_MS as u64), 4);
        assert_eq!(p.backlog_at(201 + CLOCK_SLACK_MS as u64), 0);
        p.mark_handed(150, 12); // an instant before the last one: ignored
        p.mark_handed(300, 10); // no progress: ignored
        assert_eq!(p.handed.lock().len(), 2);
    }

    /// A tail that stopped on a read failure makes `/readyz` answer 503 naming it; a
    /// running one is reported and ready.
    #[tokio::test]
    async fn a_failed_tail_makes_readyz_fail() {
        use tower::ServiceExt;
        let (dir, p) = progress();
        let store = sluice_connectors::open_store(dir.path().join("links").to_str().expect("utf-8")).await.expect("store");
        let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
        let p = Arc::new(p);
        let health = crate::health::HealthState { store, prometheus, dependencies: vec![Arc::new(ClickLogHealth(Arc::clone(&p)))] };
        let ready = |h: crate::health::HealthState| async move {
            let resp = crate::health::routes(h)
                .oneshot(axum::http::Request::get("/readyz").body(axum::body::Body::empty()).expect("request"))
                .await
                .expect("response");
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
            (status, serde_json::from_slice::<serde_json::Value>(&body).expect("json"))
        };
        let (status, body) = ready(health.clone()).await;
        assert_eq!((status.as_u16(), &body["dependencies"]["click_log"]), (200, &serde_json::json!({"status": "up", "delivered": 0, "backlog": 0})), "{body}");
        // Clicks logged and not read yet (a replay): ready, catching up, the backlog counted.
        p.log.append(&(0..5).map(logged).collect::<Vec<_>>()).expect("append");
        p.delivered.store(2, Ordering::Release);
        let (status, body) = ready(health.clone()).await;
        assert_eq!(
            (status.as_u16(), &body["dependencies"]["click_log"]),
            (200, &serde_json::json!({"status": "catching_up", "delivered": 2, "backlog": 3})),
            "{body}"
        );
        p.delivered.store(5, Ordering::Release);
        let (_, body) = ready(health.clone()).await;
        assert_eq!(body["dependencies"]["click_log"], serde_json::json!({"status": "up", "delivered": 5, "backlog": 0}), "{body}");
        p.fail("reading the click log at offset 7 failed: task panicked".into());
        let (status, body) = ready(health).await;
        assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (503, Some("not_ready")), "{body}");
        assert_eq!(body["error"]["details"]["click_log"]["error"], "reading the click log at offset 7 failed: task panicked");
    }
}
