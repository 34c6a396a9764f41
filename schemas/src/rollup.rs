//! Rollup rows as the sinks see them: the sink-facing copy of the dataflow's change stream.
//!
//! The dataflow (`sluice-dataflows`, `changes.rs`) emits `ChangeBatch`es of changed rollup
//! rows with **absolute** values; the binary converts each into a [`RollupBatch`] so the
//! connectors (Redis, ClickHouse), which must not depend on the dataflow crate, can apply
//! them idempotently: writing a row twice, or an older value followed by the newer one,
//! leaves the store holding the newer value.
//!
//! A row is keyed by `(code, granularity, bucket_start_ms, view, is_bot, dims)`
//! ([`RollupRow::key`]). `sketch` is the row's visitor sketch in the dataflow's canonical
//! byte format (`VisitorSketch::to_bytes`, documented in `dataflows/src/sketch.rs`, format
//! version 1: exact id sets up to 48 visitors, then HyperLogLog++ at precision 14 with the
//! one fixed visitor hash), so sketches read back from any store merge with in-memory ones.

use serde::{Deserialize, Serialize};

/// Bucket size of a rollup row; buckets are aligned to the Unix epoch in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RollupGranularity {
    /// 60 000 ms.
    Minute,
    /// 900 000 ms (15 minutes).
    Quarter,
    /// 3 600 000 ms.
    Hour,
    /// 86 400 000 ms (UTC day).
    Day,
}

impl RollupGranularity {
    /// All granularities, finest first.
    pub const ALL: [RollupGranularity; 4] = [RollupGranularity::Minute, RollupGranularity::Quarter, RollupGranularity::Hour, RollupGranularity::Day];

    /// Bucket length in milliseconds.
    pub const fn len_ms(self) -> i64 {
        match self {
            RollupGranularity::Minute => 60_000,
            RollupGranularity::Quarter => 900_000,
            RollupGranularity::Hour => 3_600_000,
            RollupGranularity::Day => 86_400_000,
        }
    }

    /// Stable lowercase name: `minute`, `quarter`, `hour`, `day` (used in table and key names).
    pub const fn as_str(self) -> &'static str {
        match self {
            RollupGranularity::Minute => "minute",
            RollupGranularity::Quarter => "quarter",
            RollupGranularity::Hour => "hour",
            RollupGranularity::Day => "day",
        }
    }

    /// Parses [`Self::as_str`] output; `None` for anything else.
    pub fn parse(s: &str) -> Option<RollupGranularity> {
        RollupGranularity::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// The breakdown a rollup row belongs to. Names match the stats API's `dimensions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RollupView {
    /// No breakdown: one row per bucket (and bot flag); `dims` is empty.
    Total,
    /// By ISO 3166-1 alpha-2 country (`ZZ` unknown).
    Country,
    /// By device class.
    Device,
    /// By browser family.
    Browser,
    /// By OS family.
    Os,
    /// By registrable referrer domain, `(direct)` or `(invalid)`.
    ReferrerDomain,
    /// By referrer medium.
    ReferrerMedium,
    /// By the pair (country, device); `dims` is `[country, device]`.
    CountryDevice,
}

impl RollupView {
    /// All views.
    pub const ALL: [RollupView; 8] = [
        RollupView::Total,
        RollupView::Country,
        RollupView::Device,
        RollupView::Browser,
        RollupView::Os,
        RollupView::ReferrerDomain,
        RollupView::ReferrerMedium,
        RollupView::CountryDevice,
    ];

    /// Stable name: `total`, `country`, `device`, `browser`, `os`, `referrer_domain`,
    /// `referrer_medium`, `country,device` (the `view` column in ClickHouse).
    pub const fn as_str(self) -> &'static str {
        match self {
            RollupView::Total => "total",
            RollupView::Country => "country",
            RollupView::Device => "device",
            RollupView::Browser => "browser",
            RollupView::Os => "os",
            RollupView::ReferrerDomain => "referrer_domain",
            RollupView::ReferrerMedium => "referrer_medium",
            RollupView::CountryDevice => "country,device",
        }
    }

    /// Parses [`Self::as_str`] output; `None` for anything else.
    pub fn parse(s: &str) -> Option<RollupView> {
        RollupView::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Number of dimension values a row of this view carries (0, 1 or 2).
    pub const fn arity(self) -> usize {
        match self {
            RollupView::Total => 0,
            RollupView::CountryDevice => 2,
            _ => 1,
        }
    }
}

/// One rollup row with absolute values (module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupRow {
    /// Short code (case-sensitive).
    pub code: String,
    /// Bucket size.
    pub granularity: RollupGranularity,
    /// Bucket start, ms since the Unix epoch, UTC (a multiple of the granularity's length).
    pub bucket_start_ms: i64,
    /// Breakdown.
    pub view: RollupView,
    /// Bot clicks are counted in rows of their own.
    pub is_bot: bool,
    /// Dimension values in the view's order ([`RollupView::arity`] of them).
    pub dims: Vec<String>,
    /// Absolute click count of the row.
    pub clicks: u64,
    /// Unique-visitor estimate of the row (exact up to 48 visitors), never above `clicks`.
    pub uniques: u64,
    /// The row's visitor sketch, canonical bytes (module docs).
    pub sketch: Vec<u8>,
}

/// The identity of a row: everything but its values.
pub type RollupKey<'a> = (&'a str, RollupGranularity, i64, RollupView, bool, &'a [String]);

impl RollupRow {
    /// The row's key `(code, granularity, bucket_start_ms, view, is_bot, dims)`.
    pub fn key(&self) -> RollupKey<'_> {
        (&self.code, self.granularity, self.bucket_start_ms, self.view, self.is_bot, &self.dims)
    }
}

/// A batch of changed rows, in stream order (module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RollupBatch {
    /// Every processing epoch below this is reflected; strictly increasing from batch to
    /// batch and across restarts (epochs are wall-clock milliseconds), so it serves as the
    /// row version in stores that keep the latest version (ClickHouse `ReplacingMergeTree`).
    pub epoch_upper: u64,
    /// Global event-time watermark, ms since the Unix epoch, UTC (`i64::MIN` before data).
    pub watermark_ms: i64,
    /// Changed rows with absolute values. A key may appear more than once (from two
    /// deposits of one worker); the later occurrence is the newer value.
    pub rows: Vec<RollupRow>,
}

impl RollupBatch {
    /// Keeps only the last occurrence of every key, preserving the order of the survivors.
    pub fn dedup_keep_last(&mut self) {
        let mut seen = std::collections::HashSet::with_capacity(self.rows.len());
        let mut keep = vec![false; self.rows.len()];
        for (i, r) in self.rows.iter().enumerate().rev() {
            keep[i] = seen.insert(r.key());
        }
        drop(seen);
        let mut i = 0;
        self.rows.retain(|_| {
            let k = keep[i];
            i += 1;
            k
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(code: &str, clicks: u64) -> RollupRow {
        RollupRow {
            code: code.into(),
            granularity: RollupGranularity::Minute,
            bucket_start_ms: 60_000,
            view: RollupView::Total,
            is_bot: false,
            dims: vec![],
            clicks,
            uniques: 1,
            sketch: vec![1, 0, 0],
        }
    }

    #[test]
    fn dedup_keeps_the_last_value_of_each_key_in_order() {
        let mut b = RollupBatch { epoch_upper: 1, watermark_ms: 0, rows: vec![row("a", 1), row("b", 5), row("a", 2)] };
        b.dedup_keep_last();
        assert_eq!(b.rows.iter().map(|r| (r.code.as_str(), r.clicks)).collect::<Vec<_>>(), vec![("b", 5), ("a", 2)]);
    }

    #[test]
    fn names_round_trip() {
        for v in RollupView::ALL {
            assert_eq!(RollupView::parse(v.as_str()), Some(v));
        }
        for g in RollupGranularity::ALL {
            assert_eq!(RollupGranularity::parse(g.as_str()), Some(g));
        }
        assert_eq!(RollupView::parse("city"), None);
        assert_eq!(RollupView::CountryDevice.arity(), 2);
    }
}
