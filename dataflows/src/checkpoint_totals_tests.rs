//! Total-view rows in the change stream: whatever link metadata a bucket's clicks were counted
//! under (a restored checkpoint, the live join after a restart, a tag change in the middle of
//! a bucket), a sink that overwrites rows by (code, granularity, bucket, view, is_bot) ends up
//! with the whole total of every bucket. Expected values come from the naive reference.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_schemas::{ClickEvent, LinkMeta};

use super::DataflowSnapshot;
use super::tests::{NOW, RowKey, TestEnricher, rows, snapshot_of};
use crate::changes::ChangeBatch;
use crate::clock::ManualClock;
use crate::config::PipelineConfig;
use crate::model::{Granularity, View};
use crate::operators::ClickEnricher;
use crate::pipeline::{self, LinkMetaChange, LinkMetaSender, PipelineHandle, PipelineInputs, PipelineOutputs, link_meta_channel};
use crate::reference::Reference;
use crate::source::{MemoryFeed, SourceRecord};
use crate::views::SummaryQuery;

const MIN: i64 = 60_000;
/// Start of the minute the clicks land in (and the next one), ten minutes before `NOW`.
const M0: i64 = (NOW - 10 * MIN) / MIN * MIN;

/// (code, granularity index, bucket start, is_bot) → (clicks, uniques).
type Totals = BTreeMap<(String, usize, i64, bool), (u64, u64)>;

/// A pipeline (2 workers, checkpoints on, one change batch per completed epoch) with its
/// metadata sender, source feed and the change batches it emitted.
struct Run {
    h: PipelineHandle,
    meta: LinkMetaSender,
    feed: MemoryFeed,
    batches: Arc<Mutex<Vec<ChangeBatch>>>,
}

impl Run {
    fn start(restore: Option<DataflowSnapshot>) -> Run {
        let feed = MemoryFeed::new([0]);
        let (meta, meta_feed) = link_meta_channel();
        let batches = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&batches);
        let outputs = PipelineOutputs { changes: Some(Arc::new(move |b: ChangeBatch| sink.lock().push(b))), ..Default::default() };
        let inputs = PipelineInputs { source: feed.factory(), enricher: TestEnricher, clock: Arc::new(ManualClock::new(NOW)), link_meta: Some(meta_feed) };
        let cfg = PipelineConfig { workers: 2, change_interval: Duration::ZERO, ..Default::default() };
        let h = pipeline::start_with_checkpoints(&cfg, inputs, outputs, Some(pipeline::CheckpointOptions { restore, ..Default::default() }))
            .expect("pipeline starts");
        Run { h, meta, feed, batches }
    }

    fn sync(&self) {
        self.h.sync(Duration::from_secs(60)).expect("sync");
    }

    /// Stops the pipeline (its last changes are emitted) and returns its change batches.
    fn stop(self) -> Vec<ChangeBatch> {
        self.h.shutdown();
        self.h.join().expect("clean shutdown");
        std::mem::take(&mut *self.batches.lock())
    }
}

fn meta(code: &str, org: &str, tags: &[&str]) -> LinkMeta {
    LinkMeta { code: code.into(), org: Some(org.into()), tags: tags.iter().map(|t| t.to_string()).collect(), domain: None, target_host: None, valid_from_ms: 0 }
}

/// `n` clicks from event id `id0` on codes `c0..c2`, spread over minutes `M0` and `M0 + 1`,
/// 40 visitors per code (exact sketches: uniques are exact), partition 0 from `offset0`.
fn clicks(id0: u64, n: u64, offset0: u64) -> Vec<SourceRecord> {
    (0..n)
        .map(|i| {
            let k = id0 + i;
            SourceRecord {
                partition: 0,
                offset: offset0 + i,
                event: ClickEvent {
                    event_id: uuid::Uuid::from_u128(u128::from(k) + 1),
                    code: format!("c{}", k % 3),
                    ts: M0 + i64::try_from(k * 997 % 120_000).expect("ts"),
                    ip_trunc: None,
                    visitor_id: k * 7 % 40,
                    user_agent: String::new(),
                    referrer: None,
                    accept_language: None,
                    edge_region: None,
                },
                backfill: false,
                arrival_ms: None,
            }
        })
        .collect()
}

/// What a sink holds after applying `batches` in order: the last total-view row per key.
fn sink_totals<'a>(batches: impl IntoIterator<Item = &'a ChangeBatch>) -> Totals {
    let mut out = Totals::new();
    for b in batches {
        for r in b.rows.iter().filter(|r| r.view == View::Total) {
            out.insert((r.code.to_string(), r.granularity.index(), r.bucket_start_ms, r.is_bot), (r.clicks, r.uniques));
        }
    }
    out
}

/// (code, granularity index, bucket start, is_bot) → (clicks, visitors).
type ExactTotals = BTreeMap<(String, usize, i64, bool), (u64, BTreeSet<u64>)>;

/// The whole totals of every bucket over the reference's accepted clicks (exact sets).
fn reference_totals(reference: &Reference) -> Totals {
    let mut acc: ExactTotals = BTreeMap::new();
    for c in reference.clicks() {
        for g in Granularity::ALL {
            let e = acc.entry((c.code.clone(), g.index(), g.bucket_start(c.ts), c.dims.is_bot)).or_default();
            e.0 += 1;
            e.1.insert(c.visitor_id);
        }
    }
    acc.into_iter().map(|(k, (n, v))| (k, (n, v.len() as u64))).collect()
}

fn push_reference(reference: &mut Reference, records: &[SourceRecord]) {
    for r in records {
        reference.push(r, NOW, |ev| TestEnricher.dims(ev));
    }
}

/// The total-view rows of `rows` (the in-memory shard rows) per key: how many metadata
/// variants each (code, granularity, bucket, is_bot) is split into.
fn variants(rows: &[(RowKey, u64, Vec<u8>)]) -> BTreeMap<(String, usize, i64, bool), usize> {
    let mut out = BTreeMap::new();
    for (k, _, _) in rows.iter().filter(|(k, _, _)| k.3 == View::Total.index()) {
        *out.entry((k.0.clone(), k.1, k.2, k.4)).or_insert(0) += 1;
    }
    out
}

/// The repro of the restart bug at dataflow level: clicks, a checkpoint, a restart that
/// reloads the same link metadata (new `Arc`s of equal values) — and, for `c1`, metadata
/// changed while the process was down — then more clicks in the same buckets. The sink ends
/// with the totals over all clicks, not the clicks since the restart.
#[test]
fn totals_after_a_restore_are_whole_in_the_change_stream() {
    let first = clicks(0, 300, 0);
    let second = clicks(300, 150, 300);
    let sem = PipelineConfig::default().semantics;
    let mut reference = Reference::new(&sem, true, false);

    let b = Run::start(None);
    assert!(b.meta.insert(meta("c0", "acme", &["a"])) && b.meta.insert(meta("c1", "acme", &["a"])), "c2 stays unannounced (meta None)");
    b.sync();
    b.feed.push_records(first.clone());
    push_reference(&mut reference, &first);
    b.sync();
    let snap = snapshot_of(&b.h);
    assert_eq!(snap.offsets.get(&0), Some(&300), "the cut covers the first 300 clicks");
    let before = b.stop();
    let snap: DataflowSnapshot = bincode::deserialize(&bincode::serialize(&snap).expect("serialize")).expect("deserialize");

    // Restart: the link store is reloaded (equal values, new Arcs); c1 was re-tagged meanwhile.
    let c = Run::start(Some(snap));
    assert!(c.meta.insert(meta("c0", "acme", &["a"])) && c.meta.insert(meta("c1", "acme", &["b"])));
    c.sync();
    c.feed.push_records(second.clone());
    push_reference(&mut reference, &second);
    c.sync();
    let split = variants(&rows(&c.h));
    let after = c.stop();

    let want = reference_totals(&reference);
    assert_eq!(want.values().map(|v| v.0).sum::<u64>(), 4 * 450, "every click counted once per granularity");
    assert!(want.keys().any(|k| k.3), "the stream has bot clicks");
    let got_after = sink_totals(&after);
    assert!(got_after.len() >= 12, "the restored run emits the buckets its clicks touched");
    for (k, v) in &got_after {
        assert_eq!(Some(v), want.get(k), "the restored run emits whole totals: {k:?}");
    }
    assert_eq!(sink_totals(before.iter().chain(&after)), want, "sink totals = reference totals over all 450 clicks");
    // Equal metadata shares rows: c0's reloaded value equals the restored one, so its rows
    // are not split (c2 has none); c1's changed metadata keeps a second in-memory row (the
    // tag filters read it).
    for (k, n) in &split {
        let most = if k.0 == "c1" { 2 } else { 1 };
        assert!((1..=most).contains(n), "{n} metadata variants of {k:?}");
    }
    assert!(split.iter().any(|(k, n)| k.0 == "c1" && *n == 2), "c1 has rows under both values");
}

/// A tag change in the middle of a bucket: the change stream's total is still every click of
/// the bucket, while the per-metadata rows still answer the summary's tag filter.
#[test]
fn a_tag_change_mid_bucket_emits_the_whole_total() {
    let run = Run::start(None);
    let sem = PipelineConfig::default().semantics;
    let mut reference = Reference::new(&sem, true, false);
    let old = meta("c0", "acme", &["spring"]);
    let new = meta("c0", "acme", &["summer"]);
    assert!(run.meta.insert(old.clone()));
    reference.apply_meta(&LinkMetaChange { meta: old.clone(), diff: 1 });
    run.sync();
    // `n` clicks of c0 (ids ≡ 0 mod 3, all in minute M0, distinct visitors), offsets from `offset0`.
    let c0 = |id0: u64, n: u64, offset0: u64| {
        let mut v: Vec<SourceRecord> = clicks(id0, n * 3, 0).into_iter().filter(|r| r.event.code == "c0").collect();
        for (i, r) in v.iter_mut().enumerate() {
            r.offset = offset0 + i as u64;
        }
        v
    };
    let first = c0(0, 10, 0);
    run.feed.push_records(first.clone());
    push_reference(&mut reference, &first);
    run.sync();
    assert!(run.meta.update(old.clone(), new.clone()));
    reference.apply_meta(&LinkMetaChange { meta: old, diff: -1 });
    reference.apply_meta(&LinkMetaChange { meta: new, diff: 1 });
    run.sync();
    let second = c0(30, 4, 10);
    assert!(first.iter().chain(&second).all(|r| r.event.ts < M0 + MIN), "one minute bucket");
    run.feed.push_records(second.clone());
    push_reference(&mut reference, &second);
    run.sync();

    let summary = |tag: &str| {
        let q = SummaryQuery { from_ms: M0, to_ms: M0 + 2 * MIN, include_bots: true, limit: 10, org: None, tag: Some(tag.into()), exclude: Default::default() };
        run.h.views().summary(&q).expect("summary").totals.clicks
    };
    assert_eq!((summary("spring"), summary("summer")), (10, 4), "clicks stay under the tags current when they were counted");
    let batches = run.stop();

    let want = reference_totals(&reference);
    assert_eq!(want.values().map(|v| v.0).sum::<u64>(), 4 * 14);
    assert_eq!(sink_totals(&batches), want, "sink totals = every click of each bucket, both tag values");
}
