//! The handlers of `GET /v1/links/{code}/stats` and `GET /v1/stats/summary`.
//!
//! Each answer is computed from one consistent frontier of the views (a query never sees
//! part of a processing epoch). Bot clicks are counted apart in the same read of the views
//! (the ClickHouse path reads them with a second query at the same `as_of`).

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value, json};
use sluice_dataflows::model::{Dimension, View};
use sluice_dataflows::views::{Bucket, DimensionTotal, StatsQuery, StatsResult, SummaryQuery, SummaryResult, Views};

use super::dto::{Freshness, LinkStatsResponse, StatsTotals, SummaryLink, SummaryResponse};
use super::params::{StatsParams, parse_stats_with, parse_summary, rfc3339_in, rfc3339_utc};
use super::retained::{Source, retained_check, route, summary_check};
use super::state::{FreshnessInfo, StatsState};
use crate::dto::ErrorBody;
use crate::error::ApiError;
use crate::extract::LinkCode;

/// Clicks and uniques of one link over a range, by bucket and optional dimensions.
#[utoipa::path(
    get, path = "/v1/links/{code}/stats", tag = "stats",
    params(
        ("code" = String, Path, description = "Short code (case-sensitive)"),
        ("from" = Option<String>, Query, description = "Range start, RFC 3339 with offset, whole minute (inclusive), between 1970-01-01T00:00:00Z and 9999-12-31T23:59:00Z (else 400 invalid_timestamp stating that range). Seconds and fractions must be zero at the precision given: 2024-06-01T00:00:00.000000001Z is 400 unaligned_range, never truncated. Default: for bucket=hour and day, `to` minus 7 days rounded down to a UTC quarter hour (:00, :15, :30 or :45), so the range is 7 days to 7 days 14 minutes long; for bucket=minute, `to` minus 60 minutes (not rounded). The answer's `from` and `to` are the range used; an hour or day bucket the range cuts counts only the clicks inside it. Encode '+' as %2B (an unencoded '+' before a trailing HH:MM offset is also read as '+')"),
        ("to" = Option<String>, Query, description = "Range end, RFC 3339, whole minute (exclusive); range and precision as for from. Default: the end of the current UTC minute (the next whole minute after the request: 12:34:56 gives 12:35:00, 12:35:00 gives 12:36:00)"),
        ("bucket" = Option<String>, Query, description = "minute (UTC minutes; at most 2 days), hour (local hours of tz; at most 93 days) or day (local days of tz; at most 1,100 days). Default day"),
        ("tz" = Option<String>, Query, description = "IANA time zone of hour/day buckets and bucket labels, e.g. Europe/Berlin, read ignoring case and answered under its canonical name (tz=utc: \"UTC\"). Default UTC when absent; an empty tz= is 400 unknown_timezone. Encode a '+' in a zone name as %2B (tz=Etc%2FGMT%2B5; POSIX sign: Etc/GMT+5 is UTC-05:00); an unencoded '+' (form-decoded to a space) is also read as '+', since no zone name holds a space"),
        ("dimensions" = Option<String>, Query, description = "Empty, one of country, device, browser, os, referrer_domain, referrer_medium, or country,device in either order (device,country: the same rows, dimensions named in the order asked for); with ClickHouse configured, any combination of up to 3 distinct names (answered from events_enriched, exact uniques)"),
        ("include_bots" = Option<bool>, Query, description = "Count bot and link-preview clicks too (default false)"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 100000, description = "Most rows, 1..=100000 (default 10000)"),
        ("order_by" = Option<String>, Query, description = "bucket (default), clicks or uniques (descending)"),
    ),
    responses(
        (status = 200, description = "Rows, totals and freshness; Cache-Control: private, max-age=2", body = LinkStatsResponse),
        (status = 400, description = "invalid_timestamp, unaligned_range, invalid_range, range_too_long, range_not_retained, invalid_bucket, unknown_timezone, unsupported_tz_offset, invalid_dimensions, invalid_limit, invalid_order_by, invalid_parameter, unknown_parameter, duplicate_parameter", body = ErrorBody),
        (status = 404, description = "not_found: no live link has this code", body = ErrorBody),
        (status = 503, description = "stats_unavailable (this process runs no dataflow) or stats_not_local (another process owns the link)", body = ErrorBody),
    )
)]
pub async fn link_stats(State(state): State<StatsState>, LinkCode(code): LinkCode, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    // With ClickHouse, combinations the views do not maintain are answered from its raw clicks.
    let adhoc = state.inner.history.clone().filter(|h| h.answers_any_dimensions());
    let p = parse_stats_with(query.as_deref(), Utc::now().timestamp_millis(), adhoc.is_some())?;
    let views = views_of(&state)?;
    if state.inner.store.get(&code).await?.is_none() {
        return Err(ApiError::link_not_found(&code));
    }
    let q = StatsQuery {
        code: code.clone(),
        from_ms: p.from_ms,
        to_ms: p.to_ms,
        bucket: p.bucket,
        tz: p.tz,
        dimensions: p.dimensions.clone(),
        include_bots: p.include_bots,
        limit: Some(p.limit),
        order_by: p.order_by,
    };
    let (as_of, history, q2) = (views.as_of(), state.inner.history.clone(), q.clone());
    // Checked after the views' own validation, so parameter errors keep precedence.
    let retained = retained_check(&views, p.from_ms, p.to_ms, p.bucket);
    let (result, bots) = match (View::for_dimensions(&q.dimensions), adhoc) {
        (None, Some(h)) => h.adhoc(&q, as_of).await?,
        // Older than the views hold: the long-term copy answers (ClickHouse), or the range
        // is refused (never an empty answer for clicks that may have existed).
        _ => match route(blocking(move || read_link(&views, &q)).await, retained, history)? {
            Source::Views(r) => r,
            Source::History(h) => read_history(h.as_ref(), &q2, as_of).await?,
        },
    };
    let fresh = state.freshness(result.as_of, Utc::now().timestamp_millis());
    let body = link_body(&code, &p, result, bots, fresh);
    Ok(cached(&state, Json(body).into_response()))
}

/// Top links, totals and top countries and referrers across all links of this process.
#[utoipa::path(
    get, path = "/v1/stats/summary", tag = "stats",
    params(
        ("from" = Option<String>, Query, description = "Range start, RFC 3339, whole minute (inclusive); range, precision and '+' as for GET /v1/links/{code}/stats. Default: `to` minus 7 days rounded down to a UTC quarter hour (:00, :15, :30 or :45); the answer's `from` and `to` are the range used"),
        ("to" = Option<String>, Query, description = "Range end, RFC 3339, whole minute (exclusive); as for from. Default: the end of the current UTC minute (the next whole minute after the request)"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Entries per top list, 1..=1000 (default 10)"),
        ("include_bots" = Option<bool>, Query, description = "Count bot clicks too (default false)"),
        ("org" = Option<String>, Query, description = "Only clicks counted under this organisation (totals and top_links). top_countries and top_referrers are not keyed by organisation or tags: under a filter they hold all clicks of the links that had matching clicks in the range, so they can add up to more than totals.clicks when a link's organisation or tags changed inside the range"),
        ("tag" = Option<String>, Query, description = "Only clicks counted while the link had this tag (totals and top_links); top_countries and top_referrers as described for org"),
    ),
    responses(
        (status = 200, description = "Summary and freshness", body = SummaryResponse),
        (status = 400, description = "invalid_timestamp, unaligned_range, invalid_range, range_too_long, range_not_retained, invalid_limit, invalid_parameter, unknown_parameter, duplicate_parameter. The summary is computed from the in-memory views only, also with ClickHouse configured: a range starting before the 15-minute rows they hold ([dataflow] long-retention, 400 days), or with edges that are not whole quarter hours older than their minute rows (minute-retention, 48 h), is range_not_retained (details.retained_from); GET /v1/links/{code}/stats answers older ranges of one link from ClickHouse", body = ErrorBody),
        (status = 503, description = "stats_unavailable", body = ErrorBody),
    )
)]
pub async fn summary(State(state): State<StatsState>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let p = parse_summary(query.as_deref(), Utc::now().timestamp_millis())?;
    let views = views_of(&state)?;
    // Summaries read quarter-hour and coarser rows (minutes only at unaligned edges), from
    // the views only (the long-term store has no cross-link rows keyed by org or tag).
    // Parameters are validated by `parse_summary`; the views' only other refusal is this one.
    summary_check(&views, p.from_ms, p.to_ms, state.inner.history.is_some())?;
    let mut q =
        SummaryQuery { from_ms: p.from_ms, to_ms: p.to_ms, include_bots: p.include_bots, limit: p.limit, org: p.org, tag: p.tag, exclude: Default::default() };
    // Deleted links (the views keep their clicks until retention) are left out of the link
    // list and the link count: each round asks the link store which of the counted codes
    // not asked about yet it still has, and excludes the others, until a round counts no
    // code the store lacks (one round unless links were deleted; a second one when a link
    // got its first click of the range between two reads).
    let mut asked: HashSet<Arc<str>> = HashSet::new();
    let (r, bots) = loop {
        let (views, query) = (views.clone(), q.clone());
        let (r, bots) = blocking(move || read_summary(&views, &query)).await?;
        let new: Vec<String> = r.link_codes.iter().filter(|c| !asked.contains(*c)).map(|c| c.to_string()).collect();
        if new.is_empty() {
            break (r, bots);
        }
        let live: HashSet<String> = state.store().live_codes(&new).await?.into_iter().collect();
        let gone: Vec<Arc<str>> = new.iter().filter(|c| !live.contains(*c)).map(|c| Arc::from(c.as_str())).collect();
        asked.extend(new.iter().map(|c| Arc::from(c.as_str())));
        if gone.is_empty() {
            break (r, bots);
        }
        q.exclude.extend(gone);
    };
    let fresh = state.freshness(r.as_of, Utc::now().timestamp_millis());
    let body = SummaryResponse {
        from: rfc3339_utc(p.from_ms),
        to: rfc3339_utc(p.to_ms),
        include_bots: p.include_bots,
        links: r.links,
        totals: StatsTotals { clicks: r.totals.clicks, uniques: r.totals.uniques, bot_clicks: bots },
        top_links: r.top_links.iter().map(|l| SummaryLink { code: l.code.to_string(), clicks: l.clicks, uniques: l.uniques }).collect(),
        top_countries: r.top_countries.iter().map(|d| dimension_object(&[Dimension::Country], d)).collect(),
        top_referrers: r.top_referrers.iter().map(|d| dimension_object(&[Dimension::ReferrerDomain], d)).collect(),
        partial: views.partial(),
        freshness: freshness_dto(fresh),
    };
    Ok(cached(&state, Json(body).into_response()))
}

fn views_of(state: &StatsState) -> Result<Views, ApiError> {
    state.views().cloned().ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stats_unavailable", crate::stats::NO_DATAFLOW))
}

/// Runs view reads off the async workers (they take a shard's read lock and may scan
/// thousands of rows).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(&e))?
}

pub(crate) fn view_error(e: sluice_dataflows::Error) -> ApiError {
    match e {
        sluice_dataflows::Error::InvalidQuery { code, message, details } => {
            let e = ApiError::bad_request(code, message);
            match details {
                Some(d) => e.with_details(d),
                None => e,
            }
        }
        sluice_dataflows::Error::NotLocal { code, worker } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stats_not_local",
            format!("link \"{code}\" is counted by dataflow worker {worker} in another process; query that process"),
        )
        .with_details(json!({ "code": code, "worker": worker })),
        other => ApiError::internal(&other),
    }
}

/// The query's result plus the range's bot clicks, read together (one frontier).
fn read_link(views: &Views, q: &StatsQuery) -> Result<(StatsResult, Option<u64>), ApiError> {
    let (r, bots) = views.query_with_bot_clicks(q).map_err(view_error)?;
    Ok((r, Some(bots)))
}

/// [`read_link`] from the long-term copy: the query and its bot-flipped day total.
async fn read_history(
    h: &dyn super::state::StatsHistory,
    q: &StatsQuery,
    as_of: sluice_dataflows::views::AsOf,
) -> Result<(StatsResult, Option<u64>), ApiError> {
    let mut other = StatsQuery::new(&q.code, q.from_ms, q.to_ms, Bucket::Day);
    other.include_bots = !q.include_bots;
    let main = h.query(q, as_of).await?;
    let flip = h.query(&other, as_of).await?;
    let (all, humans) = if q.include_bots { (main.totals.clicks, flip.totals.clicks) } else { (flip.totals.clicks, main.totals.clicks) };
    Ok((main, Some(all.saturating_sub(humans))))
}

fn read_summary(views: &Views, q: &SummaryQuery) -> Result<(SummaryResult, Option<u64>), ApiError> {
    let (r, bots) = views.summary_with_bot_clicks(q).map_err(view_error)?;
    Ok((r, Some(bots)))
}

fn dimension_object(dims: &[Dimension], d: &DimensionTotal) -> Map<String, Value> {
    let mut m = Map::new();
    for (dim, v) in dims.iter().zip(&d.dims) {
        m.insert(dim.as_str().to_string(), Value::String(v.to_string()));
    }
    m.insert("clicks".into(), d.clicks.into());
    m.insert("uniques".into(), d.uniques.into());
    m
}

fn freshness_dto(f: FreshnessInfo) -> Freshness {
    Freshness { as_of: f.as_of_ms.map(rfc3339_utc), lag_ms: f.lag_ms, watermark: f.watermark_ms.map(rfc3339_utc), backlog_events: f.backlog_events }
}

fn link_body(code: &str, p: &StatsParams, r: StatsResult, bots: Option<u64>, fresh: FreshnessInfo) -> LinkStatsResponse {
    let bucket_key = p.bucket.as_str();
    let rows = r
        .rows
        .iter()
        .map(|row| {
            let mut m = Map::new();
            m.insert(bucket_key.to_string(), Value::String(rfc3339_in(p.tz, row.bucket_start_ms)));
            for (dim, v) in p.dimensions.iter().zip(&row.dims) {
                m.insert(dim.as_str().to_string(), Value::String(v.to_string()));
            }
            m.insert("clicks".into(), row.clicks.into());
            m.insert("uniques".into(), row.uniques.into());
            m
        })
        .collect();
    LinkStatsResponse {
        code: code.to_string(),
        bucket: bucket_key.to_string(),
        tz: p.tz.name().to_string(),
        from: rfc3339_utc(p.from_ms),
        to: rfc3339_utc(p.to_ms),
        dimensions: p.dimensions.iter().map(|d| d.as_str().to_string()).collect(),
        include_bots: p.include_bots,
        rows,
        truncated: r.truncated,
        totals: StatsTotals { clicks: r.totals.clicks, uniques: r.totals.uniques, bot_clicks: bots },
        dimension_totals: (!p.dimensions.is_empty()).then(|| r.by_dimension.iter().map(|d| dimension_object(&p.dimensions, d)).collect()),
        dimension_totals_truncated: (!p.dimensions.is_empty()).then_some(r.by_dimension_truncated),
        freshness: freshness_dto(fresh),
    }
}

fn cached(state: &StatsState, mut resp: Response) -> Response {
    let secs = state.config().cache_max_age.as_secs();
    let value = if secs == 0 {
        HeaderValue::from_static("no-cache")
    } else {
        HeaderValue::from_str(&format!("private, max-age={secs}")).unwrap_or(HeaderValue::from_static("no-cache"))
    };
    resp.headers_mut().insert(header::CACHE_CONTROL, value);
    resp
}
