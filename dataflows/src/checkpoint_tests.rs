//! Checkpoint round trip: a run restored from a snapshot taken while records flowed equals
//! an uninterrupted run exactly (every row's clicks and sketch bytes), re-reads only the
//! records after the snapshot's offsets, and may use a different number of workers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_schemas::ClickEvent;

use super::*;
use crate::clock::ManualClock;
use crate::config::PipelineConfig;
use crate::model::{DimSym, Dims};
use crate::operators::ClickEnricher;
use crate::pipeline::{self, PipelineHandle, PipelineInputs, PipelineOutputs};
use crate::source::{MemoryFeed, SourceRecord};

pub(super) const NOW: i64 = 1_780_000_000_000;

/// Dimensions from the visitor id (a pure function of the event, as required).
#[derive(Clone)]
pub(super) struct TestEnricher;

impl ClickEnricher for TestEnricher {
    fn dims(&mut self, ev: &ClickEvent) -> Dims {
        let v = ev.visitor_id;
        let pick = |xs: &[&str], k: u64| DimSym::new(xs[(k % xs.len() as u64) as usize]);
        Dims {
            values: [
                pick(&["US", "DE", "FR", "IN"], v),
                pick(&["mobile", "desktop"], v / 4),
                pick(&["Safari", "Chrome", "Firefox"], v / 8),
                pick(&["iOS", "Android", "Windows"], v / 3),
                pick(&["(direct)", "news.example", "t.co"], v / 5),
                pick(&["direct", "referral", "social"], v / 5),
            ],
            is_bot: v.is_multiple_of(17),
        }
    }
}

/// A deterministic stream over 2 partitions: 12 codes, visitors up to 400 (rows past the
/// sketch's exact limit), ~6% repeats of earlier event ids (some on the other partition).
fn stream(n: u64) -> Vec<SourceRecord> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut offsets = [0u64; 2];
    let mut out: Vec<SourceRecord> = Vec::new();
    for i in 0..n {
        let r = next();
        let partition = (r % 2) as u32;
        let event = if i > 50 && r % 16 == 3 {
            out[(next() % i) as usize].event.clone()
        } else {
            ClickEvent {
                event_id: uuid::Uuid::from_u128(u128::from(i) + 1),
                code: format!("c{}", next() % 12),
                ts: NOW - 3 * 3_600_000 + i64::try_from(i * 1_500).expect("ts"),
                ip_trunc: None,
                visitor_id: next() % 400,
                user_agent: String::new(),
                referrer: None,
                accept_language: None,
                edge_region: None,
            }
        };
        let offset = offsets[partition as usize];
        offsets[partition as usize] += 1;
        out.push(SourceRecord { partition, offset, event, backfill: false, arrival_ms: None });
    }
    out
}

fn start(workers: usize, feed: &MemoryFeed, restore: Option<DataflowSnapshot>) -> PipelineHandle {
    let inputs = PipelineInputs { source: feed.factory(), enricher: TestEnricher, clock: Arc::new(ManualClock::new(NOW)), link_meta: None };
    let cfg = PipelineConfig { workers, ..Default::default() };
    pipeline::start_with_checkpoints(&cfg, inputs, PipelineOutputs::default(), Some(pipeline::CheckpointOptions { restore, ..Default::default() }))
        .expect("pipeline starts")
}

pub(super) type RowKey = (String, usize, i64, usize, bool, Vec<String>);

/// Every row of every local shard, sorted: key → (clicks, sketch bytes).
pub(super) fn rows(h: &PipelineHandle) -> Vec<(RowKey, u64, Vec<u8>)> {
    let mut all = Vec::new();
    for s in h.views().local_shards() {
        s.read().export_rows(&mut all);
    }
    let mut out: Vec<_> = all
        .into_iter()
        .map(|r| {
            let key = (r.code.to_string(), r.granularity.index(), r.bucket_start_ms, r.view.index(), r.is_bot, r.dims.iter().map(|d| d.to_string()).collect());
            (key, r.clicks, r.sketch)
        })
        .collect();
    out.sort();
    out
}

pub(super) fn snapshot_of(h: &PipelineHandle) -> DataflowSnapshot {
    let c = h.checkpoints().expect("checkpoints enabled");
    let deadline = Instant::now() + Duration::from_secs(60);
    c.begin();
    loop {
        match c.poll() {
            CheckpointStatus::Done(s) => return *s,
            CheckpointStatus::Failed(why) => {
                eprintln!("round failed ({why}); retrying");
                c.begin();
            }
            CheckpointStatus::Pending => {}
        }
        assert!(Instant::now() < deadline, "no checkpoint within 60 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn restored_run_equals_an_uninterrupted_one_and_rereads_only_the_rest() {
    let records = stream(6_000);
    let total = records.len() as u64;

    // Uninterrupted.
    let feed = MemoryFeed::new([0, 1]);
    let a = start(2, &feed, None);
    feed.push_records(records.clone());
    a.sync(Duration::from_secs(120)).expect("sync");
    let want = rows(&a);
    assert!(want.len() > 1_000, "{} rows", want.len());
    assert!(want.iter().any(|r| r.2.get(1) != Some(&0)), "some sketches are HLL, not exact sets");
    drop(a);

    // Interrupted: half in, then a snapshot taken while the next records stream in.
    let feed = MemoryFeed::new([0, 1]);
    let b = start(2, &feed, None);
    let (first, rest) = records.split_at(3_000);
    feed.push_records(first.to_vec());
    b.sync(Duration::from_secs(120)).expect("sync");
    let pusher = {
        let (feed, rest) = (feed.clone(), rest[..1_500].to_vec());
        std::thread::spawn(move || {
            for chunk in rest.chunks(50) {
                feed.push_records(chunk.to_vec());
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(10));
    let snap = snapshot_of(&b);
    pusher.join().expect("pusher");
    drop(b);
    let covered: u64 = snap.offsets.values().sum();
    assert!((3_000..total).contains(&covered), "the cut covers {covered} of {total} records");
    assert!(!snap.dedup.ids.is_empty() && !snap.views.rows.is_empty());

    // The snapshot survives serialization (the binary writes it with bincode).
    let bytes = bincode::serialize(&snap).expect("serialize");
    let snap: DataflowSnapshot = bincode::deserialize(&bytes).expect("deserialize");

    // Restored with 3 workers: only the records at or after the offsets are read again.
    let after: Vec<SourceRecord> = records.iter().filter(|r| r.offset >= snap.offsets.get(&r.partition).copied().unwrap_or(0)).cloned().collect();
    assert_eq!(after.len() as u64, total - covered);
    let feed = MemoryFeed::new([0, 1]);
    let c = start(3, &feed, Some(snap.clone()));
    feed.push_records(after.clone());
    c.sync(Duration::from_secs(120)).expect("sync");
    assert_eq!(c.stats().received, total - covered, "records re-read = records after the checkpoint offsets");
    let got = rows(&c);
    assert_eq!(got.len(), want.len(), "row count");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "row differs");
    }
    // A checkpoint of the restored run covers every record and carries the restored offsets on.
    let again = snapshot_of(&c);
    assert_eq!(again.offsets.values().sum::<u64>(), total);
}

#[test]
fn dedup_state_round_trips_and_is_routed_to_the_owning_worker() {
    let mut s = DedupState::new(3_600_000 * 24, 3_600_000 * 48, 3_600_000 * 24 * 400);
    let ids: Vec<(u128, i64)> = (1..=500u128).map(|i| (i, NOW - i64::try_from(i).expect("i") * 60_000)).collect();
    s.restore(ids.clone(), NOW, GlobalWatermark::default());
    let mut out = Vec::new();
    s.export(&mut out);
    out.sort_unstable();
    assert_eq!(out, ids);
    // A repeat of a restored id is a duplicate.
    let mut ok = Vec::new();
    let mut err = Vec::new();
    let ev = ClickEvent {
        event_id: uuid::Uuid::from_u128(7),
        code: "c1".into(),
        ts: NOW - 7 * 60_000,
        ip_trunc: None,
        visitor_id: 1,
        user_agent: String::new(),
        referrer: None,
        accept_language: None,
        edge_region: None,
    };
    s.process([crate::records::GatedClick { partition: 0, offset: 0, backfill: false, event: ev }], &mut ok, &mut err);
    assert!(ok.is_empty() && err.is_empty());
    assert_eq!(s.duplicates(), 1);
    // Ownership partitions the ids: every id has exactly one owner among 3 workers.
    let owned: usize = (0..3).map(|w| ids.iter().filter(|(id, _)| owner(route_u128(*id), 3) == w).count()).sum();
    assert_eq!(owned, ids.len());
}

#[test]
fn rows_that_meet_on_restore_add_clicks_and_union_visitors() {
    use crate::model::{Granularity, View};
    use crate::sketch::VisitorSketch;
    let meta = |n: u8| {
        Some(Arc::new(sluice_schemas::LinkMeta {
            code: "ab".into(),
            org: Some(format!("o{}", n / 10)),
            tags: vec![],
            domain: None,
            target_host: None,
            valid_from_ms: 0,
        }))
    };
    let row = |visitors: std::ops::Range<u64>, m| {
        let mut sk = VisitorSketch::new();
        visitors.clone().for_each(|v| sk.insert(v));
        ChangedRow {
            code: Arc::from("ab"),
            granularity: Granularity::Hour,
            bucket_start_ms: NOW.div_euclid(3_600_000) * 3_600_000,
            view: View::Total,
            is_bot: false,
            dims: Vec::new(),
            meta: m,
            clicks: visitors.end - visitors.start,
            uniques: visitors.end - visitors.start,
            sketch: sk.to_bytes(),
        }
    };
    // Two rows with equal metadata values (different Arcs in the old shard) and one without.
    let snap = DataflowSnapshot {
        views: ViewsSnapshot {
            watermark_ms: i64::MIN,
            retained_from: [i64::MIN; 4],
            rows: vec![row(0..40, meta(1)), row(30..100, meta(2)), row(500..510, None)],
        },
        ..Default::default()
    };
    let views = Views::new(1, 0, 1, [i64::MAX; 4], false);
    Checkpoints::new(1, 0, 1, false, Some(snap)).restore_views(&views).expect("restore");
    let mut out = Vec::new();
    views.local_shards()[0].read().export_rows(&mut out);
    let mut got: Vec<(u64, u64, bool)> = out.iter().map(|r| (r.clicks, r.uniques, r.meta.is_some())).collect();
    got.sort_unstable();
    assert_eq!(got, vec![(10, 10, false), (110, 100, true)], "clicks add up, visitors are the union (exact: 100 distinct)");
}

/// One visitor's clicks on one link in one UTC minute, at `ts0 + i s` for `i` in `range`
/// (event ids `id0 + i`), on partition 0 from offset `range.start`.
fn one_visitor(range: std::ops::Range<u64>, visitor: u64, ts0: i64, id0: u128) -> Vec<SourceRecord> {
    range
        .map(|i| SourceRecord {
            partition: 0,
            offset: i,
            event: ClickEvent {
                event_id: uuid::Uuid::from_u128(id0 + u128::from(i)),
                code: "fc".into(),
                ts: ts0 + i64::try_from(i).expect("i") * 1_000,
                ip_trunc: None,
                visitor_id: visitor,
                user_agent: String::new(),
                referrer: None,
                accept_language: None,
                edge_region: None,
            },
            backfill: false,
            arrival_ms: None,
        })
        .collect()
}

/// `(human, flagged)` clicks of link `fc` in the Total view's minute rows.
fn fc_minute_totals(rows: &[(RowKey, u64, Vec<u8>)]) -> (u64, u64) {
    let pick = |bot: bool| rows.iter().filter(|(k, _, _)| k.0 == "fc" && k.1 == 0 && k.3 == 0 && k.4 == bot).map(|r| r.1).sum();
    (pick(false), pick(true))
}

/// C25 across a checkpoint: a visitor clicks 45 times in one minute (cap 30), 20 before the
/// snapshot and 25 after it. The restored run must flag the same 15 clicks as an
/// uninterrupted run — it continues the visitor's count from the snapshot (20), instead of
/// starting from zero and counting all 25 later clicks as human.
#[test]
fn the_flood_cap_counts_survive_a_restore() {
    use crate::model::{Granularity, View};
    assert_eq!((Granularity::Minute.index(), View::Total.index()), (0, 0), "fc_minute_totals reads index 0 as minute / total");
    let cfg = PipelineConfig::default();
    assert_eq!(cfg.abuse.flood_cap.cap(), Some(30), "the default flood cap");
    // Visitor 5 (not a bot for TestEnricher), minute [NOW − 10 min, NOW − 9 min).
    let minute = (NOW - 600_000).div_euclid(60_000) * 60_000;
    let records = one_visitor(0..45, 5, minute + 500, 1 << 64);
    let (first, rest) = records.split_at(20);

    let feed = MemoryFeed::new([0]);
    let a = start(2, &feed, None);
    feed.push_records(records.clone());
    a.sync(Duration::from_secs(60)).expect("sync");
    let want = rows(&a);
    drop(a);
    assert_eq!(fc_minute_totals(&want), (30, 15), "uninterrupted: 30 human, 15 flagged");

    let feed = MemoryFeed::new([0]);
    let b = start(2, &feed, None);
    feed.push_records(first.to_vec());
    b.sync(Duration::from_secs(60)).expect("sync");
    let snap = snapshot_of(&b);
    drop(b);
    assert_eq!(snap.offsets.get(&0), Some(&20), "the cut covers the first 20 clicks");
    let counts: Vec<(String, u64, u32)> = snap.flood_cap.entries.iter().map(|e| (e.code.clone(), e.visitor_id, e.count)).collect();
    assert_eq!(counts, vec![("fc".to_string(), 5, 20)], "the snapshot holds the visitor's count");
    let snap: DataflowSnapshot = bincode::deserialize(&bincode::serialize(&snap).expect("serialize")).expect("deserialize");

    // Restored with another number of workers: the count goes to the code's new owner.
    let feed = MemoryFeed::new([0]);
    let c = start(3, &feed, Some(snap));
    feed.push_records(rest.to_vec());
    c.sync(Duration::from_secs(60)).expect("sync");
    let got = rows(&c);
    assert_eq!(fc_minute_totals(&got), (30, 15), "restored: the same 30 human, 15 flagged");
    assert_eq!(got, want, "every row equals the uninterrupted run's");
}

#[test]
fn a_version_1_snapshot_converts_with_empty_flood_cap_counts() {
    let v1 = DataflowSnapshotV1 { cut_epoch: 7, offsets: BTreeMap::from([(0, 12)]), ..Default::default() };
    let bytes = bincode::serialize(&v1).expect("serialize");
    let back: DataflowSnapshotV1 = bincode::deserialize(&bytes).expect("deserialize v1 layout");
    let snap = DataflowSnapshot::from(back);
    assert_eq!((snap.cut_epoch, snap.offsets.get(&0)), (7, Some(&12)));
    assert!(snap.flood_cap.entries.is_empty());
    // The version-2 layout does not read a version-1 payload (hence the version number).
    assert!(bincode::deserialize::<DataflowSnapshot>(&bytes).is_err());
}
