//! Settling event time before a checkpoint: for good at a graceful stop, for the moment
//! before a periodic one.
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
//!
//! **Before a periodic checkpoint** the same gap opened on a crash: the checkpoint's cut
//! held clicks the detectors had not evaluated, and a `kill -9` before they did lost the
//! detection for good, since the restart resumes after the cut (attack of session 54: a
//! flood read two seconds before a periodic checkpoint, then `kill -9`, opened no anomaly
//! ever). So a round running beside the live graph first *quiesces* ([`Settle::request`]
//! with `hold`): the workers stop reading their sources, settle their gates as above, and
//! the round waits for [`Settle::done`] before it takes its cut, so every click in the cut
//! has been through the detectors. Then [`Settle::release`] lets the workers read on and
//! their partitions turn active again ([`SourceGate::unsettle`]). The hold costs the views
//! about one tick of freshness per checkpoint; redirects and the click log are not held.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::views::Views;
use crate::watermark::SourceGate;

/// Shared between the handle (which requests it and polls [`Settle::done`]) and the local
/// workers ([`Settle::on_worker`]).
pub(super) struct Settle {
    /// The detectors' tick (ms); `None` without detectors (nothing to settle).
    tick_ms: Option<i64>,
    /// Generation of the request in force (0: none).
    requested: AtomicU64,
    /// Generations handed out so far.
    generations: AtomicU64,
    /// The request in force is the stop's: never released.
    for_good: AtomicBool,
    /// The workers do not read their sources (a quiescing round, module docs).
    hold: AtomicBool,
    /// Per local worker: the generation its gate settled for (0: none).
    seen: Vec<AtomicU64>,
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
            requested: AtomicU64::new(0),
            generations: AtomicU64::new(0),
            for_good: AtomicBool::new(false),
            hold: AtomicBool::new(false),
            seen: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            target: AtomicI64::new(i64::MIN),
            epoch: AtomicU64::new(0),
        }
    }

    /// Requests a settle: for good (`hold` false, the stop: the workers read on) or until
    /// [`Self::release`] with the sources held (`hold` true, a periodic checkpoint). Returns
    /// the request's generation; `None` when there is nothing to settle (no detectors) or,
    /// for a held one, when the stop's settle is in force already (nothing to hold).
    pub(super) fn request(&self, hold: bool) -> Option<u64> {
        self.tick_ms?;
        if hold && self.for_good.load(Ordering::Acquire) {
            return None;
        }
        let generation = self.generations.fetch_add(1, Ordering::AcqRel) + 1;
        self.target.store(i64::MIN, Ordering::Release);
        self.epoch.store(0, Ordering::Release);
        if hold {
            self.hold.store(true, Ordering::Release);
        } else {
            self.for_good.store(true, Ordering::Release);
            self.hold.store(false, Ordering::Release);
        }
        self.requested.store(generation, Ordering::Release);
        Some(generation)
    }

    /// Ends the held request `generation` (no-op if another is in force): the workers read
    /// their sources again and unsettle their gates.
    pub(super) fn release(&self, generation: u64) {
        if self.requested.compare_exchange(generation, 0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.hold.store(false, Ordering::Release);
        }
    }

    /// Generation of the request in force (0: none).
    pub(super) fn current(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// Whether the workers hold their sources (a quiescing round in progress).
    pub(super) fn holding(&self) -> bool {
        self.hold.load(Ordering::Acquire)
    }

    /// Worker `local`'s part, called at every turn of its loop: once requested, settles
    /// `gate` (once per request) and raises the target to the tick end of its latest event
    /// time; once released, unsettles it at processing time `now_ms`.
    pub(super) fn on_worker(&self, local: usize, gate: &mut SourceGate, now_ms: i64) {
        let generation = self.requested.load(Ordering::Acquire);
        if generation == 0 {
            if gate.settling() {
                gate.unsettle(now_ms);
            }
            return;
        }
        if self.seen[local].load(Ordering::Relaxed) == generation {
            return;
        }
        if let (Some(tick), Some(w)) = (self.tick_ms, gate.settle()) {
            self.target.fetch_max(w.div_euclid(tick).saturating_mul(tick).saturating_add(tick), Ordering::AcqRel);
        }
        self.seen[local].store(generation, Ordering::Release);
    }

    /// Whether request `generation` is done (module docs): every local worker settled its
    /// gate for it (or finished: `finished(w)`), the views' `W` reached the target, and every
    /// detector's progress (`detectors`) passed the epoch at which it did.
    pub(super) fn done(&self, generation: u64, views: &Views, finished: impl Fn(usize) -> bool, detectors: impl Fn(u64) -> bool) -> bool {
        if !(0..self.seen.len()).all(|w| finished(w) || self.seen[w].load(Ordering::Acquire) == generation) {
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

/// A quiescing checkpoint round in progress ([`crate::checkpoint::CheckpointHandle::quiesce`],
/// module docs): the local workers read nothing from their sources until it is dropped.
pub struct Quiescence {
    shared: std::sync::Arc<super::Shared>,
    views: Views,
    generation: u64,
}

impl Quiescence {
    /// Holds the sources of the pipeline of `shared` and settles event time; `None` without
    /// detectors or once the stop's settle is in force (nothing to wait for).
    pub(super) fn begin(shared: &std::sync::Arc<super::Shared>, views: &Views) -> Option<Quiescence> {
        let generation = shared.settle.request(true)?;
        shared.workers.wake();
        Some(Quiescence { shared: std::sync::Arc::clone(shared), views: views.clone(), generation })
    }

    /// Whether the abuse detectors have evaluated every click read before the hold (the
    /// views' watermark passed the tick of the latest one, and the detectors' events of that
    /// epoch reached the anomaly sink).
    pub fn settled(&self) -> bool {
        self.shared.settled(self.generation, &self.views)
    }
}

impl Drop for Quiescence {
    fn drop(&mut self) {
        self.shared.settle.release(self.generation);
        self.shared.workers.wake();
    }
}

impl std::fmt::Debug for Quiescence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quiescence").field("generation", &self.generation).finish_non_exhaustive()
    }
}
