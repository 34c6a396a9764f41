//! The apply fuel: a backlog applied a few clicks per activation ends in the same rows as
//! one round, every epoch whole, and the operator finishes it without new input — also while
//! its inputs stay open and the rest of the backlog is younger than the apply interval.

use std::time::Duration;

use timely::dataflow::InputHandle;
use timely::dataflow::operators::{Input, Probe};

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{MaintainRollups, RollupTarget};
use crate::changes::{ChangeBatch, ChangeCollector, ChangeSink, ChangedRow};
use crate::config::SemanticsConfig;
use crate::model::{Granularity, View};
use crate::records::LinkedRecord;
use crate::views::Views;
use crate::views::shard::tests::click;
use crate::watermark::WatermarkReport;

const M: i64 = 60_000;
const BASE: i64 = 1_772_323_200_000; // 2026-03-01T00:00:00Z

/// Epoch `e` (1..=12): 20 + 3e clicks around minute 2e, a quarter of them in earlier
/// minutes (late once the watermark passed them), and a report moving the watermark to
/// minute 2e − 1.
fn epochs() -> Vec<(Vec<LinkedRecord>, WatermarkReport)> {
    let mut i = 0i64;
    (1..=12i64)
        .map(|e| {
            let clicks = (0..20 + 3 * e)
                .map(|j| {
                    i += 1;
                    let late = if j % 4 == 0 { 3 * M } else { 0 };
                    click(i, BASE + 2 * e * M + (i * 7919 % M) - late)
                })
                .collect();
            (clicks, WatermarkReport { partition: 0, watermark_ms: BASE + (2 * e - 1) * M, idle: false, first_ms: BASE })
        })
        .collect()
}

/// Feeds every epoch before the first step (a backlog), then steps until the probe is done
/// (at most `max_steps`). Returns the rows and whether the dataflow finished.
fn run(fuel: Option<usize>, max_steps: usize) -> (Vec<ChangedRow>, bool) {
    run_with(fuel, max_steps, None)
}

/// [`run`], with the change stream going to `changes` (a batch per activation) when given.
fn run_with(fuel: Option<usize>, max_steps: usize, changes: Option<Arc<Mutex<Vec<ChangeBatch>>>>) -> (Vec<ChangedRow>, bool) {
    let views = Views::new(1, 0, 1, SemanticsConfig::default().retention_ms(), changes.is_some());
    let mut target = RollupTarget::new(&views, 0);
    if let Some(f) = fuel {
        target = target.with_apply_fuel(f);
    }
    if let Some(out) = changes {
        let sink: ChangeSink = Arc::new(move |b| out.lock().push(b));
        target = target.with_changes(Arc::new(ChangeCollector::new(1, sink)), Duration::ZERO);
    }
    let done = timely::execute_directly(move |worker| {
        let (mut clicks, mut reports) = (InputHandle::new(), InputHandle::new());
        let probe = worker.dataflow::<u64, _, _>(|scope| {
            let r = scope.input_from(&mut reports);
            scope.input_from(&mut clicks).maintain_rollups(r, target).probe().0
        });
        for (t, (mut batch, report)) in epochs().into_iter().enumerate() {
            clicks.send_batch(&mut batch);
            reports.send(report);
            clicks.advance_to(t as u64 + 1);
            reports.advance_to(t as u64 + 1);
        }
        drop((clicks, reports));
        let mut steps = 0;
        while !probe.done() && steps < max_steps {
            worker.step();
            steps += 1;
        }
        let done = probe.done();
        // Unfinished: drop the dataflow, or `execute_directly` would step it forever.
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
        done
    });
    let mut rows = Vec::new();
    views.shard(0).read().export_rows(&mut rows);
    rows.sort_by(|a, b| {
        (&a.code, a.granularity.index(), a.bucket_start_ms, a.view.index(), a.is_bot, &a.dims).cmp(&(
            &b.code,
            b.granularity.index(),
            b.bucket_start_ms,
            b.view.index(),
            b.is_bot,
            &b.dims,
        ))
    });
    (rows, done)
}

#[test]
fn a_backlog_applied_a_few_clicks_per_activation_makes_the_rows_of_one_round() {
    let clicks: u64 = epochs().iter().map(|(c, _)| c.len() as u64).sum();
    let (whole, done) = run(None, 1_000);
    assert!(done);
    let minute_totals: u64 = whole.iter().filter(|r| r.granularity == Granularity::Minute && r.view == View::Total).map(|r| r.clicks).sum();
    assert_eq!(minute_totals, clicks, "every click once in the minute rows of the total view");
    // Fuel 1: one epoch per activation; 50: a few epochs; 10,000: everything at once.
    for fuel in [1, 50, 10_000] {
        let (rows, done) = run(Some(fuel), 1_000);
        assert!(done, "fuel {fuel}: the operator re-activates itself until the backlog is applied");
        assert_eq!(rows, whole, "fuel {fuel}");
    }
}

#[test]
fn a_stopped_round_resumes_without_new_input_while_the_inputs_stay_open() {
    // Apply interval 50 ms, fuel 1 click: clicks at epochs 0 and 1,190, the inputs open at
    // 1,201. The first activation applies epoch 0 and stops; the rest is due at once, though
    // epoch 1,190 is younger than the interval and no input comes to wake the operator.
    let views = Views::single(&SemanticsConfig::default());
    let target = RollupTarget::new(&views, 0).with_apply_interval(Duration::from_millis(50)).with_apply_fuel(1);
    let mut all = epochs().into_iter();
    let (first, last) = (all.next().expect("epoch"), all.next().expect("epoch"));
    let clicks = (first.0.len() + last.0.len()) as u64;
    let shard = views.shard(0);
    let applied = timely::execute_directly(move |worker| {
        let (mut input, mut reports) = (InputHandle::new(), InputHandle::new());
        worker.dataflow::<u64, _, _>(|scope| {
            let r = scope.input_from(&mut reports);
            scope.input_from(&mut input).maintain_rollups(r, target);
        });
        for (at, (mut batch, report)) in [(1_190, first), (1_201, last)] {
            input.send_batch(&mut batch);
            reports.send(report);
            input.advance_to(at);
            reports.advance_to(at);
        }
        for _ in 0..100 {
            worker.step();
        }
        let applied = shard.read().applied_epoch;
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
        applied
    });
    assert_eq!(applied, 1_201, "every epoch below the open frontier applied");
    let mut rows = Vec::new();
    views.shard(0).read().export_rows(&mut rows);
    let minute_totals: u64 = rows.iter().filter(|r| r.granularity == Granularity::Minute && r.view == View::Total).map(|r| r.clicks).sum();
    assert_eq!(minute_totals, clicks);
}

#[test]
fn the_change_stream_of_a_backlog_applied_in_pieces_ends_at_the_rows_of_one_round() {
    // Every activation deposits its changes (interval 0): with fuel 1 that is a batch per
    // epoch, each at the epoch where the round stopped; folded in order, the batches give the
    // same rows as the change stream of a single round.
    type Key = (Arc<str>, usize, i64, usize, bool, Vec<Arc<str>>);
    let fold = |batches: &[ChangeBatch]| -> BTreeMap<Key, (u64, u64)> {
        let mut rows = BTreeMap::new();
        for b in batches {
            for r in &b.rows {
                rows.insert((r.code.clone(), r.granularity.index(), r.bucket_start_ms, r.view.index(), r.is_bot, r.dims.clone()), (r.clicks, r.uniques));
            }
        }
        rows
    };
    let (whole, pieces) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let (rows_whole, done) = run_with(None, 1_000, Some(Arc::clone(&whole)));
    assert!(done);
    let (rows_pieces, done) = run_with(Some(1), 1_000, Some(Arc::clone(&pieces)));
    assert!(done);
    assert_eq!(rows_pieces, rows_whole);
    let (whole, pieces) = (whole.lock(), pieces.lock());
    assert!(pieces.len() >= epochs().len(), "a batch per stop: {} batches", pieces.len());
    assert!(pieces.windows(2).all(|w| w[0].epoch_upper <= w[1].epoch_upper), "batch uppers only grow");
    assert!(!fold(&whole).is_empty());
    assert_eq!(fold(&pieces), fold(&whole));
}
