//! ClickHouse connector (feature `clickhouse-sink`): the OLAP copy of Sluice's views.
//!
//! | piece | what |
//! |---|---|
//! | [`migrate`] | creates the database and applies the versioned DDL in `connectors/clickhouse-migrations/` |
//! | [`ClickHouseSink`] (`clickhouse_sink`) | batched, retried, idempotent inserts of rollup rows, enriched events and anomalies |
//! | [`ClickHouseReader`] | rollup rows (clicks + sketch bytes) for the stats API; events; anomalies |
//! | [`healthcheck`] | `SELECT 1` |
//! | [`ClickHouseConfig`] | the `[clickhouse]` section (`CLICKHOUSE_URL`, `_USER`, `_PASSWORD`, `_DATABASE`) |
//!
//! # Tables (see the DDL files for the columns)
//!
//! | table | engine | key | what |
//! |---|---|---|---|
//! | `events_enriched` | ReplacingMergeTree, partition by day | (code, ts, event_id) | one row per deduplicated, enriched click |
//! | `rollups_minute`, `_quarter`, `_hour`, `_day` | ReplacingMergeTree(version) | (code, bucket, view, is_bot, value1, value2) | clicks, uniques and the visitor sketch of each rollup row |
//! | `anomalies` | ReplacingMergeTree(version) | (kind, window_start, anomaly_id) | detector outputs: the newest event of each anomaly (migration 0004) |
//! | `sluice_migrations` | ReplacingMergeTree | version | applied migrations |
//!
//! **Why sketches as `String` and ReplacingMergeTree**: the dataflow already maintains every
//! rollup row with its HyperLogLog++/exact sketch; storing those canonical bytes lets the
//! stats API merge ranges and dimension values with the same code as the in-memory path,
//! so the two answer identically (an `AggregateFunction(uniqCombined)` state would use
//! ClickHouse's own hash and estimator and disagree). The change stream carries absolute
//! values, so a row is *replaced*, never summed: ReplacingMergeTree with
//! `version = epoch_upper` keeps the newest value per key, and a replay after a crash inserts
//! the same or newer versions — no duplicates under `FINAL` (or `argMax(col, version)`).
//!
//! # Delivery guarantee
//!
//! **Effectively once.** Buffers are kept until ClickHouse acknowledged the insert and are
//! retried with capped backoff; duplicates from retries and replays collapse by key.
//! [`ClickHouseSinkStatus::applied_epoch`] says which change batches are fully inserted.
//!
//! # Tests
//!
//! `integration_tests` (features `clickhouse-sink` and `integration-tests`) need a ClickHouse
//! HTTP endpoint at `CLICKHOUSE_URL` (`infra/services/clickhouse.sh start`); each test uses a
//! fresh database.

pub mod client;
pub mod config;
pub mod metrics;
pub mod query;
pub mod rows;
pub mod sink;

#[cfg(all(test, feature = "integration-tests"))]
mod integration_tests;
#[cfg(test)]
mod sink_tests;

pub use client::{MIGRATIONS, Migration, MigrationReport, client, healthcheck, migrate, migrate_up_to};
pub use config::{ClickHouseConfig, Password};
pub use query::{ClickHouseReader, RollupQuery};
pub use rows::{AnomalyRecord, EnrichedEventRecord, RollupRecord, rollup_table};
pub use sink::{ClickHouseSink, ClickHouseSinkStatus, SinkInput};

/// Whether a ClickHouse client error is transient (network, timeout, server overloaded or
/// restarting) rather than a bad query, schema mismatch or bad data.
pub fn clickhouse_error_retryable(e: &::clickhouse::error::Error) -> bool {
    use ::clickhouse::error::Error as E;
    match e {
        E::Network(_) | E::TimedOut => true,
        // `Code: N. DB::Exception: ...`: retry only codes that mean "try again later".
        E::BadResponse(text) => server_code(text).is_some_and(|c| RETRYABLE_CODES.contains(&c)),
        _ => false,
    }
}

/// ClickHouse error codes worth retrying: TIMEOUT_EXCEEDED (159), TOO_MANY_SIMULTANEOUS_QUERIES
/// (202), NETWORK_ERROR (210), SOCKET_TIMEOUT (209), TOO_MANY_PARTS (252), ABORTED (236),
/// MEMORY_LIMIT_EXCEEDED (241), TABLE_IS_READ_ONLY (242), ALL_CONNECTION_TRIES_FAILED (279),
/// KEEPER_EXCEPTION (999), TOO_MANY_CONCURRENT_QUERIES... (from ClickHouse `src/Common/ErrorCodes.cpp`).
const RETRYABLE_CODES: [u32; 10] = [159, 202, 209, 210, 236, 241, 242, 252, 279, 999];

/// The `N` of a `Code: N. DB::Exception: ...` response text.
pub fn server_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}
