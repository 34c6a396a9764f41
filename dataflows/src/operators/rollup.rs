//! `MaintainRollups`: apply joined clicks to this worker's rollup shard, epoch by epoch.
//!
//! * **Inputs**: updates, [`LinkedRecord`]s already routed to the code's owner (pipeline);
//!   and the broadcast [`WatermarkReport`]s.
//! * **Output**: nothing but progress — the operator holds a capability for every epoch it
//!   has not applied yet, so a probe on its output passes an epoch only once the shard
//!   reflects it.
//! * **State**: the shard ([`crate::views`]): per (code, granularity, bucket) the rows of all
//!   views, each with `clicks` and a visitor sketch. Append-only between evictions; rows fall
//!   out when the global watermark passes their bucket end plus the granularity's retention.
//!
//! When the input frontier passes epochs, they are applied under **one** write lock per
//! activation (their clicks, then the watermark their reports make, then eviction, then
//! `applied_epoch`), so readers never see part of an epoch. An activation applies at most
//! `APPLY_CHUNK` clicks (whole epochs, at least one): past that it stops at an epoch
//! boundary, sets `applied_epoch` there and re-activates itself for the rest, so a backlog
//! never holds the worker — its source, its other operators, the frontier its peers wait
//! on — for longer than one chunk. The round's clicks go in as one
//! batch (chunks of up to `APPLY_CHUNK`): a round spans several epochs, each bringing one
//! container with about 1/N of a source batch when N workers run, and applying container
//! by container would visit a hot row once per container instead of once per round.
//!
//! A click updates its minute rows; the 15-minute rows take a minute's rows once, when the
//! watermark seals the minute, and the hour and day rows take a 15-minute bucket's rows
//! once, when it seals the quarter (late clicks into sealed buckets go to the coarser rows
//! directly), while every reader merges the unsealed minute and 15-minute rows in
//! ([`crate::views`] shard docs, "Sealing") — so minute, quarter, hour and day totals agree
//! over any range all of them retain, as if every click updated all four.
//!
//! Plain timely, not differential: the aggregates are HLL sketches, which cannot be
//! retracted, and the input never retracts (dedup emits each click once).
//!
//! ```
//! use timely::dataflow::operators::{ToStream, Probe};
//! use sluice_dataflows::config::SemanticsConfig;
//! use sluice_dataflows::model::{DimStr, DimSym, Dims};
//! use sluice_dataflows::operators::{MaintainRollups, RollupTarget};
//! use sluice_dataflows::records::{EnrichedRecord, LinkedRecord};
//! use sluice_dataflows::views::{Bucket, StatsQuery, Views};
//! use sluice_dataflows::watermark::WatermarkReport;
//!
//! let views = Views::single(&SemanticsConfig::default());
//! let target = RollupTarget::new(&views, 0);
//! let dims = Dims { values: ["US", "mobile", "Safari", "iOS", "(direct)", "direct"].map(DimSym::new), is_bot: false };
//! let click = |visitor| LinkedRecord {
//!     rec: EnrichedRecord { code: DimStr::new("ab"), ts: 120_000, visitor_id: visitor, dims },
//!     meta: None,
//! };
//! let recs = vec![click(1), click(2), click(1)];
//! timely::example(move |scope| {
//!     let reports = Vec::<WatermarkReport>::new().to_stream(scope).container::<Vec<_>>();
//!     recs.to_stream(scope).container::<Vec<_>>().maintain_rollups(reports, target);
//! });
//! let r = views.query(&StatsQuery::new("ab", 0, 3_600_000, Bucket::Hour)).unwrap();
//! assert_eq!((r.totals.clicks, r.totals.uniques), (3, 2));
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use crate::changes::ChangeCollector;
use crate::records::LinkedRecord;
use crate::views::Views;
use crate::views::shard::{APPLY_CHUNK, ShardState};
use crate::watermark::{GlobalWatermark, WatermarkReport};

/// Where a worker's rollups go: its shard of a [`Views`], and optionally the change stream.
pub struct RollupTarget {
    shard: Arc<RwLock<ShardState>>,
    local: usize,
    changes: Option<(Arc<ChangeCollector>, Duration)>,
    apply_interval_ms: u64,
    /// Most clicks one activation applies (module docs; `APPLY_CHUNK` unless a test sets it).
    apply_fuel: usize,
    checkpoint: Option<crate::checkpoint::RollupHook>,
}

impl RollupTarget {
    /// The shard of local worker `local` in `views`, without change stream.
    ///
    /// # Panics
    /// If `views` has no local shard `local`.
    pub fn new(views: &Views, local: usize) -> RollupTarget {
        RollupTarget { shard: views.shard(local), local, changes: None, apply_interval_ms: 0, apply_fuel: APPLY_CHUNK, checkpoint: None }
    }

    /// Applies completed epochs in batches spanning at least `interval` of processing time
    /// (see [`crate::config::PipelineConfig::apply_interval`]).
    pub fn with_apply_interval(mut self, interval: Duration) -> RollupTarget {
        self.apply_interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self
    }

    #[cfg(test)]
    pub(crate) fn with_apply_fuel(mut self, clicks: usize) -> RollupTarget {
        self.apply_fuel = clicks.max(1);
        self
    }

    pub(crate) fn with_checkpoint(mut self, hook: crate::checkpoint::RollupHook) -> RollupTarget {
        self.checkpoint = Some(hook);
        self
    }

    pub(crate) fn with_changes(mut self, collector: Arc<ChangeCollector>, interval: Duration) -> RollupTarget {
        self.changes = Some((collector, interval));
        self
    }
}

/// Extension trait: maintain the rollups (module docs).
pub trait MaintainRollups<'scope> {
    /// Applies clicks to `target`; the returned stream carries only progress.
    fn maintain_rollups(self, reports: StreamVec<'scope, u64, WatermarkReport>, target: RollupTarget) -> StreamVec<'scope, u64, ()>;
}

impl<'scope> MaintainRollups<'scope> for StreamVec<'scope, u64, LinkedRecord> {
    fn maintain_rollups(self, reports: StreamVec<'scope, u64, WatermarkReport>, target: RollupTarget) -> StreamVec<'scope, u64, ()> {
        let scope = self.scope();
        self.binary_frontier::<_, CapacityContainerBuilder<Vec<()>>, _, _, _, _>(reports, Pipeline, Pipeline, "MaintainRollups", move |_cap, info| {
            let activator = scope.activator_for(info.address);
            let mut stash: BTreeMap<u64, (Capability<u64>, Vec<Vec<LinkedRecord>>)> = BTreeMap::new();
            let mut reports: BTreeMap<u64, Vec<WatermarkReport>> = BTreeMap::new();
            let (mut gw, mut cut) = match &target.checkpoint {
                Some(h) => {
                    let (gw, t) = h.start();
                    (gw, Some(t))
                }
                None => (GlobalWatermark::default(), None),
            };
            let mut last_upper = 0u64;
            // The last activation stopped a round for lack of fuel: the rest of that backlog is
            // due now, however young its oldest epoch (no new input need come to wake it).
            let mut resuming = false;
            // The containers of the apply round under way (the vector outlives rounds).
            let mut round: Vec<Vec<LinkedRecord>> = Vec::new();
            let mut last_emit = Instant::now();
            move |(recs_in, recs_f), (rep_in, rep_f), _output| {
                recs_in.for_each(|cap, data| {
                    let Some(&t) = cap.least() else { return };
                    stash.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new())).1.push(std::mem::take(data));
                });
                rep_in.for_each(|cap, data| {
                    let Some(&t) = cap.least() else { return };
                    reports.entry(t).or_default().append(data);
                });
                let min = |f: &timely::progress::frontier::MutableAntichain<u64>| f.frontier().iter().copied().min().unwrap_or(u64::MAX);
                let upper = min(recs_f).min(min(rep_f));
                let due = target.changes.as_ref().is_some_and(|(_, iv)| upper == u64::MAX || last_emit.elapsed() >= *iv);
                // Checkpoint: once the frontier passes the cut, apply exactly the epochs
                // below it now and capture the shard (crate::checkpoint).
                let at_cut = cut.as_mut().and_then(|c| {
                    c.activate("rollups");
                    c.due(upper)
                });
                let upper = at_cut.map_or(upper, |c| upper.min(c));
                if upper == last_upper && !due && at_cut.is_none() {
                    return;
                }
                // Batch clicks: wait until the oldest completed epoch holding clicks is
                // `apply_interval` old (or the input is done) before applying.
                let oldest = stash.keys().next().copied().filter(|&t| t < upper);
                if let Some(t) = oldest
                    && upper != u64::MAX
                    && upper - t < target.apply_interval_ms
                    && !due
                    && at_cut.is_none()
                    && !resuming
                {
                    return;
                }
                // Apply at most up to the first epoch still waiting for its batch.
                let mut upper = match oldest {
                    Some(_) => upper,
                    None => stash.keys().next().copied().map_or(upper, |t| t.min(upper)),
                };
                // The fuel (module docs); a checkpoint cut applies everything below it at once.
                let fuel = if at_cut.is_some() { usize::MAX } else { target.apply_fuel };
                let mut taken = 0usize;
                let mut stopped: Option<u64> = None;
                let mut applied = Vec::new();
                let mut changed = Vec::new();
                let w;
                {
                    let mut shard = target.shard.write();
                    if let (Some(c), Some(h)) = (at_cut, target.checkpoint.as_ref())
                        && shard.applied_epoch > c
                    {
                        h.fail(c, shard.applied_epoch);
                    }
                    loop {
                        let c = stash.keys().next().copied().filter(|&t| t < upper);
                        let r = reports.keys().next().copied().filter(|&t| t < upper);
                        match (c, r) {
                            (Some(c), r) if r.is_none_or(|r| c <= r) => {
                                let n: usize = stash[&c].1.iter().map(Vec::len).sum();
                                if taken > 0 && taken + n > fuel {
                                    stopped = Some(c);
                                    break;
                                }
                                taken += n;
                                let (cap, batches) = stash.remove(&c).expect("key present");
                                round.extend(batches);
                                applied.push(cap);
                                if let Some(rs) = reports.remove(&c) {
                                    rs.iter().for_each(|r| gw.apply(r));
                                }
                            }
                            (_, Some(r)) => reports.remove(&r).expect("key present").iter().for_each(|r| gw.apply(r)),
                            _ => break,
                        }
                    }
                    // The round's clicks as few batches as possible (the shard's watermark
                    // only moves below, so the order within the round does not matter).
                    let mut rest = round.as_slice();
                    while !rest.is_empty() {
                        let (mut n, mut k) = (0, 0);
                        while k < rest.len() && (k == 0 || n + rest[k].len() <= APPLY_CHUNK) {
                            n += rest[k].len();
                            k += 1;
                        }
                        shard.apply_batches(rest[..k].iter().map(Vec::as_slice));
                        rest = &rest[k..];
                    }
                    round.clear();
                    if let Some(c) = stopped {
                        upper = c;
                        activator.activate();
                    }
                    w = gw.recompute();
                    shard.advance_watermark(w);
                    shard.applied_epoch = shard.applied_epoch.max(upper);
                    if let (Some(c), Some(h)) = (at_cut, target.checkpoint.as_ref()) {
                        h.capture(c, &shard);
                    }
                    if due {
                        shard.drain_changes(&mut changed);
                    }
                }
                last_upper = upper;
                resuming = stopped.is_some();
                if due && let Some((collector, _)) = &target.changes {
                    last_emit = Instant::now();
                    collector.deposit(target.local, upper, w, changed);
                }
                drop(applied);
            }
        })
    }
}

#[cfg(test)]
mod tests;
