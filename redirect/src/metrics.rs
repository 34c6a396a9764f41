//! Metrics of the redirect path, registered once per [`crate::RedirectState`] (handles are
//! resolved against the global recorder at construction, so install the recorder first).
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `sluice_redirect_cache_hits_total` | counter | lookups answered by the L1 cache |
//! | `sluice_redirect_cache_misses_total` | counter | lookups that went to the store (or joined a load) |
//! | `sluice_redirect_duration_seconds` | histogram | handler time of `GET`/`HEAD /{code}`, seconds |
//! | `sluice_redirect_query_dropped_total` | counter | redirects whose query string was not forwarded: the `Location` would exceed 8192 bytes |
//! | `sluice_click_events_dropped_total{reason}` | counter | click events dropped (incremented by the sink, e.g. ingest's `ClickSender`) |

use metrics::{Counter, Histogram};

/// Name of the dropped-events counter (shared with ingest's sender).
pub const CLICK_EVENTS_DROPPED_TOTAL: &str = "sluice_click_events_dropped_total";

/// Name of the counter of query strings not forwarded (the `Location` would be too long).
pub const REDIRECT_QUERY_DROPPED_TOTAL: &str = "sluice_redirect_query_dropped_total";

/// Name of the counter of browser prefetches of redirecting links, by `action` (`refused`:
/// 503 under the default policy; `redirected`: answered without a click).
pub const REDIRECT_PREFETCHES_TOTAL: &str = "sluice_redirect_prefetches_total";

/// Metric handles of the redirect path.
#[derive(Clone)]
pub struct RedirectMetrics {
    /// `sluice_redirect_cache_hits_total`.
    pub cache_hits: Counter,
    /// `sluice_redirect_cache_misses_total`.
    pub cache_misses: Counter,
    /// `sluice_redirect_duration_seconds`.
    pub duration: Histogram,
    /// `sluice_redirect_query_dropped_total`.
    pub query_dropped: Counter,
    /// `sluice_redirect_prefetches_total{action="refused"}`.
    pub prefetches_refused: Counter,
    /// `sluice_redirect_prefetches_total{action="redirected"}`.
    pub prefetches_redirected: Counter,
}

impl std::fmt::Debug for RedirectMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedirectMetrics")
    }
}

impl RedirectMetrics {
    /// Describes and registers the metrics with the installed recorder (no-ops without one).
    pub fn register() -> Self {
        metrics::describe_counter!("sluice_redirect_cache_hits_total", "Redirect lookups answered by the in-process cache");
        metrics::describe_counter!("sluice_redirect_cache_misses_total", "Redirect lookups that read the link store");
        metrics::describe_histogram!("sluice_redirect_duration_seconds", metrics::Unit::Seconds, "Time to answer GET/HEAD /{code}");
        metrics::describe_counter!(
            REDIRECT_QUERY_DROPPED_TOTAL,
            "Redirects whose query string was not appended to the target because the Location would exceed 8192 bytes (the redirect went to the target alone)"
        );
        metrics::describe_counter!(
            REDIRECT_PREFETCHES_TOTAL,
            "Speculative GETs (Sec-Purpose: prefetch and older markers) of links that would redirect, by action: refused (503, no click) or redirected (no click)"
        );
        metrics::describe_counter!(
            CLICK_EVENTS_DROPPED_TOTAL,
            "Click events dropped before reaching the click log, by reason: channel_full (the ingest channel was full), log_error (the click log append failed), closed (the log writer had stopped)"
        );
        let m = Self {
            cache_hits: metrics::counter!("sluice_redirect_cache_hits_total"),
            cache_misses: metrics::counter!("sluice_redirect_cache_misses_total"),
            duration: metrics::histogram!("sluice_redirect_duration_seconds"),
            query_dropped: metrics::counter!(REDIRECT_QUERY_DROPPED_TOTAL),
            prefetches_refused: metrics::counter!(REDIRECT_PREFETCHES_TOTAL, "action" => "refused"),
            prefetches_redirected: metrics::counter!(REDIRECT_PREFETCHES_TOTAL, "action" => "redirected"),
        };
        // Make every series visible from the start, at zero (drop reasons as ingest labels them).
        m.cache_hits.increment(0);
        m.cache_misses.increment(0);
        m.query_dropped.increment(0);
        m.prefetches_refused.increment(0);
        m.prefetches_redirected.increment(0);
        for reason in ["channel_full", "closed", "log_error"] {
            metrics::counter!(CLICK_EVENTS_DROPPED_TOTAL, "reason" => reason).increment(0);
        }
        m
    }
}
