//! Telemetry of `POST /v1/events`, emitted once per request.
//!
//! Metric: `sluice_events_api_events_total{outcome}`: events received by the endpoint;
//! `outcome` = `accepted` or the rejection reason (`invalid_ts`, `invalid_code`, ...; a
//! fixed set, see [`crate::event_input::Rejection`]). Accepted events are also counted as
//! `sluice_click_events_logged_total{source="api"}` once durable.

use std::collections::BTreeMap;
use std::time::Duration;

use super::RejectedEvent;

/// A request was processed (its accepted events are durable).
pub struct EventsReceived<'a> {
    pub accepted: u64,
    pub rejected: &'a [RejectedEvent],
    pub backfill: bool,
    pub elapsed: Duration,
}

impl EventsReceived<'_> {
    pub fn emit(&self) {
        if self.accepted > 0 {
            metrics::counter!("sluice_events_api_events_total", "outcome" => "accepted").increment(self.accepted);
        }
        let mut by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
        for r in self.rejected {
            *by_reason.entry(r.reason).or_default() += 1;
        }
        for (reason, n) in &by_reason {
            metrics::counter!("sluice_events_api_events_total", "outcome" => *reason).increment(*n);
        }
        tracing::debug!(
            accepted = self.accepted,
            rejected = self.rejected.len(),
            backfill = self.backfill,
            elapsed_ms = self.elapsed.as_secs_f64() * 1e3,
            "events received"
        );
    }
}
