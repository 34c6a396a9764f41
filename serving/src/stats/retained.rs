//! What the in-memory views still hold, and who answers a range they no longer hold.
//!
//! The views evict rows as the watermark advances: minute rows after `[dataflow]
//! minute-retention` (48 h), 15-minute and coarser rows after `long-retention` (400 days).
//! A per-link query (stats, export, report job) over a range they no longer hold is
//! answered from the long-term store when one is configured ([`StatsHistory`], ClickHouse)
//! and refused with 400 `range_not_retained` otherwise — never answered as zero clicks
//! ([`route`]). The summary is computed from the views only ([`summary_check`]).

use std::sync::Arc;

use serde_json::{Value, json};
use sluice_dataflows::views::{Bucket, Views};

use super::params::rfc3339_utc;
use super::state::StatsHistory;
use crate::error::ApiError;

const QUARTER_MS: i64 = 15 * 60_000;

/// Rows a range needs that the views no longer hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    /// 15-minute and coarser rows before this instant (ms UTC) are evicted.
    Long(i64),
    /// `bucket=minute`: minute rows before this instant are evicted.
    Minutes(i64),
    /// The range's edges are not whole quarter hours and need minute rows from before this
    /// instant, which are evicted.
    Edges(i64),
}

/// What `[from_ms, to_ms)` in `bucket` needs and the views no longer hold, if anything.
/// `bucket=minute` reads minute rows; hour and day buckets read 15-minute and coarser rows,
/// plus minute rows at edges that are not whole quarter hours (bucket boundaries in any
/// supported zone are quarter hours). Without eviction yet, every range is held.
fn gap(views: &Views, from_ms: i64, to_ms: i64, bucket: Bucket) -> Option<Gap> {
    let r = views.retained_from();
    let (minute, long) = (r[0], r[1]);
    let evicted = |held_from: i64, t: i64| held_from != i64::MIN && t < held_from;
    if bucket == Bucket::Minute {
        return evicted(minute, from_ms).then_some(Gap::Minutes(minute));
    }
    if evicted(long, from_ms) {
        return Some(Gap::Long(long));
    }
    // The earliest minute row the range needs: at its start, else at its end.
    let first_minute = if from_ms.rem_euclid(QUARTER_MS) != 0 {
        Some(from_ms)
    } else if to_ms.rem_euclid(QUARTER_MS) != 0 {
        Some(to_ms.div_euclid(QUARTER_MS).saturating_mul(QUARTER_MS).max(from_ms))
    } else {
        None
    };
    first_minute.filter(|&t| evicted(minute, t)).map(|_| Gap::Edges(minute))
}

/// `details` of `range_not_retained`: the range's `from` and, per `bucket` value, the
/// earliest `from` (RFC 3339 UTC) the views answer (`null`: nothing evicted yet).
fn details(views: &Views, from_ms: i64) -> Value {
    let r = views.retained_from();
    let at = |t: i64| if t == i64::MIN { Value::Null } else { Value::String(rfc3339_utc(t)) };
    json!({ "from": rfc3339_utc(from_ms), "retained_from": { "minute": at(r[0]), "hour": at(r[1]), "day": at(r[1]) } })
}

/// Refuses a per-link range the views no longer hold, for a server without a long-term
/// store: 400 `range_not_retained` naming the first instant held and what to change, with
/// [`details`]. Only meaningful when no [`StatsHistory`] is configured (with one, such
/// ranges are answered from it: [`route`]).
pub(crate) fn retained_check(views: &Views, from_ms: i64, to_ms: i64, bucket: Bucket) -> Result<(), ApiError> {
    let Some(gap) = gap(views, from_ms, to_ms, bucket) else { return Ok(()) };
    let message = match gap {
        Gap::Long(t) | Gap::Minutes(t) => format!(
            "clicks before {} are no longer held in memory for bucket={} and no long-term store (ClickHouse) is configured; start the range at or after it",
            rfc3339_utc(t),
            bucket.as_str()
        ),
        Gap::Edges(t) => format!(
            "the range's edges are not whole quarter hours and minute rows before {t} are no longer held in memory, and no long-term store (ClickHouse) is configured; align from and to to 15 minutes (:00, :15, :30, :45) or start the range at or after {t}",
            t = rfc3339_utc(t)
        ),
    };
    Err(ApiError::bad_request("range_not_retained", message).with_details(details(views, from_ms)))
}

/// Refuses a summary range the views no longer hold (the summary is computed from the views
/// only, whether or not a long-term store is configured): 400 `range_not_retained` naming the
/// first instant held; with `history`, pointing at `GET /v1/links/{code}/stats`, which answers
/// older ranges of one link from it. `details` as for the per-link endpoints.
pub(crate) fn summary_check(views: &Views, from_ms: i64, to_ms: i64, history: bool) -> Result<(), ApiError> {
    let Some(gap) = gap(views, from_ms, to_ms, Bucket::Hour) else { return Ok(()) };
    let older = if history {
        "; older clicks of one link are answered by GET /v1/links/{code}/stats (from ClickHouse)"
    } else {
        "; older clicks are not kept (no long-term store (ClickHouse) is configured)"
    };
    let message = match gap {
        Gap::Long(t) | Gap::Minutes(t) => {
            format!(
                "the summary is computed from the in-memory views only, which hold clicks from {} on; start the range at or after it{older}",
                rfc3339_utc(t)
            )
        }
        Gap::Edges(t) => format!(
            "the summary is computed from the in-memory views only, which hold minute rows from {t} on and the range's edges are not whole quarter hours; align from and to to 15 minutes (:00, :15, :30, :45) or start the range at or after {t}{older}",
            t = rfc3339_utc(t)
        ),
    };
    Err(ApiError::bad_request("range_not_retained", message).with_details(details(views, from_ms)))
}

/// Who answers a per-link query.
pub(crate) enum Source<T> {
    /// The views' own answer.
    Views(T),
    /// The long-term store (the views no longer hold the range).
    History(Arc<dyn StatsHistory>),
}

/// Chooses who answers a per-link query from the views' own answer `views` and
/// [`retained_check`]'s verdict `retained` on the same range (the views' errors other than
/// `range_not_retained` keep precedence): a range the views no longer hold goes to `history`
/// when configured, else is refused (with `retained`'s error when it names the gap, else the
/// views'); never an answer missing evicted clicks.
pub(crate) fn route<T>(views: Result<T, ApiError>, retained: Result<(), ApiError>, history: Option<Arc<dyn StatsHistory>>) -> Result<Source<T>, ApiError> {
    match (views, retained, history) {
        (Err(e), _, Some(h)) if e.code == "range_not_retained" => Ok(Source::History(h)),
        (Err(e), Err(mine), None) if e.code == "range_not_retained" => Err(mine),
        (Err(e), _, _) => Err(e),
        (Ok(_), Err(_), Some(h)) => Ok(Source::History(h)),
        (Ok(_), Err(e), None) => Err(e),
        (Ok(r), Ok(()), _) => Ok(Source::Views(r)),
    }
}
