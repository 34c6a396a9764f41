//! Anomalies open in the anomaly store when a pipeline restores a checkpoint are taken over
//! by the abuse detectors (module `operators::abuse::anomaly_lifecycle`, **Restart**): with
//! any number of workers each is continued by exactly the worker owning its key and, with no
//! condition after the restore, closed once, with its next revision, a quiet window after its
//! `window_end`. A start without a checkpoint adopts nothing (it replays the input instead).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_schemas::anomaly::anomaly_id;
use sluice_schemas::{Anomaly, AnomalyKind, AnomalyStatus, ClickEvent, Evidence, Severity};

use super::DataflowSnapshot;
use super::tests::{NOW, TestEnricher, snapshot_of};
use crate::clock::ManualClock;
use crate::config::PipelineConfig;
use crate::pipeline::{self, CheckpointOptions, PipelineHandle, PipelineInputs, PipelineOutputs};
use crate::source::{MemoryFeed, SourceRecord};

const T0: i64 = NOW - 3_600_000;

/// `n` clicks on partition 0 from offset `first`, one every 2 s from `T0 + 2 s × first`, on 4
/// codes by 50 visitors (nowhere near a detector's threshold).
fn clicks(first: u64, n: u64) -> Vec<SourceRecord> {
    (first..first + n)
        .map(|i| {
            let event = ClickEvent {
                event_id: uuid::Uuid::from_u128(u128::from(i) + 1),
                code: format!("c{}", i % 4),
                ts: T0 + i64::try_from(i).expect("i") * 2_000,
                ip_trunc: None,
                visitor_id: 1_000 + i % 50,
                user_agent: String::new(),
                referrer: None,
                accept_language: None,
                edge_region: None,
            };
            SourceRecord { partition: 0, offset: i, event, backfill: false, arrival_ms: None }
        })
        .collect()
}

type Events = Arc<Mutex<Vec<Anomaly>>>;

fn start(workers: usize, feed: &MemoryFeed, restore: Option<DataflowSnapshot>, open: Vec<Anomaly>) -> (PipelineHandle, Events) {
    let got: Events = Arc::default();
    let sink = Arc::clone(&got);
    let outputs = PipelineOutputs { anomalies: Some(Arc::new(move |b: &[Anomaly]| sink.lock().expect("sink").extend_from_slice(b))), ..Default::default() };
    let inputs = PipelineInputs { source: feed.factory(), enricher: TestEnricher, clock: Arc::new(ManualClock::new(NOW)), link_meta: None };
    let cfg = PipelineConfig { workers, ..Default::default() };
    let h = pipeline::start_with_checkpoints(&cfg, inputs, outputs, Some(CheckpointOptions { restore, open_anomalies: open })).expect("pipeline starts");
    (h, got)
}

/// The stored latest event of an anomaly whose window started at `T0 + start_s` s (60 s
/// windows) and last held at its `window_end`, `T0 + start_s + 60 s + revision s`.
fn stored(kind: AnomalyKind, key: &str, start_s: i64, revision: u32, status: AnomalyStatus) -> Anomaly {
    let window_start = T0 + start_s * 1_000;
    Anomaly {
        anomaly_id: anomaly_id(kind, key, window_start),
        revision,
        status,
        kind,
        key: key.to_string(),
        severity: Severity::Critical,
        code: Some("c1".into()),
        org: None,
        window_start,
        window_end: window_start + 60_000 + i64::from(revision) * 1_000,
        observed: 150.0,
        expected: 60.0,
        score: 2.5,
        summary: format!("{} on {key}", kind.as_str()),
        evidence: Evidence { window_ms: 60_000, clicks: 150, ..Evidence::default() },
        detected_at: T0,
    }
}

#[test]
fn a_restored_pipeline_closes_each_open_anomaly_of_the_store_once() {
    use AnomalyKind::*;
    use AnomalyStatus::*;
    // A checkpoint after 2 minutes of clicks.
    let feed = MemoryFeed::new([0]);
    let (a, _) = start(1, &feed, None, Vec::new());
    feed.push_records(clicks(0, 60));
    a.sync(Duration::from_secs(60)).expect("sync");
    let snap = snapshot_of(&a);
    drop(a);
    assert_eq!(snap.offsets.get(&0), Some(&60));

    let older = stored(VisitorFlood, "visitor:00000000000003e9", 0, 1, Updated);
    let open = vec![
        stored(VisitorFlood, "visitor:00000000000003e9", 40, 2, Updated),
        older.clone(), // a second open anomaly of the same key (older): closed at once
        stored(VisitorFlood, "visitor:00000000000003ea", 50, 0, Open),
        stored(VisitorFlood, "network:203.0.113.0/24", 50, 0, Open),
        stored(ClickBurst, "link:c1", 45, 3, Updated), // a link with clicks after the restore
        stored(BotShare, "link:zz", 50, 0, Open),      // a link without any
    ];
    let closed = stored(VisitorFlood, "visitor:00000000000003eb", 50, 4, Closed);
    let mut given = open.clone();
    given.push(closed.clone());

    // Restored with 3 workers; 8 more minutes of clicks move the watermark far past every
    // window_end + 60 s.
    let feed = MemoryFeed::new([0]);
    let (b, got) = start(3, &feed, Some(snap.clone()), given.clone());
    feed.push_records(clicks(60, 240));
    b.sync(Duration::from_secs(60)).expect("sync");
    drop(b);
    let ids: Vec<_> = given.iter().map(|a| a.anomaly_id).collect();
    let mut mine: Vec<Anomaly> = got.lock().expect("events").iter().filter(|e| ids.contains(&e.anomaly_id)).cloned().collect();
    mine.sort_by_key(|e| (e.window_start, e.key.clone()));
    let mut want: Vec<Anomaly> = open.iter().map(|a| Anomaly { revision: a.revision + 1, status: Closed, detected_at: NOW, ..a.clone() }).collect();
    want.sort_by_key(|e| (e.window_start, e.key.clone()));
    assert_eq!(mine, want, "each open anomaly closed once with its next revision, its values and window_end kept");
    assert!(want.iter().any(|w| w.anomaly_id == older.anomaly_id));

    // Without a checkpoint the input is replayed from its start: nothing is adopted.
    let feed = MemoryFeed::new([0]);
    let (c, got) = start(3, &feed, None, given);
    feed.push_records(clicks(0, 300));
    c.sync(Duration::from_secs(60)).expect("sync");
    drop(c);
    assert_eq!(got.lock().expect("events").iter().filter(|e| ids.contains(&e.anomaly_id)).count(), 0);
}
