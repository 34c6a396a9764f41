//! Test harness of the export, job and live endpoints: the real dataflow (real enricher,
//! rollups and views) fed by an in-memory source, an in-memory link store, and the routes of
//! [`super::routes`] driven with `oneshot`.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use sluice_connectors::LinkStore;
use sluice_dataflows::clock::{Clock, ManualClock};
use sluice_dataflows::config::PipelineConfig;
use sluice_dataflows::enrich::{EnrichConfig, Enricher};
use sluice_dataflows::pipeline::{self, PipelineHandle, PipelineInputs, PipelineOutputs};
use sluice_dataflows::source::MemoryFeed;
use sluice_schemas::{ClickEvent, Link, RedirectType};
use tower::ServiceExt;
use uuid::Uuid;

use super::{ReportsState, routes};
use crate::jobs::{Jobs, JobsConfig};
use crate::stats::state::{Frontier, StatsConfig, StatsState, ViewSource};
use crate::testing::MemoryLinkStore;

/// Milliseconds of an RFC 3339 instant.
pub fn ms(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).expect("rfc3339").timestamp_millis()
}

/// A click event of `code` at `ts` by `visitor`.
pub fn click(id: u128, code: &str, ts: i64, visitor: u64, ua: &str, ip: Option<&str>, referrer: Option<&str>) -> ClickEvent {
    ClickEvent {
        event_id: Uuid::from_u128(id),
        code: code.to_owned(),
        ts,
        ip_trunc: ip.map(str::to_owned),
        visitor_id: visitor,
        user_agent: ua.to_owned(),
        referrer: referrer.map(str::to_owned),
        accept_language: None,
        edge_region: None,
    }
}

fn enricher() -> Enricher {
    static E: OnceLock<Enricher> = OnceLock::new();
    E.get_or_init(|| Enricher::new(&EnrichConfig::default()).expect("bundled enrichment data")).clone()
}

struct NoFrontier;

impl Frontier for NoFrontier {
    fn covered_until(&self, _applied_epoch: u64) -> Option<i64> {
        None
    }
    fn backlog(&self) -> u64 {
        0
    }
}

/// A running pipeline, its link store, and the state of the report routes over them.
pub struct Harness {
    /// The dataflow.
    pub handle: PipelineHandle,
    /// Its source.
    pub feed: MemoryFeed,
    /// The link store.
    pub store: Arc<dyn LinkStore>,
    /// "Now" of the routes and the jobs.
    pub clock: Arc<dyn Clock>,
    /// State of the routes (see [`Harness::reports`]).
    pub state: Option<ReportsState>,
}

impl Harness {
    /// Starts the pipeline (gate clock `gate_clock`) and links `codes`; no job runner yet.
    pub async fn pipeline(codes: &[&str], gate_clock: Arc<dyn Clock>, clock: Arc<dyn Clock>) -> Harness {
        Harness::pipeline_with(codes, gate_clock, clock, PipelineConfig { workers: 1, ..Default::default() }).await
    }

    /// [`Harness::pipeline`] with the dataflow configured by `config` (e.g. short retention).
    pub async fn pipeline_with(codes: &[&str], gate_clock: Arc<dyn Clock>, clock: Arc<dyn Clock>, config: PipelineConfig) -> Harness {
        let feed = MemoryFeed::new([0]);
        let inputs = PipelineInputs { source: feed.factory(), enricher: enricher(), clock: gate_clock, link_meta: None };
        let handle = pipeline::start(&config, inputs, PipelineOutputs::default()).expect("pipeline starts");
        let store: Arc<dyn LinkStore> = Arc::new(MemoryLinkStore::new());
        for code in codes {
            insert_link(store.as_ref(), code).await;
        }
        Harness { handle, feed, store, clock, state: None }
    }

    /// A route state with a job runner over `dir` (inside a tokio runtime).
    pub fn reports(&self, dir: &Path, config: JobsConfig) -> ReportsState {
        let views = self.handle.views().clone();
        let source = ViewSource { views: views.clone(), frontier: Arc::new(NoFrontier) };
        let stats = StatsState::new(Arc::clone(&self.store), source, StatsConfig::default());
        let config = JobsConfig { clock: Arc::clone(&self.clock), ..config };
        let jobs = Jobs::start(dir, views, Arc::clone(&self.store), config).expect("jobs start");
        ReportsState::new(stats, Some(jobs)).with_clock(Arc::clone(&self.clock))
    }

    /// Pipeline, links and route state (job runner in `dir`), with a manual clock at
    /// `now_ms` as gate clock and "now".
    pub async fn at(codes: &[&str], now_ms: i64, dir: &Path) -> Harness {
        let clock = Arc::new(ManualClock::new(now_ms));
        let mut h = Harness::pipeline(codes, clock.clone(), clock).await;
        h.state = Some(h.reports(dir, JobsConfig::default()));
        h
    }

    /// The route state.
    ///
    /// # Panics
    /// If none was built.
    pub fn state(&self) -> &ReportsState {
        self.state.as_ref().expect("route state built")
    }

    /// Pushes events and waits until the views reflect them.
    pub fn ingest(&self, events: Vec<ClickEvent>) {
        for e in events {
            self.feed.push(0, e, false);
        }
        self.handle.sync(Duration::from_secs(60)).expect("pipeline catches up");
    }

    /// Sends a request to the routes; returns status, headers and the whole body.
    pub async fn send(&self, method: &str, uri: &str, body: Option<(&str, &str)>) -> (StatusCode, HeaderMap, Bytes) {
        send(self.state(), method, uri, body).await
    }
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `timeout`.
///
/// # Panics
/// On timeout.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a request (with `(content-type, body)`, or a header list via [`send_with`]).
pub async fn send(state: &ReportsState, method: &str, uri: &str, body: Option<(&str, &str)>) -> (StatusCode, HeaderMap, Bytes) {
    send_with(state, method, uri, &[], body).await
}

/// [`send`] with extra headers.
pub async fn send_with(state: &ReportsState, method: &str, uri: &str, headers: &[(&str, &str)], body: Option<(&str, &str)>) -> (StatusCode, HeaderMap, Bytes) {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = match body {
        Some((ct, text)) => b.header("content-type", ct).body(Body::from(text.to_owned())),
        None => b.body(Body::empty()),
    }
    .expect("request");
    let resp = crate::with_fallbacks(routes(state.clone())).oneshot(req).await.expect("infallible");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, bytes)
}

/// The error code of a JSON error body.
pub fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).expect("json error body");
    v["error"]["code"].as_str().expect("error.code").to_owned()
}

/// Inserts a plain link with `code`.
pub async fn insert_link(store: &dyn LinkStore, code: &str) {
    let now: DateTime<Utc> = Utc::now();
    let link = Link {
        code: code.to_owned(),
        long_url: format!("https://example.com/{code}"),
        domain: None,
        expires_at: None,
        enabled: true,
        tags: Vec::new(),
        redirect_type: RedirectType::Found,
        org: None,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    store.insert(&link).await.expect("link inserted");
}
