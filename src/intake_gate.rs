//! The binary's [`IntakeGate`] for `POST /v1/events`: codes are checked against the link
//! store, lateness against the dataflow's views (their event-time watermark minus
//! `[dataflow] allowed-lateness`; for backfill `[dataflow] long-retention`), so events the
//! pipeline would drop are refused per event
//! at intake (`unknown_code`, `too_late`) instead of being accepted and dead-lettered.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::LinkStore;
use sluice_dataflows::views::Views;
use sluice_ingest::http::gate::{IntakeGate, KnownCodes};

/// Link store + optional views (`None` when this process runs no dataflow: no lateness check).
pub struct StoreAndViewsGate {
    store: Arc<dyn LinkStore>,
    views: Option<Views>,
    allowed_lateness_ms: i64,
    long_retention_ms: i64,
}

impl StoreAndViewsGate {
    /// A gate over `store` and `views` with the dataflow's `allowed_lateness` (live events)
    /// and `long_retention` (backfill).
    pub fn new(store: Arc<dyn LinkStore>, views: Option<Views>, allowed_lateness: Duration, long_retention: Duration) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        StoreAndViewsGate { store, views, allowed_lateness_ms: ms(allowed_lateness), long_retention_ms: ms(long_retention) }
    }

    /// The views' watermark minus `limit_ms`; `None` without views or before any event.
    fn watermark_minus(&self, limit_ms: i64) -> Option<i64> {
        // The views' watermark trails the gate's per-partition watermark (it is the minimum
        // over partitions, read at a completed epoch), so whatever is refused here the
        // dataflow would have dead-lettered too.
        let w = self.views.as_ref()?.as_of().watermark_ms;
        (w != i64::MIN && w != i64::MAX).then(|| w.saturating_sub(limit_ms))
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
}
