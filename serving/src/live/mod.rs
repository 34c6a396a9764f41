//! `GET /v1/links/{code}/stats/live`: server-sent events for dashboards that watch a link.
//!
//! Right after connecting and then at every whole tick of the wall clock (1 s by default)
//! the stream sends
//!
//! ```text
//! event: tick
//! data: {"ts":"2024-06-01T12:00:05Z","second_clicks":2,"minute_clicks":17,"minute_uniques":11}
//! ```
//!
//! * `ts`: the tick instant (RFC 3339 UTC, whole seconds); its UTC minute is "the current
//!   minute".
//! * `minute_clicks`, `minute_uniques`: clicks and distinct visitors (HLL++) of the link in the
//!   current minute, by event time, as the materialized views hold them at the tick (the
//!   minute rollup; bots excluded unless `include_bots=true`).
//! * `second_clicks`: how many of the current minute's clicks became visible since the
//!   previous tick — the per-second rate a dashboard plots. The views keep no per-second rows,
//!   so this is the increase of `minute_clicks` between ticks (at the first tick of a new
//!   minute, that minute's clicks so far; at the very first tick of a stream, 0). Summed over
//!   a minute's ticks it equals that minute's clicks visible by its last tick; clicks of a
//!   minute that arrive after it ended update that minute's rollup (see the stats endpoint)
//!   but no tick.
//!
//! Keep-alive comments (`: keep-alive`) go out when nothing else was sent for 15 s. The
//! stream never ends by itself; when the client disconnects the response is dropped, the
//! ticking stops and the open-stream count ([`crate::reports::ReportsState::open_live_streams`],
//! gauge `sluice_live_streams`) goes down. An unknown link is 404 in the JSON error shape
//! before any event.

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use sluice_dataflows::views::{Bucket, StatsQuery, Views};

use crate::dto::ErrorBody;
use crate::error::ApiError;
use crate::extract::LinkCode;
use crate::reports::ReportsState;
use crate::reports::view_error as views_error;
use crate::stats::params::rfc3339_utc;

/// Settings of the live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveConfig {
    /// Tick period; ticks fall on whole multiples of it since the Unix epoch (default 1 s).
    pub tick: Duration,
    /// Idle time after which a keep-alive comment is sent (default 15 s).
    pub keep_alive: Duration,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig { tick: Duration::from_secs(1), keep_alive: Duration::from_secs(15) }
    }
}

/// Parses the live endpoint's query string: only `include_bots` (`true|false|1|0`, default
/// false). Errors: 400 `unknown_parameter`, `duplicate_parameter`, `invalid_parameter` (as
/// the stats endpoints).
pub fn parse_live_query(raw: Option<&str>) -> Result<bool, ApiError> {
    let p = crate::query::pairs(raw, &["include_bots"])?;
    let include_bots = crate::query::get(&p, "include_bots").map(|v| crate::stats::params::bool_param("include_bots", v)).transpose()?;
    Ok(include_bots.unwrap_or(false))
}

fn floor_minute(t: i64) -> i64 {
    t - t.rem_euclid(60_000)
}

/// Data of one `tick` event (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LiveTick {
    /// Tick instant, RFC 3339 UTC, whole seconds.
    #[schema(value_type = String)]
    pub ts: TickTs,
    /// Clicks of the current minute that became visible since the previous tick.
    pub second_clicks: u64,
    /// Clicks of the current minute.
    pub minute_clicks: u64,
    /// Distinct visitors of the current minute (HLL++ estimate, never above `minute_clicks`).
    pub minute_uniques: u64,
}

/// A tick instant, ms since epoch UTC; serialized as RFC 3339 UTC seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickTs(pub i64);

impl Serialize for TickTs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339_utc(self.0))
    }
}

impl<'de> Deserialize<'de> for TickTs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        crate::rfc3339::parse(&s).map(|t| TickTs(t.timestamp_millis())).map_err(serde::de::Error::custom)
    }
}

/// Decrements the open-stream count when the stream is dropped (client gone).
struct StreamGuard(Arc<AtomicUsize>);

impl StreamGuard {
    fn new(count: &Arc<AtomicUsize>) -> StreamGuard {
        let n = count.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::gauge!("sluice_live_streams").increment(1.0);
        tracing::debug!(open = n, "live stream opened");
        StreamGuard(Arc::clone(count))
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let n = self.0.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!("sluice_live_streams").decrement(1.0);
        tracing::debug!(open = n, "live stream closed");
    }
}

struct Ticker {
    state: ReportsState,
    views: Views,
    code: String,
    include_bots: bool,
    /// (minute start, minute clicks) of the previous tick.
    prev: Option<(i64, u64)>,
    first: bool,
    failed: bool,
    /// Ticks sent; every [`LINK_CHECK_TICKS`]th one first checks that the link still exists.
    ticks: u64,
    _guard: StreamGuard,
}

/// Clicks and uniques of `code` in the minute starting at `minute`.
fn minute_counts(views: &Views, code: &str, minute: i64, include_bots: bool) -> Result<(u64, u64), ApiError> {
    let mut q = StatsQuery::new(code, minute, minute + 60_000, Bucket::Minute);
    q.include_bots = include_bots;
    let r = views.query(&q).map_err(views_error)?;
    Ok((r.totals.clicks, r.totals.uniques))
}

/// A live stream checks every this many ticks (10 s at the default 1 s tick) that its link
/// still exists: the stream of a deleted link ends with an `error` event (`not_found`). A
/// store that does not answer the check leaves the stream ticking.
pub const LINK_CHECK_TICKS: u64 = 10;

impl Ticker {
    /// Waits for the next tick (none before the first) and computes it.
    async fn next(&mut self) -> Option<Event> {
        if self.failed {
            return None;
        }
        self.ticks += 1;
        if self.ticks.is_multiple_of(LINK_CHECK_TICKS)
            && let Err(e) = self.state.require_link(&self.code).await
            && e.status == StatusCode::NOT_FOUND
        {
            tracing::debug!(code = %self.code, "live stream of a deleted link ends");
            self.failed = true;
            return Some(Event::default().event("error").data(e.body().to_string()));
        }
        let tick_ms = i64::try_from(self.state.live.tick.as_millis()).unwrap_or(1000).max(1);
        let now = self.state.now_ms();
        // The tick's instant is the boundary waited for (not the wake-up time, which may be a
        // few ms late), so consecutive ticks are exactly one period apart.
        let at = if std::mem::take(&mut self.first) {
            now
        } else {
            let wait = tick_ms - now.rem_euclid(tick_ms);
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            now + wait
        };
        let ts = at - at.rem_euclid(1000);
        let minute = floor_minute(at);
        match minute_counts(&self.views, &self.code, minute, self.include_bots) {
            Ok((clicks, uniques)) => {
                let second_clicks = match self.prev {
                    None => 0,
                    Some((m, c)) if m == minute => clicks.saturating_sub(c),
                    Some(_) => clicks,
                };
                self.prev = Some((minute, clicks));
                let tick = LiveTick { ts: TickTs(ts), second_clicks, minute_clicks: clicks, minute_uniques: uniques };
                Some(Event::default().event("tick").json_data(tick).unwrap_or_else(|_| Event::default().event("tick")))
            }
            Err(e) => {
                tracing::warn!(error = %e, code = %self.code, "live stream query failed");
                self.failed = true;
                Some(Event::default().event("error").data(e.body().to_string()))
            }
        }
    }
}

/// Server-sent events with the current minute's counts of a link, every second.
#[utoipa::path(
    get, path = "/v1/links/{code}/stats/live", tag = "stats",
    params(
        ("code" = String, Path, description = "Short code"),
        ("include_bots" = Option<bool>, Query, description = "Count bot and link-preview clicks too (default false)"),
    ),
    responses(
        (status = 200, description = "text/event-stream of `tick` events: data {ts, second_clicks, minute_clicks, minute_uniques}; keep-alive comments; an `error` event (data in the error shape) ends the stream if the views fail, or with not_found once the link is deleted (checked every 10 ticks)", content_type = "text/event-stream", body = LiveTick),
        (status = 400, description = "invalid_parameter, unknown_parameter, duplicate_parameter", body = ErrorBody),
        (status = 404, description = "not_found: no link with this code", body = ErrorBody),
        (status = 503, description = "stats_unavailable or stats_not_local", body = ErrorBody),
    )
)]
pub async fn live_stats(
    State(state): State<ReportsState>,
    LinkCode(code): LinkCode,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let include_bots = parse_live_query(query.as_deref())?;
    let views = state.views()?;
    state.require_link(&code).await?;
    // Fails here (before the stream) when another process owns the link's views.
    minute_counts(&views, &code, floor_minute(state.now_ms()), include_bots)?;
    let keep_alive = KeepAlive::new().interval(state.live.keep_alive).text("keep-alive");
    let guard = StreamGuard::new(&state.live_streams);
    let ticker = Ticker { state, views, code, include_bots, prev: None, first: true, failed: false, ticks: 0, _guard: guard };
    let stream = futures::stream::unfold(ticker, |mut t| async move { t.next().await.map(|e| (Ok(e), t)) });
    Ok(Sse::new(stream).keep_alive(keep_alive))
}
