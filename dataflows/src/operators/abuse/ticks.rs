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
//! earliest click the detector holds at that moment (its first tick is the tick after it).
//! A pipeline that starts on a backlog (a restart, a replay) reaches its first watermark
//! minutes into the data, depending on how the sources were batched; starting from the
//! earliest click replays the ticks in event time instead, so the baselines learn from the
//! whole backlog and detection does not depend on batching.
//!
//! **Origin.** The detectors' history — baselines, warm-up — starts at the minute of the
//! first record of the data: the earliest [`WatermarkReport::first_ms`] of the partitions
//! that reported one by the first watermark (else the schedule's start). Not the earliest
//! click held: a backlog's first batch may hold *late* events (posted with past event
//! times) minutes older than the first record. Live, those arrive after the first
//! watermark and never move the origin; had they moved it in a replay, a link first seen
//! through one would count as watched without clicks since then — warm-up over, zero
//! baseline — and its ordinary traffic would read as a `click_burst` in the replay only.

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
    /// Per partition: [`WatermarkReport::first_ms`] (reported ones only).
    firsts: std::collections::BTreeMap<u32, i64>,
}

impl Ticker {
    /// A schedule with ticks every `tick_ms` (> 0) of event time.
    pub(crate) fn new(tick_ms: i64) -> Ticker {
        Ticker {
            tick: tick_ms.max(1),
            gw: GlobalWatermark::default(),
            watermark: i64::MIN,
            next: None,
            origin: None,
            firsts: std::collections::BTreeMap::new(),
        }
    }

    /// Folds reports of one completed epoch. `earliest`: the earliest event time the
    /// detector holds (only read before the schedule has started; see the module docs).
    pub(crate) fn apply(&mut self, reports: &[WatermarkReport], earliest: Option<i64>) {
        if reports.is_empty() {
            return;
        }
        for r in reports {
            self.gw.apply(r);
            if r.first_ms != i64::MIN && self.next.is_none() {
                self.firsts.insert(r.partition, r.first_ms);
            }
        }
        self.watermark = self.gw.recompute();
        if self.watermark != i64::MIN && self.next.is_none() {
            let start = earliest.map_or(self.watermark, |e| e.min(self.watermark));
            self.next = Some(self.floor(start) + self.tick);
            let first = self.firsts.values().copied().min().map_or(start, |f| f.min(self.watermark));
            self.origin = Some(first.div_euclid(MINUTE_MS) * MINUTE_MS);
            self.firsts.clear();
        }
    }

    /// Whether the schedule has started (a watermark arrived).
    pub(crate) fn started(&self) -> bool {
        self.next.is_some()
    }

    /// Start of the minute of the data's first record (module docs, **Origin**): the
    /// beginning of the detectors' history (baselines cover `[origin, S)`; warm-up is
    /// measured from it). `None` before data.
    pub(crate) fn origin(&self) -> Option<i64> {
        self.origin
    }

    /// The next tick to evaluate, reached by the watermark or not (`None` before the
    /// schedule has started; the first tick until [`Self::done`] is called).
    pub(crate) fn next_tick(&self) -> Option<i64> {
        self.next
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
        WatermarkReport { partition: 0, watermark_ms: w, idle: false, first_ms: i64::MIN }
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
    fn the_origin_is_the_first_record_not_an_older_late_click() {
        let mut t = Ticker::new(1000);
        // A replayed backlog: first record at 10:00:00.5, W at 10:01:20 after the first batch,
        // which also holds a late event of 09:52:00.
        let t0 = 36_000_000;
        t.apply(&[WatermarkReport { partition: 0, watermark_ms: t0 + 80_000, idle: false, first_ms: t0 + 500 }], Some(t0 - 8 * 60_000));
        assert_eq!(t.origin(), Some(t0), "the first record's minute");
        assert_eq!(t.due(), Some(t0 - 8 * 60_000 + 1000), "ticks still replay from the earliest click");
        // Several partitions: the earliest first record.
        let mut t = Ticker::new(1000);
        let r = |p, w, f| WatermarkReport { partition: p, watermark_ms: w, idle: false, first_ms: f };
        t.apply(&[r(0, i64::MIN, i64::MIN), r(1, t0 + 90_000, t0 + 70_000)], None);
        assert_eq!(t.origin(), None, "partition 0 holds W back");
        t.apply(&[r(0, t0 + 200_000, t0 + 130_000)], Some(t0 + 90_000));
        assert_eq!(t.origin(), Some(t0 + 60_000));
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
