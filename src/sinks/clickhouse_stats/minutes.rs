//! Minute pieces answered from `events_enriched` where `rollups_minute` is incomplete.
//!
//! The dataflow applies a click to a granularity only while that granularity still retains
//! the click's bucket (DESIGN: late events update buckets "up to the retention horizon"), so
//! clicks backfilled further back than the minute retention (48 h by default) get quarter,
//! hour and day rows but no minute rows, in memory and in ClickHouse alike. A query reading
//! minute rows there (`bucket=minute`, or the unaligned minute edges of hour/day buckets)
//! would miss those clicks.
//!
//! So for every quarter hour holding a minute piece of the query, the minute rows of the
//! whole quarter are compared with its quarter row (total view, human and bot clicks apart,
//! bot rows included whatever the query asks): where they differ, the quarter's minute pieces
//! are answered from the enriched clicks instead (`ClickHouseReader::events`, one row per
//! event id): clicks counted per minute and per value of the query's view, bots only with
//! `include_bots`, visitors inserted into a `VisitorSketch` so unions with the stored
//! sketches of the other pieces stay what the views would compute. Quarters whose minute rows
//! add up are read from `rollups_minute` as before (no extra read of `events_enriched`).
//! `events_enriched` is written by its own sink, so while it lags behind the rollups the
//! patched minutes can briefly count fewer clicks than the quarter row.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sluice_connectors::clickhouse::RollupQuery;
use sluice_dataflows::model::{Granularity, View};
use sluice_dataflows::sketch::VisitorSketch;
use sluice_dataflows::views::StatsQuery;
use sluice_schemas::rollup::RollupView;

use super::{ClickHouseStats, HistoryError, Piece, dimension_value};
use crate::sinks::convert::{granularity, view as rollup_view};

const QUARTER_MS: i64 = 900_000;

/// Runs of consecutive quarter starts as `[from, to)` ranges.
fn runs(quarters: &BTreeSet<i64>) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &q in quarters {
        match out.last_mut() {
            Some(last) if last.1 == q => last.1 = q + QUARTER_MS,
            _ => out.push((q, q + QUARTER_MS)),
        }
    }
    out
}

impl ClickHouseStats {
    /// Total-view (human, bot) clicks of `code` per quarter start, from the `g` rows with
    /// bucket starts in `[from_ms, to_ms)`.
    async fn quarter_sums(&self, code: &str, g: Granularity, from_ms: i64, to_ms: i64) -> Result<HashMap<i64, (u64, u64)>, HistoryError> {
        let rq = RollupQuery { code: code.to_string(), granularity: granularity(g), from_ms, to_ms, views: vec![RollupView::Total], include_bots: true };
        let mut sums: HashMap<i64, (u64, u64)> = HashMap::new();
        for row in self.reader.rollup_rows(&rq).await? {
            let s = sums.entry(Granularity::Quarter.bucket_start(row.bucket_start_ms)).or_default();
            if row.is_bot {
                s.1 += row.clicks;
            } else {
                s.0 += row.clicks;
            }
        }
        Ok(sums)
    }

    /// The minute pieces of `minutes` (bucket starts) whose quarter's minute rows do not add
    /// up to its quarter row, answered from `events_enriched` for `q` and `view` (module docs):
    /// minute start → its pieces (the total view first, then `view`'s values; empty for a
    /// minute without clicks). Minutes of complete quarters are absent.
    ///
    /// Errors: [`HistoryError::Storage`].
    pub(super) async fn incomplete_minutes(&self, q: &StatsQuery, view: View, minutes: &BTreeSet<i64>) -> Result<HashMap<i64, Vec<Piece>>, HistoryError> {
        let quarters: BTreeSet<i64> = minutes.iter().map(|&m| Granularity::Quarter.bucket_start(m)).collect();
        let mut incomplete = BTreeSet::new();
        for (from, to) in runs(&quarters) {
            let by_minutes = self.quarter_sums(&q.code, Granularity::Minute, from, to).await?;
            let by_quarter = self.quarter_sums(&q.code, Granularity::Quarter, from, to).await?;
            incomplete.extend(
                quarters.range(from..to).filter(|qs| by_minutes.get(qs).copied().unwrap_or_default() != by_quarter.get(qs).copied().unwrap_or_default()),
            );
        }
        let mut out: HashMap<i64, Vec<Piece>> = HashMap::new();
        if incomplete.is_empty() {
            return Ok(out);
        }
        let want = rollup_view(view);
        // minute → (total, values → breakdown)
        let mut acc: BTreeMap<i64, (Piece, BTreeMap<Vec<String>, Piece>)> = BTreeMap::new();
        for (from, to) in runs(&incomplete) {
            for e in self.capped_events(&q.code, from, to).await? {
                let m = Granularity::Minute.bucket_start(e.ts);
                if !minutes.contains(&m) || (e.is_bot && !q.include_bots) {
                    continue;
                }
                let (total, dims) = acc.entry(m).or_insert_with(|| (Piece::new(RollupView::Total, Vec::new()), BTreeMap::new()));
                total.add_visitor(e.visitor_id);
                if want != RollupView::Total {
                    let values: Vec<String> = view.dimensions().iter().map(|&d| dimension_value(&e, d).to_string()).collect();
                    dims.entry(values.clone()).or_insert_with(|| Piece::new(want, values)).add_visitor(e.visitor_id);
                }
            }
        }
        for &m in minutes.iter().filter(|&&m| incomplete.contains(&Granularity::Quarter.bucket_start(m))) {
            let pieces = match acc.remove(&m) {
                Some((total, dims)) => std::iter::once(total).chain(dims.into_values()).collect(),
                None => Vec::new(),
            };
            out.insert(m, pieces);
        }
        Ok(out)
    }
}

impl Piece {
    fn new(view: RollupView, dims: Vec<String>) -> Piece {
        Piece { view, dims, clicks: 0, sketch: VisitorSketch::default() }
    }

    fn add_visitor(&mut self, visitor: u64) {
        self.clicks += 1;
        self.sketch.insert(visitor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_join_consecutive_quarters() {
        let q = QUARTER_MS;
        let set: BTreeSet<i64> = [0, q, 2 * q, 5 * q, 7 * q, 8 * q].into_iter().collect();
        assert_eq!(runs(&set), vec![(0, 3 * q), (5 * q, 6 * q), (7 * q, 9 * q)]);
        assert_eq!(runs(&BTreeSet::new()), Vec::<(i64, i64)>::new());
    }
}
