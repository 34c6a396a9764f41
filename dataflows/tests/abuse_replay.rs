//! The abuse detectors do not depend on how the click log is read. A restart before the
//! first checkpoint (e.g. after `kill -9`) replays the whole log in a few big batches;
//! the uninterrupted run read it live, a second at a time. Both must raise exactly the same
//! anomalies (ids are derived from `(kind, key, window start)`) — also when the log holds
//! late events, which `POST /v1/events` accepts with past event times (`sluice loadgen`
//! posts 3 % of them, up to 10 minutes old).
//!
//! The regression: the detectors' history origin (the start of their warm-up) was the
//! earliest click held when the first watermark arrived. Live, that is the first click; in
//! a replay it is the oldest late event of the first batch, minutes earlier. A link first
//! seen through such an event then counted as watched (with no clicks) for those minutes,
//! so its warm-up was over and its baseline zero when its real traffic began: a
//! `click_burst` on a link with perfectly steady traffic, in the replay only.

mod support;

use std::sync::{Arc, Mutex};

use sluice_dataflows::pipeline::PipelineOutputs;
use sluice_dataflows::source::SourceRecord;
use sluice_schemas::{Anomaly, AnomalyKind, ClickEvent};
use support::{BROWSER_UA, Harness, MIN, config, event};

/// 2026-03-02T10:00:00Z.
const T0: i64 = 1_772_445_600_000;
/// End of the traffic: well past the 3-minute warm-up.
const END: i64 = T0 + 6 * MIN;

/// The click log, in append order: two links with steady traffic from `T0` (one click per
/// 500 ms and per second, each from a new visitor), and — appended among the clicks of
/// `T0 + 30 s` — a late event of each link, 8 and 5 minutes old.
fn log() -> Vec<SourceRecord> {
    let mut events: Vec<ClickEvent> = Vec::new();
    let mut id = 1u128 << 90;
    let mut next = || {
        id += 1;
        id
    };
    let mut visitor = 1_000u64;
    let mut ts = T0;
    while ts < END {
        for (code, every) in [("steady", 500), ("calm", 1_000)] {
            if (ts - T0) % every == 0 {
                visitor += 1;
                events.push(event(next(), code, ts, visitor, BROWSER_UA, None, None));
            }
        }
        if ts == T0 + 30_000 {
            events.push(event(next(), "steady", T0 - 8 * MIN, 7, BROWSER_UA, None, None));
            events.push(event(next(), "calm", T0 - 5 * MIN, 8, BROWSER_UA, None, None));
        }
        ts += 500;
    }
    events.into_iter().enumerate().map(|(i, event)| SourceRecord { partition: 0, offset: i as u64, event, backfill: false, arrival_ms: None }).collect()
}

/// What identifies an anomaly event independently of when it was processed.
type Key = (uuid::Uuid, AnomalyKind, String, u32, String, i64);

fn keys(events: &[Anomaly]) -> Vec<Key> {
    let mut k: Vec<Key> =
        events.iter().map(|a| (a.anomaly_id, a.kind, a.key.clone(), a.revision, format!("{:?}/{:?}", a.status, a.severity), a.window_start)).collect();
    k.sort();
    k
}

fn harness(now: i64) -> (Harness, Arc<Mutex<Vec<Anomaly>>>) {
    let got: Arc<Mutex<Vec<Anomaly>>> = Arc::default();
    let sink = Arc::clone(&got);
    let outputs = PipelineOutputs { anomalies: Some(Arc::new(move |b: &[Anomaly]| sink.lock().expect("sink").extend_from_slice(b))), ..Default::default() };
    (Harness::start(config(2), 1, now, None, outputs), got)
}

/// The uninterrupted run: the log read as it was written, one second at a time, with the
/// processing clock following the traffic.
fn live(log: &[SourceRecord]) -> Vec<Anomaly> {
    let (h, got) = harness(T0);
    let mut start = 0;
    while start < log.len() {
        let second = log[start].event.ts.max(T0).div_euclid(1_000);
        let mut end = start;
        while end < log.len() && (log[end].event.ts < T0 || log[end].event.ts.div_euclid(1_000) == second) {
            end += 1;
        }
        h.clock.set(second * 1_000 + 999);
        h.feed.push_records(log[start..end].to_vec());
        h.sync();
        start = end;
    }
    got.lock().expect("sink").clone()
}

/// The restart: the whole log replayed at once, after the traffic.
fn replay(log: &[SourceRecord]) -> Vec<Anomaly> {
    let (h, got) = harness(END + 10_000);
    h.feed.push_records(log.to_vec());
    h.sync();
    got.lock().expect("sink").clone()
}

#[test]
fn a_replay_of_the_log_raises_exactly_the_anomalies_of_the_live_run() {
    let log = log();
    let live = live(&log);
    let replayed = replay(&log);
    // Steady traffic from new visitors, nothing else: no anomaly at all.
    assert_eq!(keys(&live), vec![], "the live run: {live:#?}");
    assert_eq!(keys(&replayed), keys(&live), "the replay raised other anomalies: {replayed:#?}");
}
