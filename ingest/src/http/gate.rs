//! Checks `POST /v1/events` makes against the rest of the system before accepting an event:
//! whether its code names a link, and whether it is still within the dataflow's allowed
//! lateness. Both would otherwise be accepted here and then dropped downstream (an unknown
//! code counted in the summary, a late event dead-lettered `too_late`); refusing them at
//! intake tells the caller per event instead.
//!
//! The binary implements [`IntakeGate`] over its link store and the dataflow's views; an
//! endpoint without a gate (unit tests, tools) accepts every valid event.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

/// Boxed future of [`IntakeGate::known_codes`].
pub type KnownCodes<'a> = Pin<Box<dyn Future<Output = Result<BTreeSet<String>, String>> + Send + 'a>>;

/// What the intake asks the rest of the system.
pub trait IntakeGate: Send + Sync + 'static {
    /// The subset of `codes` that name an existing link (enabled, disabled or expired: its
    /// history is still counted; deleted links are unknown). `Err(message)` when the link
    /// store cannot be read: the request fails with 503 `store_unavailable` and nothing is
    /// stored.
    fn known_codes<'a>(&'a self, codes: &'a BTreeSet<String>) -> KnownCodes<'a>;

    /// The oldest event time (ms since the Unix epoch, UTC) a live event may carry and still
    /// be counted: the dataflow's event-time watermark minus its allowed lateness (DESIGN.md:
    /// lateness is measured against the watermark, not the wall clock). `None` before the
    /// dataflow has seen any event, or when this process runs no dataflow. Backfill
    /// (`?backfill=true`, `sluice import`) is not subject to it.
    fn oldest_live_ts_ms(&self) -> Option<i64>;

    /// The oldest event time (ms since the Unix epoch, UTC) a backfilled event may carry and
    /// still be counted: the watermark minus the longest rollup retention (`[dataflow]
    /// long-retention`, 400 days by default), below which the dataflow dead-letters backfill
    /// `too_late` too. `None` (the default) when unknown: no check.
    fn oldest_backfill_ts_ms(&self) -> Option<i64> {
        None
    }

    /// How far (ms) an event may trail its partition's watermark before the dataflow
    /// dead-letters it `too_late`: `[dataflow] allowed-lateness` for live events,
    /// `[dataflow] long-retention` for backfill. The intake uses it to refuse an event older
    /// than that behind an event accepted before it in the same request. `None` (the
    /// default): no such check.
    fn lateness_limit_ms(&self, backfill: bool) -> Option<i64> {
        let _ = backfill;
        None
    }

    /// How much later (ms) than the intake's clock the dataflow may read an accepted event:
    /// an event ahead of the clock counts, for the events after it, as stamped at most this
    /// much after the clock ([`accepted_time_ms`]). 0 (the default): as stamped at the clock.
    fn in_flight_margin_ms(&self) -> i64 {
        0
    }

    /// The newest event time (ms since the Unix epoch, UTC) of the events this intake has
    /// accepted and stored so far, across requests and whether live or backfill
    /// ([`Self::record_accepted`]): the dataflow's partition watermark reaches it when it
    /// reads them, possibly before the views show it, so the next request's events are
    /// checked against it too ([`LatenessCheck::newest_accepted_ms`], the rule between the
    /// events of one request). `None` (the default) before any, or when not tracked.
    fn newest_accepted_ms(&self) -> Option<i64> {
        None
    }

    /// Records that events up to `ts_ms` (the newest event time of one request's accepted
    /// events) were stored: [`Self::newest_accepted_ms`] becomes the larger of the two.
    /// Called only after the events are durable in the log. The default does nothing.
    fn record_accepted(&self, ts_ms: i64) {
        let _ = ts_ms;
    }
}

/// The oldest event time (ms since the Unix epoch, UTC) an event may carry when the
/// dataflow's watermark is `watermark_ms` and it may trail it by `limit_ms` (`[dataflow]
/// allowed-lateness` for live events, `long-retention` for backfill), refusing `margin_ms`
/// early (the in-flight margin: the watermark moves on while an accepted event is on its way
/// to the dataflow): `watermark_ms + margin_ms - limit_ms`, saturating. `None` for a
/// watermark that is no time (`i64::MIN` before any event, `i64::MAX` once the input ended).
pub fn watermark_floor_ms(watermark_ms: i64, limit_ms: i64, margin_ms: i64) -> Option<i64> {
    (watermark_ms != i64::MIN && watermark_ms != i64::MAX).then(|| watermark_ms.saturating_add(margin_ms).saturating_sub(limit_ms))
}

/// The `too_late` rule of the intake, for events in the order the dataflow reads them (the
/// requests' order, then each body's order, for `POST /v1/events`; the input's line order
/// for `sluice import --data-dir`). An event is too late when its time is before the larger
/// of two floors: the watermark's ([`watermark_floor_ms`]), and `limit_ms` behind the
/// newest event time accepted before it (each accepted event raises its partition's
/// watermark to its time when the dataflow reads it, so an event older than the limit
/// behind it would be dead-lettered `too_late`). For `POST /v1/events` the events accepted
/// before it are those of earlier requests ([`IntakeGate::newest_accepted_ms`]) and the
/// earlier ones of its own request; for an offline import, its earlier lines. Both paths
/// therefore give the same verdicts for the same events in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatenessCheck {
    /// The floor from the dataflow's watermark, ms since the Unix epoch; `None`: unknown.
    pub from_watermark_ms: Option<i64>,
    /// How far (ms) an event may trail an event accepted before it; `None`: no such check.
    pub limit_ms: Option<i64>,
    /// The newest event time (ms) accepted so far ([`Self::admit`]); `None` before any.
    pub newest_accepted_ms: Option<i64>,
    /// The processing clock (ms) and the in-flight margin (ms): an accepted event ahead of
    /// the clock (within the future skew) raises [`Self::newest_accepted_ms`] to at most
    /// the clock plus the margin ([`accepted_time_ms`]). `None`: not capped.
    pub now_ms: Option<(i64, i64)>,
}

/// The event time an accepted event at `ts_ms` counts as for the lateness of the events
/// after it, with the processing clock `now_ms` and the in-flight margin `margin_ms`: `ts_ms`
/// itself when it is not ahead of the clock; else at most `now_ms + margin_ms`. The
/// dataflow raises its partition watermark with such an event only to its own processing
/// clock when it reads it (DESIGN, case C21), which is later than `now_ms` by the event's
/// way to it — at most the margin, the bound the intake's watermark floor assumes too: one
/// client's fast clock never moves the lateness cut ahead of real time, and an event
/// accepted behind it is not dead-lettered because the dataflow read the fast one later.
pub fn accepted_time_ms(ts_ms: i64, now_ms: i64, margin_ms: i64) -> i64 {
    if ts_ms > now_ms { ts_ms.min(now_ms.saturating_add(margin_ms)) } else { ts_ms }
}

impl LatenessCheck {
    /// A check with the watermark's floor and the limit, before any accepted event.
    pub fn new(from_watermark_ms: Option<i64>, limit_ms: Option<i64>) -> Self {
        LatenessCheck { from_watermark_ms, limit_ms, newest_accepted_ms: None, now_ms: None }
    }

    /// A check with the watermark's floor and the limit that goes on from events accepted
    /// earlier (another request's, [`IntakeGate::newest_accepted_ms`]): the newest of them
    /// at `newest_accepted_ms` (`None`: none).
    pub fn after(from_watermark_ms: Option<i64>, limit_ms: Option<i64>, newest_accepted_ms: Option<i64>) -> Self {
        LatenessCheck { from_watermark_ms, limit_ms, newest_accepted_ms, now_ms: None }
    }

    /// The same check with accepted events ahead of the processing clock `now_ms` capped at
    /// `now_ms + margin_ms` ([`accepted_time_ms`]).
    #[must_use]
    pub fn capped_at(self, now_ms: i64, margin_ms: i64) -> Self {
        LatenessCheck { now_ms: Some((now_ms, margin_ms)), ..self }
    }

    /// The oldest event time (ms) the next event may carry; `None`: no bound.
    pub fn oldest_ms(&self) -> Option<i64> {
        let from_accepted = self.newest_accepted_ms.zip(self.limit_ms).map(|(m, l)| m.saturating_sub(l));
        match (self.from_watermark_ms, from_accepted) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether an event at `ts_ms` is too late: `Err(oldest)` (the oldest time allowed; the
    /// check is unchanged); otherwise `Ok(())`, and the event counts as accepted (it raises
    /// [`Self::newest_accepted_ms`], capped as [`Self::now_ms`] says). An event at exactly the
    /// oldest time is accepted.
    pub fn admit(&mut self, ts_ms: i64) -> Result<(), i64> {
        if let Some(oldest) = self.oldest_ms().filter(|&o| ts_ms < o) {
            return Err(oldest);
        }
        let raised = self.now_ms.map_or(ts_ms, |(now, margin)| accepted_time_ms(ts_ms, now, margin));
        self.newest_accepted_ms = Some(self.newest_accepted_ms.map_or(raised, |m| m.max(raised)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{LatenessCheck, watermark_floor_ms};

    const DAY: i64 = 86_400_000;

    #[test]
    fn the_watermark_floor_is_the_watermark_plus_the_margin_minus_the_limit() {
        assert_eq!(watermark_floor_ms(1_000 * DAY, 400 * DAY, 60_000), Some(600 * DAY + 60_000));
        assert_eq!(watermark_floor_ms(i64::MIN, 400 * DAY, 60_000), None, "before any event");
        assert_eq!(watermark_floor_ms(i64::MAX, 400 * DAY, 60_000), None, "input ended");
        assert_eq!(watermark_floor_ms(i64::MIN + 1, i64::MAX, 0), Some(i64::MIN), "saturates");
    }

    #[test]
    fn an_event_exactly_at_the_floor_is_accepted_and_one_ms_before_it_is_too_late() {
        let floor = watermark_floor_ms(1_000 * DAY, 400 * DAY, 60_000).expect("floor");
        let mut check = LatenessCheck::new(Some(floor), Some(400 * DAY));
        assert_eq!(check.admit(floor - 1), Err(floor));
        assert_eq!(check.newest_accepted_ms, None, "a refused event changes nothing");
        assert_eq!(check.admit(floor), Ok(()));
        assert_eq!(check.admit(floor + 1), Ok(()));
        assert_eq!(check.newest_accepted_ms, Some(floor + 1));
    }

    #[test]
    fn an_event_older_than_the_limit_behind_an_accepted_one_is_too_late() {
        let mut check = LatenessCheck::new(None, Some(2 * DAY));
        assert_eq!(check.oldest_ms(), None, "no bound before the first event");
        assert_eq!(check.admit(10 * DAY), Ok(()));
        assert_eq!(check.admit(8 * DAY - 1), Err(8 * DAY));
        assert_eq!(check.admit(8 * DAY), Ok(()));
        assert_eq!(check.admit(8 * DAY + 1), Ok(()));
        // The larger floor wins: the watermark's when it is ahead of the accepted events'.
        check.from_watermark_ms = Some(9 * DAY);
        assert_eq!(check.admit(9 * DAY - 1), Err(9 * DAY));
        assert_eq!(check.admit(9 * DAY), Ok(()));
        // Without a limit only the watermark's floor applies.
        let mut check = LatenessCheck::new(Some(5), None);
        assert_eq!((check.admit(100), check.admit(4), check.admit(5)), (Ok(()), Err(5), Ok(())));
    }

    #[test]
    fn a_check_after_earlier_accepted_events_gives_the_verdicts_of_one_check_over_all() {
        // One check over [10 d, 8 d - 1 ms, 8 d] and one per event, each going on from the
        // newest accepted before it (separate requests), refuse the same event.
        let mut one = LatenessCheck::new(None, Some(2 * DAY));
        let all: Vec<_> = [10 * DAY, 8 * DAY - 1, 8 * DAY].into_iter().map(|t| one.admit(t)).collect();
        let mut newest = None;
        let each: Vec<_> = [10 * DAY, 8 * DAY - 1, 8 * DAY]
            .into_iter()
            .map(|t| {
                let mut check = LatenessCheck::after(None, Some(2 * DAY), newest);
                let verdict = check.admit(t);
                newest = check.newest_accepted_ms;
                verdict
            })
            .collect();
        assert_eq!(all, vec![Ok(()), Err(8 * DAY), Ok(())]);
        assert_eq!(each, all);
        // The watermark's floor still applies when it is ahead; no limit: no accepted floor.
        assert_eq!(LatenessCheck::after(Some(9 * DAY), Some(2 * DAY), Some(10 * DAY)).oldest_ms(), Some(9 * DAY));
        assert_eq!(LatenessCheck::after(None, None, Some(10 * DAY)).oldest_ms(), None);
    }
}
