//! The analytics API: `GET /v1/links/{code}/stats` and `GET /v1/stats/summary`, read from
//! the dataflow's materialized views ([`sluice_dataflows::views`]).
//!
//! Semantics (documented for clients in the README and the OpenAPI document):
//! * **Range**: `[from, to)`, half-open, exact instants given as RFC 3339 with an offset,
//!   whole minutes; default `to` = the end of the current UTC minute and `from` = `to`
//!   minus 7 days rounded down to a UTC quarter hour (`to` minus 60 minutes for
//!   `bucket=minute`); the answer echoes the `from`/`to` used.
//!   `minute` buckets are UTC minutes; `hour` and `day` buckets are local hours and days of
//!   `tz` (IANA name, default UTC), exact across DST (23/25-hour days, two distinct 02:00
//!   rows on a fall-back night) and for offsets such as +05:30 and +05:45. A bucket cut by
//!   the range counts only the part inside it; its label is still the bucket's start.
//! * **Bucket labels** are RFC 3339 instants with the zone's offset at the bucket start
//!   (`Z` for UTC): `2024-10-27T02:00:00+02:00`, `2024-10-27T02:00:00+01:00`.
//! * **Zero-fill policy**: none. A row exists only for a bucket (and dimension values) with
//!   at least one counted click; clients fill gaps. Totals cover the whole range either way.
//! * **Clicks** are sums; **uniques** are HyperLogLog++ unions (exact up to 48 visitors,
//!   ±0.81 % standard error above), per row over the row's bucket and in `totals` /
//!   `dimension_totals` over the whole range — never a sum of rows.
//! * **Bots** (known crawlers and link-preview fetchers) are excluded unless
//!   `include_bots=true`; `totals.bot_clicks` always reports them apart.
//! * **Unknown and deleted links**: the link store decides. A code without a live link is
//!   404 `not_found`, also when the views still hold clicks of a deleted link. In
//!   `/v1/stats/summary` a deleted link is not listed (`top_links`, and the `links` count);
//!   its clicks stay in `totals`, `top_countries` and `top_referrers` (they happened) until
//!   retention evicts them.
//! * **Freshness**: every answer reports `as_of` (every click logged before it is counted),
//!   `lag_ms`, the event-time `watermark` and the log `backlog_events`; responses carry
//!   `Cache-Control: private, max-age=<[stats] cache-max-age>` (2 s by default).
//!
//! | file | what |
//! |---|---|
//! | `state.rs` | [`StatsState`], [`Frontier`], [`ViewSource`], [`StatsConfig`] |
//! | `params.rs` | query-string parsing and its error codes |
//! | `handlers.rs` | the two handlers |
//! | `retained.rs` | what the views still hold; who answers older ranges (`range_not_retained`) |
//! | `dto.rs` | response bodies |
//! | `openapi.rs` | [`StatsDoc`]: these paths plus `POST /v1/events` |

pub mod dto;
pub mod handlers;
pub mod openapi;
pub mod params;
pub(crate) mod retained;
pub mod state;
#[cfg(test)]
mod tests;

use axum::Router;
use axum::routing::get;

pub use openapi::StatsDoc;
pub use state::{FreshnessInfo, Frontier, StatsConfig, StatsHistory, StatsState, ViewSource};

/// The stats routes (`/v1/links/{code}/stats`, `/v1/stats/summary`) without fallbacks, for
/// merging next to [`crate::routes`].
pub fn routes(state: StatsState) -> Router {
    Router::new().route("/v1/links/{code}/stats", get(handlers::link_stats)).route("/v1/stats/summary", get(handlers::summary)).with_state(state)
}

/// The message of 503 `stats_unavailable`: the process has no dataflow views.
pub const NO_DATAFLOW: &str = "this process runs no click dataflow (role api, or [dataflow] enabled = false); the stats are served by the process with role all that holds the click log and runs the dataflow";
