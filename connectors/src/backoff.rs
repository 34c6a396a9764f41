//! The sinks' retry pacing (STYLE.md §18): capped exponential backoff and rate-limited
//! failure logs, shared by the ClickHouse and Redis sink writers so both retry alike.

use std::time::Duration;

/// Capped exponential backoff: the first delay is `min`, each later one doubles, never
/// above `max` (the first is `min` even if `min > max`, as configured); [`Backoff::reset`]
/// after a success starts over.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`, capped at `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max, next: min }
    }

    /// Back to `min` (after a success).
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }

    /// The delay before the next retry; doubles the one after (capped at `max`).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// Whether the `n`-th consecutive failure (1-based) is logged: the first, then at powers of
/// two, so an outage logs O(log n) lines.
pub(crate) fn log_failure(n: u64) -> bool {
    n == 1 || n.is_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(20), ms(200));
        let got: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(got, vec![ms(20), ms(40), ms(80), ms(160), ms(200), ms(200)]);
        b.reset();
        assert_eq!(b.next_delay(), ms(20));
        let mut odd = Backoff::new(ms(500), ms(100));
        assert_eq!((odd.next_delay(), odd.next_delay()), (ms(500), ms(100)));
    }

    #[test]
    fn failures_logged_at_one_and_powers_of_two() {
        let logged: Vec<u64> = (1..=20).filter(|&n| log_failure(n)).collect();
        assert_eq!(logged, vec![1, 2, 4, 8, 16]);
    }
}
