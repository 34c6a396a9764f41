//! Telemetry of the ClickHouse connector, emitted once per insert (STYLE.md §3.6).
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `sluice_clickhouse_rows_inserted_total` | counter | `table` | rows acknowledged by ClickHouse |
//! | `sluice_clickhouse_inserts_total` | counter | `table` | successful `INSERT`s |
//! | `sluice_clickhouse_insert_duration_seconds` | histogram | `table` | duration of one `INSERT` |
//! | `sluice_clickhouse_errors_total` | counter | `error_type` | failed attempts (retried with backoff) |
//! | `sluice_clickhouse_dropped_rows_total` | counter | — | rows dropped because the buffer was full |
//! | `sluice_clickhouse_pending_rows` | gauge | — | rows buffered, not inserted yet |
//!
//! `table` is one of the fixed table names; `error_type` is `timeout`, `connection`,
//! `server` (a retryable server error code), `rejected` (a non-retryable server answer),
//! `config`.

use std::sync::Once;
use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::Error;

/// Registers descriptions and units with the installed recorder (first call only).
pub fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_counter!("sluice_clickhouse_rows_inserted_total", Unit::Count, "Rows inserted into ClickHouse.");
        describe_counter!("sluice_clickhouse_inserts_total", Unit::Count, "Successful ClickHouse INSERTs.");
        describe_histogram!("sluice_clickhouse_insert_duration_seconds", Unit::Seconds, "Duration of one ClickHouse INSERT.");
        describe_counter!("sluice_clickhouse_errors_total", Unit::Count, "Failed ClickHouse attempts (retried).");
        describe_counter!("sluice_clickhouse_dropped_rows_total", Unit::Count, "Rows dropped: ClickHouse sink buffer full.");
        describe_gauge!("sluice_clickhouse_pending_rows", Unit::Count, "Rows buffered for ClickHouse, not inserted yet.");
    });
}

/// Bounded `error_type` label of a connector error.
pub fn error_type(e: &Error) -> &'static str {
    match e {
        Error::Timeout { .. } => "timeout",
        Error::ClickHouse { source: ::clickhouse::error::Error::Network(_), .. } => "connection",
        Error::ClickHouse { source, .. } if super::clickhouse_error_retryable(source) => "server",
        Error::Config(_) => "config",
        _ => "rejected",
    }
}

/// One INSERT succeeded.
pub(crate) struct RowsInserted {
    pub table: &'static str,
    pub rows: u64,
    pub elapsed: Duration,
}

impl RowsInserted {
    pub fn emit(self) {
        counter!("sluice_clickhouse_rows_inserted_total", "table" => self.table).increment(self.rows);
        counter!("sluice_clickhouse_inserts_total", "table" => self.table).increment(1);
        histogram!("sluice_clickhouse_insert_duration_seconds", "table" => self.table).record(self.elapsed.as_secs_f64());
    }
}

/// An attempt failed (logged for the 1st, 2nd, 4th, 8th, ... consecutive failure).
pub(crate) struct InsertFailed<'a> {
    pub error: &'a Error,
    pub pending: usize,
    pub log: bool,
}

impl InsertFailed<'_> {
    pub fn emit(self) {
        counter!("sluice_clickhouse_errors_total", "error_type" => error_type(self.error)).increment(1);
        gauge!("sluice_clickhouse_pending_rows").set(self.pending as f64);
        if self.log {
            tracing::warn!(error = %self.error.chain(), pending = self.pending, "clickhouse sink could not write, retrying");
        }
    }
}

/// Rows dropped because the buffer was full.
pub(crate) struct RowsDropped {
    pub rows: u64,
}

impl RowsDropped {
    pub fn emit(self) {
        counter!("sluice_clickhouse_dropped_rows_total").increment(self.rows);
        tracing::warn!(rows = self.rows, "clickhouse sink buffer full, rows dropped");
    }
}
