//! Event-time evaluation ticks shared by the detector operators.
//!
//! Detectors evaluate at **ticks**: multiples `S` of `[abuse] tick` (1 s) of event time, once
//! the global watermark `W` (folded from the broadcast [`WatermarkReport`]s, the same on every
//! worker) has reached `S`. At tick `S` a detector has folded every pending click with
//! `ts < S` and looks at its window `[S − window, S)`. With in-order partitions every click
//! with `ts < S` has arrived once `W ≥ S`, so what a detector sees at a tick depends on the
//! data, not on how records were batched into processing epochs or spread over workers.
//! Clicks arriving after their tick (out of order, late) are folded at the next tick.
//!
//! Detection therefore runs on partial minutes: an attack is seen at the first tick after
//! its clicks cross a threshold, i.e. within `tick` of event time plus the watermark's lag.
//!
//! **Start.** The schedule starts at the earlier of the first global watermark and the
//! earliest click the detector holds at that moment (its first tick is the tick after it,
//! and the detectors' history — baselines, warm-up — starts at that minute). A pipeline
//! that starts on a backlog (a restart, a replay) reaches its first watermark minutes into
//! the data, depending on how the sources were batched; starting from the earliest click
//! replays the ticks in event time instead, so the baselines learn from the whole backlog
//! and detection does not depend on batching.

use crate::watermark::{GlobalWatermark, WatermarkReport};

const MINUTE_MS: i64 = 60_000;

/// The tick schedule of one operator instance (module docs).
#[derive(Debug)]
pub(crate) struct Ticker {
    tick: i64,
    gw: GlobalWatermark,
    watermark: i64,
    next: Option<i64>,
    origin: Option<i64>,
}

impl Ticker {
    /// A schedule with ticks every `tick_ms` (> 0) of event time.
    pub(crate) fn new(tick_ms: i64) -> Ticker {
        Ticker { tick: tick_ms.max(1), gw: GlobalWatermark::default(), watermark: i64::MIN, next: None, origin: None }
    }

    /// Folds reports of one completed epoch. `earliest`: the earliest event time the
    /// detector holds (only read before the schedule has started; see the module docs).
    pub(crate) fn apply(&mut self, reports: &[WatermarkReport], earliest: Option<i64>) {
        if reports.is_empty() {
            return;
        }
        for r in reports {
            self.gw.apply(r);
        }
        self.watermark = self.gw.recompute();
        if self.watermark != i64::MIN && self.next.is_none() {
            let start = earliest.map_or(self.watermark, |e| e.min(self.watermark));
            self.next = Some(self.floor(start) + self.tick);
            self.origin = Some(start.div_euclid(MINUTE_MS) * MINUTE_MS);
        }
    }

    /// Whether the schedule has started (a watermark arrived).
    pub(crate) fn started(&self) -> bool {
        self.next.is_some()
    }

    /// Start of the minute of the first watermark: the beginning of the detectors' history
    /// (baselines cover `[origin, S)`; warm-up is measured from it). `None` before data.
    pub(crate) fn origin(&self) -> Option<i64> {
        self.origin
    }

    /// The next tick if the watermark has reached it.
    pub(crate) fn due(&self) -> Option<i64> {
        self.next.filter(|&s| s <= self.watermark)
    }

    /// The last tick the watermark has reached (`None` before data).
    pub(crate) fn last_due(&self) -> Option<i64> {
        self.next.map(|_| self.floor(self.watermark))
    }

    /// Marks tick `s` done; the next is `s + tick`.
    pub(crate) fn done(&mut self, s: i64) {
        self.next = Some(s + self.tick);
    }

    /// The tick containing `ts`, i.e. `ts` rounded down to a multiple of the tick.
    pub(crate) fn floor(&self, ts: i64) -> i64 {
        ts.div_euclid(self.tick) * self.tick
    }

    /// Tick length in ms.
    pub(crate) fn tick_ms(&self) -> i64 {
        self.tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(w: i64) -> WatermarkReport {
        WatermarkReport { partition: 0, watermark_ms: w, idle: false }
    }

    #[test]
    fn ticks_follow_the_watermark() {
        let mut t = Ticker::new(1000);
        assert_eq!(t.due(), None);
        t.apply(&[report(i64::MIN)], Some(5));
        assert_eq!((t.due(), t.origin()), (None, None));
        t.apply(&[report(125_500)], None);
        assert_eq!(t.origin(), Some(120_000));
        assert_eq!(t.due(), None, "126 000 not reached yet");
        t.apply(&[report(128_000)], Some(0));
        assert_eq!(t.due(), Some(126_000));
        t.done(126_000);
        assert_eq!(t.due(), Some(127_000));
        t.done(127_000);
        assert_eq!(t.due(), Some(128_000));
        t.done(128_000);
        assert_eq!(t.due(), None);
        assert_eq!(t.last_due(), Some(128_000));
        assert_eq!(t.floor(-1), -1000);
    }

    #[test]
    fn the_schedule_starts_at_the_earliest_click_held() {
        let mut t = Ticker::new(1000);
        // First watermark at 4:05.5 (a backlog read in big batches); clicks held from 0:00.2.
        t.apply(&[report(245_500)], Some(200));
        assert_eq!(t.origin(), Some(0));
        assert_eq!(t.due(), Some(1000), "ticks replay from the first click");
        // A watermark before the earliest click (nothing earlier exists) starts there.
        let mut t = Ticker::new(1000);
        t.apply(&[report(61_000)], Some(90_000));
        assert_eq!((t.origin(), t.due()), (Some(60_000), None));
        assert!(t.started());
    }
}
