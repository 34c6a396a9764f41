//! Row types of the ClickHouse tables (RowBinary through the `clickhouse` crate, schema
//! validated against the table on every insert and fetch) and their conversions.
//!
//! `DateTime64(3, 'UTC')` columns are `i64` milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};
use sluice_schemas::EnrichedClick;
use sluice_schemas::rollup::{RollupGranularity, RollupRow, RollupView};

use crate::{Error, Result};

/// `String` column holding arbitrary bytes (serialized as bytes, not as a sequence).
mod bytes_string {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Vec<u8>, E> {
                Ok(v.as_bytes().to_vec())
            }
            fn visit_string<E: Error>(self, v: String) -> Result<Vec<u8>, E> {
                Ok(v.into_bytes())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A row of `rollups_<granularity>`.
#[derive(Debug, Clone, PartialEq, Eq, ::clickhouse::Row, Serialize, Deserialize)]
#[clickhouse(crate = "::clickhouse")]
pub struct RollupRecord {
    /// Short code.
    pub code: String,
    /// Bucket start, ms since the Unix epoch, UTC.
    pub bucket: i64,
    /// View name ([`RollupView::as_str`]).
    pub view: String,
    /// Bot row.
    pub is_bot: bool,
    /// First dimension value, `""` for the total view.
    pub value1: String,
    /// Second dimension value (`country,device` only), else `""`.
    pub value2: String,
    /// Absolute clicks.
    pub clicks: u64,
    /// Unique-visitor estimate.
    pub uniques: u64,
    /// Canonical sketch bytes.
    #[serde(with = "bytes_string")]
    pub sketch: Vec<u8>,
    /// Version: the change batch's `epoch_upper`.
    pub version: u64,
}

impl RollupRecord {
    /// The record of `row` at `version`.
    pub fn from_row(row: &RollupRow, version: u64) -> RollupRecord {
        RollupRecord {
            code: row.code.clone(),
            bucket: row.bucket_start_ms,
            view: row.view.as_str().to_string(),
            is_bot: row.is_bot,
            value1: row.dims.first().cloned().unwrap_or_default(),
            value2: row.dims.get(1).cloned().unwrap_or_default(),
            clicks: row.clicks,
            uniques: row.uniques,
            sketch: row.sketch.clone(),
            version,
        }
    }

    /// Back to a [`RollupRow`] of `granularity`.
    ///
    /// Errors: [`Error::Corrupt`] for an unknown view name.
    pub fn into_row(self, granularity: RollupGranularity) -> Result<RollupRow> {
        let view = RollupView::parse(&self.view).ok_or_else(|| Error::Corrupt(format!("unknown rollup view \"{}\"", self.view)))?;
        let mut dims = Vec::with_capacity(view.arity());
        if view.arity() >= 1 {
            dims.push(self.value1);
        }
        if view.arity() == 2 {
            dims.push(self.value2);
        }
        Ok(RollupRow {
            code: self.code,
            granularity,
            bucket_start_ms: self.bucket,
            view,
            is_bot: self.is_bot,
            dims,
            clicks: self.clicks,
            uniques: self.uniques,
            sketch: self.sketch,
        })
    }
}

/// The table of a granularity: `rollups_minute`, `rollups_quarter`, `rollups_hour`, `rollups_day`.
pub fn rollup_table(g: RollupGranularity) -> &'static str {
    match g {
        RollupGranularity::Minute => "rollups_minute",
        RollupGranularity::Quarter => "rollups_quarter",
        RollupGranularity::Hour => "rollups_hour",
        RollupGranularity::Day => "rollups_day",
    }
}

/// A row of `events_enriched`.
#[derive(Debug, Clone, PartialEq, Eq, ::clickhouse::Row, Serialize, Deserialize)]
#[clickhouse(crate = "::clickhouse")]
pub struct EnrichedEventRecord {
    /// Dedup key.
    #[serde(with = "::clickhouse::serde::uuid")]
    pub event_id: uuid::Uuid,
    /// Short code.
    pub code: String,
    /// Event time, ms since the Unix epoch, UTC.
    pub ts: i64,
    /// Visitor id.
    pub visitor_id: u64,
    /// Country.
    pub country: String,
    /// Device class.
    pub device: String,
    /// Browser family.
    pub browser: String,
    /// OS family.
    pub os: String,
    /// Referrer domain.
    pub referrer_domain: String,
    /// Referrer medium.
    pub referrer_medium: String,
    /// Bot flag.
    pub is_bot: bool,
    /// Owning organisation.
    pub org: Option<String>,
}

impl From<&EnrichedClick> for EnrichedEventRecord {
    fn from(e: &EnrichedClick) -> Self {
        EnrichedEventRecord {
            event_id: e.event_id,
            code: e.code.clone(),
            ts: e.ts,
            visitor_id: e.visitor_id,
            country: e.country.clone(),
            device: e.device.clone(),
            browser: e.browser.clone(),
            os: e.os.clone(),
            referrer_domain: e.referrer_domain.clone(),
            referrer_medium: e.referrer_medium.clone(),
            is_bot: e.is_bot,
            org: e.org.clone(),
        }
    }
}

impl From<EnrichedEventRecord> for EnrichedClick {
    fn from(r: EnrichedEventRecord) -> Self {
        EnrichedClick {
            event_id: r.event_id,
            code: r.code,
            ts: r.ts,
            visitor_id: r.visitor_id,
            country: r.country,
            device: r.device,
            browser: r.browser,
            os: r.os,
            referrer_domain: r.referrer_domain,
            referrer_medium: r.referrer_medium,
            is_bot: r.is_bot,
            org: r.org,
        }
    }
}

/// A row of `anomalies`: one event of an anomaly; under `FINAL` the newest event (highest
/// `version`) of each `anomaly_id` (migration 0004).
#[derive(Debug, Clone, PartialEq, ::clickhouse::Row, Serialize, Deserialize)]
#[clickhouse(crate = "::clickhouse")]
pub struct AnomalyRecord {
    /// The anomaly's id (hyphenated UUID; `legacy:<code>:<kind>:<window start ms>` for rows
    /// copied from before migration 0004 without one).
    pub anomaly_id: String,
    /// Event number within the anomaly (0 = open).
    pub revision: u32,
    /// `open`, `updated` or `closed`.
    pub status: String,
    /// What the anomaly is about (`link:<code>`, `visitor:<hex>`, `network:<cidr>`).
    pub key: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Short code.
    pub code: String,
    /// Detector kind (`click_burst`, `visitor_flood`, `bot_share`, `referrer_spam`, ...).
    pub kind: String,
    /// Window start, ms since the Unix epoch, UTC.
    pub window_start: i64,
    /// Window end (exclusive), ms since the Unix epoch, UTC.
    pub window_end: i64,
    /// Detection instant, ms since the Unix epoch, UTC.
    pub detected_at: i64,
    /// Detector score (detector-specific scale).
    pub score: f64,
    /// Observed value of the detector's statistic.
    pub observed: f64,
    /// Expected (baseline) value.
    pub expected: f64,
    /// Free-form JSON details.
    pub details: String,
    /// Version (the detection's processing epoch; the newest detection of a window wins).
    pub version: u64,
}
