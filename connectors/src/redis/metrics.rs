//! Telemetry of the Redis connector (STYLE.md §3.6): counters registered once as handles
//! (the L2 lookups run on the redirect path), sink events emitted once per flush.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `sluice_redis_l2_lookups_total` | counter | `result` = `hit`, `absent`, `miss`, `error`, `skipped` | L2 link lookups (`skipped`: breaker open, not attempted) |
//! | `sluice_redis_l2_writes_total` | counter | `kind` = `fill`, `publish` | L2 entries written |
//! | `sluice_redis_l2_write_errors_total` | counter | `kind`, `error_type` | failed L2 writes (publishes are retried) |
//! | `sluice_redis_invalidations_received_total` | counter | — | invalidations received from other processes |
//! | `sluice_redis_sink_rows_written_total` | counter | — | view rows written |
//! | `sluice_redis_sink_flushes_total` | counter | — | successful sink pipelines |
//! | `sluice_redis_sink_errors_total` | counter | `error_type` | failed sink pipelines (retried with backoff) |
//! | `sluice_redis_sink_dropped_rows_total` | counter | — | rows dropped because the pending buffer was full |
//! | `sluice_redis_sink_pending_rows` | gauge | — | rows waiting to be written |
//! | `sluice_redis_sink_flush_duration_seconds` | histogram | — | duration of one sink pipeline |
//!
//! `error_type` is `timeout`, `unavailable` (breaker open), `connection`, `command`.

use std::sync::Once;
use std::time::Duration;

use metrics::{Counter, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::Error;

/// Registers descriptions and units with the installed recorder (first call only).
pub fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_counter!("sluice_redis_l2_lookups_total", Unit::Count, "L2 (Redis) link cache lookups by result.");
        describe_counter!("sluice_redis_l2_writes_total", Unit::Count, "L2 (Redis) link cache entries written.");
        describe_counter!("sluice_redis_l2_write_errors_total", Unit::Count, "Failed L2 (Redis) link cache writes.");
        describe_counter!("sluice_redis_invalidations_received_total", Unit::Count, "Link invalidations received from other processes over Redis pub/sub.");
        describe_counter!("sluice_redis_sink_rows_written_total", Unit::Count, "Hot-view rows written to Redis.");
        describe_counter!("sluice_redis_sink_flushes_total", Unit::Count, "Successful Redis sink pipelines.");
        describe_counter!("sluice_redis_sink_errors_total", Unit::Count, "Failed Redis sink pipelines (retried).");
        describe_counter!("sluice_redis_sink_dropped_rows_total", Unit::Count, "Rows dropped: Redis sink buffer full.");
        describe_gauge!("sluice_redis_sink_pending_rows", Unit::Count, "Rows waiting to be written to Redis.");
        describe_histogram!("sluice_redis_sink_flush_duration_seconds", Unit::Seconds, "Duration of one Redis sink pipeline.");
    });
}

/// Bounded `error_type` label of a connector error.
pub fn error_type(e: &Error) -> &'static str {
    match e {
        Error::Timeout { .. } => "timeout",
        Error::CircuitOpen { .. } => "unavailable",
        Error::Redis { source, .. } if super::redis_error_retryable(source) => "connection",
        _ => "command",
    }
}

/// Counter handles of the L2 lookups (cloned into each cache).
#[derive(Clone)]
pub(crate) struct L2Metrics {
    pub hit: Counter,
    pub absent: Counter,
    pub miss: Counter,
    pub error: Counter,
    pub skipped: Counter,
    pub fills: Counter,
    pub publishes: Counter,
    pub received: Counter,
}

impl L2Metrics {
    pub fn register() -> L2Metrics {
        describe();
        let lookup = |r: &'static str| counter!("sluice_redis_l2_lookups_total", "result" => r);
        L2Metrics {
            hit: lookup("hit"),
            absent: lookup("absent"),
            miss: lookup("miss"),
            error: lookup("error"),
            skipped: lookup("skipped"),
            fills: counter!("sluice_redis_l2_writes_total", "kind" => "fill"),
            publishes: counter!("sluice_redis_l2_writes_total", "kind" => "publish"),
            received: counter!("sluice_redis_invalidations_received_total"),
        }
    }
}

/// An L2 write failed.
pub(crate) struct L2WriteFailed<'a> {
    pub kind: &'static str,
    pub error: &'a Error,
}

impl L2WriteFailed<'_> {
    pub fn emit(self) {
        counter!("sluice_redis_l2_write_errors_total", "kind" => self.kind, "error_type" => error_type(self.error)).increment(1);
    }
}

/// One sink pipeline succeeded.
pub(crate) struct SinkFlushed {
    pub rows: u64,
    pub elapsed: Duration,
    pub pending: usize,
}

impl SinkFlushed {
    pub fn emit(self) {
        counter!("sluice_redis_sink_rows_written_total").increment(self.rows);
        counter!("sluice_redis_sink_flushes_total").increment(1);
        histogram!("sluice_redis_sink_flush_duration_seconds").record(self.elapsed.as_secs_f64());
        gauge!("sluice_redis_sink_pending_rows").set(self.pending as f64);
    }
}

/// One sink pipeline failed (logged at most once per `log_every` failures by the caller).
pub(crate) struct SinkWriteFailed<'a> {
    pub error: &'a Error,
    pub pending: usize,
    pub log: bool,
}

impl SinkWriteFailed<'_> {
    pub fn emit(self) {
        counter!("sluice_redis_sink_errors_total", "error_type" => error_type(self.error)).increment(1);
        gauge!("sluice_redis_sink_pending_rows").set(self.pending as f64);
        if self.log {
            tracing::warn!(error = %self.error.chain(), pending = self.pending, "redis sink could not write, retrying");
        }
    }
}

/// Rows dropped because the pending buffer was full.
pub(crate) struct SinkRowsDropped {
    pub rows: u64,
}

impl SinkRowsDropped {
    pub fn emit(self) {
        if self.rows > 0 {
            counter!("sluice_redis_sink_dropped_rows_total").increment(self.rows);
            tracing::warn!(rows = self.rows, "redis sink buffer full, rows dropped");
        }
    }
}
