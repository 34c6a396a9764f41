//! A small lock-free circuit breaker: a dead or slow service costs the hot path nothing.
//!
//! * **Closed**: calls go through; `failures` consecutive failures open the breaker.
//! * **Open**: calls are refused without I/O until `open_for` has passed since opening.
//! * **Half-open**: one caller (the first to win a compare-and-swap) probes; success closes
//!   the breaker, failure re-opens it for another `open_for`. Other callers keep being
//!   refused while the probe runs.
//!
//! Time is measured with a process-local monotonic clock in milliseconds.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CLOSED: u64 = 0;
/// `opened_at` value while a half-open probe is in flight.
const PROBING: u64 = u64::MAX;

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    // +1 so that an instant never equals CLOSED
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// State visible to callers and health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused.
    Open,
    /// One probe is in flight.
    HalfOpen,
}

/// The breaker (module docs). Shared by reference; all methods take `&self`.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    open_for_ms: u64,
    failures: AtomicU32,
    /// 0 = closed, `PROBING` = half-open probe running, else the instant it opened.
    opened_at: AtomicU64,
}

/// Permission to make one call; report its outcome with [`CircuitBreaker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    probe: bool,
}

impl CircuitBreaker {
    /// A closed breaker opening after `threshold` consecutive failures for `open_for`.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        CircuitBreaker {
            threshold: threshold.max(1),
            open_for_ms: open_for.as_millis().max(1) as u64,
            failures: AtomicU32::new(0),
            opened_at: AtomicU64::new(CLOSED),
        }
    }

    /// Whether a call may be made now; `None` means refuse it without I/O.
    pub fn try_acquire(&self) -> Option<Permit> {
        let opened = self.opened_at.load(Ordering::Acquire);
        if opened == CLOSED {
            return Some(Permit { probe: false });
        }
        if opened == PROBING || now_ms() < opened + self.open_for_ms {
            return None;
        }
        // Open long enough: exactly one caller becomes the half-open probe.
        self.opened_at.compare_exchange(opened, PROBING, Ordering::AcqRel, Ordering::Acquire).ok().map(|_| Permit { probe: true })
    }

    /// Reports the outcome of a permitted call.
    pub fn record(&self, permit: Permit, ok: bool) {
        if ok {
            self.failures.store(0, Ordering::Release);
            if permit.probe || self.opened_at.load(Ordering::Acquire) != CLOSED {
                self.opened_at.store(CLOSED, Ordering::Release);
            }
            return;
        }
        if permit.probe {
            self.opened_at.store(now_ms(), Ordering::Release);
            return;
        }
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.threshold {
            // Only a closed breaker opens here; an open one keeps its opening instant.
            let _ = self.opened_at.compare_exchange(CLOSED, now_ms(), Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match self.opened_at.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            PROBING => BreakerState::HalfOpen,
            _ => BreakerState::Open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_refuses_then_one_probe_closes_it() {
        let b = CircuitBreaker::new(3, Duration::from_millis(40));
        for _ in 0..2 {
            let p = b.try_acquire().expect("closed");
            b.record(p, false);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        let p = b.try_acquire().expect("closed");
        b.record(p, false);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.try_acquire(), None, "open: refused");
        let t = Instant::now();
        while b.state() == BreakerState::Open && t.elapsed() < Duration::from_secs(5) {
            if let Some(p) = b.try_acquire() {
                assert!(p.probe);
                assert_eq!(b.try_acquire(), None, "only one probe at a time");
                assert_eq!(b.state(), BreakerState::HalfOpen);
                b.record(p, true);
                break;
            }
            std::thread::yield_now();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire().is_some());
    }

    #[test]
    fn failed_probe_reopens_and_success_resets_the_count() {
        let b = CircuitBreaker::new(2, Duration::from_millis(10));
        let p = b.try_acquire().expect("closed");
        b.record(p, false);
        let p = b.try_acquire().expect("closed");
        b.record(p, true);
        let p = b.try_acquire().expect("closed");
        b.record(p, false);
        assert_eq!(b.state(), BreakerState::Closed, "the success reset the consecutive count");
        let p = b.try_acquire().expect("closed");
        b.record(p, false);
        assert_eq!(b.state(), BreakerState::Open);
        let t = Instant::now();
        let probe = loop {
            if let Some(p) = b.try_acquire() {
                break p;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "probe never allowed");
            std::thread::yield_now();
        };
        b.record(probe, false);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.try_acquire(), None);
    }
}
