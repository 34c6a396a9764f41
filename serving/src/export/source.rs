//! Where an export's rows come from: the views, and — when a long-term store is configured
//! ([`StatsHistory`], ClickHouse) — that store for ranges the views no longer hold and for
//! dimension combinations they do not maintain, chosen per chunk exactly as
//! `GET /v1/links/{code}/stats` chooses per query ([`crate::stats::retained::route`]), so an
//! export holds the rows the stats endpoint answers for the same parameters.
//!
//! Reads run on a blocking thread (the views take a shard's read lock and may scan thousands
//! of rows); a read from the long-term store is awaited there on the runtime captured at
//! construction.

use std::sync::Arc;

use sluice_dataflows::model::View;
use sluice_dataflows::views::{StatsQuery, StatsResult, Views};

use crate::error::ApiError;
use crate::reports::view_error;
use crate::stats::StatsHistory;
use crate::stats::retained::{Source, retained_check, route};

/// The views plus the optional long-term store an export reads (module docs).
#[derive(Clone)]
pub struct RowSource {
    views: Views,
    history: Option<Arc<dyn StatsHistory>>,
    runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for RowSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowSource").field("views", &self.views).field("history", &self.history.is_some()).finish_non_exhaustive()
    }
}

impl RowSource {
    /// Rows from `views`, and from `history` for what they cannot answer. Captures the current
    /// tokio runtime (if any) to await `history` from blocking threads.
    pub fn new(views: Views, history: Option<Arc<dyn StatsHistory>>) -> RowSource {
        RowSource { views, history, runtime: tokio::runtime::Handle::try_current().ok() }
    }

    /// The views.
    pub fn views(&self) -> &Views {
        &self.views
    }

    /// Whether a long-term store answers what the views no longer hold.
    pub fn has_history(&self) -> bool {
        self.history.is_some()
    }

    /// Whether any combination of dimensions can be exported (a long-term store answers the
    /// ones the views do not maintain).
    pub fn answers_any_dimensions(&self) -> bool {
        self.history.as_ref().is_some_and(|h| h.answers_any_dimensions())
    }

    /// Answers `q` (one chunk of an export) like `GET /v1/links/{code}/stats` would: the
    /// views where they hold the range, else the long-term store; combinations the views do
    /// not maintain from the long-term store's raw clicks. Blocks: call it on a blocking
    /// thread (never from async code).
    ///
    /// Errors: the views' 400 codes, 400 `range_not_retained` without a long-term store,
    /// 400 `invalid_dimensions` for an unmaintained combination without one, 503
    /// `stats_not_local`, and the long-term store's errors (503 `stats_history_unavailable`).
    pub fn rows(&self, q: &StatsQuery) -> Result<StatsResult, ApiError> {
        let as_of = self.views.as_of();
        if View::for_dimensions(&q.dimensions).is_none() {
            let Some(h) = self.history.as_ref().filter(|h| h.answers_any_dimensions()) else {
                let names: Vec<&str> = q.dimensions.iter().map(|d| d.as_str()).collect();
                return Err(ApiError::bad_request(
                    "invalid_dimensions",
                    format!(
                        "the combination \"{}\" is not maintained; supported: {} (a server with ClickHouse configured answers any combination of up to {} distinct dimensions)",
                        names.join(","),
                        crate::stats::params::SUPPORTED_DIMENSIONS,
                        crate::stats::params::MAX_ADHOC_DIMENSIONS
                    ),
                ));
            };
            return self.wait(h.adhoc(q, as_of)).map(|(r, _)| r);
        }
        let views = self.views.query(q).map_err(view_error);
        let retained = retained_check(&self.views, q.from_ms, q.to_ms, q.bucket);
        match route(views, retained, self.history.clone())? {
            Source::Views(r) => Ok(r),
            Source::History(h) => self.wait(h.query(q, as_of)),
        }
    }

    /// Awaits `f` on the captured runtime from this (blocking) thread.
    fn wait<T>(&self, f: impl std::future::Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
        match &self.runtime {
            Some(rt) => rt.block_on(f),
            None => Err(ApiError::internal(&"an export read from the long-term store outside a tokio runtime")),
        }
    }
}
