//! Checkpoints: the dataflow's state at a consistent cut, so a restart resumes from it
//! instead of replaying the whole input.
//!
//! ## The cut
//! A checkpoint is the state after every record sent at a processing epoch **below** the
//! cut epoch `C`, and of none sent at `C` or later. [`CheckpointHandle::begin`] picks
//! `C = now + `[`CUT_LEAD_MS`] (processing epochs are ms of the shared clock, see
//! [`crate::pipeline`]), so every worker learns of the request before its inputs reach `C`.
//! Each local worker then contributes three parts:
//! * **source** (the worker loop, [`SourceCut`]): when its epoch first reaches `C`, before it
//!   polls again: the next offset of every partition it read (everything below was sent at
//!   an epoch `< C`) and its gate's partition watermarks `W_p`;
//! * **dedup** (the `DedupByEventId` operator, [`CutTracker`]): its remembered
//!   `event_id → basis`, newest event time and folded global watermark, taken when its input
//!   frontier passes `C` and before it processes anything at `C` or later;
//! * **views** (the `MaintainRollups` operator): its shard's rows (clicks and serialized
//!   visitor sketch, the change stream's [`ChangedRow`] form), watermark and retention floors,
//!   after applying exactly the epochs below `C`;
//! * **flood cap** (the `CapVisitorFloods` operator, when `[abuse.flood-cap]` is on): its
//!   per-(minute, code, visitor) human click counts after exactly the epochs below `C`
//!   ([`FloodCapSnapshot`]), so a visitor over the cap before a restart stays over it.
//!
//! An operator that finds it already processed an epoch `≥ C` before it saw the request
//! (a thread stalled longer than the lead) fails the round instead of contributing a part
//! from a different cut; the caller simply tries again at its next interval.
//!
//! Not in the snapshot (rebuilt or accepted as lost): the abuse detectors' windows (they
//! relearn from the clicks after the cut), link metadata (reloaded from the link store at
//! start), counters. Checkpoints need a single timely process (`processes = 1`); the parts
//! are re-partitioned on restore, so the number of workers may change between runs.
//!
//! ## Restore
//! [`crate::pipeline::start_with_checkpoints`] takes a [`DataflowSnapshot`]: rows go into the
//! shard of their code's owner, dedup entries to the worker owning their id, flood-cap
//! counts to the worker owning their code (the same routing hashes as the exchanges), every gate resumes its partitions at their snapshot
//! `W_p` (active, as if the last record arrived at the restart: downtime is not idleness),
//! and the operators start from the snapshot's global watermark. The caller must make the
//! sources start at [`DataflowSnapshot::offsets`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::changes::ChangedRow;
use crate::hash::{owner, route_str, route_u128};
use crate::operators::{DedupState, FloodCapState};
use crate::views::Views;
use crate::views::shard::ShardState;
use crate::watermark::{GlobalWatermark, SourceGate};
use crate::{Error, Result};

/// Version of the [`DataflowSnapshot`] layout (bump on any change of its fields). Version 1
/// ([`DataflowSnapshotV1`]) had no flood-cap counts; readers convert it with empty ones.
pub const SNAPSHOT_VERSION: u32 = 2;

/// How far ahead of the processing clock a cut is placed (ms): longer than any pause between
/// two reads of the request by a worker loop or operator in normal operation.
pub const CUT_LEAD_MS: u64 = 50;

/// The dataflow's state at one cut (module docs). Serializable (serde); the binary frames it
/// in a file with a checksum.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DataflowSnapshot {
    /// The cut's processing epoch in the process that took it (ms since epoch UTC).
    pub cut_epoch: u64,
    /// Per partition: the next offset to read (every record below is reflected).
    pub offsets: BTreeMap<u32, u64>,
    /// Per partition: the gate's watermark `W_p` at the cut (ms UTC; `i64::MIN` before data).
    pub partition_watermarks: BTreeMap<u32, i64>,
    /// The global watermark as the operators folded it.
    pub watermark: GlobalWatermark,
    /// Dedup state.
    pub dedup: DedupSnapshot,
    /// Rollup rows of every view.
    pub views: ViewsSnapshot,
    /// Flood-cap counts (empty when the flood cap is off). New in snapshot version 2.
    pub flood_cap: FloodCapSnapshot,
}

/// The [`DataflowSnapshot`] layout of snapshot version 1 (before flood-cap counts), for
/// reading older checkpoint files: convert with `From`, which leaves the flood cap empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DataflowSnapshotV1 {
    /// As [`DataflowSnapshot::cut_epoch`].
    pub cut_epoch: u64,
    /// As [`DataflowSnapshot::offsets`].
    pub offsets: BTreeMap<u32, u64>,
    /// As [`DataflowSnapshot::partition_watermarks`].
    pub partition_watermarks: BTreeMap<u32, i64>,
    /// As [`DataflowSnapshot::watermark`].
    pub watermark: GlobalWatermark,
    /// As [`DataflowSnapshot::dedup`].
    pub dedup: DedupSnapshot,
    /// As [`DataflowSnapshot::views`].
    pub views: ViewsSnapshot,
}

impl From<DataflowSnapshotV1> for DataflowSnapshot {
    fn from(v: DataflowSnapshotV1) -> DataflowSnapshot {
        DataflowSnapshot {
            cut_epoch: v.cut_epoch,
            offsets: v.offsets,
            partition_watermarks: v.partition_watermarks,
            watermark: v.watermark,
            dedup: v.dedup,
            views: v.views,
            flood_cap: FloodCapSnapshot::default(),
        }
    }
}

/// Flood-cap counts of all workers ([`crate::operators::CapVisitorFloods`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloodCapSnapshot {
    /// Every held count, sorted by (minute, code, visitor).
    pub entries: Vec<FloodCapEntry>,
}

/// One visitor's non-bot click count on one link in one UTC minute.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FloodCapEntry {
    /// Start of the UTC minute (ms since epoch UTC).
    pub minute_ms: i64,
    /// The minute is dropped once the global watermark reaches this (ms UTC).
    pub keep_until_ms: i64,
    /// Link code.
    pub code: String,
    /// Visitor id.
    pub visitor_id: u64,
    /// Non-bot clicks counted, saturated at `cap + 1`.
    pub count: u32,
}

/// Dedup state of all workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupSnapshot {
    /// `(event_id as u128, basis ms UTC)` of every remembered id.
    pub ids: Vec<(u128, i64)>,
    /// Largest non-backfill event time processed (ms UTC; `i64::MIN` if none).
    pub newest: i64,
}

/// Rollup rows of all shards.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ViewsSnapshot {
    /// The views' watermark `W` (ms UTC).
    pub watermark_ms: i64,
    /// Per granularity ([`crate::model::Granularity::index`]): buckets before this were evicted.
    pub retained_from: [i64; 4],
    /// Every row, absolute values (sketches in [`crate::sketch::VisitorSketch::to_bytes`] form).
    pub rows: Vec<ChangedRow>,
}

/// Outcome of the round started by [`CheckpointHandle::begin`].
#[derive(Debug)]
pub enum CheckpointStatus {
    /// Parts are still missing.
    Pending,
    /// Every part arrived: the snapshot at the cut.
    Done(Box<DataflowSnapshot>),
    /// A worker could not contribute at this cut (the message says why); begin a new round.
    Failed(String),
}

/// A worker loop's part: next offsets and partition watermarks.
type SourcePart = (BTreeMap<u32, u64>, BTreeMap<u32, i64>);
/// A dedup operator's part: `(id, basis)` entries, newest event time, folded watermark.
type DedupPart = (Vec<(u128, i64)>, i64, GlobalWatermark);

struct Round {
    cut: u64,
    sources: Vec<Option<SourcePart>>,
    dedup: Vec<Option<DedupPart>>,
    shards: Vec<Option<ViewsSnapshot>>,
    flood: Vec<Option<Vec<FloodCapEntry>>>,
    failed: Option<String>,
    done: Option<DataflowSnapshot>,
}

impl Round {
    /// `flood_cap`: whether the graph has the flood-cap operator (else its parts are empty).
    fn new(cut: u64, workers: usize, flood_cap: bool) -> Round {
        let flood = if flood_cap { vec![None; workers] } else { vec![Some(Vec::new()); workers] };
        Round { cut, sources: vec![None; workers], dedup: vec![None; workers], shards: vec![None; workers], flood, failed: None, done: None }
    }

    fn complete(&mut self) {
        if self.failed.is_some() || self.sources.iter().any(Option::is_none) {
            return;
        }
        if self.dedup.iter().any(Option::is_none) || self.shards.iter().any(Option::is_none) || self.flood.iter().any(Option::is_none) {
            return;
        }
        let mut snap = DataflowSnapshot { cut_epoch: self.cut, ..Default::default() };
        for (offsets, wms) in self.sources.iter_mut().filter_map(Option::take) {
            for (p, o) in offsets {
                let e = snap.offsets.entry(p).or_insert(0);
                *e = (*e).max(o);
            }
            snap.partition_watermarks.extend(wms);
        }
        snap.dedup.newest = i64::MIN;
        for (i, (ids, newest, wm)) in self.dedup.iter_mut().filter_map(Option::take).enumerate() {
            snap.dedup.ids.extend(ids);
            snap.dedup.newest = snap.dedup.newest.max(newest);
            if i == 0 {
                snap.watermark = wm;
            }
        }
        snap.dedup.ids.sort_unstable();
        snap.views = ViewsSnapshot { watermark_ms: i64::MAX, retained_from: [i64::MAX; 4], rows: Vec::new() };
        for v in self.shards.iter_mut().filter_map(Option::take) {
            snap.views.watermark_ms = snap.views.watermark_ms.min(v.watermark_ms);
            for (r, f) in snap.views.retained_from.iter_mut().zip(v.retained_from) {
                *r = (*r).min(f);
            }
            snap.views.rows.extend(v.rows);
        }
        for part in self.flood.iter_mut().filter_map(Option::take) {
            snap.flood_cap.entries.extend(part);
        }
        snap.flood_cap.entries.sort_unstable();
        self.done = Some(snap);
    }
}

/// Shared by the handle, the worker loops and the operators of one pipeline.
pub(crate) struct Checkpoints {
    workers: usize,
    first_worker: usize,
    peers: usize,
    /// Whether the graph has the flood-cap operator (a part per worker).
    flood_cap: bool,
    /// Cut of the round in flight (0: none).
    requested: AtomicU64,
    round: Mutex<Option<Round>>,
    restore: Option<Arc<DataflowSnapshot>>,
}

impl Checkpoints {
    /// `flood_cap`: whether the graph has the flood-cap operator.
    pub(crate) fn new(workers: usize, first_worker: usize, peers: usize, flood_cap: bool, restore: Option<DataflowSnapshot>) -> Checkpoints {
        Checkpoints { workers, first_worker, peers, flood_cap, requested: AtomicU64::new(0), round: Mutex::new(None), restore: restore.map(Arc::new) }
    }

    fn pending(&self) -> u64 {
        self.requested.load(Ordering::SeqCst)
    }

    fn with_round(&self, cut: u64, f: impl FnOnce(&mut Round)) {
        let mut r = self.round.lock();
        if let Some(round) = r.as_mut().filter(|r| r.cut == cut) {
            f(round);
            round.complete();
        }
    }

    fn fail(&self, cut: u64, why: String) {
        self.with_round(cut, |r| {
            r.failed.get_or_insert(why);
        });
    }

    /// Loads the snapshot's rows into `views` (call before the workers start).
    pub(crate) fn restore_views(&self, views: &Views) -> Result<()> {
        let Some(snap) = &self.restore else { return Ok(()) };
        for row in &snap.views.rows {
            views.shard_for(&row.code)?.write().import_row(row)?;
        }
        for shard in views.local_shards() {
            shard.write().resume_at(snap.views.watermark_ms, snap.views.retained_from);
        }
        Ok(())
    }
}

/// The binary's side: start rounds and collect their snapshots
/// ([`crate::pipeline::PipelineHandle::checkpoints`]).
#[derive(Clone)]
pub struct CheckpointHandle {
    inner: Arc<Checkpoints>,
    now: Arc<dyn Fn() -> u64 + Send + Sync>,
    quiesce: Arc<dyn Fn() -> Option<crate::pipeline::Quiescence> + Send + Sync>,
}

impl std::fmt::Debug for CheckpointHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointHandle").field("requested", &self.inner.pending()).finish_non_exhaustive()
    }
}

impl CheckpointHandle {
    pub(crate) fn new(
        inner: Arc<Checkpoints>,
        now: Arc<dyn Fn() -> u64 + Send + Sync>,
        quiesce: Arc<dyn Fn() -> Option<crate::pipeline::Quiescence> + Send + Sync>,
    ) -> CheckpointHandle {
        CheckpointHandle { inner, now, quiesce }
    }

    /// Before a round taken while the graph runs (module `pipeline::settle`): the workers
    /// stop reading their sources and settle event time, so that once
    /// [`crate::pipeline::Quiescence::settled`] the abuse detectors have evaluated every click
    /// read. A cut taken then holds no click they have not seen (their windows are not in the
    /// snapshot: a crash after such a cut would lose the detection for good). Drop the guard
    /// once the round's snapshot is in hand; the workers read on. `None` without detectors,
    /// or once a graceful stop's settle is in force.
    pub fn quiesce(&self) -> Option<crate::pipeline::Quiescence> {
        (self.quiesce)()
    }

    /// Starts a round (abandoning one in flight) and returns its cut epoch.
    pub fn begin(&self) -> u64 {
        let cut = (self.now)() + CUT_LEAD_MS;
        *self.inner.round.lock() = Some(Round::new(cut, self.inner.workers, self.inner.flood_cap));
        self.inner.requested.store(cut, Ordering::SeqCst);
        cut
    }

    /// The state of the round in flight; `Done` hands its snapshot out once.
    pub fn poll(&self) -> CheckpointStatus {
        let mut r = self.inner.round.lock();
        let Some(round) = r.as_mut() else { return CheckpointStatus::Failed("no checkpoint round in flight".into()) };
        if let Some(why) = &round.failed {
            let why = why.clone();
            *r = None;
            return CheckpointStatus::Failed(why);
        }
        match round.done.take() {
            Some(s) => {
                *r = None;
                CheckpointStatus::Done(Box::new(s))
            }
            None => CheckpointStatus::Pending,
        }
    }
}

/// The worker loop's part: offsets sent below the cut and the gate's watermarks.
pub(crate) struct SourceCut {
    coord: Arc<Checkpoints>,
    local: usize,
    partitions: Vec<u32>,
    sent: BTreeMap<u32, u64>,
    last_sent_epoch: u64,
    done: u64,
}

impl SourceCut {
    /// Tracks local worker `local` reading `partitions`; with a restore, resumes its gate's
    /// partitions at the snapshot's `W_p` and starts from the snapshot's offsets.
    pub(crate) fn new(coord: &Arc<Checkpoints>, local: usize, partitions: Vec<u32>, gate: &mut SourceGate, now_ms: i64) -> SourceCut {
        let mut sent = BTreeMap::new();
        if let Some(snap) = &coord.restore {
            for p in &partitions {
                if let Some(&o) = snap.offsets.get(p) {
                    sent.insert(*p, o);
                }
                if let Some(&w) = snap.partition_watermarks.get(p) {
                    gate.resume_partition(*p, w, now_ms);
                }
            }
        }
        SourceCut { coord: Arc::clone(coord), local, partitions, sent, last_sent_epoch: 0, done: 0 }
    }

    /// Records were sent at `epoch` up to these next offsets.
    pub(crate) fn sent<'a>(&mut self, epoch: u64, offsets: impl IntoIterator<Item = (&'a u32, &'a u64)>) {
        self.last_sent_epoch = self.last_sent_epoch.max(epoch);
        for (&p, &o) in offsets {
            let e = self.sent.entry(p).or_insert(0);
            *e = (*e).max(o);
        }
    }

    /// The loop reached `epoch` and has not polled at it yet: contributes the part when a
    /// requested cut is reached.
    pub(crate) fn tick(&mut self, epoch: u64, gate: &SourceGate) {
        let cut = self.coord.pending();
        if cut == 0 || cut == self.done || epoch < cut {
            return;
        }
        self.done = cut;
        if self.last_sent_epoch >= cut {
            self.coord.fail(cut, format!("worker {} sent records at epoch {} >= cut {cut}", self.local, self.last_sent_epoch));
            return;
        }
        let wms = self.partitions.iter().filter_map(|&p| Some((p, gate.partition_watermark(p)?))).collect();
        let offsets = self.sent.clone();
        let local = self.local;
        self.coord.with_round(cut, |r| r.sources[local] = Some((offsets, wms)));
    }
}

/// An operator's view of the rounds: when to contribute (module docs).
pub(crate) struct CutTracker {
    coord: Arc<Checkpoints>,
    local: usize,
    cut: Option<u64>,
    done: u64,
    max_processed: u64,
}

impl CutTracker {
    fn new(coord: &Arc<Checkpoints>, local: usize) -> CutTracker {
        CutTracker { coord: Arc::clone(coord), local, cut: None, done: 0, max_processed: 0 }
    }

    /// Call at the start of every activation: picks up a new request; fails the round if an
    /// epoch at or after its cut was already processed.
    pub(crate) fn activate(&mut self, what: &str) {
        let cut = self.coord.pending();
        if cut == 0 || cut == self.done {
            return;
        }
        if self.max_processed >= cut {
            self.done = cut;
            self.cut = None;
            self.coord.fail(cut, format!("{what} of worker {} already processed epoch {} >= cut {cut}", self.local, self.max_processed));
            return;
        }
        self.cut = Some(cut);
    }

    /// `Some(cut)` (once) if the state must be captured before processing anything at `t`
    /// (or, with `t` = the input frontier, because nothing below the cut can arrive any more).
    pub(crate) fn due(&mut self, t: u64) -> Option<u64> {
        let cut = self.cut.filter(|&c| t >= c)?;
        self.cut = None;
        self.done = cut;
        Some(cut)
    }

    /// Records that epoch `t` was processed.
    pub(crate) fn processed(&mut self, t: u64) {
        self.max_processed = self.max_processed.max(t);
    }

    /// The cut this operator must still capture (picked up by [`Self::activate`]).
    pub(crate) fn requested(&self) -> Option<u64> {
        self.cut
    }
}

/// The `CapVisitorFloods` operator's hook
/// ([`crate::operators::CapVisitorFloods::cap_visitor_floods_with`]).
#[derive(Clone)]
pub struct FloodCapHook {
    coord: Arc<Checkpoints>,
    local: usize,
}

impl std::fmt::Debug for FloodCapHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloodCapHook").field("local", &self.local).finish_non_exhaustive()
    }
}

impl FloodCapHook {
    pub(crate) fn new(coord: &Arc<Checkpoints>, local: usize) -> FloodCapHook {
        FloodCapHook { coord: Arc::clone(coord), local }
    }

    /// Loads the counts of the codes this worker owns from the restored snapshot into
    /// `state`, and the snapshot's global watermark into `gw`; returns the tracker.
    pub(crate) fn start(&self, state: &mut FloodCapState, gw: &mut GlobalWatermark) -> CutTracker {
        if let Some(snap) = &self.coord.restore {
            let me = self.coord.first_worker + self.local;
            let peers = self.coord.peers;
            *gw = snap.watermark.clone();
            let mine = snap.flood_cap.entries.iter().filter(|e| owner(route_str(&e.code), peers) == me);
            state.restore(mine, gw.recompute());
        }
        CutTracker::new(&self.coord, self.local)
    }

    /// Contributes this worker's counts at `cut`.
    pub(crate) fn capture(&self, cut: u64, state: &FloodCapState) {
        let mut entries = Vec::with_capacity(state.entries());
        state.export(&mut entries);
        let local = self.local;
        self.coord.with_round(cut, |r| r.flood[local] = Some(entries));
    }
}

/// The `DedupByEventId` operator's hook ([`crate::operators::DedupParams::checkpoint`]).
#[derive(Clone)]
pub struct DedupHook {
    coord: Arc<Checkpoints>,
    local: usize,
}

impl std::fmt::Debug for DedupHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedupHook").field("local", &self.local).finish_non_exhaustive()
    }
}

impl DedupHook {
    pub(crate) fn new(coord: &Arc<Checkpoints>, local: usize) -> DedupHook {
        DedupHook { coord: Arc::clone(coord), local }
    }

    /// Loads the ids this worker owns from the restored snapshot into `state`; returns the
    /// tracker for later rounds.
    pub(crate) fn start(&self, state: &mut DedupState) -> CutTracker {
        if let Some(snap) = &self.coord.restore {
            let me = self.coord.first_worker + self.local;
            let peers = self.coord.peers;
            let mine = snap.dedup.ids.iter().copied().filter(|(id, _)| owner(route_u128(*id), peers) == me);
            state.restore(mine, snap.dedup.newest, snap.watermark.clone());
        }
        CutTracker::new(&self.coord, self.local)
    }

    /// Contributes this worker's dedup part at `cut`.
    pub(crate) fn capture(&self, cut: u64, state: &DedupState) {
        let mut ids = Vec::with_capacity(state.len());
        let (newest, wm) = state.export(&mut ids);
        let local = self.local;
        self.coord.with_round(cut, |r| r.dedup[local] = Some((ids, newest, wm)));
    }
}

/// The `MaintainRollups` operator's hook ([`crate::operators::RollupTarget`]).
pub(crate) struct RollupHook {
    coord: Arc<Checkpoints>,
    local: usize,
}

impl RollupHook {
    pub(crate) fn new(coord: &Arc<Checkpoints>, local: usize) -> RollupHook {
        RollupHook { coord: Arc::clone(coord), local }
    }

    /// The restored global watermark (default without a restore) and the tracker.
    pub(crate) fn start(&self) -> (GlobalWatermark, CutTracker) {
        let gw = self.coord.restore.as_ref().map(|s| s.watermark.clone()).unwrap_or_default();
        (gw, CutTracker::new(&self.coord, self.local))
    }

    /// Fails the round at `cut` (the shard already applied epochs at or after it).
    pub(crate) fn fail(&self, cut: u64, applied: u64) {
        self.coord.fail(cut, format!("rollups of worker {} already applied epochs below {applied} >= cut {cut}", self.local));
    }

    /// Contributes this worker's shard at `cut`.
    pub(crate) fn capture(&self, cut: u64, shard: &ShardState) {
        let mut rows = Vec::with_capacity(shard.rows());
        shard.export_rows(&mut rows);
        let part = ViewsSnapshot { watermark_ms: shard.watermark_ms, retained_from: shard.retained_from, rows };
        let local = self.local;
        self.coord.with_round(cut, |r| r.shards[local] = Some(part));
    }
}

/// Checks that a snapshot can be restored by a pipeline of this shape.
///
/// Errors: [`Error::Config`] with more than one timely process (checkpoints are per
/// process and the views of a cluster are spread over all of them).
pub fn check_restorable(processes: usize) -> Result<()> {
    if processes > 1 {
        return Err(Error::Config("checkpoints need dataflow.processes = 1".into()));
    }
    Ok(())
}

#[cfg(test)]
#[path = "checkpoint_adopt_tests.rs"]
mod adopt_tests;
#[cfg(test)]
#[path = "checkpoint_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "checkpoint_totals_tests.rs"]
mod totals_tests;
