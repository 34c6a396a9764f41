//! The binary's [`IntakeGate`] for `POST /v1/events`: codes are checked against the link
//! store, lateness against the dataflow's views (their event-time watermark minus
//! `[dataflow] allowed-lateness`; for backfill `[dataflow] long-retention`), so events the
//! pipeline would drop are refused per event
//! at intake (`unknown_code`, `too_late`) instead of being accepted and dead-lettered.
//!
//! The views' watermark is read at their last completed epoch, and the dataflow's partition
//! watermark keeps moving while an accepted event is on its way (with the processing clock
//! while the log is idle, with the event times of other requests): an event accepted just
//! inside the bound could be dead-lettered by the time the dataflow reads it. The bound is
//! therefore [`IN_FLIGHT_MARGIN`] stricter than the views' watermark minus the limit:
//! events within that margin of the edge are refused `too_late` too.
//!
//! The views show an accepted event's time only once the dataflow has read it and completed
//! the epoch: a request right after one that stored newer events would be checked against
//! a watermark that has not moved yet. The gate therefore also keeps the newest event time
//! it has accepted and stored (process-wide, live and backfill alike, updated after the
//! append) and refuses what trails it by more than the limit
//! ([`LatenessCheck`](sluice_ingest::http::gate::LatenessCheck), the rule between the
//! events of one request and of an offline import, so `sluice import --target` and
//! `--data-dir` give the same verdicts). It is one value for the whole process: with several
//! partitions (Kafka) an event is checked against the newest accepted for any of them,
//! which may refuse one its own partition would have counted, never the reverse. A
//! request's check and its append run under one lock of the events endpoint
//! (`sluice_ingest::http`), so requests in flight at the same time are stored in the order
//! they were checked in: one that stores newer events cannot overtake another's older
//! ones that were already accepted (the dataflow would dead-letter them `too_late`). An
//! event ahead of the clock (within the future skew) is recorded as stamped at most
//! [`IN_FLIGHT_MARGIN`] after the clock: the dataflow's watermark moves with it only to its
//! own processing clock when it reads the event.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sluice_connectors::LinkStore;
use sluice_dataflows::views::Views;
use sluice_ingest::http::gate::{IntakeGate, KnownCodes, watermark_floor_ms};

/// How much earlier than the views' watermark minus the limit the intake starts refusing
/// events `too_late` (module docs): 60 s, far more than the views' lag and an event's
/// append and read (milliseconds to a few seconds on a loaded machine).
pub const IN_FLIGHT_MARGIN: Duration = Duration::from_secs(60);

/// [`IN_FLIGHT_MARGIN`] in ms.
pub fn in_flight_margin_ms() -> i64 {
    i64::try_from(IN_FLIGHT_MARGIN.as_millis()).unwrap_or(i64::MAX)
}

/// Link store + optional views (`None` when this process runs no dataflow: no lateness check).
pub struct StoreAndViewsGate {
    store: Arc<dyn LinkStore>,
    views: Option<Views>,
    allowed_lateness_ms: i64,
    long_retention_ms: i64,
    /// The newest event time stored through this gate (module docs); `i64::MIN`: none yet.
    newest_accepted_ms: AtomicI64,
}

impl StoreAndViewsGate {
    /// A gate over `store` and `views` with the dataflow's `allowed_lateness` (live events)
    /// and `long_retention` (backfill).
    pub fn new(store: Arc<dyn LinkStore>, views: Option<Views>, allowed_lateness: Duration, long_retention: Duration) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        StoreAndViewsGate {
            store,
            views,
            allowed_lateness_ms: ms(allowed_lateness),
            long_retention_ms: ms(long_retention),
            newest_accepted_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// The views' watermark plus [`IN_FLIGHT_MARGIN`] minus `limit_ms`
    /// ([`watermark_floor_ms`], the rule `sluice import --data-dir` applies too); `None`
    /// without views or before any event.
    fn watermark_minus(&self, limit_ms: i64) -> Option<i64> {
        watermark_floor_ms(self.views.as_ref()?.as_of().watermark_ms, limit_ms, in_flight_margin_ms())
    }
}

impl IntakeGate for StoreAndViewsGate {
    fn known_codes<'a>(&'a self, codes: &'a BTreeSet<String>) -> KnownCodes<'a> {
        Box::pin(async move {
            let mut known = BTreeSet::new();
            for code in codes {
                if self.store.get(code).await.map_err(|e| e.to_string())?.is_some() {
                    known.insert(code.clone());
                }
            }
            Ok(known)
        })
    }

    fn oldest_live_ts_ms(&self) -> Option<i64> {
        self.watermark_minus(self.allowed_lateness_ms)
    }

    fn oldest_backfill_ts_ms(&self) -> Option<i64> {
        self.watermark_minus(self.long_retention_ms)
    }

    fn lateness_limit_ms(&self, backfill: bool) -> Option<i64> {
        self.views.as_ref()?;
        Some(if backfill { self.long_retention_ms } else { self.allowed_lateness_ms })
    }

    fn newest_accepted_ms(&self) -> Option<i64> {
        Some(self.newest_accepted_ms.load(Ordering::Acquire)).filter(|&t| t != i64::MIN)
    }

    fn in_flight_margin_ms(&self) -> i64 {
        in_flight_margin_ms()
    }

    fn record_accepted(&self, ts_ms: i64) {
        self.newest_accepted_ms.fetch_max(ts_ms, Ordering::AcqRel);
    }
}
