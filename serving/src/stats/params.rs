//! Query-string parsing of the stats endpoints: every malformed or out-of-range parameter
//! becomes a 400 with a precise, stable error code, never a silently shifted range.
//!
//! Codes: `unknown_parameter`, `duplicate_parameter`, `invalid_timestamp` (not RFC 3339,
//! or outside 1970-01-01T00:00:00Z..=9999-12-31T23:59:00Z, the message stating that range),
//! `unaligned_range` (not a whole minute, judged at the precision given: nanoseconds past a
//! minute are refused, never dropped), `invalid_range` (`to`
//! not after `from`), `range_too_long` (more than [`max_range_ms`] for the bucket),
//! `invalid_bucket`, `unknown_timezone`, `invalid_dimensions`, `invalid_limit`,
//! `invalid_order_by`, `invalid_parameter` (`include_bots`, `org`, `tag`).
//!
//! Timestamps: RFC 3339 with any offset (`2024-06-02T00:00:00+05:30`, `…Z`). In a query
//! string an unencoded `+` decodes to a space (`…T00:00:00 05:30`); a space right before a
//! trailing `HH:MM` offset can only have been a `+`, so it is read as one (case C15.5) —
//! the range is exactly the one the caller wrote, never shifted. The same holds for `tz`:
//! a space in a zone name (`Etc/GMT 5`) is read as `+` (no IANA name holds a space).

use std::borrow::Cow;

use chrono::{SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::json;
use sluice_dataflows::model::{Dimension, View};
use sluice_dataflows::views::{Bucket, OrderBy};

use crate::error::{ApiError, echo};
use crate::query::{get, pairs};

const MINUTE_MS: i64 = 60_000;
const QUARTER_MS: i64 = 15 * MINUTE_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Earliest accepted instant (1970-01-01T00:00:00Z), ms.
const MIN_MS: i64 = 0;
/// Latest accepted instant (9999-12-31T23:59:00Z), ms.
const MAX_MS: i64 = 253_402_300_740_000;

/// Default number of rows of a stats answer.
pub const DEFAULT_LIMIT: usize = 10_000;
/// Largest accepted `limit` of a stats answer.
pub const MAX_LIMIT: usize = 100_000;
/// Default and largest `limit` of the summary's top lists.
pub const SUMMARY_DEFAULT_LIMIT: usize = 10;
/// Largest `limit` of the summary's top lists.
pub const SUMMARY_MAX_LIMIT: usize = 1000;

/// The supported breakdowns, as the error messages and the OpenAPI document name them.
pub const SUPPORTED_DIMENSIONS: &str = "none, one of country, device, browser, os, referrer_domain, referrer_medium, or country,device";

/// Most dimensions of one ad-hoc breakdown (answered from ClickHouse `events_enriched`).
pub const MAX_ADHOC_DIMENSIONS: usize = 3;

/// What a server with ClickHouse answers, as the error messages name it.
const ADHOC_DIMENSIONS: &str = "any combination of up to 3 distinct dimensions among country, device, browser, os, referrer_domain, referrer_medium";

/// Longest range one query may cover per bucket size: minute 2 days (2,880 rows), hour 93
/// days (2,232 rows), day 1,100 days (about 3 years).
pub fn max_range_ms(bucket: Bucket) -> i64 {
    match bucket {
        Bucket::Minute => 2 * DAY_MS,
        Bucket::Hour => 93 * DAY_MS,
        Bucket::Day => 1_100 * DAY_MS,
    }
}

/// Default range length when `from` is absent: 7 days (the start rounded down to 15
/// minutes), or 60 minutes for minute buckets (minute rows are kept 48 h).
pub fn default_span_ms(bucket: Bucket) -> i64 {
    match bucket {
        Bucket::Minute => HOUR_MS,
        Bucket::Hour | Bucket::Day => 7 * DAY_MS,
    }
}

/// The bucket granularity whose [`max_range_ms`] bounds a range, and where it comes from
/// (what the `range_too_long` message may suggest).
#[derive(Debug, Clone, Copy)]
enum RangeBucket {
    /// The request's `bucket` parameter (or its default): a coarser one may be suggested.
    Given(Bucket),
    /// A route without a `bucket` parameter, bounded like this granularity (the summary:
    /// days).
    Implied(Bucket),
}

/// Parsed `GET /v1/links/{code}/stats` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsParams {
    /// Range start (inclusive), ms UTC, whole minute.
    pub from_ms: i64,
    /// Range end (exclusive), ms UTC, whole minute.
    pub to_ms: i64,
    /// Bucket size (default `day`).
    pub bucket: Bucket,
    /// Zone of hour/day buckets and of the bucket labels (default UTC).
    pub tz: Tz,
    /// Breakdown, in the requested order.
    pub dimensions: Vec<Dimension>,
    /// Include bot clicks (default false).
    pub include_bots: bool,
    /// Most rows (default [`DEFAULT_LIMIT`]).
    pub limit: usize,
    /// Row order (default bucket).
    pub order_by: OrderBy,
}

/// Parsed `GET /v1/stats/summary` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryParams {
    /// Range start (inclusive), ms UTC, whole minute.
    pub from_ms: i64,
    /// Range end (exclusive), ms UTC, whole minute.
    pub to_ms: i64,
    /// Include bot clicks.
    pub include_bots: bool,
    /// Entries per top list.
    pub limit: usize,
    /// Only clicks counted under this organisation.
    pub org: Option<String>,
    /// Only clicks counted while the link had this tag.
    pub tag: Option<String>,
}

/// Parses an RFC 3339 instant of a query string into ms UTC (see module docs for `+`).
///
/// Errors: `invalid_timestamp` (unparseable, or outside 1970..=9999), `unaligned_range`
/// (not a whole minute).
pub fn parse_instant(name: &str, raw: &str) -> Result<i64, ApiError> {
    // "…T00:00:00 05:30": the query string's '+' became a space. Errors echo the value
    // with its '+' restored, as it was sent.
    let trimmed = raw.trim_matches(|c| c == '"');
    let s = crate::rfc3339::restore_offset_plus(trimmed);
    let sent = match &s {
        Cow::Owned(restored) => Cow::Owned(raw.replacen(trimmed, restored, 1)),
        Cow::Borrowed(_) => Cow::Borrowed(raw),
    };
    let raw: &str = &sent;
    let invalid = |reason: String| {
        ApiError::bad_request(
            "invalid_timestamp",
            format!(
                "\"{name}\" must be an RFC 3339 date-time with an offset (e.g. 2024-06-01T00:00:00Z or 2024-06-01T00:00:00%2B05:30), got \"{}\": {reason}",
                echo(raw)
            ),
        )
        .with_details(json!({ "parameter": name, "value": raw }))
    };
    let dt = crate::rfc3339::parse(&s).map_err(invalid)?;
    let t = dt.timestamp_millis();
    if !(MIN_MS..=MAX_MS).contains(&t) {
        return Err(out_of_range(name, raw, MIN_MS, MAX_MS));
    }
    // Whole minute with the full precision given (a fraction of a nanosecond past the
    // minute is not silently dropped). A leap second (`23:59:60`, which chrono keeps as a
    // second fraction of 1 s or more) is the instant after `23:59:59.999…`, the next
    // minute, as the link API reads it.
    if t.rem_euclid(MINUTE_MS) != 0 || dt.timestamp_subsec_nanos() % 1_000_000_000 != 0 {
        return Err(ApiError::bad_request("unaligned_range", format!("\"{name}\" must be a whole minute (stats are kept per minute), got \"{}\"", echo(raw)))
            .with_details(json!({ "parameter": name, "value": raw })));
    }
    Ok(t)
}

/// 400 `invalid_timestamp` for a well-formed instant outside `[min_ms, max_ms]`, stating the
/// accepted range (`details.min`, `details.max`).
pub(crate) fn out_of_range(name: &str, raw: &str, min_ms: i64, max_ms: i64) -> ApiError {
    let (min, max) = (rfc3339_utc(min_ms), rfc3339_utc(max_ms));
    ApiError::bad_request("invalid_timestamp", format!("\"{name}\" must lie between {min} and {max}, got \"{}\"", echo(raw)))
        .with_details(json!({ "parameter": name, "value": raw, "min": min, "max": max }))
}

fn parse_bool(name: &str, v: Option<&str>) -> Result<bool, ApiError> {
    v.map_or(Ok(false), |v| bool_param(name, v))
}

/// A boolean query parameter as every API route reads it: `true`/`1` or `false`/`0`.
/// Error: 400 `invalid_parameter` with `details.parameter`, `details.value` and
/// `details.allowed`.
pub(crate) fn bool_param(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(ApiError::bad_request("invalid_parameter", format!("\"{name}\" must be true or false (or 1 / 0), got \"{}\"", echo(other)))
            .with_details(json!({ "parameter": name, "value": other, "allowed": ["true", "false", "1", "0"] }))),
    }
}

/// Resolves `from`/`to` with defaults (`to` = the end of the current minute, `from` = `to`
/// minus `default_span`, rounded down to 15 minutes when the span is longer than the
/// minute retention could need: older edges are answered from 15-minute rows, which are
/// kept 400 days, while minute rows are kept 48 h) and checks order and length: at most
/// [`max_range_ms`] of `bucket`, the granularity whose limit applies (`Given`: the request's
/// `bucket` parameter; `Implied`: a route without one, e.g. the summary's day limit).
///
/// Errors: 400 `invalid_range` (details `{from, to}`), 400 `range_too_long` (details
/// `{bucket, max_range_ms, range_ms}`: the granularity's name, its limit and the range asked
/// for, in ms).
fn range(pairs: &[(String, String)], now_ms: i64, default_span: i64, bucket: RangeBucket) -> Result<(i64, i64), ApiError> {
    // `from` is checked first, as every route with a range checks it.
    let from = get(pairs, "from").map(|v| parse_instant("from", v)).transpose()?;
    let to = match get(pairs, "to") {
        Some(v) => parse_instant("to", v)?,
        None => now_ms.div_euclid(MINUTE_MS) * MINUTE_MS + MINUTE_MS,
    };
    let from = match from {
        Some(from) => from,
        None if default_span > HOUR_MS => (to - default_span).div_euclid(QUARTER_MS).max(0) * QUARTER_MS,
        None => (to - default_span).max(MIN_MS),
    };
    if to <= from {
        return Err(ApiError::bad_request("invalid_range", "\"to\" must be after \"from\" (the range is half-open: [from, to))")
            .with_details(json!({ "from": rfc3339_utc(from), "to": rfc3339_utc(to) })));
    }
    let (granularity, given) = match bucket {
        RangeBucket::Given(b) => (b, true),
        RangeBucket::Implied(b) => (b, false),
    };
    let max_span = max_range_ms(granularity);
    if to - from > max_span {
        let (name, days) = (granularity.as_str(), max_span / DAY_MS);
        let message = match (given, granularity) {
            (true, Bucket::Day) => format!("the range is longer than {days} days allowed for bucket={name}; use a shorter range"),
            (true, _) => format!("the range is longer than {days} days allowed for bucket={name}; use a shorter range or a coarser bucket"),
            (false, _) => format!("the range is longer than {days} days; use a shorter range"),
        };
        return Err(ApiError::bad_request("range_too_long", message).with_details(json!({ "bucket": name, "max_range_ms": max_span, "range_ms": to - from })));
    }
    Ok((from, to))
}

/// Parses `dimensions`. With `adhoc` (ClickHouse configured) any combination of up to
/// [`MAX_ADHOC_DIMENSIONS`] distinct names is accepted; without it only the maintained views.
fn parse_dimensions(v: Option<&str>, adhoc: bool) -> Result<Vec<Dimension>, ApiError> {
    let v = v.unwrap_or("").trim();
    if v.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |msg: String| {
        ApiError::bad_request("invalid_dimensions", msg).with_details(json!({
            "dimensions": v,
            "supported": ["", "country", "device", "browser", "os", "referrer_domain", "referrer_medium", "country,device"],
        }))
    };
    let supported = if adhoc { ADHOC_DIMENSIONS } else { SUPPORTED_DIMENSIONS };
    let mut dims = Vec::new();
    for name in v.split(',').map(str::trim) {
        let d = Dimension::parse(name).ok_or_else(|| bad(format!("unknown dimension \"{}\"; supported: {supported}", echo(name))))?;
        if dims.contains(&d) {
            return Err(bad(format!("dimension \"{}\" is given twice; supported: {supported}", echo(name))));
        }
        dims.push(d);
    }
    if adhoc && dims.len() > MAX_ADHOC_DIMENSIONS {
        return Err(bad(format!("at most {MAX_ADHOC_DIMENSIONS} dimensions per query; supported: {supported}")));
    }
    if !adhoc && View::for_dimensions(&dims).is_none() {
        return Err(bad(format!(
            "the combination \"{v}\" is not maintained; supported: {SUPPORTED_DIMENSIONS} (a server with ClickHouse configured answers {ADHOC_DIMENSIONS})"
        )));
    }
    Ok(dims)
}

/// Parses an IANA zone name (exact, then ignoring case). No zone name holds a space, so a
/// space is read as the `+` it was before form decoding turned it into one (`tz=Etc/GMT+5`
/// sent unencoded arrives as `Etc/GMT 5`); `%2B` is the encoded form; spaces around a name
/// are dropped. An absent `tz` is
/// UTC; an empty one (`tz=`) is refused rather than guessed. Errors: `unknown_timezone`.
pub fn parse_tz(v: Option<&str>) -> Result<Tz, ApiError> {
    let Some(name) = v else { return Ok(Tz::UTC) };
    if name.is_empty() {
        return Err(ApiError::bad_request(
            "unknown_timezone",
            "tz is empty: give an IANA time zone name (e.g. UTC, Europe/Berlin, Asia/Kolkata) or leave tz out for UTC",
        )
        .with_details(json!({ "tz": name })));
    }
    let find = |n: &str| n.parse::<Tz>().ok().or_else(|| chrono_tz::TZ_VARIANTS.iter().copied().find(|tz| tz.name().eq_ignore_ascii_case(n)));
    // Spaces around the name (`tz=%20UTC`) are dropped, as around `dimensions`.
    let found = find(name).or_else(|| if name.contains(' ') { find(&name.replace(' ', "+")).or_else(|| find(name.trim())) } else { None });
    found.ok_or_else(|| {
        let hint = if name.contains(' ') { " (a '+' in a zone name must be sent as %2B)" } else { "" };
        ApiError::bad_request("unknown_timezone", format!("\"{}\" is not an IANA time zone name (e.g. UTC, Europe/Berlin, Asia/Kolkata){hint}", echo(name)))
            .with_details(json!({ "tz": name }))
    })
}

/// Parses the query string of `GET /v1/links/{code}/stats` at `now_ms` (module docs); only
/// the maintained dimension combinations are accepted.
pub fn parse_stats(raw: Option<&str>, now_ms: i64) -> Result<StatsParams, ApiError> {
    parse_stats_with(raw, now_ms, false)
}

/// [`parse_stats`]; with `adhoc` (ClickHouse configured) `dimensions` may be any combination
/// of up to [`MAX_ADHOC_DIMENSIONS`] distinct names.
pub fn parse_stats_with(raw: Option<&str>, now_ms: i64, adhoc: bool) -> Result<StatsParams, ApiError> {
    let p = pairs(raw, &["from", "to", "bucket", "tz", "dimensions", "include_bots", "limit", "order_by"])?;
    let bucket = match get(&p, "bucket") {
        None => Bucket::Day,
        Some(b) => Bucket::parse(b).ok_or_else(|| {
            ApiError::bad_request("invalid_bucket", format!("bucket must be minute, hour or day, got \"{}\"", echo(b)))
                .with_details(json!({ "bucket": b, "supported": ["minute", "hour", "day"] }))
        })?,
    };
    let tz = parse_tz(get(&p, "tz"))?;
    let dimensions = parse_dimensions(get(&p, "dimensions"), adhoc)?;
    let include_bots = parse_bool("include_bots", get(&p, "include_bots"))?;
    let limit = crate::query::limit(get(&p, "limit"), DEFAULT_LIMIT, MAX_LIMIT)?;
    let order_by = match get(&p, "order_by") {
        None | Some("bucket") => OrderBy::Bucket,
        Some("clicks") => OrderBy::ClicksDesc,
        Some("uniques") => OrderBy::UniquesDesc,
        Some(o) => {
            return Err(ApiError::bad_request("invalid_order_by", format!("order_by must be bucket, clicks or uniques, got \"{}\"", echo(o)))
                .with_details(json!({ "order_by": o, "supported": ["bucket", "clicks", "uniques"] })));
        }
    };
    let (from_ms, to_ms) = range(&p, now_ms, default_span_ms(bucket), RangeBucket::Given(bucket))?;
    Ok(StatsParams { from_ms, to_ms, bucket, tz, dimensions, include_bots, limit, order_by })
}

/// Parses the query string of `GET /v1/stats/summary` at `now_ms`: `from`/`to` as for link
/// stats (default `to` minus 7 days rounded down to 15 minutes, at most 1,100 days), `limit` 1..=1000 (default 10),
/// `include_bots`, `org`, `tag`.
pub fn parse_summary(raw: Option<&str>, now_ms: i64) -> Result<SummaryParams, ApiError> {
    let p = pairs(raw, &["from", "to", "include_bots", "limit", "org", "tag"])?;
    let include_bots = parse_bool("include_bots", get(&p, "include_bots"))?;
    let limit = crate::query::limit(get(&p, "limit"), SUMMARY_DEFAULT_LIMIT, SUMMARY_MAX_LIMIT)?;
    let org = get(&p, "org").map(crate::links::org_filter).transpose()?;
    // Tags are stored NFC-normalized and trimmed; the filter is spelled the same way.
    let tag = get(&p, "tag").map(crate::links::tag_filter).transpose()?;
    let (from_ms, to_ms) = range(&p, now_ms, 7 * DAY_MS, RangeBucket::Implied(Bucket::Day))?;
    Ok(SummaryParams { from_ms, to_ms, include_bots, limit, org, tag })
}

/// RFC 3339 in UTC with a `Z` (API timestamps), whole seconds or milliseconds as needed.
pub fn rfc3339_utc(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) if ms.rem_euclid(1000) == 0 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

/// IANA names of UTC itself (tzdata's `etcetera` file and `backward` links: zones whose
/// offset is zero at every instant and that name no place). Local zones that happen to be at
/// +00:00 (`Europe/London` in winter, `Africa/Abidjan`) are not among them.
const UTC_NAMES: &[&str] = &[
    "UTC",
    "Etc/UTC",
    "UCT",
    "Etc/UCT",
    "Universal",
    "Etc/Universal",
    "Zulu",
    "Etc/Zulu",
    "GMT",
    "Etc/GMT",
    "GMT0",
    "Etc/GMT0",
    "GMT+0",
    "Etc/GMT+0",
    "GMT-0",
    "Etc/GMT-0",
    "Greenwich",
    "Etc/Greenwich",
];

/// RFC 3339 of `ms` in zone `tz` with the zone's offset at that instant (`Z` for UTC and its
/// aliases such as `Etc/UTC` and `GMT0`, [`UTC_NAMES`]), e.g. `2024-10-27T02:00:00+02:00`
/// and `2024-10-27T02:00:00+01:00` for the two 02:00 hours of a Berlin fall-back night.
pub fn rfc3339_in(tz: Tz, ms: i64) -> String {
    if tz == Tz::UTC || UTC_NAMES.contains(&tz.name()) {
        return rfc3339_utc(ms);
    }
    match tz.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Secs, false),
        None => rfc3339_utc(ms),
    }
}

#[cfg(test)]
mod tests;
