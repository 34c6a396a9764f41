//! Attack of session 56: a flood whose clicks reached the live run stamped behind ticks
//! the detectors had already evaluated (300 events of one client posted to `POST
//! /v1/events` stamped 15 s to 6 s in the past, while other traffic kept event time moving)
//! is opened live at the first tick after the batch; a replay of the click log without a
//! checkpoint has every click from the start and opens the same episode 14 s earlier, so
//! under another id. The replay must continue the stored anomaly instead (same id, next
//! revisions, closed when the replay says so), open no second one for the key, and a second
//! replay (after the first closed it) must emit nothing for it.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sluice_dataflows::anomaly::StoredAnomalies;
use sluice_dataflows::pipeline::PipelineOutputs;
use sluice_dataflows::source::SourceRecord;
use sluice_schemas::{Anomaly, AnomalyKind, AnomalyStatus, Severity};
use support::{BROWSER_UA, Harness, config, event};

/// 2026-03-02T10:00:00Z.
const T0: i64 = 1_772_445_600_000;
/// When the flood's batch is posted (live): 60 s into the traffic.
const F: i64 = T0 + 60_000;
/// The live run stops 20 s after the flood (its anomaly open).
const STOP: i64 = F + 20_000;
/// The restarted process's traffic runs until here.
const END: i64 = F + 240_000;
/// The flooding client.
const FLOODER: u64 = 0xfa;
const FLOOD_KEY: &str = "visitor:00000000000000fa";

/// Every record of the run in append order, each with the processing time at which the
/// live run read it: background clicks on `bg` every 100 ms from `T0` to `END`, each from
/// a new visitor (event time follows the clock), and after the clicks of second `F` the
/// flood: 300 clicks on `fa` from one client, stamped `F − 15 s` to `F − 6 s` (30 ms apart).
fn log() -> Vec<(i64, SourceRecord)> {
    let mut events = Vec::new();
    let mut ts = T0;
    let mut visitor = 1_000u64;
    while ts < END {
        visitor += 1;
        let at = ts.div_euclid(1_000) * 1_000 + 999;
        events.push((at, event(0, "bg", ts, visitor, BROWSER_UA, None, None)));
        if ts == F + 900 {
            events.extend((0..300).map(|i| (at, event(0, "fa", F - 15_000 + i * 30, FLOODER, BROWSER_UA, Some("10.4.4.0"), None))));
        }
        ts += 100;
    }
    events
        .into_iter()
        .enumerate()
        .map(|(i, (at, mut event))| {
            event.event_id = uuid::Uuid::from_u128((1u128 << 90) + i as u128);
            (at, SourceRecord { partition: 0, offset: i as u64, event, backfill: false, arrival_ms: None })
        })
        .collect()
}

fn harness(now: i64, stored: impl Into<StoredAnomalies>) -> (Harness, Arc<Mutex<Vec<Anomaly>>>) {
    let got: Arc<Mutex<Vec<Anomaly>>> = Arc::default();
    let sink = Arc::clone(&got);
    let outputs = PipelineOutputs {
        anomalies: Some(Arc::new(move |b: &[Anomaly]| sink.lock().expect("sink").extend_from_slice(b))),
        stored_anomalies: stored.into(),
        ..Default::default()
    };
    (Harness::start(config(2), 1, now, None, outputs), got)
}

/// Feeds `records` to `h` a second of event time at a time, the clock following them.
fn feed_by_second(h: &Harness, records: &[(i64, SourceRecord)]) {
    let mut i = 0;
    while i < records.len() {
        let at = records[i].0;
        let j = i + records[i..].iter().take_while(|(t, _)| *t == at).count();
        h.clock.set(at);
        h.feed.push_records(records[i..j].iter().map(|(_, r)| r.clone()));
        h.sync();
        i = j;
    }
}

/// The live run until `STOP`: the log read a second at a time, the clock following it.
fn live(log: &[(i64, SourceRecord)]) -> Vec<Anomaly> {
    let (h, got) = harness(T0, Vec::new());
    let cut = log.iter().position(|(at, _)| *at >= STOP).unwrap_or(log.len());
    feed_by_second(&h, &log[..cut]);
    got.lock().expect("sink").clone()
}

/// A start without a checkpoint: the log up to `STOP` replayed at once, then the rest of
/// the traffic a second at a time; `stored` is what the anomaly store holds.
fn replay(log: &[(i64, SourceRecord)], stored: impl Into<StoredAnomalies>) -> Vec<Anomaly> {
    let (h, got) = harness(STOP + 1_000, stored);
    let cut = log.iter().position(|(at, _)| *at >= STOP).expect("traffic after the stop");
    h.feed.push_records(log[..cut].iter().map(|(_, r)| r.clone()));
    h.sync();
    feed_by_second(&h, &log[cut..]);
    got.lock().expect("sink").clone()
}

/// The store's latest state of each anomaly after `events` (highest revision; nothing
/// after a `closed` one).
fn latest(events: &[Anomaly]) -> Vec<Anomaly> {
    let mut m: BTreeMap<uuid::Uuid, Anomaly> = BTreeMap::new();
    for e in events {
        match m.get(&e.anomaly_id) {
            Some(p) if p.status == AnomalyStatus::Closed || p.revision >= e.revision => {}
            _ => {
                m.insert(e.anomaly_id, e.clone());
            }
        }
    }
    m.into_values().collect()
}

type Row = (uuid::Uuid, AnomalyStatus, u32, Severity, i64, i64);

/// `(id, status, revision, severity, window_start, window_end)` of the flooder's events.
fn flood_rows(events: &[Anomaly]) -> Vec<Row> {
    events
        .iter()
        .filter(|a| a.kind == AnomalyKind::VisitorFlood && a.key == FLOOD_KEY)
        .map(|a| (a.anomaly_id, a.status, a.revision, a.severity, a.window_start, a.window_end))
        .collect()
}

#[test]
fn a_replay_continues_the_stored_anomaly_of_a_flood_that_came_late_and_closes_it() {
    use AnomalyStatus::*;
    let log = log();
    let live = live(&log);
    // Live: opened at the first tick after the batch (F, evaluated with the clicks of F + 900 ms), critical with all 300 clicks.
    let a = sluice_schemas::anomaly::anomaly_id(AnomalyKind::VisitorFlood, FLOOD_KEY, F - 60_000);
    assert_eq!(flood_rows(&live), vec![(a, Open, 0, Severity::Critical, F - 60_000, F)], "{live:#?}");
    let stored = latest(&live);

    // Without the store (what the replay derives by itself): the episode opens 14 s earlier.
    let alone = replay(&log, Vec::new());
    let twin = sluice_schemas::anomaly::anomaly_id(AnomalyKind::VisitorFlood, FLOOD_KEY, F - 14_000 - 60_000);
    assert_eq!(flood_rows(&alone).first().map(|r| (r.0, r.1, r.4)), Some((twin, Open, F - 74_000)), "{alone:#?}");

    // With it: the same anomaly goes on (its severity falls as the clicks leave the window)
    // and closes a quiet period after the last tick it held; no other id for the key.
    let first = replay(&log, stored.clone());
    let rows = flood_rows(&first);
    assert!(rows.iter().all(|r| r.0 == a && r.4 == F - 60_000), "one anomaly for the key: {rows:#?}");
    let statuses: Vec<(AnomalyStatus, u32)> = rows.iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(statuses.last(), Some(&(Closed, statuses.len() as u32)), "{rows:#?}");
    assert!(statuses[..statuses.len() - 1].iter().enumerate().all(|(i, s)| *s == (Updated, i as u32 + 1)), "{rows:#?}");
    // Nothing else changed: the other keys' events are those of the replay alone.
    let others = |ev: &[Anomaly]| -> Vec<(uuid::Uuid, AnomalyStatus, u32)> {
        let mut v: Vec<_> = ev.iter().filter(|e| e.key != FLOOD_KEY).map(|e| (e.anomaly_id, e.status, e.revision)).collect();
        v.sort();
        v
    };
    assert_eq!(others(&first), others(&alone));

    // A second start without a checkpoint, after the first closed it: nothing for the key.
    let mut after: Vec<Anomaly> = stored.iter().filter(|s| s.key != FLOOD_KEY).cloned().collect();
    after.extend(latest(&first).into_iter().filter(|s| s.key == FLOOD_KEY));
    let second = replay(&log, latest(&[after, first.clone()].concat()));
    assert_eq!(flood_rows(&second), vec![], "{second:#?}");
}

/// The store of a version without this (the twin stored beside the original, which stayed
/// open): a replay derives the twin again (as is) and closes the orphan 2 windows after its
/// last `window_end`, repeating its values.
#[test]
fn a_replay_closes_a_stored_open_anomaly_it_does_not_derive_again() {
    use AnomalyStatus::*;
    let log = log();
    let live = live(&log);
    let alone = replay(&log, Vec::new());
    let mut stored = latest(&live);
    stored.extend(latest(&alone).into_iter().filter(|a| a.key == FLOOD_KEY));
    let a = latest(&live).into_iter().find(|x| x.key == FLOOD_KEY).expect("live anomaly");
    let got = replay(&log, stored);
    let orphan: Vec<Row> = flood_rows(&got).into_iter().filter(|r| r.0 == a.anomaly_id).collect();
    assert_eq!(orphan, vec![(a.anomaly_id, Closed, 1, Severity::Critical, F - 60_000, F)]);
    let twin: Vec<Row> = flood_rows(&got).into_iter().filter(|r| r.0 != a.anomaly_id).collect();
    assert_eq!(twin, flood_rows(&alone));
}

/// Session 57: a start reads only the closed anomalies a replay can meet — those ending after
/// its detectors' first tick minus their window — not every anomaly ever stored. The second
/// replay above, with an anomaly of the flooder that closed an hour before the log starts
/// also in the store: each detector reads the closed ones once, from its first tick minus the
/// window (60 s) — the tick after the earliest click it holds at the first watermark (`T0`),
/// or after that watermark (`T0 + 79.9 s`: the backlog up to the stop is read in one batch)
/// for the one that holds none then; the old one is never read, the anomaly the first replay
/// closed is, and still mutes the replayed twin.
#[test]
fn a_replay_reads_only_the_closed_anomalies_it_can_meet() {
    let log = log();
    let live = live(&log);
    let first = replay(&log, latest(&live));
    let mut closed = latest(&[latest(&live), first].concat());
    let mut old = closed.iter().find(|a| a.key == FLOOD_KEY).expect("the flood's anomaly").clone();
    assert_eq!(old.status, AnomalyStatus::Closed);
    (old.anomaly_id, old.window_start, old.window_end) = (uuid::Uuid::from_u128(7), T0 - 3_660_000, T0 - 3_600_000);
    closed.push(old.clone());
    let all = StoredAnomalies::from(closed);
    // (after_ms, ids read) per call.
    type Calls = Vec<(i64, Vec<uuid::Uuid>)>;
    let calls: Arc<Mutex<Calls>> = Arc::default();
    let seen = Arc::clone(&calls);
    let stored = StoredAnomalies {
        open: Arc::clone(&all.open),
        closed: Some(Arc::new(move |after_ms, keep: &dyn Fn(&Anomaly) -> bool| {
            let got = all.closed_ending_after(after_ms, keep);
            seen.lock().expect("calls").push((after_ms, got.iter().map(|a| a.anomaly_id).collect()));
            got
        })),
    };
    let second = replay(&log, stored);
    assert_eq!(flood_rows(&second), vec![], "{second:#?}");
    let calls = calls.lock().expect("calls").clone();
    let mut afters: Vec<i64> = calls.iter().map(|c| c.0).collect();
    afters.sort_unstable();
    assert_eq!(afters, vec![T0 + 1_000 - 60_000, T0 + 1_000 - 60_000, T0 + 1_000 - 60_000, T0 + 80_000 - 60_000], "2 workers × 2 detectors, once each");
    assert!(calls.iter().all(|(_, ids)| !ids.contains(&old.anomaly_id)), "{calls:?}");
    let flood = latest(&live).into_iter().find(|a| a.key == FLOOD_KEY).expect("live anomaly").anomaly_id;
    assert_eq!(calls.iter().filter(|(_, ids)| ids.contains(&flood)).count(), 1, "read by the flood detector owning the key: {calls:?}");
}
