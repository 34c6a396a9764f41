//! [`ClickHouseReader`]: the read side for the stats API and analysts' tools.
//!
//! [`ClickHouseReader::rollup_rows`] returns stored rollup rows (clicks and sketch bytes)
//! for one link, granularity, range and set of views, read with `FINAL` so every key appears
//! once with its newest version. The serving layer merges the sketches exactly like the
//! in-memory path does, so answers from ClickHouse equal in-memory answers wherever both
//! hold the rows, and ClickHouse also answers ranges the in-memory retention dropped.

use std::time::Duration;

use ::clickhouse::Client;
use ::clickhouse::sql::Identifier;
use sluice_schemas::EnrichedClick;
use sluice_schemas::rollup::{RollupGranularity, RollupRow, RollupView};

use super::client::{client, within};
use super::config::ClickHouseConfig;
use super::rows::{AnomalyRecord, EnrichedEventRecord, RollupRecord, rollup_table};
use crate::{Error, Result};

/// A rollup read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupQuery {
    /// Short code.
    pub code: String,
    /// Table to read.
    pub granularity: RollupGranularity,
    /// Bucket starts in `[from_ms, to_ms)`, ms since the Unix epoch, UTC.
    pub from_ms: i64,
    /// End (exclusive).
    pub to_ms: i64,
    /// Views to return (e.g. `[Total, Country]`: the totals and the breakdown).
    pub views: Vec<RollupView>,
    /// Include bot rows.
    pub include_bots: bool,
}

/// Reads Sluice's ClickHouse tables (module docs). Cheap to clone.
#[derive(Clone)]
pub struct ClickHouseReader {
    client: Client,
    timeout: Duration,
}

impl std::fmt::Debug for ClickHouseReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseReader").field("timeout", &self.timeout).finish()
    }
}

fn invalid(field: &'static str, reason: &str) -> Error {
    Error::InvalidValue { field, reason: reason.into() }
}

impl ClickHouseReader {
    /// A reader of `config.database` (no I/O); each read is bounded by `query-timeout`.
    ///
    /// Errors: [`Error::Config`] for an invalid or disabled configuration.
    pub fn new(config: &ClickHouseConfig) -> Result<ClickHouseReader> {
        Ok(ClickHouseReader { client: client(config)?, timeout: config.query_timeout })
    }

    /// Rows of `q`, sorted by (bucket, view, is_bot, dimension values).
    ///
    /// Errors: [`Error::InvalidValue`] for an empty range or no views,
    /// [`Error::ClickHouse`] / [`Error::Timeout`] from the server, [`Error::Corrupt`] for a
    /// stored row with an unknown view.
    pub async fn rollup_rows(&self, q: &RollupQuery) -> Result<Vec<RollupRow>> {
        if q.from_ms >= q.to_ms {
            return Err(invalid("range", "from must be before to"));
        }
        if q.views.is_empty() {
            return Err(invalid("views", "at least one view is needed"));
        }
        let views: Vec<&str> = q.views.iter().map(|v| v.as_str()).collect();
        let bots = if q.include_bots { "" } else { " AND NOT is_bot" };
        let sql = format!(
            "SELECT ?fields FROM ? FINAL WHERE code = ? \
             AND bucket >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND bucket < fromUnixTimestamp64Milli(toInt64(?), 'UTC') \
             AND has(?, view){bots} ORDER BY bucket, view, is_bot, value1, value2"
        );
        let query = self.client.query(&sql).bind(Identifier(rollup_table(q.granularity))).bind(q.code.as_str()).bind(q.from_ms).bind(q.to_ms).bind(views);
        let recs = within("read rollup rows", self.timeout, query.fetch_all::<RollupRecord>()).await?;
        recs.into_iter().map(|r| r.into_row(q.granularity)).collect()
    }

    /// Enriched events of `code` with `ts` in `[from_ms, to_ms)`, one per event id, by time.
    ///
    /// Errors: [`Error::InvalidValue`] for an empty range, [`Error::ClickHouse`],
    /// [`Error::Timeout`].
    pub async fn events(&self, code: &str, from_ms: i64, to_ms: i64) -> Result<Vec<EnrichedClick>> {
        if from_ms >= to_ms {
            return Err(invalid("range", "from must be before to"));
        }
        let q = self
            .client
            .query(
                "SELECT ?fields FROM events_enriched FINAL WHERE code = ? \
                 AND ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC') \
                 ORDER BY ts, event_id",
            )
            .bind(code)
            .bind(from_ms)
            .bind(to_ms);
        let recs = within("read enriched events", self.timeout, q.fetch_all::<EnrichedEventRecord>()).await?;
        Ok(recs.into_iter().map(EnrichedClick::from).collect())
    }

    /// Anomalies with `window_start` in `[from_ms, to_ms)` (of one code, or all), the newest
    /// event per anomaly id, ordered by window start, code, kind and id.
    ///
    /// Errors: [`Error::InvalidValue`] for an empty range, [`Error::ClickHouse`],
    /// [`Error::Timeout`].
    pub async fn anomalies(&self, code: Option<&str>, from_ms: i64, to_ms: i64) -> Result<Vec<AnomalyRecord>> {
        if from_ms >= to_ms {
            return Err(invalid("range", "from must be before to"));
        }
        let filter = if code.is_some() { " AND code = ?" } else { "" };
        let sql = format!(
            "SELECT ?fields FROM anomalies FINAL WHERE window_start >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') \
             AND window_start < fromUnixTimestamp64Milli(toInt64(?), 'UTC'){filter} ORDER BY window_start, code, kind, anomaly_id"
        );
        let mut q = self.client.query(&sql).bind(from_ms).bind(to_ms);
        if let Some(c) = code {
            q = q.bind(c);
        }
        within("read anomalies", self.timeout, q.fetch_all::<AnomalyRecord>()).await
    }

    /// Rows of a rollup table counted with and without `FINAL` (diagnostics and tests: the
    /// two differ only while duplicates await a merge).
    ///
    /// Errors: [`Error::ClickHouse`], [`Error::Timeout`].
    pub async fn rollup_counts(&self, granularity: RollupGranularity) -> Result<(u64, u64)> {
        let table = Identifier(rollup_table(granularity));
        let raw = within("count rows", self.timeout, self.client.query("SELECT count() FROM ?").bind(table).fetch_one::<u64>()).await?;
        let fin = within("count rows", self.timeout, self.client.query("SELECT count() FROM ? FINAL").bind(table).fetch_one::<u64>()).await?;
        Ok((raw, fin))
    }
}
