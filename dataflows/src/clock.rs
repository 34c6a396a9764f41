//! The processing clock the source gate consults: for the `future` check, idle detection and
//! advancing idle partitions' watermarks. Everything else uses event time.
//!
//! Tests use [`ManualClock`] to make idleness deterministic (case C21).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Source of "now" in ms since the Unix epoch, UTC.
pub trait Clock: Send + Sync + 'static {
    /// Current processing time, ms since epoch UTC.
    fn now_ms(&self) -> i64;
}

/// The system wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// A clock that only moves when told to; clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(start_ms)))
    }
    /// Sets the time.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The process's one processing-epoch clock: ms since the Unix epoch, UTC, as the wall
/// clock read once (at first use in the process) plus monotonic time elapsed since.
///
/// The pipeline stamps its processing epochs with it, and a source that reports how far
/// the views cover its input (the embedded click log's and Kafka's caught-up instants,
/// `DataflowJob::sync`) must measure on the same clock: two clocks built apart differ by
/// whatever the thread lost between reading the wall clock and the monotonic clock (a
/// preemption of several ms on a busy machine) or by a wall-clock step between their
/// creations, and a caught-up instant would then claim epochs the views have not applied.
#[derive(Debug, Clone, Copy)]
pub struct EpochClock {
    base_ms: i64,
    start: Instant,
}

impl EpochClock {
    /// The process-wide clock (every call returns the same base).
    pub fn process() -> EpochClock {
        static CLOCK: OnceLock<EpochClock> = OnceLock::new();
        *CLOCK.get_or_init(|| {
            let start = Instant::now();
            let base_ms = SystemClock.now_ms();
            EpochClock { base_ms, start }
        })
    }

    /// Now, ms since the Unix epoch (UTC), never decreasing.
    pub fn now_ms(&self) -> i64 {
        self.base_ms.saturating_add(i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX))
    }

    /// [`Self::now_ms`] as a processing epoch (`0` before 1970).
    pub fn now_epoch(&self) -> u64 {
        u64::try_from(self.now_ms()).unwrap_or(0)
    }
}

#[cfg(test)]
mod epoch_clock_tests {
    use super::EpochClock;

    /// Readings of the process clock taken on different threads, in a known order, never
    /// go backwards: a caught-up instant read after an epoch is never below it.
    #[test]
    fn process_clock_readings_are_ordered_across_threads() {
        let mut last = EpochClock::process().now_ms();
        for _ in 0..50 {
            let (a, b) = std::thread::spawn(|| {
                let a = EpochClock::process().now_ms();
                std::thread::sleep(std::time::Duration::from_micros(200));
                (a, EpochClock::process().now_ms())
            })
            .join()
            .expect("thread");
            assert!(a >= last && b >= a, "{last} {a} {b}");
            let c = EpochClock::process().now_ms();
            assert!(c >= b, "{b} {c}");
            last = c;
        }
        let wall = super::Clock::now_ms(&super::SystemClock);
        assert!((EpochClock::process().now_ms() - wall).abs() < 60_000, "the process clock follows the wall clock");
    }
}
