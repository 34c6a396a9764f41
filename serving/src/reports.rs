//! State and routes of the export, report-job and live endpoints:
//! `GET /v1/stats/export` ([`crate::export`]), `POST /v1/reports/export`,
//! `GET /v1/jobs/{job_id}`, `GET /v1/jobs/{job_id}/download` ([`crate::jobs`]) and
//! `GET /v1/links/{code}/stats/live` ([`crate::live`]).
//!
//! They read the dataflow's materialized views and the link store through the stats
//! endpoints' [`StatsState`] (so a process without a dataflow answers 503
//! `stats_unavailable` here too) and parse their parameters with the same rules
//! ([`crate::stats::params`]). The binary calls [`ReportsState::start`] with that state and
//! the exports directory, and serves [`routes`] with the other API routes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use sluice_dataflows::clock::{Clock, SystemClock};
use sluice_dataflows::views::Views;
use sluice_schemas::Link;
use utoipa::OpenApi;

use crate::error::ApiError;
use crate::export::RowSource;
use crate::jobs::{Jobs, JobsConfig};
use crate::live::LiveConfig;
use crate::state::KeyLocks;
use crate::stats::state::StatsState;

#[cfg(test)]
pub(crate) mod test_harness;

/// Cheaply clonable state of the export, job and live routes.
#[derive(Clone)]
pub struct ReportsState {
    pub(crate) stats: StatsState,
    pub(crate) key_locks: Arc<KeyLocks>,
    pub(crate) jobs: Option<Jobs>,
    /// Why the job runner is off although the process has views: its job table could not be
    /// opened at start-up ([`ReportsState::start`]); the job routes answer 503
    /// `jobs_store_unavailable` then.
    pub(crate) jobs_failure: Option<Arc<str>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) live: LiveConfig,
    pub(crate) live_streams: Arc<AtomicUsize>,
}

impl std::fmt::Debug for ReportsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportsState").field("stats", &self.stats).field("jobs", &self.jobs).finish_non_exhaustive()
    }
}

impl ReportsState {
    /// State over the stats state (link store and views) and a started job runner (`None`
    /// in a process without a dataflow: the report routes answer 503 `stats_unavailable`),
    /// with the system clock and default live settings (1 s ticks, 15 s keep-alives).
    pub fn new(stats: StatsState, jobs: Option<Jobs>) -> ReportsState {
        ReportsState {
            stats,
            key_locks: Arc::new(KeyLocks::default()),
            jobs,
            jobs_failure: None,
            clock: Arc::new(SystemClock),
            live: LiveConfig::default(),
            live_streams: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The state of a serving process: when `stats` has views, starts the job runner over
    /// `exports_dir` (`<data dir>/exports`), holding each job until the views have caught up
    /// with the click log ([`caught_up`]); without views, no runner.
    ///
    /// Exports are a side feature: when the job table (`exports/jobs.redb`) cannot be opened
    /// — damaged, or held by another process — the state starts without a runner, the job
    /// routes (`POST /v1/reports/export`, `GET /v1/jobs/...`) answer 503
    /// `jobs_store_unavailable`, [`Self::jobs_failure`] says why (`/readyz` reports it) and
    /// the error is logged naming the file and what to do; everything else serves.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(stats: StatsState, exports_dir: &Path) -> ReportsState {
        let mut failure = None;
        let jobs = match stats.views() {
            Some(views) => {
                let config = JobsConfig {
                    ready: Some(caught_up(stats.clone())),
                    covered_until: Some(covered_until(stats.clone())),
                    history: stats.inner.history.clone(),
                    ..Default::default()
                };
                match Jobs::start(exports_dir, views.clone(), Arc::clone(stats.store()), config) {
                    Ok(jobs) => Some(jobs),
                    Err(e) => {
                        let path = exports_dir.join(crate::jobs::store::JOBS_FILE_NAME);
                        tracing::error!(
                            path = %path.display(),
                            code = e.code,
                            error = %e.message,
                            "the export job table could not be opened: serving without the export jobs API (503 jobs_store_unavailable); \
                             stop sluice, move the file aside (or free it) and restart to get exports back — redirects and stats are not affected"
                        );
                        failure = Some(Arc::from(format!("{}: {}", e.code, e.message)));
                        None
                    }
                }
            }
            None => None,
        };
        ReportsState { jobs_failure: failure, ..ReportsState::new(stats, jobs) }
    }

    /// Why the export job runner is off although this process has views (its job table could
    /// not be opened at start: `"<code>: <message>"`, the message naming the file and what
    /// to do); `None` when it runs or when the process has no views.
    pub fn jobs_failure(&self) -> Option<&str> {
        self.jobs_failure.as_deref()
    }

    /// Replaces the clock that defines "now" (default `to` of an export or report, the
    /// current minute of the live stream).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> ReportsState {
        self.clock = clock;
        self
    }

    /// Replaces the live-stream settings.
    pub fn with_live_config(mut self, live: LiveConfig) -> ReportsState {
        self.live = live;
        self
    }

    /// The job runner, if any.
    pub fn jobs(&self) -> Option<&Jobs> {
        self.jobs.as_ref()
    }

    /// Live streams currently open (a stream closes when its client disconnects).
    pub fn open_live_streams(&self) -> usize {
        self.live_streams.load(Ordering::Acquire)
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The views, or 503 `stats_unavailable` (this process runs no dataflow).
    pub(crate) fn views(&self) -> Result<Views, ApiError> {
        self.stats.views().cloned().ok_or_else(unavailable)
    }

    /// Where exports read their rows: the views plus the long-term store, if configured; or
    /// 503 `stats_unavailable` (this process runs no dataflow).
    pub(crate) fn source(&self) -> Result<RowSource, ApiError> {
        Ok(RowSource::new(self.views()?, self.stats.inner.history.clone()))
    }

    /// Whether a long-term store answers dimension combinations the views do not maintain.
    pub(crate) fn answers_any_dimensions(&self) -> bool {
        self.stats.inner.history.as_ref().is_some_and(|h| h.answers_any_dimensions())
    }

    /// The job runner, or 503 `jobs_store_unavailable` (its job table could not be opened)
    /// or `stats_unavailable` (no views in this process).
    pub(crate) fn runner(&self) -> Result<&Jobs, ApiError> {
        match (&self.jobs, &self.jobs_failure) {
            (Some(jobs), _) => Ok(jobs),
            (None, Some(_)) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "jobs_store_unavailable", JOBS_STORE_UNAVAILABLE)),
            (None, None) => Err(unavailable()),
        }
    }

    /// The link `code`, or 404 `not_found` (also for codes that cannot exist).
    pub(crate) async fn require_link(&self, code: &str) -> Result<Link, ApiError> {
        if !crate::alias::is_code_charset(code) {
            return Err(ApiError::link_not_found(code));
        }
        self.stats.store().get(code).await?.ok_or_else(|| ApiError::link_not_found(code))
    }
}

/// A readiness gate for [`JobsConfig::ready`]: true once the views reflect the click log up
/// to some instant (the stats endpoints' `freshness.as_of` is known), i.e. the replay after a
/// start is done, so a re-run job exports what it would have before the restart.
pub fn caught_up(stats: StatsState) -> Arc<dyn Fn() -> bool + Send + Sync> {
    Arc::new(move || match stats.views() {
        Some(views) => stats.freshness(views.as_of(), SystemClock.now_ms()).as_of_ms.is_some(),
        None => false,
    })
}

/// [`JobsConfig::covered_until`] of the views of `stats`: their `freshness.as_of` (ms UTC).
pub fn covered_until(stats: StatsState) -> Arc<dyn Fn() -> Option<i64> + Send + Sync> {
    Arc::new(move || stats.views().and_then(|views| stats.freshness(views.as_of(), SystemClock.now_ms()).as_of_ms))
}

/// Message of 503 `jobs_store_unavailable` (the cause, with the file, is in the server log).
pub const JOBS_STORE_UNAVAILABLE: &str =
    "export jobs are unavailable: the export job table could not be opened when the server started (see the server log); other endpoints work";

fn unavailable() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stats_unavailable", crate::stats::NO_DATAFLOW)
}

/// Maps a views error exactly as the stats endpoints do: `InvalidQuery` → 400 with the
/// views' code (`range_not_retained`, `unsupported_tz_offset`, …); `NotLocal` → 503
/// `stats_not_local`; anything else → 500 `internal`.
pub(crate) use crate::stats::handlers::view_error;

/// The export, report-job and live routes (module docs), without fallbacks.
pub fn routes(state: ReportsState) -> Router {
    Router::new()
        .route("/v1/stats/export", get(crate::export::export_stats))
        .route("/v1/reports/export", post(crate::jobs::create_report))
        .route("/v1/jobs/{job_id}", get(crate::jobs::get_job))
        .route("/v1/jobs/{job_id}/download", get(crate::jobs::download_job))
        .route("/v1/links/{code}/stats/live", get(crate::live::live_stats))
        .with_state(state)
}

/// OpenAPI description of these routes (merged into `/v1/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    paths(
        crate::export::export_stats,
        crate::jobs::create_report,
        crate::jobs::get_job,
        crate::jobs::download_job,
        crate::live::live_stats,
    ),
    components(schemas(
        crate::jobs::ReportRequest,
        crate::jobs::JobStatusBody,
        crate::jobs::JobState,
        crate::jobs::JobErrorBody,
        crate::export::ExportFormat,
        crate::live::LiveTick,
    )),
    tags((name = "reports", description = "Report export jobs that run in the background and survive restarts"))
)]
pub struct ReportsDoc;
