//! `DedupByEventId`: drop repeated `event_id`s within the dedup horizon.
//!
//! * **Input**: updates (one record per received click), exchanged by
//!   [`route_u128`]`(event_id)` so all copies of an id meet on one worker; plus the
//!   broadcast [`WatermarkReport`]s.
//! * **Output**: updates — the first copy of every id (`ok`), and dead letters (`err`) for
//!   clicks that are too late against the global watermark (see below).
//! * **State**: `event_id → basis` for every id whose basis is within
//!   `max(dedup_horizon, allowed_lateness)` of the global watermark `W`, plus an index by
//!   basis hour; compacted whenever `W` advances (whole hours at a time), so memory is bounded
//!   by the clicks of that window. The basis is the event time; for backfill it is the
//!   newest event time seen at insertion (`max(ts, W, newest ts of any click so far)`), so
//!   re-imports of the same file are caught while the watermark stays within the retention
//!   of the import (a re-import after that is counted again: imports are idempotent only
//!   within it). A backfill id recorded before the first watermark is known has its basis
//!   raised to that first `W` when it comes: an import into a server that has seen no click yet
//!   (`W` unknown) is remembered like one into a running server, whatever its batches
//!   (attack of session 46: a re-import of a history file counted its older events twice).
//!
//! **First wins**: the first copy processed is kept with its payload; later copies (even with
//! a different user agent or referrer, case C19's E′) are dropped and never touch a rollup
//! row. Copies from one partition are processed in offset order; copies that arrive through
//! different partitions are ordered by processing epoch. A repeat refreshes the basis to the
//! largest event time among the copies.
//!
//! **Why no duplicate slips through**: an id is forgotten only once its basis `b` satisfies
//! `b < W − retention` with `retention ≥ allowed_lateness`. A later copy carries the same event
//! time, so it is older than `W − allowed_lateness`; the gate rejects it against its partition
//! watermark (`W_p ≥ W` while the partition is active), and this operator re-checks against
//! `W` for partitions that were idle (`W_p` may lag `W`): such a copy is dead-lettered
//! `too_late` rather than counted twice.
//!
//! Plain timely, not differential: first-wins is order-dependent and its output must never be
//! retracted (the downstream HLL rollups are append-only); a differential `distinct` would
//! retract and re-emit records as the horizon retracts inputs.
//!
//! ```
//! use timely::dataflow::operators::{ToStream, Capture, capture::Extract};
//! use sluice_dataflows::operators::{DedupByEventId, DedupParams};
//! use sluice_dataflows::records::GatedClick;
//! use sluice_dataflows::watermark::WatermarkReport;
//! use sluice_schemas::ClickEvent;
//!
//! let click = |id: u128, offset: u64| GatedClick {
//!     partition: 0,
//!     offset,
//!     backfill: false,
//!     event: ClickEvent {
//!         event_id: uuid::Uuid::from_u128(id), code: "ab".into(), ts: 1_000, ip_trunc: None,
//!         visitor_id: 7, user_agent: String::new(), referrer: None, accept_language: None,
//!         edge_region: None,
//!     },
//! };
//! let (ok, err) = timely::example(move |scope| {
//!     let clicks = vec![click(1, 0), click(1, 1), click(2, 2)].to_stream(scope).container::<Vec<_>>();
//!     let reports = Vec::<WatermarkReport>::new().to_stream(scope).container::<Vec<_>>();
//!     let params = DedupParams::from_semantics(&Default::default());
//!     let (ok, err) = clicks.dedup_by_event_id(reports, params);
//!     (ok.capture(), err.capture())
//! });
//! let ok: Vec<u64> = ok.extract().into_iter().flat_map(|(_, v)| v).map(|c| c.offset).collect();
//! assert_eq!(ok, vec![0, 2]);
//! assert!(err.extract().is_empty());
//! ```

use std::collections::BTreeMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use crate::chunked::Chunked;
use crate::config::SemanticsConfig;
use crate::dead_letter::{DeadLetter, DeadLetterReason};
use crate::hash::{FxHashMap, route_u128};
use crate::records::GatedClick;
use crate::watermark::{GlobalWatermark, WatermarkReport};

const HOUR_MS: i64 = 3_600_000;

/// Dedup state and logic, independent of timely (module docs).
#[derive(Debug, Default)]
pub struct DedupState {
    /// Remembered ids (as [`Id`]: 24-byte entries instead of 32 for a 16-aligned `u128`)
    /// and their basis.
    seen: FxHashMap<Id, i64>,
    /// Ids by basis hour (an id refreshed to a later hour is listed under both), in
    /// [`Chunked`] lists: a busy hour's millions of ids are never copied by a growing vector.
    by_hour: BTreeMap<i64, Chunked<Id>>,
    watermark: GlobalWatermark,
    retention_ms: i64,
    lateness_ms: i64,
    long_retention_ms: i64,
    duplicates: u64,
    /// Largest event time of a click processed, backfill included (backfill basis floor).
    newest: i64,
    /// Backfill ids recorded before the first watermark (`W` unknown; all ids restored from a
    /// checkpoint without one): their basis is raised to the first `W` ([`Self::advance`]),
    /// as if they had come in once it was known.
    before_watermark: Vec<Id>,
}

impl DedupState {
    /// State forgetting ids `retention_ms` behind `W`, re-checking lateness (`lateness_ms`,
    /// or `long_retention_ms` for backfill) against `W`.
    pub fn new(retention_ms: i64, lateness_ms: i64, long_retention_ms: i64) -> DedupState {
        DedupState { retention_ms, lateness_ms, long_retention_ms, newest: i64::MIN, ..Default::default() }
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Duplicates dropped so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Processes one batch in order: first copies to `ok`, too-late clicks to `err`.
    pub fn process(&mut self, batch: impl IntoIterator<Item = GatedClick>, ok: &mut Vec<GatedClick>, err: &mut Vec<DeadLetter>) {
        let w = self.watermark.current();
        for c in batch {
            match self.admit(&c, w) {
                Admit::First => ok.push(c),
                Admit::Repeat => {}
                Admit::TooLate(limit) => err.push(too_late(c, limit, w)),
            }
        }
    }

    /// [`Self::process`] in place: leaves the first copies in `batch`, in order (no copy of
    /// the records into a new buffer), and moves too-late clicks to `err`.
    pub fn process_in_place(&mut self, batch: &mut Vec<GatedClick>, err: &mut Vec<DeadLetter>) {
        let w = self.watermark.current();
        let mut kept = 0;
        for i in 0..batch.len() {
            match self.admit(&batch[i], w) {
                Admit::First => {
                    batch.swap(kept, i);
                    kept += 1;
                }
                Admit::Repeat => {}
                Admit::TooLate(limit) => {
                    let c = batch[i].clone();
                    err.push(too_late(c, limit, w));
                }
            }
        }
        batch.truncate(kept);
    }

    /// Decides one click against the watermark `w` and the remembered ids (recording it).
    #[inline]
    fn admit(&mut self, c: &GatedClick, w: i64) -> Admit {
        let ts = c.event.ts;
        if w != i64::MIN {
            let limit = if c.backfill { self.long_retention_ms } else { self.lateness_ms };
            if ts < w.saturating_sub(limit) {
                return Admit::TooLate(limit);
            }
        }
        let basis = if c.backfill { ts.max(w).max(self.newest) } else { ts };
        self.newest = self.newest.max(ts);
        let id = id_of(c.event.event_id.as_u128());
        if w == i64::MIN && c.backfill {
            self.before_watermark.push(id);
        }
        match self.seen.entry(id) {
            Entry::Occupied(mut e) => {
                self.duplicates += 1;
                if basis > *e.get() {
                    *e.get_mut() = basis;
                    index_by_hour(&mut self.by_hour, basis, *e.key());
                }
                Admit::Repeat
            }
            Entry::Vacant(e) => {
                index_by_hour(&mut self.by_hour, basis, *e.key());
                e.insert(basis);
                Admit::First
            }
        }
    }

    /// Folds watermark reports, then forgets ids that fell out of retention.
    pub fn advance(&mut self, reports: &[WatermarkReport]) {
        if reports.is_empty() {
            return;
        }
        for r in reports {
            self.watermark.apply(r);
        }
        let w = self.watermark.recompute();
        if w == i64::MIN {
            return;
        }
        for id in std::mem::take(&mut self.before_watermark) {
            if let Some(b) = self.seen.get_mut(&id)
                && *b < w
            {
                *b = w;
                index_by_hour(&mut self.by_hour, w, id);
            }
        }
        let cutoff = w.saturating_sub(self.retention_ms);
        while let Some(entry) = self.by_hour.first_entry() {
            let hour = *entry.key();
            if (hour + 1) * HOUR_MS > cutoff {
                break;
            }
            for id in entry.remove() {
                if let Entry::Occupied(e) = self.seen.entry(id)
                    && e.get().div_euclid(HOUR_MS) == hour
                {
                    e.remove();
                }
            }
        }
    }

    /// Current global watermark.
    pub fn watermark(&self) -> i64 {
        self.watermark.current()
    }

    /// Checkpoint hook ([`crate::checkpoint`]): appends every remembered `(id, basis)` to
    /// `ids`; returns the newest event time and the folded watermark.
    pub(crate) fn export(&self, ids: &mut Vec<(u128, i64)>) -> (i64, GlobalWatermark) {
        ids.extend(self.seen.iter().map(|(&id, &b)| (u128_of(id), b)));
        (self.newest, self.watermark.clone())
    }

    /// Checkpoint hook: adds restored `(id, basis)` entries and takes the snapshot's newest
    /// event time and watermark.
    pub(crate) fn restore(&mut self, ids: impl IntoIterator<Item = (u128, i64)>, newest: i64, watermark: GlobalWatermark) {
        let unknown = watermark.current() == i64::MIN;
        for (id, basis) in ids {
            let id = id_of(id);
            self.seen.insert(id, basis);
            self.by_hour.entry(basis.div_euclid(HOUR_MS)).or_default().push(id);
            if unknown {
                self.before_watermark.push(id);
            }
        }
        self.newest = self.newest.max(newest);
        self.watermark = watermark;
    }
}

/// An event id as two words (high, low).
type Id = (u64, u64);

#[inline]
fn id_of(id: u128) -> Id {
    ((id >> 64) as u64, id as u64)
}

#[inline]
fn u128_of(id: Id) -> u128 {
    (u128::from(id.0) << 64) | u128::from(id.1)
}

/// What [`DedupState::admit`] decided for a click.
enum Admit {
    /// The first copy: passed on.
    First,
    /// A later copy: dropped.
    Repeat,
    /// Too late against the global watermark (limit in ms): dead-lettered.
    TooLate(i64),
}

/// The dead letter of click `c`, more than `limit` ms behind the global watermark `w`.
fn too_late(c: GatedClick, limit: i64, w: i64) -> DeadLetter {
    let ts = c.event.ts;
    DeadLetter {
        partition: c.partition,
        offset: c.offset,
        reason: DeadLetterReason::TooLate,
        detail: format!("ts {ts} is more than {limit} ms behind the global watermark {w}"),
        event: c.event,
    }
}

/// Adds `id` to the index entry of `basis`'s hour. Live clicks almost always fall in the
/// newest hour: that entry is found without a search from the root.
#[inline]
fn index_by_hour(by_hour: &mut BTreeMap<i64, Chunked<Id>>, basis: i64, id: Id) {
    let hour = basis.div_euclid(HOUR_MS);
    match by_hour.last_entry() {
        Some(mut e) if *e.key() == hour => e.get_mut().push(id),
        _ => by_hour.entry(hour).or_default().push(id),
    }
}

/// Parameters of [`DedupByEventId::dedup_by_event_id`].
#[derive(Debug, Clone, Default)]
pub struct DedupParams {
    /// State retention behind `W`, ms: `max(dedup_horizon, allowed_lateness)`.
    pub retention_ms: i64,
    /// Allowed lateness, ms.
    pub lateness_ms: i64,
    /// Longest rollup retention (limit for backfill), ms.
    pub long_retention_ms: i64,
    /// Incremented by the number of duplicates dropped (per batch).
    pub duplicates: Arc<AtomicU64>,
    /// Checkpoints: restore at start and contribute to rounds ([`crate::checkpoint`]).
    pub checkpoint: Option<crate::checkpoint::DedupHook>,
}

impl DedupParams {
    /// Parameters from the pipeline semantics, with a fresh duplicate counter.
    pub fn from_semantics(sem: &SemanticsConfig) -> DedupParams {
        DedupParams {
            retention_ms: sem.dedup_retention_ms(),
            lateness_ms: sem.lateness_ms(),
            long_retention_ms: sem.retention_ms()[3],
            duplicates: Arc::default(),
            checkpoint: None,
        }
    }
}

/// Extension trait: deduplicate clicks by `event_id` (module docs).
pub trait DedupByEventId<'scope> {
    /// Returns `(first copies, too-late dead letters)`.
    fn dedup_by_event_id(
        self,
        reports: StreamVec<'scope, u64, WatermarkReport>,
        params: DedupParams,
    ) -> (StreamVec<'scope, u64, GatedClick>, StreamVec<'scope, u64, DeadLetter>);
}

impl<'scope> DedupByEventId<'scope> for StreamVec<'scope, u64, GatedClick> {
    fn dedup_by_event_id(
        self,
        reports: StreamVec<'scope, u64, WatermarkReport>,
        params: DedupParams,
    ) -> (StreamVec<'scope, u64, GatedClick>, StreamVec<'scope, u64, DeadLetter>) {
        let mut builder = OperatorBuilder::new("DedupByEventId".to_owned(), self.scope());
        let mut clicks_in = builder.new_input(self, Exchange::new(|c: &GatedClick| route_u128(c.event.event_id.as_u128())));
        let mut reports_in = builder.new_input(reports, Pipeline);
        let (ok_out, ok_stream) = builder.new_output::<Vec<GatedClick>>();
        let (err_out, err_stream) = builder.new_output::<Vec<DeadLetter>>();
        let mut ok_out = OutputBuilder::<_, timely::container::CapacityContainerBuilder<Vec<GatedClick>>>::from(ok_out);
        let mut err_out = OutputBuilder::<_, timely::container::CapacityContainerBuilder<Vec<DeadLetter>>>::from(err_out);

        builder.build(move |initial| {
            drop(initial);
            let mut state = DedupState::new(params.retention_ms, params.lateness_ms, params.long_retention_ms);
            let mut cut = params.checkpoint.as_ref().map(|h| h.start(&mut state));
            let mut reported_duplicates = 0u64;
            type Pending = (Capability<u64>, Capability<u64>, Vec<Vec<GatedClick>>);
            let mut clicks: BTreeMap<u64, Pending> = BTreeMap::new();
            let mut reports: BTreeMap<u64, Vec<WatermarkReport>> = BTreeMap::new();
            let mut err_buf = Vec::new();
            move |frontiers| {
                clicks_in.for_each(|cap, data| {
                    let Some(&t) = cap.least() else { return };
                    let e = clicks.entry(t).or_insert_with(|| (cap.delayed(&t, 0), cap.delayed(&t, 1), Vec::new()));
                    e.2.push(std::mem::take(data));
                });
                reports_in.for_each(|cap, data| {
                    let Some(&t) = cap.least() else { return };
                    reports.entry(t).or_default().append(data);
                });
                let ready = |t: u64| frontiers.iter().all(|f| !f.less_equal(&t));
                let mut ok = ok_out.activate();
                let mut err = err_out.activate();
                if let Some(ct) = cut.as_mut() {
                    ct.activate("dedup");
                }
                loop {
                    let next_c = clicks.keys().next().copied().filter(|&t| ready(t));
                    let next_r = reports.keys().next().copied().filter(|&t| ready(t));
                    // Checkpoint: capture before the first epoch at or after the cut.
                    if let (Some(ct), Some(t)) = (cut.as_mut(), next_c.into_iter().chain(next_r).min()) {
                        if let (Some(c), Some(h)) = (ct.due(t), params.checkpoint.as_ref()) {
                            h.capture(c, &state);
                        }
                        ct.processed(t);
                    }
                    match (next_c, next_r) {
                        (Some(c), r) if r.is_none_or(|r| c <= r) => {
                            let (cap_ok, cap_err, batches) = clicks.remove(&c).expect("key present");
                            // First copies stay in their input buffer, which is passed on.
                            for mut b in batches {
                                state.process_in_place(&mut b, &mut err_buf);
                                if !b.is_empty() {
                                    ok.session(&cap_ok).give_container(&mut b);
                                }
                            }
                            if !err_buf.is_empty() {
                                err.session(&cap_err).give_container(&mut err_buf);
                                err_buf.clear();
                            }
                            if let Some(rs) = reports.remove(&c) {
                                state.advance(&rs);
                            }
                        }
                        (_, Some(r)) => {
                            let rs = reports.remove(&r).expect("key present");
                            state.advance(&rs);
                        }
                        _ => break,
                    }
                }
                if let Some(ct) = cut.as_mut() {
                    let lower = frontiers.iter().filter_map(|f| f.frontier().iter().copied().min()).min().unwrap_or(u64::MAX);
                    if let (Some(c), Some(h)) = (ct.due(lower), params.checkpoint.as_ref()) {
                        h.capture(c, &state);
                    }
                }
                let d = state.duplicates() - reported_duplicates;
                if d > 0 {
                    reported_duplicates += d;
                    params.duplicates.fetch_add(d, Ordering::Relaxed);
                    metrics::counter!("sluice_events_duplicates_total").increment(d);
                }
            }
        });
        (ok_stream, err_stream)
    }
}

#[cfg(test)]
mod tests;
