//! What the anomaly store already holds, for detectors that derive anomalies from clicks a
//! previous run has seen: a start without a checkpoint replays the whole click log, a
//! restore replays the clicks after its cut.
//!
//! A replay derives the same events again when the clicks come in the same event-time
//! order relative to the detectors' ticks: ids are `(kind, key, window start)` of the
//! opening tick. Clicks that reached the live run stamped behind ticks it had already
//! evaluated (a `POST /v1/events` batch stamped seconds in the past while other traffic kept
//! event time moving) do not: the replay, with every click there from the start, opens the
//! same episode at an earlier tick, so under another id. Without this the replay's twin was
//! a second anomaly of the key — open beside the stored one, which nothing closed any more,
//! and new to the automatic actions, which disabled its link a second time (attack of
//! session 56).
//!
//! So each detector gets the stored anomalies of its kinds and keys ([`KnownAnomalies`]:
//! their latest states; a restored start's open ones are adopted instead, module
//! `anomaly_lifecycle`, **Restart**), and when one of its slots opens an episode
//! ([`KnownAnomalies::reconcile`]):
//! * under the id of a stored anomaly: the replay derives that anomaly again (the store
//!   keeps each event once);
//! * else, when a stored anomaly of the same kind and key overlaps the opening window
//!   (`[tick − window, tick]` against `[window_start, window_end]`, for one still open
//!   `window_end + window`: its last event may lie a while before its episode's end), the
//!   episode continues that anomaly ([`LifecycleSlot::continue_stored`]): same id, the next
//!   revisions, closed by the replay's quiet period — or, for one the store holds closed,
//!   runs muted (the store takes nothing after a `closed` event; an earlier replay that
//!   continued it closed it). The automatic actions, keyed by anomaly id, do not act again;
//! * else it is a new anomaly.
//!
//! A stored anomaly still open that no episode of this run took up ("orphan": the replay
//! derives it under another id before, or not at all) is closed
//! ([`super::anomaly_lifecycle::closed_now`], its last values repeated) at the first tick
//! `2 × window` after its `window_end`, past which no opening window can overlap it any
//! more ([`KnownAnomalies::close_orphans`]).
//!
//! **Which stored anomalies.** Every open one (they are few: at most one per `(kind, key)`),
//! given at the start. Of the closed ones only those a replay can still meet: an episode
//! opens at a tick `s` no earlier than the detector's first tick `s₀` — its event-time
//! schedule starts at the earlier of the first global watermark and the earliest click it
//! holds then (module `ticks`), and a click it reads later behind the tick being evaluated
//! by more than the window is in no window — and its opening window `[s − window, s]`
//! overlaps a closed anomaly only if that one's `window_end > s − window ≥ s₀ − window`.
//! So a closed anomaly with `window_end ≤ s₀ − window` can never be reconciled, and each
//! detector reads, once its schedule starts, the closed anomalies of its kinds and keys with
//! `window_end > s₀ − window` ([`KnownAnomalies::start`], the store's `by_end` index). How
//! far back `s₀` lies is what the start replays: after a restore, the checkpoint's watermark
//! minus `[dataflow] allowed-lateness` at most (a later click, unless marked backfill, is
//! dead-lettered), or a backfill click of the first batch read (`long-retention`); without a
//! checkpoint, the earliest click of the click log (Kafka: of the topic's retention). (The
//! same id derived again needs no stored state: it passes as is, and the store keeps each
//! event once.)
//!
//! No live episode is affected: an episode of a key opens at least a quiet period
//! (≥ one window) after the last tick at which the key's previous anomaly held, which is
//! that anomaly's closing `window_end`, so its opening window never overlaps a stored
//! anomaly of the key.

use std::collections::BTreeMap;

use sluice_schemas::{Anomaly, AnomalyKind, AnomalyStatus, Evidence};
use uuid::Uuid;

use super::anomaly_lifecycle::{LifecycleSlot, closed_now};
use crate::anomaly::StoredAnomalies;
use crate::hash::FxHashMap;

/// The closed anomalies still to read when the schedule starts: the store, and the detector's
/// filter (its kinds and the keys its worker owns).
struct ClosedToRead(StoredAnomalies, Box<dyn Fn(&Anomaly) -> bool>);

impl std::fmt::Debug for ClosedToRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ClosedToRead").field(&self.0).finish_non_exhaustive()
    }
}

/// The stored anomalies of one detector's kinds and keys (module docs).
#[derive(Debug, Default)]
pub(crate) struct KnownAnomalies {
    /// The detector's window, ms.
    window_ms: i64,
    /// Latest states by `(kind, key)`, not yet taken up by an episode of this run.
    by_key: FxHashMap<(AnomalyKind, String), Vec<Anomaly>>,
    /// The open ones among them, by `(deadline tick, id)` ([`Self::close_orphans`]).
    orphans: BTreeMap<(i64, Uuid), (AnomalyKind, String)>,
    /// Read at [`Self::start`], then `None`.
    closed: Option<ClosedToRead>,
}

impl KnownAnomalies {
    /// An empty ledger for a detector with `window_ms`.
    pub(crate) fn new(window_ms: i64) -> KnownAnomalies {
        KnownAnomalies { window_ms, ..KnownAnomalies::default() }
    }

    /// Has [`Self::start`] read the closed anomalies of `stored` that `keep` accepts (the
    /// detector's kinds and owned keys).
    pub(crate) fn read_closed_at_start(&mut self, stored: &StoredAnomalies, keep: Box<dyn Fn(&Anomaly) -> bool>) {
        if stored.closed.is_some() {
            self.closed = Some(ClosedToRead(stored.clone(), keep));
        }
    }

    /// Called after every fold of watermark reports with the detector's next tick (`None`
    /// before its schedule has started): at the first call with a tick `first` — the
    /// schedule's first — reads the closed anomalies with `window_end > first − window`
    /// (module docs, **Which stored anomalies**) and returns how many it kept; 0 otherwise.
    pub(crate) fn start(&mut self, first: Option<i64>) -> usize {
        let Some(first) = first else { return 0 };
        let Some(ClosedToRead(stored, keep)) = self.closed.take() else { return 0 };
        let after = first.saturating_sub(self.window_ms);
        let closed = stored.closed_ending_after(after, &*keep);
        let n = self.extend(closed.iter().filter(|a| a.status == AnomalyStatus::Closed));
        tracing::debug!(first_tick = first, window_end_after = after, closed = n, "abuse detector: the stored closed anomalies a replay can meet, read");
        n
    }

    /// Adds the latest states `stored` (the caller has picked the detector's kinds and owned
    /// keys). A closed one keeps only what reconciliation reads (its evidence and summary
    /// are dropped: the store would take none of its events anyway). Returns how many.
    pub(crate) fn extend<'a>(&mut self, stored: impl IntoIterator<Item = &'a Anomaly>) -> usize {
        let mut n = 0;
        for a in stored {
            n += 1;
            let mut a = a.clone();
            if a.status == AnomalyStatus::Closed {
                a.evidence = Evidence::default();
                a.summary = String::new();
            } else {
                self.orphans.insert((self.deadline(&a), a.anomaly_id), (a.kind, a.key.clone()));
            }
            self.by_key.entry((a.kind, a.key.clone())).or_default().push(a);
        }
        n
    }

    /// Stored anomalies not taken up yet.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_key.values().map(Vec::len).sum()
    }

    /// The first tick at which a stored open `a` that no episode took up is an orphan.
    fn deadline(&self, a: &Anomaly) -> i64 {
        a.window_end.saturating_add(self.window_ms.saturating_mul(2))
    }

    /// Takes `ev`, the event `slot` just emitted at tick `s`: an `open` event is reconciled
    /// with the stored anomalies of its kind and key (module docs); returns the event to
    /// emit instead (`ev` itself, an `updated` event of the stored anomaly continued, or
    /// none). Other events pass unchanged.
    pub(crate) fn reconcile(&mut self, slot: &mut LifecycleSlot, ev: Anomaly, s: i64) -> Option<Anomaly> {
        if ev.status != AnomalyStatus::Open || self.by_key.is_empty() {
            return Some(ev);
        }
        let k = (ev.kind, ev.key.clone());
        let Some(list) = self.by_key.get_mut(&k) else { return Some(ev) };
        let w = self.window_ms;
        let same = list.iter().position(|a| a.anomaly_id == ev.anomaly_id);
        let pick = same.or_else(|| {
            list.iter()
                .enumerate()
                .filter(|(_, a)| overlaps(a, s, w))
                .max_by_key(|(_, a)| (a.status != AnomalyStatus::Closed, a.window_start, a.anomaly_id))
                .map(|(i, _)| i)
        });
        let Some(i) = pick else { return Some(ev) };
        let stored = list.swap_remove(i);
        if list.is_empty() {
            self.by_key.remove(&k);
        }
        if stored.status != AnomalyStatus::Closed {
            self.orphans.remove(&(self.deadline(&stored), stored.anomaly_id));
        }
        if same.is_some() {
            return Some(ev);
        }
        tracing::info!(
            kind = ev.kind.as_str(),
            key = %ev.key,
            derived = %ev.anomaly_id,
            stored = %stored.anomaly_id,
            stored_status = stored.status.as_str(),
            "a replayed episode continues the stored anomaly of its key"
        );
        slot.continue_stored(stored, &ev, s)
    }

    /// Closes the stored open anomalies no episode took up whose deadline (`window_end` +
    /// 2 × window) is at or before tick `s` (module docs), into `out` (`now_ms`:
    /// `detected_at`).
    pub(crate) fn close_orphans(&mut self, s: i64, now_ms: i64, out: &mut Vec<Anomaly>) {
        while let Some(entry) = self.orphans.first_entry()
            && entry.key().0 <= s
        {
            let ((_, id), k) = entry.remove_entry();
            let Some(list) = self.by_key.get_mut(&k) else { continue };
            let Some(i) = list.iter().position(|a| a.anomaly_id == id) else { continue };
            let a = list.swap_remove(i);
            if list.is_empty() {
                self.by_key.remove(&k);
            }
            tracing::info!(kind = a.kind.as_str(), key = %a.key, id = %a.anomaly_id, "an anomaly left open by the previous run that this run did not derive again is closed");
            out.extend(closed_now(&a, now_ms));
        }
    }
}

/// Whether the opening window of tick `s` (`[s − w, s]`) overlaps stored `a` (its window,
/// extended by `w` while it is open: module docs).
fn overlaps(a: &Anomaly, s: i64, w: i64) -> bool {
    let end = if a.status == AnomalyStatus::Closed { a.window_end } else { a.window_end.saturating_add(w) };
    s - w < end && a.window_start < s
}

#[cfg(test)]
mod tests {
    use sluice_schemas::Severity;
    use sluice_schemas::anomaly::anomaly_id;

    use super::super::anomaly_lifecycle::{Assessment, Body, LifecycleParams};
    use super::*;

    const P: LifecycleParams = LifecycleParams { window_ms: 60_000, quiet_ms: 60_000, update_interval_ms: 10_000, update_min_change: 0.25 };
    const KEY: &str = "visitor:00000000000000aa";

    fn v(severity: Severity, observed: f64) -> Option<Assessment> {
        Some(Assessment { severity, observed, expected: 60.0, score: observed / 60.0 })
    }

    fn body(_: &Assessment) -> Body {
        Body { code: Some("fa".into()), org: None, summary: "s".into(), evidence: Evidence::default() }
    }

    /// The live run's anomaly: opened at tick 160 s (window start 100 s), its latest state
    /// `status` at `revision` with `window_end`.
    fn stored(status: AnomalyStatus, revision: u32, window_end: i64) -> Anomaly {
        let mut slot = LifecycleSlot::default();
        let mut a = slot.step(AnomalyKind::VisitorFlood, KEY, 160_000, v(Severity::Critical, 300.0), &P, 1, body).expect("open");
        a.status = status;
        a.revision = revision;
        a.window_end = window_end;
        a
    }

    type Step = (i64, uuid::Uuid, AnomalyStatus, u32, Severity, i64);

    /// Runs a slot reconciled against `known` through `(tick, verdict)` steps; returns
    /// `(tick, id, status, revision, severity, window_end)` of every event emitted.
    fn run(known: &mut KnownAnomalies, steps: &[(i64, Option<Assessment>)]) -> Vec<Step> {
        let mut slot = LifecycleSlot::default();
        let mut out = Vec::new();
        for &(s, a) in steps {
            let ev = slot.step(AnomalyKind::VisitorFlood, KEY, s, a, &P, 9, body).and_then(|ev| known.reconcile(&mut slot, ev, s));
            let mut evs: Vec<Anomaly> = ev.into_iter().collect();
            known.close_orphans(s, 9, &mut evs);
            out.extend(evs.into_iter().map(|e| (s, e.anomaly_id, e.status, e.revision, e.severity, e.window_end)));
        }
        out
    }

    /// Session 56: the live run opened its anomaly at 160 s (the flood's clicks came late);
    /// the replay, with them all there, opens the episode at 146 s. It continues the stored
    /// anomaly: no second id, an update when due, and the close with the next revision.
    #[test]
    fn a_replayed_twin_continues_the_stored_open_anomaly_and_closes_it() {
        use AnomalyStatus::*;
        let live = stored(Open, 0, 160_000);
        let mut known = KnownAnomalies::new(60_000);
        assert_eq!(known.extend([&live]), 1);
        let mut steps = vec![(145_000, None), (146_000, v(Severity::Critical, 300.0))];
        steps.extend((147_000..=205_000).step_by(1_000).map(|s| (s, v(Severity::Critical, 300.0))));
        steps.push((206_000, v(Severity::Warning, 90.0)));
        steps.extend((207_000..=266_000).step_by(1_000).map(|s| (s, None)));
        let got = run(&mut known, &steps);
        assert_eq!(
            got,
            vec![(206_000, live.anomaly_id, Updated, 1, Severity::Warning, 206_000), (266_000, live.anomaly_id, Closed, 2, Severity::Warning, 206_000)]
        );
        assert_eq!(known.len(), 0);
    }

    #[test]
    fn a_more_severe_twin_updates_the_stored_anomaly_at_once() {
        let mut live = stored(AnomalyStatus::Open, 0, 160_000);
        live.severity = Severity::Info;
        let mut known = KnownAnomalies::new(60_000);
        known.extend([&live]);
        let mut slot = LifecycleSlot::default();
        let ev = slot.step(AnomalyKind::VisitorFlood, KEY, 150_000, v(Severity::Critical, 300.0), &P, 9, body).expect("open");
        let up = known.reconcile(&mut slot, ev, 150_000).expect("escalation");
        assert_eq!(
            (up.anomaly_id, up.status, up.revision, up.severity, up.window_start, up.window_end),
            (live.anomaly_id, AnomalyStatus::Updated, 1, Severity::Critical, 100_000, 150_000)
        );
        assert!(slot.is_open());
    }

    /// A second replay after the first closed it: the twin runs muted, nothing is emitted.
    #[test]
    fn a_replayed_twin_of_a_closed_anomaly_emits_nothing() {
        let closed = stored(AnomalyStatus::Closed, 2, 206_000);
        let mut known = KnownAnomalies::new(60_000);
        known.extend([&closed]);
        let mut steps = vec![(146_000, v(Severity::Critical, 300.0))];
        steps.extend((147_000..=205_000).step_by(1_000).map(|s| (s, v(Severity::Critical, 300.0))));
        steps.extend((206_000..=400_000).step_by(1_000).map(|s| (s, None)));
        assert_eq!(run(&mut known, &steps), vec![]);
        // An episode of the key a quiet period after the close is a new anomaly.
        let mut known = KnownAnomalies::new(60_000);
        known.extend([&closed]);
        let mut slot = LifecycleSlot::default();
        let ev = slot.step(AnomalyKind::VisitorFlood, KEY, 266_000, v(Severity::Info, 35.0), &P, 9, body).expect("open");
        assert_eq!(known.reconcile(&mut slot, ev.clone(), 266_000), Some(ev));
        assert_eq!(known.len(), 1);
    }

    /// The exact anomaly derived again passes as is; an episode opening before the stored
    /// one's window is another anomaly, and the stored one, not taken up, is closed at its
    /// deadline (window_end + 2 windows) with its values repeated.
    #[test]
    fn the_same_id_passes_and_an_orphan_is_closed_at_its_deadline() {
        use AnomalyStatus::*;
        let live = stored(Updated, 3, 190_000);
        let mut known = KnownAnomalies::new(60_000);
        known.extend([&live]);
        let got = run(&mut known, &[(160_000, v(Severity::Critical, 300.0))]);
        assert_eq!(got, vec![(160_000, live.anomaly_id, Open, 0, Severity::Critical, 160_000)]);
        assert_eq!(known.len(), 0, "taken up by the replay");

        let mut known = KnownAnomalies::new(60_000);
        known.extend([&live]);
        let early = anomaly_id(AnomalyKind::VisitorFlood, KEY, 30_000);
        let mut steps = vec![(90_000, v(Severity::Info, 35.0))];
        steps.extend((91_000..=309_000).step_by(1_000).map(|s| (s, None)));
        steps.push((310_000, None));
        let got = run(&mut known, &steps);
        assert_eq!(
            got,
            vec![
                (90_000, early, Open, 0, Severity::Info, 90_000),
                (150_000, early, Closed, 1, Severity::Info, 90_000),
                (310_000, live.anomaly_id, Closed, 4, Severity::Critical, 190_000),
            ]
        );
        assert_eq!(known.len(), 0);
    }

    /// The closed anomalies are read once, when the schedule starts, back to the first tick
    /// minus the window (exclusive): one that ended there can overlap no opening window.
    #[test]
    fn the_closed_ones_are_read_at_the_start_back_to_the_first_tick_minus_the_window() {
        let ended = |window_end| stored(AnomalyStatus::Closed, 1, window_end);
        let mut old = ended(100_000);
        old.anomaly_id = Uuid::from_u128(1);
        let mut edge = ended(100_001);
        edge.anomaly_id = Uuid::from_u128(2);
        let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let all = StoredAnomalies::from(vec![old.clone(), edge.clone(), stored(AnomalyStatus::Open, 0, 50_000)]);
        let counted = std::sync::Arc::clone(&reads);
        let stored_anomalies = StoredAnomalies {
            open: std::sync::Arc::from([]),
            closed: Some(std::sync::Arc::new(move |after, keep: &dyn Fn(&Anomaly) -> bool| {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                all.closed_ending_after(after, keep)
            })),
        };
        let mut known = KnownAnomalies::new(60_000);
        known.read_closed_at_start(&stored_anomalies, Box::new(|a| a.key == KEY));
        assert_eq!(known.start(None), 0, "not started");
        assert_eq!(known.start(Some(160_000)), 1, "window_end > 100 000");
        assert_eq!(known.by_key.values().flatten().map(|a| a.anomaly_id).collect::<Vec<_>>(), vec![edge.anomaly_id]);
        assert_eq!(known.start(Some(161_000)), 0, "read once");
        assert_eq!(reads.load(std::sync::atomic::Ordering::Relaxed), 1);
        // The first tick one earlier reaches `old` too; another detector's keys, nothing.
        let mut known = KnownAnomalies::new(60_000);
        known.read_closed_at_start(&stored_anomalies, Box::new(|a| a.key == KEY));
        assert_eq!(known.start(Some(159_999)), 2);
        let mut known = KnownAnomalies::new(60_000);
        known.read_closed_at_start(&stored_anomalies, Box::new(|_| false));
        assert_eq!(known.start(Some(0)), 0);
    }

    #[test]
    fn overlap_extends_an_open_anomaly_by_a_window() {
        let open = stored(AnomalyStatus::Open, 0, 160_000);
        let closed = stored(AnomalyStatus::Closed, 1, 160_000);
        // Opening windows [s - 60 s, s].
        assert!(!overlaps(&open, 100_000, 60_000), "ends where it starts");
        assert!(overlaps(&open, 100_001, 60_000));
        assert!(overlaps(&open, 279_999, 60_000));
        assert!(!overlaps(&open, 280_000, 60_000));
        assert!(overlaps(&closed, 219_999, 60_000));
        assert!(!overlaps(&closed, 220_000, 60_000), "a new episode a quiet period after the close");
    }
}
