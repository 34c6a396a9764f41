//! Ad-hoc breakdowns: any combination of up to [`MAX_ADHOC_DIMENSIONS`] distinct dimensions,
//! answered from ClickHouse `events_enriched` (read with `FINAL`, one row per event id, by
//! [`ClickHouseReader::events`](sluice_connectors::clickhouse::ClickHouseReader::events)).
//!
//! Semantics follow the in-memory path (`sluice_dataflows::views::query`): the same output
//! buckets (`bucket_spans` in the requested zone, labelled by the span's start), bot clicks
//! excluded unless `include_bots`, rows only for (bucket, values) with clicks, totals over the
//! range, dimension totals, and the same ordering and limit. Clicks are counts of events.
//! Uniques are **exact** (distinct `visitor_id`s, what `uniqExact(visitor_id)` returns), while
//! the views and rollup tables estimate them with HLL++ sketches (exact only while a sketch
//! is sparse): for a combination both paths answer (e.g. `country,device`) clicks are equal
//! and uniques may differ by the sketch's error (about 1 % beyond a few hundred visitors).
//!
//! The events of the range are aggregated here rather than with `GROUP BY` in SQL so that the
//! bucket boundaries come from the very function the views use (DST-exact in any zone). The
//! code and time range are filters of the SQL (`WHERE code = ? AND ts >= ? AND ts < ?` on
//! the table's `ORDER BY (code, ts, event_id)`, partitioned by `toDate(ts)`), so ClickHouse
//! reads only that link's granules of the range's days (`EXPLAIN indexes = 1`: partition
//! and min-max pruning, primary-key ranges): the read is proportional to the range's clicks
//! of the link, meant for analysts' ad-hoc queries.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sluice_dataflows::model::Dimension;
use sluice_dataflows::views::{AsOf, DimensionTotal, StatsQuery, StatsResult, StatsRow, Totals};
use sluice_schemas::EnrichedClick;

use super::{ClickHouseStats, HistoryError, checked_spans, invalid};
use sluice_dataflows::views::order_and_limit;

/// Most dimensions of one ad-hoc breakdown (the API's limit).
pub const MAX_ADHOC_DIMENSIONS: usize = sluice_serving::stats::params::MAX_ADHOC_DIMENSIONS;

#[derive(Default)]
struct Exact {
    clicks: u64,
    visitors: HashSet<u64>,
}

impl Exact {
    fn add(&mut self, visitor: u64) {
        self.clicks += 1;
        self.visitors.insert(visitor);
    }

    fn uniques(&self) -> u64 {
        self.visitors.len() as u64
    }
}

/// The value of `d` of an enriched click (the same strings the views key their rows by).
pub fn dimension_value(e: &EnrichedClick, d: Dimension) -> &str {
    match d {
        Dimension::Country => &e.country,
        Dimension::Device => &e.device,
        Dimension::Browser => &e.browser,
        Dimension::Os => &e.os,
        Dimension::ReferrerDomain => &e.referrer_domain,
        Dimension::ReferrerMedium => &e.referrer_medium,
    }
}

impl ClickHouseStats {
    /// Answers `q` for any combination of 1..=[`MAX_ADHOC_DIMENSIONS`] distinct dimensions
    /// from `events_enriched` (module docs), plus the bot clicks of `[from_ms, to_ms)`.
    /// `as_of` is carried into the result.
    ///
    /// Errors: [`HistoryError::InvalidQuery`] (`invalid_dimensions`, `invalid_range`,
    /// `unaligned_range`, `invalid_limit`, `range_too_long`, `unsupported_tz_offset`),
    /// [`HistoryError::Storage`].
    pub async fn adhoc(&self, q: &StatsQuery, as_of: AsOf) -> Result<(StatsResult, u64), HistoryError> {
        let dims = &q.dimensions;
        if dims.is_empty() || dims.len() > MAX_ADHOC_DIMENSIONS {
            return Err(invalid("invalid_dimensions", format!("an ad-hoc breakdown has 1 to {MAX_ADHOC_DIMENSIONS} dimensions")));
        }
        if dims.iter().enumerate().any(|(i, d)| dims[..i].contains(d)) {
            return Err(invalid("invalid_dimensions", "a dimension is given twice"));
        }
        let spans = checked_spans(q)?;
        let events = self.capped_events(&q.code, q.from_ms, q.to_ms).await?;

        let mut bots = 0u64;
        let mut totals = Exact::default();
        let mut cells: BTreeMap<(usize, Vec<String>), Exact> = BTreeMap::new();
        let mut by_dim: BTreeMap<Vec<String>, Exact> = BTreeMap::new();
        for e in &events {
            if e.is_bot {
                bots += 1;
                if !q.include_bots {
                    continue;
                }
            }
            // The span holding `ts`: the last one starting at or before it.
            let Some(span) = spans.partition_point(|&(s, _)| s <= e.ts).checked_sub(1) else { continue };
            if e.ts >= spans[span].1 {
                continue;
            }
            let values: Vec<String> = dims.iter().map(|&d| dimension_value(e, d).to_string()).collect();
            totals.add(e.visitor_id);
            by_dim.entry(values.clone()).or_default().add(e.visitor_id);
            cells.entry((span, values)).or_default().add(e.visitor_id);
        }
        let arc = |v: Vec<String>| v.into_iter().map(Arc::<str>::from).collect::<Vec<_>>();
        let mut result = StatsResult {
            rows: cells
                .into_iter()
                .map(|((span, values), acc)| StatsRow { bucket_start_ms: spans[span].0, dims: arc(values), clicks: acc.clicks, uniques: acc.uniques() })
                .collect(),
            truncated: false,
            totals: Totals { clicks: totals.clicks, uniques: totals.uniques() },
            by_dimension_truncated: false,
            by_dimension: by_dim.into_iter().map(|(values, acc)| DimensionTotal { dims: arc(values), clicks: acc.clicks, uniques: acc.uniques() }).collect(),
            as_of,
        };
        order_and_limit(&mut result, q);
        Ok((result, bots))
    }
}

#[cfg(all(test, feature = "integration-tests"))]
mod tests;
