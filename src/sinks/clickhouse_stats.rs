//! Per-link stats answered from ClickHouse, with the in-memory path's exact semantics
//! (`sluice_dataflows::views::query`): the same output buckets (`bucket_spans`), each
//! covered by the coarsest stored buckets that fit, clicks summed and visitor sketches
//! merged with the dataflow's own `VisitorSketch`, the same ordering and limit. Where both
//! hold the rows the answers are identical (tested in `tests.rs`); ClickHouse also answers
//! ranges the in-memory retention dropped (minute edges older than 48 h), and (submodule
//! `adhoc`) dimension combinations the views do not maintain, from `events_enriched`.
//!
//! Minute pieces (`bucket=minute`, and the unaligned minute edges of hour and day queries)
//! are checked first (submodule `minutes`): clicks backfilled further back than the minute
//! retention have quarter and coarser rows but no minute rows, so where a quarter's minute
//! rows (total view, human and bot clicks) do not add up to its quarter row, that quarter's
//! minute pieces are answered from `events_enriched` (clicks per minute and view value,
//! visitors in a `VisitorSketch`), and agree with hour answers and the bot-click count.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use sluice_connectors::clickhouse::{ClickHouseReader, RollupQuery};
use sluice_dataflows::model::{Dimension, Granularity, View};
use sluice_dataflows::sketch::VisitorSketch;
use sluice_dataflows::views::query::{MAX_BUCKETS, MAX_LIMIT};
use sluice_dataflows::views::tz::bucket_spans;
use sluice_dataflows::views::{AsOf, DimensionTotal, StatsQuery, StatsResult, StatsRow, Totals, order_and_limit};
use sluice_schemas::rollup::{RollupRow, RollupView};

use super::convert::{granularity, view as rollup_view};

mod adhoc;
pub mod flood_cap;
mod minutes;
pub use adhoc::{MAX_ADHOC_DIMENSIONS, dimension_value};

/// Why a query could not be answered.
#[derive(Debug)]
pub enum HistoryError {
    /// The query is invalid (same codes as the in-memory path).
    InvalidQuery {
        /// Stable code (`invalid_range`, `unaligned_range`, `invalid_limit`, `unsupported_dimensions`, ...).
        code: &'static str,
        /// Message.
        message: String,
        /// The error body's `details`, when there are any (those of the in-memory path's
        /// errors, e.g. `unsupported_tz_offset`).
        details: Option<serde_json::Value>,
    },
    /// ClickHouse failed.
    Storage(sluice_connectors::Error),
    /// A stored sketch could not be decoded.
    Corrupt(String),
}

impl std::fmt::Display for HistoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HistoryError::InvalidQuery { message, .. } => f.write_str(message),
            HistoryError::Storage(_) => f.write_str("clickhouse could not answer the stats query"),
            HistoryError::Corrupt(m) => write!(f, "a stored sketch is corrupt: {m}"),
        }
    }
}

impl std::error::Error for HistoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HistoryError::Storage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<sluice_connectors::Error> for HistoryError {
    fn from(e: sluice_connectors::Error) -> Self {
        HistoryError::Storage(e)
    }
}

/// Checks the range and limit of `q` like the in-memory path and returns its output
/// buckets (`bucket_spans` in the requested zone). Errors: `invalid_range`,
/// `unaligned_range`, `invalid_limit`, `range_too_long`, `unsupported_tz_offset`.
pub(crate) fn checked_spans(q: &StatsQuery) -> Result<Vec<(i64, i64)>, HistoryError> {
    if q.from_ms >= q.to_ms {
        return Err(invalid("invalid_range", "from must be before to"));
    }
    if q.from_ms.rem_euclid(60_000) != 0 || q.to_ms.rem_euclid(60_000) != 0 {
        return Err(invalid("unaligned_range", "from and to must be whole minutes"));
    }
    if let Some(l) = q.limit
        && (l == 0 || l > MAX_LIMIT)
    {
        return Err(invalid("invalid_limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    bucket_spans(q.tz, q.bucket, q.from_ms, q.to_ms, MAX_BUCKETS).map_err(|e| match e {
        sluice_dataflows::Error::InvalidQuery { code, message, details } => HistoryError::InvalidQuery { code, message, details },
        other => invalid("invalid_range", other.to_string()),
    })
}

fn invalid(code: &'static str, message: impl Into<String>) -> HistoryError {
    HistoryError::InvalidQuery { code, message: message.into(), details: None }
}

/// Stats from ClickHouse (module docs).
#[derive(Debug, Clone)]
pub struct ClickHouseStats {
    reader: ClickHouseReader,
    /// The dataflow's flood cap (`[dataflow.abuse.flood-cap]`), applied to what is read from
    /// `events_enriched` ([`flood_cap`]).
    flood_cap: Option<u32>,
}

/// One stored (or, for incomplete minutes, computed) row of a piece: its view, dimension
/// values, clicks and visitor sketch.
struct Piece {
    view: RollupView,
    dims: Vec<String>,
    clicks: u64,
    sketch: VisitorSketch,
}

#[derive(Default)]
struct Acc {
    clicks: u64,
    sketch: VisitorSketch,
}

impl Acc {
    fn add(&mut self, clicks: u64, sketch: &VisitorSketch) {
        self.clicks += clicks;
        self.sketch.merge(sketch);
    }
}

/// Appends the `(granularity, start)` pieces covering `[a, b)` exactly, coarsest first
/// (the in-memory `cover` with every granularity retained).
fn cover(a: i64, b: i64, out: &mut Vec<(Granularity, i64)>) -> Result<(), HistoryError> {
    let mut t = a;
    'outer: while t < b {
        for g in [Granularity::Day, Granularity::Hour, Granularity::Quarter] {
            let len = g.len_ms();
            if t.rem_euclid(len) == 0 && t + len <= b {
                out.push((g, t));
                t += len;
                continue 'outer;
            }
        }
        let m = Granularity::Minute.len_ms();
        if t.rem_euclid(m) != 0 || t + m > b {
            return Err(invalid("unaligned_range", format!("range boundary {t} ms is not a whole minute")));
        }
        out.push((Granularity::Minute, t));
        t += m;
    }
    Ok(())
}

impl ClickHouseStats {
    /// Stats over `reader`, with the default flood cap (30 human clicks per visitor, link and
    /// UTC minute, like `[dataflow.abuse.flood-cap]`'s defaults).
    pub fn new(reader: ClickHouseReader) -> ClickHouseStats {
        ClickHouseStats { reader, flood_cap: sluice_dataflows::config::FloodCapConfig::default().cap() }
    }

    /// The flood cap in force in the dataflow (`None` = off), so that clicks read back from
    /// `events_enriched` are flagged as the rollups flagged them.
    pub fn with_flood_cap(mut self, cap: Option<u32>) -> ClickHouseStats {
        self.flood_cap = cap;
        self
    }

    /// The events of `code` in `[from_ms, to_ms)` from `events_enriched`, with the flood cap
    /// applied ([`flood_cap`]). `from_ms` must be a whole minute for the cap to see whole
    /// minutes (every caller's range is).
    async fn capped_events(&self, code: &str, from_ms: i64, to_ms: i64) -> Result<Vec<sluice_schemas::EnrichedClick>, HistoryError> {
        let mut events = self.reader.events(code, from_ms, to_ms).await?;
        flood_cap::flag(&mut events, self.flood_cap);
        Ok(events)
    }

    /// Answers `q` like `Views::query` does; `as_of` is `as_of` (the caller knows how far
    /// the ClickHouse sink has applied the change stream).
    ///
    /// Errors: [`HistoryError::InvalidQuery`] with the in-memory path's codes,
    /// [`HistoryError::Storage`], [`HistoryError::Corrupt`].
    pub async fn query(&self, q: &StatsQuery, as_of: AsOf) -> Result<StatsResult, HistoryError> {
        let view = q.view().map_err(|_| {
            invalid(
                "unsupported_dimensions",
                "dimensions must be empty, one of country, device, browser, os, referrer_domain, referrer_medium, or country,device",
            )
        })?;
        let spans = checked_spans(q)?;
        let mut pieces_per_span = Vec::with_capacity(spans.len());
        let mut ranges: BTreeMap<Granularity, (i64, i64)> = BTreeMap::new();
        for &(s, e) in &spans {
            let mut pieces = Vec::new();
            cover(s.max(q.from_ms), e.min(q.to_ms), &mut pieces)?;
            for &(g, start) in &pieces {
                let r = ranges.entry(g).or_insert((start, start + g.len_ms()));
                r.0 = r.0.min(start);
                r.1 = r.1.max(start + g.len_ms());
            }
            pieces_per_span.push(pieces);
        }
        let want = rollup_view(view);
        let views = if want == RollupView::Total { vec![RollupView::Total] } else { vec![RollupView::Total, want] };
        // (granularity, bucket start) → rows (total view first, then the breakdown).
        let mut stored: HashMap<(Granularity, i64), Vec<Piece>> = HashMap::new();
        for (&g, &(from_ms, to_ms)) in &ranges {
            let rq = RollupQuery { code: q.code.clone(), granularity: granularity(g), from_ms, to_ms, views: views.clone(), include_bots: q.include_bots };
            for row in self.reader.rollup_rows(&rq).await? {
                stored.entry((g, row.bucket_start_ms)).or_default().push(piece(row)?);
            }
        }
        // Minutes whose stored rows are incomplete (backfilled clicks): from the raw clicks.
        let minutes: BTreeSet<i64> = pieces_per_span.iter().flatten().filter(|p| p.0 == Granularity::Minute).map(|p| p.1).collect();
        if !minutes.is_empty() {
            for (m, pieces) in self.incomplete_minutes(q, view, &minutes).await? {
                stored.insert((Granularity::Minute, m), pieces);
            }
        }

        let swap = view == View::CountryDevice && q.dimensions.first() == Some(&Dimension::Device);
        let mut result =
            StatsResult { rows: Vec::new(), truncated: false, totals: Totals::default(), by_dimension: Vec::new(), by_dimension_truncated: false, as_of };
        let mut totals = Acc::default();
        let mut by_dim: BTreeMap<Vec<String>, Acc> = BTreeMap::new();
        for (&(s, _), pieces) in spans.iter().zip(&pieces_per_span) {
            let mut bucket_total = Acc::default();
            let mut bucket_dims: BTreeMap<Vec<String>, Acc> = BTreeMap::new();
            for piece in pieces {
                for row in stored.get(piece).map(Vec::as_slice).unwrap_or(&[]) {
                    if row.view == RollupView::Total {
                        bucket_total.add(row.clicks, &row.sketch);
                    } else if row.view == want {
                        bucket_dims.entry(row.dims.clone()).or_default().add(row.clicks, &row.sketch);
                    }
                }
            }
            totals.add(bucket_total.clicks, &bucket_total.sketch);
            if want == RollupView::Total {
                if bucket_total.clicks > 0 {
                    let uniques = bucket_total.sketch.uniques_within(bucket_total.clicks);
                    result.rows.push(StatsRow { bucket_start_ms: s, dims: Vec::new(), clicks: bucket_total.clicks, uniques });
                }
            } else {
                for (dims, mut acc) in bucket_dims {
                    let total = by_dim.entry(dims.clone()).or_default();
                    total.add(acc.clicks, &acc.sketch);
                    let uniques = acc.sketch.uniques_within(acc.clicks);
                    result.rows.push(StatsRow { bucket_start_ms: s, dims: out_dims(dims, swap), clicks: acc.clicks, uniques });
                }
            }
        }
        result.totals = Totals { clicks: totals.clicks, uniques: totals.sketch.uniques_within(totals.clicks) };
        for (dims, mut acc) in by_dim {
            let uniques = acc.sketch.uniques_within(acc.clicks);
            result.by_dimension.push(DimensionTotal { dims: out_dims(dims, swap), clicks: acc.clicks, uniques });
        }
        order_and_limit(&mut result, q);
        Ok(result)
    }
}

#[async_trait::async_trait]
impl sluice_serving::stats::StatsHistory for ClickHouseStats {
    async fn query(&self, q: &StatsQuery, as_of: AsOf) -> Result<StatsResult, sluice_serving::ApiError> {
        ClickHouseStats::query(self, q, as_of).await.map_err(|e| api_error(e, q))
    }

    fn answers_any_dimensions(&self) -> bool {
        true
    }

    async fn adhoc(&self, q: &StatsQuery, as_of: AsOf) -> Result<(StatsResult, Option<u64>), sluice_serving::ApiError> {
        let (r, bots) = ClickHouseStats::adhoc(self, q, as_of).await.map_err(|e| api_error(e, q))?;
        Ok((r, Some(bots)))
    }
}

/// 400 for invalid queries, 503 `stats_history_unavailable` when ClickHouse fails, 500 for
/// corrupt rows.
fn api_error(e: HistoryError, q: &StatsQuery) -> sluice_serving::ApiError {
    match e {
        HistoryError::InvalidQuery { code, message, details } => {
            let e = sluice_serving::ApiError::bad_request(code, message);
            match details {
                Some(d) => e.with_details(d),
                None => e,
            }
        }
        HistoryError::Storage(err) => {
            tracing::warn!(error = %err.chain(), code = %q.code, "clickhouse could not answer a stats query");
            sluice_serving::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "stats_history_unavailable",
                "the query is answered from clickhouse, which is unavailable, retry later",
            )
        }
        other @ HistoryError::Corrupt(_) => sluice_serving::ApiError::internal(&other),
    }
}

/// A stored row with its sketch decoded. Errors: [`HistoryError::Corrupt`].
fn piece(row: RollupRow) -> Result<Piece, HistoryError> {
    let sketch = VisitorSketch::from_bytes(&row.sketch).map_err(|e| HistoryError::Corrupt(e.to_string()))?;
    Ok(Piece { view: row.view, dims: row.dims, clicks: row.clicks, sketch })
}

fn out_dims(mut dims: Vec<String>, swap: bool) -> Vec<Arc<str>> {
    if swap {
        dims.reverse();
    }
    dims.into_iter().map(Arc::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cover_matches_the_in_memory_pieces() {
        const M: i64 = 60_000;
        const Q: i64 = 15 * M;
        const H: i64 = 60 * M;
        const D: i64 = 24 * H;
        let mut out = Vec::new();
        cover(D - Q - 2 * M, 2 * D + H + Q + M, &mut out).expect("cover");
        use Granularity::*;
        assert_eq!(
            out,
            vec![(Minute, D - Q - 2 * M), (Minute, D - Q - M), (Quarter, D - Q), (Day, D), (Hour, 2 * D), (Quarter, 2 * D + H), (Minute, 2 * D + H + Q)]
        );
        assert!(cover(D + 1, 2 * D, &mut out).is_err());
    }
}
