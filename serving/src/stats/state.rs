//! What the stats handlers read: the dataflow's materialized [`Views`] and how fresh they
//! are ([`Frontier`]), next to the link store that decides which codes exist.
//!
//! The binary builds one [`StatsState`] per process. A process that runs no dataflow (an
//! API-only process: the embedded click log belongs to another process) builds it with
//! [`StatsState::without_views`]; its stats endpoints then answer 503 `stats_unavailable`.

use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::LinkStore;
use sluice_dataflows::views::{AsOf, StatsQuery, StatsResult, Views};

use crate::error::ApiError;

/// Answers per-link stats queries the views cannot, because the range is older than their
/// retention (`range_not_retained`), from a long-term copy of the same rollup rows
/// (ClickHouse: the binary's `sinks::ClickHouseStats`). Answers must equal what the views
/// would answer had they kept the rows.
#[async_trait::async_trait]
pub trait StatsHistory: Send + Sync + 'static {
    /// Answers `q` (same semantics as `Views::query`); `as_of` is the views' frontier,
    /// carried into the result.
    ///
    /// Errors: 400 with the views' error codes for invalid queries; 503
    /// `stats_history_unavailable` when the store cannot be reached.
    async fn query(&self, q: &StatsQuery, as_of: AsOf) -> Result<StatsResult, ApiError>;

    /// Whether [`StatsHistory::adhoc`] answers dimension combinations the views do not
    /// maintain (default false: such combinations are refused with 400).
    fn answers_any_dimensions(&self) -> bool {
        false
    }

    /// Answers `q` for any combination of distinct dimensions (at most
    /// [`super::params::MAX_ADHOC_DIMENSIONS`]) from the raw enriched clicks, with the views'
    /// bucket, ordering and limit semantics, plus the range's bot clicks. Uniques are exact
    /// counts of distinct visitor ids (the views estimate them with HLL++ sketches).
    ///
    /// Errors: 400 `invalid_dimensions` when unsupported (the default), else as [`StatsHistory::query`].
    async fn adhoc(&self, q: &StatsQuery, as_of: AsOf) -> Result<(StatsResult, Option<u64>), ApiError> {
        let _ = as_of;
        Err(ApiError::bad_request("invalid_dimensions", format!("the combination of {} dimensions is not maintained without ClickHouse", q.dimensions.len())))
    }
}

/// How far the views are behind the click log. Implemented by the binary's log source.
pub trait Frontier: Send + Sync + 'static {
    /// The latest instant `T` (ms since the epoch, UTC) such that every click appended to
    /// the click log before `T` is reflected in views that have applied every processing
    /// epoch below `applied_epoch` ([`AsOf::epoch`]). `None` while the dataflow is still
    /// replaying the log (no such instant is known yet).
    fn covered_until(&self, applied_epoch: u64) -> Option<i64>;

    /// Events in the click log the dataflow has not read yet.
    fn backlog(&self) -> u64;

    /// Events in the click log not yet reflected in views that have applied every
    /// processing epoch below `applied_epoch`: the read backlog plus what was read but not
    /// yet applied (so an answer computed during a replay never reports 0 while its counts
    /// are still missing events). The default is [`Frontier::backlog`] (sources that cannot
    /// tell read from applied).
    fn backlog_at(&self, applied_epoch: u64) -> u64 {
        let _ = applied_epoch;
        self.backlog()
    }
}

/// The dataflow side of [`StatsState`]: views plus their frontier.
#[derive(Clone)]
pub struct ViewSource {
    /// The materialized rollups.
    pub views: Views,
    /// Freshness of `views`.
    pub frontier: Arc<dyn Frontier>,
}

impl std::fmt::Debug for ViewSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewSource").field("views", &self.views).finish_non_exhaustive()
    }
}

/// Settings of the stats endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsConfig {
    /// `Cache-Control: max-age` of successful stats answers (default 2 s; 0 sends `no-cache`).
    pub cache_max_age: Duration,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig { cache_max_age: Duration::from_secs(2) }
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn LinkStore>,
    pub(crate) source: Option<ViewSource>,
    pub(crate) config: StatsConfig,
    pub(crate) history: Option<Arc<dyn StatsHistory>>,
}

/// Cheaply clonable state of the stats routes (also usable by other readers of the views,
/// e.g. exports: [`StatsState::views`], [`StatsState::freshness`]).
#[derive(Clone)]
pub struct StatsState {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for StatsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsState")
            .field("backend", &self.inner.store.backend())
            .field("source", &self.inner.source)
            .field("config", &self.inner.config)
            .finish()
    }
}

/// Freshness of one answer (the `freshness` member of every stats response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshnessInfo {
    /// Every click logged before this instant (ms UTC) is counted; `None` while replaying.
    pub as_of_ms: Option<i64>,
    /// `now − as_of_ms` in ms (`None` while replaying).
    pub lag_ms: Option<i64>,
    /// Event-time watermark of the answer (ms UTC; `None` before any event): buckets ending
    /// at or before it are final unless a late event within the allowed lateness arrives.
    pub watermark_ms: Option<i64>,
    /// Click-log events not reflected in this answer (not yet read by the dataflow, or read
    /// but not yet applied to the views the answer was computed from).
    pub backlog_events: u64,
}

impl StatsState {
    /// State over `store` (which decides whether a code exists) and the dataflow's views.
    pub fn new(store: Arc<dyn LinkStore>, source: ViewSource, config: StatsConfig) -> Self {
        StatsState { inner: Arc::new(Inner { store, source: Some(source), config, history: None }) }
    }

    /// State of a process without a dataflow: the stats endpoints answer 503
    /// `stats_unavailable`.
    pub fn without_views(store: Arc<dyn LinkStore>, config: StatsConfig) -> Self {
        StatsState { inner: Arc::new(Inner { store, source: None, config, history: None }) }
    }

    /// This state with `history` answering ranges older than the views' retention.
    pub fn with_history(self, history: Arc<dyn StatsHistory>) -> Self {
        let Inner { store, source, config, .. } = &*self.inner;
        StatsState { inner: Arc::new(Inner { store: Arc::clone(store), source: source.clone(), config: config.clone(), history: Some(history) }) }
    }

    /// The link store.
    pub fn store(&self) -> &Arc<dyn LinkStore> {
        &self.inner.store
    }

    /// The views, if this process runs the dataflow.
    pub fn views(&self) -> Option<&Views> {
        self.inner.source.as_ref().map(|s| &s.views)
    }

    /// The settings.
    pub fn config(&self) -> &StatsConfig {
        &self.inner.config
    }

    /// Freshness of an answer computed at frontier `as_of`, measured at `now_ms` (UTC).
    pub fn freshness(&self, as_of: AsOf, now_ms: i64) -> FreshnessInfo {
        let (covered, backlog) = match &self.inner.source {
            Some(s) => (s.frontier.covered_until(as_of.epoch), s.frontier.backlog_at(as_of.epoch)),
            None => (None, 0),
        };
        FreshnessInfo {
            as_of_ms: covered,
            lag_ms: covered.map(|c| (now_ms - c).max(0)),
            watermark_ms: (as_of.watermark_ms != i64::MIN && as_of.watermark_ms != i64::MAX).then_some(as_of.watermark_ms),
            backlog_events: backlog,
        }
    }
}
