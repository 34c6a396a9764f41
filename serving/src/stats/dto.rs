//! Response bodies of the stats endpoints (also the OpenAPI schemas).
//!
//! Rows are JSON objects whose keys depend on the query: the bucket size names the bucket
//! key (`"minute"`, `"hour"` or `"day"`), each requested dimension adds its own key
//! (`"country"`, `"device"`, …), then `"clicks"` and `"uniques"`:
//! `{"hour": "2024-10-27T02:00:00+01:00", "country": "DE", "clicks": 3, "uniques": 2}`.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// How fresh an answer is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Freshness {
    /// Every click logged before this instant (RFC 3339 UTC) is counted in the answer;
    /// `null` while the dataflow is still replaying the click log after a start.
    pub as_of: Option<String>,
    /// Milliseconds between `as_of` and the moment of the answer; `null` while replaying.
    pub lag_ms: Option<i64>,
    /// Event-time watermark (RFC 3339 UTC): buckets that end at or before it are final,
    /// except for late events within the allowed lateness (48 h by default). `null` before
    /// any click.
    pub watermark: Option<String>,
    /// Click-log events the dataflow has not read yet.
    pub backlog_events: u64,
}

/// Range totals of one link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatsTotals {
    /// Clicks in `[from, to)` (bots only with `include_bots=true`).
    pub clicks: u64,
    /// Distinct visitors in `[from, to)`: the HyperLogLog++ union over the whole range,
    /// never a sum of rows (exact up to 48 visitors, ±0.81 % standard error above), capped
    /// at `clicks` (an estimate may exceed the exact count; every `uniques` of the API is
    /// capped at the `clicks` of the same object).
    pub uniques: u64,
    /// Bot and link-preview clicks in `[from, to)`, plus the clicks flagged by the flood cap
    /// (a visitor's clicks on the link past 30 in one UTC minute, `[dataflow.abuse.flood-cap]`),
    /// counted apart whatever `include_bots` says; `null` in the rare case the views moved on between the two reads it needs.
    pub bot_clicks: Option<u64>,
}

/// `GET /v1/links/{code}/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LinkStatsResponse {
    /// Short code.
    pub code: String,
    /// `minute`, `hour` or `day`.
    pub bucket: String,
    /// IANA zone of hour/day buckets and of the bucket labels.
    pub tz: String,
    /// Range start (inclusive), RFC 3339 UTC: the request's `from`, or the default used
    /// when it gave none (`to` minus 7 days rounded down to a UTC quarter hour; minus 60
    /// minutes for `bucket=minute`).
    pub from: String,
    /// Range end (exclusive), RFC 3339 UTC: the request's `to`, or the default used (the
    /// end of the current UTC minute).
    pub to: String,
    /// Requested breakdown, in request order.
    pub dimensions: Vec<String>,
    /// Whether bot clicks are included in `rows` and `totals`.
    pub include_bots: bool,
    /// One object per (bucket, dimension values) with at least one click (no zero-fill):
    /// the bucket key holds the bucket start as RFC 3339 with the zone's offset, e.g.
    /// `{"day": "2024-06-01T00:00:00+05:30", "clicks": 2, "uniques": 2}` (`uniques` never
    /// above the row's `clicks`).
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
    /// Whether `limit` cut rows off.
    pub truncated: bool,
    /// Totals over the whole range.
    pub totals: StatsTotals,
    /// With a breakdown: clicks and uniques per dimension value over the whole range,
    /// clicks descending (at most `limit`), e.g. `{"country": "DE", "clicks": 9, "uniques": 4}`
    /// (`uniques` never above `clicks`); `[]` when the range has no clicks. Absent without a
    /// breakdown.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub dimension_totals: Option<Vec<Map<String, Value>>>,
    /// With a breakdown: whether `limit` cut `dimension_totals` off (the values left out
    /// are still in `totals`). Absent without a breakdown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimension_totals_truncated: Option<bool>,
    /// How fresh the answer is.
    pub freshness: Freshness,
}

/// One link of the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SummaryLink {
    /// Short code.
    pub code: String,
    /// Clicks in the range.
    pub clicks: u64,
    /// Distinct visitors in the range (sketch estimate, never above `clicks`).
    pub uniques: u64,
}

/// `GET /v1/stats/summary`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SummaryResponse {
    /// Range start (inclusive), RFC 3339 UTC: the request's `from`, or the default used
    /// when it gave none (`to` minus 7 days rounded down to a UTC quarter hour).
    pub from: String,
    /// Range end (exclusive), RFC 3339 UTC: the request's `to`, or the default used (the
    /// end of the current UTC minute).
    pub to: String,
    /// Whether bot clicks are included.
    pub include_bots: bool,
    /// Links with clicks in the range (deleted links left out).
    pub links: usize,
    /// Totals across links (uniques: union over all links), deleted links' clicks included.
    pub totals: StatsTotals,
    /// Links by clicks descending, then code; deleted links are not listed.
    pub top_links: Vec<SummaryLink>,
    /// `{"country", "clicks", "uniques"}` by clicks descending (`uniques` ≤ `clicks`).
    #[schema(value_type = Vec<Object>)]
    pub top_countries: Vec<Map<String, Value>>,
    /// `{"referrer_domain", "clicks", "uniques"}` by clicks descending (`uniques` ≤ `clicks`).
    #[schema(value_type = Vec<Object>)]
    pub top_referrers: Vec<Map<String, Value>>,
    /// `true` when this process's dataflow is one of several (`[dataflow] processes`): the
    /// answer counts only the links owned by this process's workers (every process answers
    /// for its own; their `uniques` cannot be added, a visitor may have clicked links of
    /// several processes); `false` when it counts every link.
    pub partial: bool,
    /// How fresh the answer is.
    pub freshness: Freshness,
}
