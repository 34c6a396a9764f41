//! The lifecycle of one anomaly per `(kind, key)`: open → updated* → closed.
//!
//! Detectors assess a key at every tick it is evaluated ([`Assessment`] or nothing); a
//! [`LifecycleSlot`] per `(kind, key)` turns that sequence into events:
//! * **open** when a condition holds and no anomaly is open for the key; the id is
//!   [`sluice_schemas::anomaly::anomaly_id`]`(kind, key, window_start)` with `window_start =
//!   S − window` of the opening tick `S`, so it is the same on every worker and replay;
//! * **updated** while it holds, when the severity rises (at once), or when the severity
//!   falls or `observed` moved by at least `update-min-change` (relative) — both at most once
//!   per `update-interval` of event time;
//! * **closed** once the condition has been absent for `quiet-windows × window`; the event
//!   repeats the values of the last event and sets `window_end` to the last tick at which the
//!   condition held.
//!
//! So at most one anomaly per `(kind, key)` is open, and a flapping condition does not reopen
//! it within the quiet period.
//!
//! **Restart.** The detectors' windows are not checkpointed: a detector restored from a
//! checkpoint starts with empty windows and would know nothing of the anomalies open at the
//! stop. So it takes them over ([`LifecycleSlot::adopt`]: the store's latest event of each
//! anomaly of its kinds and keys still open or updated): the slot continues that anomaly
//! as if it had emitted its last event itself — same id, the next revision — with the last
//! tick known to hold being the event's `window_end`. A steady condition emits no event (no
//! update is due while severity and `observed` stay put), so that `window_end` may lie long
//! before the stop: the quiet period of an adopted anomaly therefore runs from the later of
//! it and the first tick after the restart (attack of session 49: a steady flood was closed
//! at the first tick after a restart and opened again as a second anomaly). A flood that
//! goes on updates it or keeps it open once the window has refilled; otherwise it closes
//! `quiet-windows × window` after that (the usual `closed` event: last values repeated,
//! `window_end` the last tick known to hold). A start without a
//! checkpoint adopts nothing: it replays the input from the start and derives the same
//! events again — or, where clicks came in another order relative to the ticks (late
//! events), the same episode under another id, which then continues the stored anomaly
//! ([`LifecycleSlot::continue_stored`], decided by module `known`).

use sluice_schemas::anomaly::anomaly_id;
use sluice_schemas::{Anomaly, AnomalyKind, AnomalyStatus, Evidence, Severity, Tally};

/// A detector's verdict for one key at one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Assessment {
    pub severity: Severity,
    pub observed: f64,
    pub expected: f64,
    pub score: f64,
}

/// The parts of an event that only the detector can fill in (built only when an event is
/// emitted, so evidence costs nothing on quiet ticks).
pub(crate) struct Body {
    pub code: Option<String>,
    pub org: Option<String>,
    pub summary: String,
    pub evidence: Evidence,
}

/// Lifecycle parameters (from `[abuse]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LifecycleParams {
    /// The detector's window, ms.
    pub window_ms: i64,
    /// Quiet period before closing, ms.
    pub quiet_ms: i64,
    /// Least event time between rate-limited updates, ms.
    pub update_interval_ms: i64,
    /// Relative change of `observed` worth an update.
    pub update_min_change: f64,
}

#[derive(Debug, Clone)]
struct Open {
    last_hold: i64,
    last_emit: i64,
    /// The quiet period runs from `max(last_hold, quiet_from)`: `i64::MIN` for an anomaly
    /// opened here; for an adopted one the first tick after the adoption ([`ADOPTED`] until
    /// then; module docs, **Restart**).
    quiet_from: i64,
    /// The episode continues an anomaly the store already holds closed
    /// ([`LifecycleSlot::continue_stored`]): its lifecycle runs, but emits nothing (the store
    /// takes nothing after a `closed` event).
    muted: bool,
    emitted: Anomaly,
}

/// [`Open::quiet_from`] of an adopted anomaly before its first tick.
const ADOPTED: i64 = i64::MAX;

/// The open anomaly of one `(kind, key)`, if any (module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct LifecycleSlot(Option<Box<Open>>);

impl LifecycleSlot {
    /// Whether an anomaly is open.
    pub(crate) fn is_open(&self) -> bool {
        self.0.is_some()
    }

    /// Takes over `a`, the latest event of an anomaly still open (`open`/`updated`) in the
    /// store when a restored detector starts (module docs, **Restart**). When the slot already
    /// holds one (two open anomalies of one key, e.g. left by an earlier version), it keeps
    /// the later by `(window_end, window_start, revision)` and returns the other, which the
    /// caller closes with [`closed_now`]. A closed `a` is returned as is (nothing to adopt).
    pub(crate) fn adopt(&mut self, a: Anomaly) -> Option<Anomaly> {
        if a.status == AnomalyStatus::Closed {
            return Some(a);
        }
        let rank = |x: &Anomaly| (x.window_end, x.window_start, x.revision);
        if let Some(held) = &self.0
            && rank(&held.emitted) >= rank(&a)
        {
            return Some(a);
        }
        let hold = a.window_end;
        self.0.replace(Box::new(Open { last_hold: hold, last_emit: hold, quiet_from: ADOPTED, muted: false, emitted: a })).map(|o| o.emitted)
    }

    /// Makes the episode that just opened here with `opened` (the `open` event [`Self::step`]
    /// returned at tick `s`) continue `stored` instead: the store's latest state of an anomaly
    /// of the same kind and key that a replay derives anew under another id, because its
    /// clicks arrived in another order (module `known`, which decides). The slot then holds
    /// `stored` as if it had emitted it itself — same id, the next revision — holding until
    /// the later of `s` and its `window_end`, with no update due before `update-interval`
    /// after that `window_end` (the stored events already say what the replay saw until
    /// then). Returns the event to emit instead of `opened`: an `updated` event when
    /// `opened` is more severe than `stored`, else none. A closed `stored` is continued muted:
    /// the episode runs its course here without emitting anything.
    pub(crate) fn continue_stored(&mut self, stored: Anomaly, opened: &Anomaly, s: i64) -> Option<Anomaly> {
        let muted = stored.status == AnomalyStatus::Closed;
        let mut open = Open { last_hold: stored.window_end.max(s), last_emit: stored.window_end, quiet_from: i64::MIN, muted, emitted: stored };
        let ev = (!muted && opened.severity > open.emitted.severity).then(|| Anomaly {
            revision: open.emitted.revision + 1,
            status: AnomalyStatus::Updated,
            severity: opened.severity,
            code: opened.code.clone(),
            org: opened.org.clone(),
            window_end: s,
            observed: opened.observed,
            expected: opened.expected,
            score: opened.score,
            summary: opened.summary.clone(),
            evidence: opened.evidence.clone(),
            detected_at: opened.detected_at,
            ..open.emitted.clone()
        });
        if let Some(ev) = &ev {
            open.last_emit = s;
            open.emitted = ev.clone();
        }
        self.0 = Some(Box::new(open));
        ev
    }

    /// Advances the lifecycle to tick `s` with the detector's verdict `a`; returns the event
    /// to emit, if any. `build` supplies code, org, summary and evidence of open/updated
    /// events; `now_ms` is the processing clock (`detected_at`).
    #[allow(clippy::too_many_arguments, reason = "one call site per detector; the arguments are the tick's distinct inputs")]
    pub(crate) fn step(
        &mut self,
        kind: AnomalyKind,
        key: &str,
        s: i64,
        a: Option<Assessment>,
        p: &LifecycleParams,
        now_ms: i64,
        build: impl FnOnce(&Assessment) -> Body,
    ) -> Option<Anomaly> {
        let muted = self.0.as_ref().is_some_and(|o| o.muted);
        let ev = self.advance(kind, key, s, a, p, now_ms, build);
        ev.filter(|_| !muted)
    }

    /// [`Self::step`] before a muted episode's events are dropped.
    #[allow(clippy::too_many_arguments, reason = "the arguments of step")]
    fn advance(
        &mut self,
        kind: AnomalyKind,
        key: &str,
        s: i64,
        a: Option<Assessment>,
        p: &LifecycleParams,
        now_ms: i64,
        build: impl FnOnce(&Assessment) -> Body,
    ) -> Option<Anomaly> {
        if let Some(open) = self.0.as_mut()
            && open.quiet_from == ADOPTED
        {
            open.quiet_from = s;
        }
        match (&mut self.0, a) {
            (None, None) => None,
            (None, Some(a)) => {
                let window_start = s - p.window_ms;
                let body = build(&a);
                let ev = Anomaly {
                    anomaly_id: anomaly_id(kind, key, window_start),
                    revision: 0,
                    status: AnomalyStatus::Open,
                    kind,
                    key: key.to_string(),
                    severity: a.severity,
                    code: body.code,
                    org: body.org,
                    window_start,
                    window_end: s,
                    observed: a.observed,
                    expected: a.expected,
                    score: a.score,
                    summary: body.summary,
                    evidence: body.evidence,
                    detected_at: now_ms,
                };
                self.0 = Some(Box::new(Open { last_hold: s, last_emit: s, quiet_from: i64::MIN, muted: false, emitted: ev.clone() }));
                Some(ev)
            }
            (Some(open), Some(a)) => {
                // (`max`: an adopted anomaly may know a later tick than a replay's first ones.)
                open.last_hold = open.last_hold.max(s);
                let prev = &open.emitted;
                let due = s - open.last_emit >= p.update_interval_ms;
                let moved = (a.observed - prev.observed).abs() >= p.update_min_change * prev.observed.abs().max(f64::MIN_POSITIVE);
                let emit = a.severity > prev.severity || (due && (a.severity < prev.severity || moved));
                if !emit {
                    return None;
                }
                let body = build(&a);
                let ev = Anomaly {
                    revision: prev.revision + 1,
                    status: AnomalyStatus::Updated,
                    severity: a.severity,
                    code: body.code,
                    org: body.org,
                    window_end: s,
                    observed: a.observed,
                    expected: a.expected,
                    score: a.score,
                    summary: body.summary,
                    evidence: body.evidence,
                    detected_at: now_ms,
                    ..prev.clone()
                };
                open.last_emit = s;
                open.emitted = ev.clone();
                Some(ev)
            }
            (Some(open), None) => {
                if s - open.last_hold.max(open.quiet_from) < p.quiet_ms {
                    return None;
                }
                let prev = &open.emitted;
                let ev =
                    Anomaly { revision: prev.revision + 1, status: AnomalyStatus::Closed, window_end: open.last_hold, detected_at: now_ms, ..prev.clone() };
                self.0 = None;
                Some(ev)
            }
        }
    }
}

/// The `closed` event of `a` (open or updated) at processing time `now_ms`: its next
/// revision, repeating its values and `window_end`. For an anomaly a restored detector cannot
/// continue because another one of its key is open ([`LifecycleSlot::adopt`]); a closed `a`
/// gives `None`.
pub(crate) fn closed_now(a: &Anomaly, now_ms: i64) -> Option<Anomaly> {
    (a.status != AnomalyStatus::Closed).then(|| Anomaly { revision: a.revision + 1, status: AnomalyStatus::Closed, detected_at: now_ms, ..a.clone() })
}

/// The `n` largest `(value, count)` pairs, by count descending then value ascending.
pub(crate) fn top_n<'a>(items: impl IntoIterator<Item = (&'a str, u64)>, n: usize) -> Vec<Tally> {
    let mut v: Vec<(&str, u64)> = items.into_iter().filter(|(_, c)| *c > 0).collect();
    v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    v.truncate(n);
    v.into_iter().map(|(value, count)| Tally { value: value.to_string(), count }).collect()
}

/// The severity of a measure given its volume levels: `critical` needs `critical_shape` too.
pub(crate) fn severity_of(volume: u64, levels: &crate::config::Levels, critical_shape: bool) -> Option<Severity> {
    if volume >= levels.critical_min_clicks && critical_shape {
        Some(Severity::Critical)
    } else if volume >= levels.warning_min_clicks {
        Some(Severity::Warning)
    } else if volume >= levels.info_min_clicks {
        Some(Severity::Info)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: LifecycleParams = LifecycleParams { window_ms: 60_000, quiet_ms: 60_000, update_interval_ms: 10_000, update_min_change: 0.25 };

    fn a(severity: Severity, observed: f64) -> Option<Assessment> {
        Some(Assessment { severity, observed, expected: 1.0, score: observed })
    }

    fn body(_: &Assessment) -> Body {
        Body { code: Some("ab".into()), org: None, summary: "s".into(), evidence: Evidence::default() }
    }

    /// Drives a slot through `(tick, verdict)` steps; returns `(tick, status, revision,
    /// severity, window_end)` of every event.
    fn run(steps: &[(i64, Option<Assessment>)]) -> Vec<(i64, AnomalyStatus, u32, Severity, i64)> {
        let mut slot = LifecycleSlot::default();
        let mut ids = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for &(s, v) in steps {
            if let Some(ev) = slot.step(AnomalyKind::ClickBurst, "link:ab", s, v, &P, 7, body) {
                ids.insert(ev.anomaly_id);
                assert_eq!(ev.window_start, 40_000, "window start is fixed at the opening tick");
                out.push((s, ev.status, ev.revision, ev.severity, ev.window_end));
            }
        }
        assert!(ids.len() <= 1, "one anomaly id per incident");
        out
    }

    #[test]
    fn opens_updates_on_escalation_and_material_change_then_closes_after_quiet() {
        use AnomalyStatus::*;
        use Severity::*;
        let got = run(&[
            (100_000, a(Warning, 40.0)),
            (101_000, a(Warning, 45.0)),   // small change, too soon
            (102_000, a(Critical, 250.0)), // escalation: at once
            (105_000, a(Critical, 400.0)), // material but < 10 s after the last event
            (112_000, a(Critical, 420.0)), // due, moved 68 % from 250
            (113_000, None),
            (150_000, a(Critical, 430.0)), // flapping within the quiet period: same anomaly
            (151_000, None),
            (209_000, None), // 59 s quiet
            (210_000, None), // 60 s quiet: close
            (211_000, None),
        ]);
        assert_eq!(
            got,
            vec![
                (100_000, Open, 0, Warning, 100_000),
                (102_000, Updated, 1, Critical, 102_000),
                (112_000, Updated, 2, Critical, 112_000),
                (210_000, Closed, 3, Critical, 150_000),
            ]
        );
    }

    #[test]
    fn de_escalation_is_rate_limited_and_a_new_incident_gets_a_new_id() {
        let mut slot = LifecycleSlot::default();
        let first = slot.step(AnomalyKind::GeoShift, "link:x", 60_000, a(Severity::Critical, 0.9), &P, 0, body).expect("open");
        assert!(slot.step(AnomalyKind::GeoShift, "link:x", 65_000, a(Severity::Warning, 0.9), &P, 0, body).is_none());
        let down = slot.step(AnomalyKind::GeoShift, "link:x", 70_000, a(Severity::Warning, 0.9), &P, 0, body).expect("update");
        assert_eq!((down.status, down.severity, down.anomaly_id), (AnomalyStatus::Updated, Severity::Warning, first.anomaly_id));
        let closed = slot.step(AnomalyKind::GeoShift, "link:x", 130_000, None, &P, 0, body).expect("close");
        assert_eq!(closed.status, AnomalyStatus::Closed);
        assert!(!slot.is_open());
        let again = slot.step(AnomalyKind::GeoShift, "link:x", 200_000, a(Severity::Info, 0.7), &P, 0, body).expect("reopen");
        assert_ne!(again.anomaly_id, first.anomaly_id);
        assert_eq!(again.revision, 0);
    }

    /// The stored latest event of an anomaly opened at tick 100 s (window 60 s) and updated
    /// at 110 s: revision 1, `window_end` 110 s.
    fn stored(status: AnomalyStatus, revision: u32, window_end: i64) -> Anomaly {
        let mut slot = LifecycleSlot::default();
        let mut ev = slot.step(AnomalyKind::VisitorFlood, "visitor:00000000000000aa", 100_000, a(Severity::Critical, 150.0), &P, 1, body).expect("open");
        ev.status = status;
        ev.revision = revision;
        ev.window_end = window_end;
        ev
    }

    #[test]
    fn an_adopted_anomaly_closes_after_the_quiet_period_with_the_next_revision() {
        let prev = stored(AnomalyStatus::Updated, 1, 110_000);
        let mut slot = LifecycleSlot::default();
        assert!(slot.adopt(prev.clone()).is_none());
        assert!(slot.is_open());
        let step = |slot: &mut LifecycleSlot, s: i64| slot.step(AnomalyKind::VisitorFlood, &prev.key, s, None, &P, 9, body);
        // The first tick after the restart: the condition may have held until the stop
        // without an event, so the quiet period runs from here, not from window_end.
        assert!(step(&mut slot, 140_000).is_none());
        assert!(step(&mut slot, 170_000).is_none(), "60 s after window_end, 30 s after the restart");
        assert!(step(&mut slot, 199_000).is_none(), "59 s quiet since the restart");
        let closed = step(&mut slot, 200_000).expect("closed 60 s after the first tick after the restart");
        let want = Anomaly { revision: 2, status: AnomalyStatus::Closed, detected_at: 9, ..prev.clone() };
        assert_eq!(closed, want);
        assert_eq!((closed.window_start, closed.window_end), (40_000, 110_000));
        assert!(!slot.is_open());
        assert!(step(&mut slot, 171_000).is_none());
    }

    /// Attack of session 49: one visitor at a steady rate — an anomaly whose last event is
    /// long before the stop (no update was due) — must not be closed at the first ticks
    /// after the restart, while the window refills, nor opened again as a second anomaly.
    #[test]
    fn a_steady_anomaly_adopted_long_after_its_last_event_stays_open_while_it_holds() {
        let prev = stored(AnomalyStatus::Updated, 1, 110_000);
        let mut slot = LifecycleSlot::default();
        assert!(slot.adopt(prev.clone()).is_none());
        let mut step = |s: i64, v| slot.step(AnomalyKind::VisitorFlood, &prev.key, s, v, &P, 9, body).map(|e| (e.status, e.revision, e.window_end));
        // Restart at 500 s (390 s after the last event): the window refills for 30 s.
        for s in (500_000..530_000).step_by(1_000) {
            assert_eq!(step(s, None), None, "closed at {s} while the window refills");
        }
        // The flood holds again, unchanged: no event, still open under the same id.
        for s in (530_000..600_000).step_by(1_000) {
            assert_eq!(step(s, a(Severity::Critical, 150.0)), None, "an event at {s} for an unchanged flood");
        }
        // It ends: closed a quiet period after the last tick it held, with that tick.
        assert_eq!(step(658_000, None), None);
        assert_eq!(step(659_000, None), Some((AnomalyStatus::Closed, 2, 599_000)));
    }

    #[test]
    fn a_flood_going_on_after_a_restart_updates_the_adopted_anomaly() {
        use AnomalyStatus::*;
        let prev = stored(Updated, 1, 110_000);
        let mut slot = LifecycleSlot::default();
        assert!(slot.adopt(prev.clone()).is_none());
        let mut step =
            |s: i64, v| slot.step(AnomalyKind::VisitorFlood, &prev.key, s, v, &P, 9, body).map(|e| (e.anomaly_id, e.status, e.revision, e.window_end));
        // Ticks before the adopted window_end (a restore from a checkpoint older than the
        // stored events, after a kill -9): no event, and the last hold stays at 110 s.
        assert_eq!(step(95_000, a(Severity::Critical, 60.0)), None);
        assert_eq!(step(105_000, a(Severity::Critical, 200.0)), None, "not due: 10 s after the last emit at 110 s");
        assert_eq!(step(120_000, a(Severity::Critical, 200.0)), Some((prev.anomaly_id, Updated, 2, 120_000)));
        assert_eq!(step(121_000, None), None);
        assert_eq!(step(179_000, None), None);
        assert_eq!(step(180_000, None), Some((prev.anomaly_id, Closed, 3, 120_000)));
    }

    #[test]
    fn a_replayed_tick_before_the_adopted_window_end_does_not_move_the_close_earlier() {
        let prev = stored(AnomalyStatus::Open, 0, 100_000);
        let mut slot = LifecycleSlot::default();
        assert!(slot.adopt(prev.clone()).is_none());
        assert!(slot.step(AnomalyKind::VisitorFlood, &prev.key, 90_000, a(Severity::Info, 35.0), &P, 0, body).is_none());
        assert!(slot.step(AnomalyKind::VisitorFlood, &prev.key, 159_000, None, &P, 0, body).is_none());
        let closed = slot.step(AnomalyKind::VisitorFlood, &prev.key, 160_000, None, &P, 0, body).expect("close");
        assert_eq!((closed.revision, closed.window_end, closed.severity), (1, 100_000, Severity::Critical));
    }

    #[test]
    fn of_two_open_anomalies_of_a_key_the_later_is_adopted_and_the_other_closed() {
        let older = stored(AnomalyStatus::Updated, 1, 110_000);
        let mut newer = stored(AnomalyStatus::Open, 0, 300_000);
        newer.window_start = 240_000;
        newer.anomaly_id = anomaly_id(newer.kind, &newer.key, newer.window_start);
        for order in [[older.clone(), newer.clone()], [newer.clone(), older.clone()]] {
            let mut slot = LifecycleSlot::default();
            let [x, y] = order;
            let displaced: Vec<Anomaly> = [slot.adopt(x), slot.adopt(y)].into_iter().flatten().collect();
            assert_eq!(displaced, vec![older.clone()]);
            let closed = closed_now(&displaced[0], 5).expect("closed");
            assert_eq!(closed, Anomaly { revision: 2, status: AnomalyStatus::Closed, detected_at: 5, ..older.clone() });
            assert!(slot.step(AnomalyKind::VisitorFlood, &newer.key, 360_000, None, &P, 6, body).is_none(), "the quiet period runs from the first tick");
            let next = slot.step(AnomalyKind::VisitorFlood, &newer.key, 420_000, None, &P, 6, body).expect("the adopted one closes");
            assert_eq!((next.anomaly_id, next.revision, next.status), (newer.anomaly_id, 1, AnomalyStatus::Closed));
        }
        let mut slot = LifecycleSlot::default();
        let done = stored(AnomalyStatus::Closed, 2, 110_000);
        assert_eq!(slot.adopt(done.clone()), Some(done.clone()), "a closed anomaly is not adopted");
        assert!(!slot.is_open());
        assert_eq!(closed_now(&done, 5), None);
    }

    #[test]
    fn top_n_orders_by_count_then_value() {
        let t = top_n([("b", 3), ("a", 3), ("c", 9), ("z", 0), ("d", 1)], 3);
        let got: Vec<(&str, u64)> = t.iter().map(|t| (t.value.as_str(), t.count)).collect();
        assert_eq!(got, vec![("c", 9), ("a", 3), ("b", 3)]);
    }
}
