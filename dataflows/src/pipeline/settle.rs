//! Settling event time at a graceful stop, before its last checkpoint.
//!
//! The abuse detectors evaluate a tick once the global watermark `W` has passed it, and `W`
//! passes the last clicks of a burst only when more clicks come or the source turns idle
//! (`idle_timeout`, 5 s by default). Their windows are not in the checkpoints, and a restored
//! pipeline resumes after the checkpoint's cut: clicks read but not yet evaluated when the
//! stop's checkpoint is taken would never reach a detector (attack of session 51: a flood
//! sent a second before a SIGTERM opened no anomaly, before or after the restart). So the
//! stop first settles: every worker's [`SourceGate::settle`] turns its partitions idle at
//! once (`W` then follows the clock from the last click, never ahead of it), and
//! [`Settle::done`] says when the views' `W` has passed the tick of the latest event time
//! accepted (`floor(ts / tick) · tick + tick`) and the detectors have been through that epoch (their
//! events handed to the anomaly sink). With the default 1 s tick that is at most a second
//! after the last click; the caller bounds the wait. A click stamped ahead of the clock
//! (within `future_skew`) is waited for until the clock reaches its tick, since `W` never
//! runs ahead of the clock: beyond the caller's bound it is not evaluated (the caller warns).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::views::Views;
use crate::watermark::SourceGate;

/// Shared between the handle (which requests it and polls [`Settle::done`]) and the local
/// workers ([`Settle::on_worker`]).
pub(super) struct Settle {
    /// The detectors' tick (ms); `None` without detectors (nothing to settle).
    tick_ms: Option<i64>,
    requested: AtomicBool,
    /// Per local worker: its gate has settled.
    seen: Vec<AtomicBool>,
    /// The event time (ms UTC) `W` must reach: the tick end of the latest event time accepted
    /// (`i64::MIN`: none).
    target: AtomicI64,
    /// The views' epoch when `W` first reached `target` (0: not yet).
    epoch: AtomicU64,
}

impl Settle {
    /// For `workers` local workers; `tick_ms` as above.
    pub(super) fn new(workers: usize, tick_ms: Option<i64>) -> Settle {
        Settle {
            tick_ms,
            requested: AtomicBool::new(false),
            seen: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            target: AtomicI64::new(i64::MIN),
            epoch: AtomicU64::new(0),
        }
    }

    /// Requests it; `false` when there is nothing to settle (no detectors).
    pub(super) fn request(&self) -> bool {
        self.requested.store(self.tick_ms.is_some(), Ordering::Release);
        self.tick_ms.is_some()
    }

    /// Worker `local`'s part, called at every turn of its loop: once requested, settles
    /// `gate` (once) and raises the target to the tick end of its latest event time.
    pub(super) fn on_worker(&self, local: usize, gate: &mut SourceGate) {
        if !self.requested.load(Ordering::Acquire) || self.seen[local].load(Ordering::Relaxed) {
            return;
        }
        if let (Some(tick), Some(w)) = (self.tick_ms, gate.settle()) {
            self.target.fetch_max(w.div_euclid(tick).saturating_mul(tick).saturating_add(tick), Ordering::AcqRel);
        }
        self.seen[local].store(true, Ordering::Release);
    }

    /// Whether it is done (module docs): every local worker settled its gate (or finished:
    /// `finished(w)`), the views' `W` reached the target, and every detector's progress
    /// (`detectors`) passed the epoch at which it did.
    pub(super) fn done(&self, views: &Views, finished: impl Fn(usize) -> bool, detectors: impl Fn(u64) -> bool) -> bool {
        if !(0..self.seen.len()).all(|w| finished(w) || self.seen[w].load(Ordering::Acquire)) {
            return false;
        }
        let mut epoch = self.epoch.load(Ordering::Acquire);
        if epoch == 0 {
            let a = views.as_of();
            if a.watermark_ms < self.target.load(Ordering::Acquire) {
                return false;
            }
            epoch = a.epoch.max(1);
            self.epoch.store(epoch, Ordering::Release);
        }
        detectors(epoch)
    }
}
