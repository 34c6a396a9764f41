//! `/healthz` (process up), `/readyz` (link store reachable and, for the embedded SQLite
//! store, its file still at its path: [`sluice_connectors::LinkStore::check_file`]),
//! `/metrics` (Prometheus text).
//!
//! `/readyz` also reports dependencies ([`Dependency`]: the Redis link cache and
//! view sink, ClickHouse, the Kafka broker in Kafka mode, the click log tail, the export job runner, the anomaly store:
//! [`crate::anomalies::AnomalyStoreHealth`]) under `dependencies`. Optional ones never make
//! it fail, because redirects and the API keep working without them (their sinks catch up
//! later); a required one (the click log tail, whose failure stops the stats counting; the
//! click log writer, whose failing appends drop every new click: [`ClickLogWriterHealth`])
//! makes it answer 503 `not_ready`, whose `details` hold every failed one (the link store's
//! file too), and whose message names the first. Dependencies whose state only a probe can tell (Redis, Kafka) keep
//! the latest probe's outcome in a [`CachedProbe`]: `/readyz` refreshes it first
//! ([`Dependency::refresh`]), at most once per [`PROBE_MAX_AGE`] whatever the request rate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use sluice_connectors::LinkStore;

/// How long `/readyz` waits for the store.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a probe's outcome is reused before `/readyz` probes again.
pub const PROBE_MAX_AGE: Duration = Duration::from_secs(1);
/// Deadline of one probe (a Redis `PING`, a Kafka metadata request).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// What [`Dependency::refresh`] returns.
pub type RefreshFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A dependency `/readyz` reports under `dependencies`; it fails readiness only when
/// [`Dependency::required`].
pub trait Dependency: Send + Sync + 'static {
    /// Stable name (`redis_link_cache`, `redis_views`, `clickhouse`, `kafka`, ...).
    fn name(&self) -> &'static str;
    /// Whether it works now, and a JSON object describing its state (`{"status": "up"}`, ...).
    /// Must not block (read cached state only).
    fn status(&self) -> (bool, serde_json::Value);
    /// Brings the state [`Self::status`] reads up to date when it is stale (a probe bounded
    /// by [`PROBE_TIMEOUT`], reused for [`PROBE_MAX_AGE`], see [`CachedProbe`]); `/readyz`
    /// awaits it before reading the status. Default: nothing (the state is kept current by
    /// the component itself).
    fn refresh(&self) -> RefreshFuture<'_> {
        Box::pin(std::future::ready(()))
    }
    /// Whether `/readyz` fails (503 `not_ready`) while this dependency is not working
    /// (default false: reported only). The click log tail is required: without it the
    /// stats stop counting.
    fn required(&self) -> bool {
        false
    }
}

/// State of the health routes.
#[derive(Clone)]
pub struct HealthState {
    /// Probed by `/readyz` with a lookup of a code that cannot exist.
    pub store: Arc<dyn LinkStore>,
    /// Rendered by `/metrics`.
    pub prometheus: PrometheusHandle,
    /// Reported by `/readyz` under `dependencies`; a failed required one fails it.
    pub dependencies: Vec<Arc<dyn Dependency>>,
}

/// `/healthz`, `/readyz` and `/metrics`.
pub fn routes(state: HealthState) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics_text)).with_state(state)
}

async fn healthz() -> Response {
    healthz_response()
}

/// `/healthz`'s answer: 200 `{"status": "ok"}` (the process is alive; also while it starts,
/// [`crate::job::early_answers`]).
pub(crate) fn healthz_response() -> Response {
    json_response(StatusCode::OK, json!({ "status": "ok" }))
}

async fn readyz(State(s): State<HealthState>) -> Response {
    // "readyz" is reserved, so this read exercises the store without ever finding a link.
    match tokio::time::timeout(READY_TIMEOUT, s.store.get("readyz")).await {
        Ok(Ok(_)) => {
            // Every failure is listed (`details`), the link store's file first: one cause
            // (`rm -rf` of the data dir) can take several files at once, and each says what
            // to do about its own.
            let mut details = serde_json::Map::new();
            let mut first = None;
            if let Err(e) = s.store.check_file() {
                // Debug: `watch_store_file` logs the failure once (an error) and its end; a
                // warning per probe would repeat it at the probe rate.
                tracing::debug!(error = %e, "readiness probe: the link store's file is gone, not writable or out of space");
                details.insert("link_store".into(), json!({ "status": "failed", "error": e.to_string() }));
                first = Some("link_store");
            }
            futures::future::join_all(s.dependencies.iter().map(|d| d.refresh())).await;
            for d in s.dependencies.iter().filter(|d| d.required()) {
                let (ok, state) = d.status();
                if !ok {
                    tracing::warn!(dependency = d.name(), state = %state, "readiness probe: a required dependency failed");
                    details.insert(d.name().into(), state);
                    first = first.or(Some(d.name()));
                }
            }
            if let Some(first) = first {
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": { "code": "not_ready", "message": format!("{first} is not working"), "details": details } }),
                );
            }
            let mut body = json!({ "status": "ready", "store": s.store.backend() });
            if !s.dependencies.is_empty() {
                let deps: serde_json::Map<String, serde_json::Value> = s.dependencies.iter().map(|d| (d.name().to_string(), d.status().1)).collect();
                body["dependencies"] = serde_json::Value::Object(deps);
            }
            json_response(StatusCode::OK, body)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness probe: link store failed");
            not_ready("link store is not reachable")
        }
        Err(_) => not_ready("link store did not answer in time"),
    }
}

/// `e` and its causes, `": "`-separated (`kafka could not fetch topic metadata: Meta data
/// fetch error: ...`), for a dependency's `error`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        // Some errors repeat their cause in their own message (librdkafka's codes).
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// How often [`watch_store_file`] looks at the link store's file.
pub const STORE_FILE_CHECK: Duration = Duration::from_secs(2);

/// Spawns a task that runs [`LinkStore::check_file`] every `every` and logs an error when the
/// store's file (`links.db`) is deleted, replaced, stops being writable or its file system
/// has less than [`sluice_connectors::link_store::MIN_FREE_BYTES`] free while open (the
/// error names the file and what to do; `/readyz` answers 503 meanwhile), and an info line
/// when the file is back. A deleted file is written back at each check until that works
/// ([`LinkStore::write_back_file`]), and the store goes on in it. Ends
/// when the store is dropped.
pub fn watch_store_file(store: std::sync::Weak<dyn LinkStore>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The latest failure logged (a new one, e.g. deleted then replaced, is logged again).
        let mut logged: Option<String> = None;
        loop {
            tick.tick().await;
            let Some(store) = store.upgrade() else { return };
            let mut checked = store.check_file();
            if matches!(checked, Err(sluice_connectors::Error::LinkStoreFileMoved { .. } | sluice_connectors::Error::LinkStoreWrittenBack { .. })) {
                // Deleted: written back from the open file once its directory exists.
                match store.write_back_file().await {
                    Ok(Some(_)) => checked = store.check_file(),
                    Ok(None) => {}
                    Err(e) => checked = Err(e),
                }
            }
            match checked {
                Err(e) => {
                    // Low space is logged once, not at every change of the free bytes.
                    let key = match &e {
                        sluice_connectors::Error::LinkStoreLowOnSpace { path, .. } => format!("low on space: {path}"),
                        other => other.to_string(),
                    };
                    if logged.as_deref() != Some(key.as_str()) {
                        tracing::error!(error = %e, "the link store's file is gone, not writable or out of space; /readyz answers 503 while it is");
                        logged = Some(key);
                    }
                }
                Ok(()) if logged.is_some() => {
                    tracing::info!("the link store's file is back at its path, writable and with space to grow");
                    logged = None;
                }
                Ok(()) => {}
            }
        }
    })
}

fn not_ready(message: &str) -> Response {
    json_response(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": { "code": "not_ready", "message": message } }))
}

async fn metrics_text(State(s): State<HealthState>) -> Response {
    metrics_response(&s.prometheus)
}

/// `/metrics`' answer: the Prometheus text exposition format 0.0.4 of `prometheus`.
pub(crate) fn metrics_response(prometheus: &PrometheusHandle) -> Response {
    let mut resp = prometheus.render().into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    resp
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The outcome of a dependency's latest probe (`Err` carries the reason), probed again only
/// once it is older than `max_age`: concurrent callers share one probe, so `/readyz` under
/// load costs the service at most one probe per `max_age`.
pub struct CachedProbe {
    max_age: Duration,
    last: parking_lot::Mutex<Option<(Instant, Result<(), String>)>>,
    running: tokio::sync::Mutex<()>,
}

impl CachedProbe {
    /// No outcome yet; outcomes are reused for `max_age`.
    pub fn new(max_age: Duration) -> Self {
        CachedProbe { max_age, last: parking_lot::Mutex::new(None), running: tokio::sync::Mutex::new(()) }
    }

    /// Runs `probe` unless an outcome younger than `max_age` exists (also one another caller
    /// got while this one waited for it) and keeps its outcome. `probe` bounds its own time.
    pub async fn refresh<F, Fut>(&self, probe: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        if self.fresh() {
            return;
        }
        let _one = self.running.lock().await;
        if self.fresh() {
            return;
        }
        let outcome = probe().await;
        *self.last.lock() = Some((Instant::now(), outcome));
    }

    /// The latest outcome (`None` before the first probe).
    pub fn last(&self) -> Option<Result<(), String>> {
        self.last.lock().as_ref().map(|(_, r)| r.clone())
    }

    fn fresh(&self) -> bool {
        self.last.lock().as_ref().is_some_and(|(at, _)| at.elapsed() < self.max_age)
    }
}

/// `/readyz`'s view of the click log writer (name `click_log_writer`, required): failed
/// while its latest append failed (a full disk, an I/O error; every click meanwhile is
/// dropped and counted in `sluice_click_events_dropped_total{reason="log_error"}`), up
/// again after an append succeeds (the click log reopens its file by itself after an I/O
/// error, so this happens without a restart once the disk has room), also with no click: the
/// failed writer probes the log on its retry backoff, and a successful `POST /v1/events`
/// append clears the failure (`sluice_ingest::writer` docs). `error` is the append's
/// error with its causes (`click log could not append events: I/O error: No space left on
/// device (os error 28)`). Shape: `{"status": "up", "logged": N}` or
/// `{"status": "failed", "error": "...", "dropped": N}`. Also failed while the writer's
/// check of `clicks.redb` finds it replaced by another file (the log then writes to a side
/// file holding every click, `clicks.redb.recovered-<time>`), deleted and not written back
/// yet (e.g. its directory removed too: appends go on into the open file, which is written
/// back once the directory exists again), or
/// truncated and not written back (damaged in use; `sluice log reset` after the stop)
/// ([`sluice_ingest::IngestStats::file_failure`]; the error names the file and what to do).
/// A deleted or truncated file that the log writes back from its open file is failed only
/// until then (a few seconds at most).
pub struct ClickLogWriterHealth(pub Arc<sluice_ingest::IngestStats>);

impl Dependency for ClickLogWriterHealth {
    fn name(&self) -> &'static str {
        "click_log_writer"
    }

    fn status(&self) -> (bool, serde_json::Value) {
        let snap = self.0.snapshot();
        match self.0.file_failure().or_else(|| self.0.append_failure()) {
            None => (true, json!({ "status": "up", "logged": snap.logged })),
            Some(error) => (false, json!({ "status": "failed", "error": error, "dropped": snap.dropped_log_error })),
        }
    }

    fn required(&self) -> bool {
        true
    }
}

/// `/readyz`'s view of the export job runner (name `export_jobs`, optional: redirects and
/// stats do not need it). Failed when its job table (`exports/jobs.redb`) could not be opened
/// at start-up, damaged or held by another process, or when the file was deleted or replaced
/// while `serve` runs (e.g. `exports/` removed: [`sluice_serving::jobs::Jobs::store_failure`],
/// one `stat` per `/readyz`): the job routes answer 503 `jobs_store_unavailable` until the
/// file is fixed and the server restarted. Shape: `{"status": "up"}` or `{"status": "failed",
/// "error": "<code>: <message naming the file and what to do>"}`.
pub enum ExportJobsHealth {
    /// The runner started: up while its table's file is in place.
    Running(sluice_serving::jobs::Jobs),
    /// The table could not be opened at start-up (`"<code>: <message>"`).
    Off(Arc<str>),
}

impl ExportJobsHealth {
    /// The runner's health in a serving process; `None` when the process runs no job runner
    /// by design (no views: nothing to report).
    pub fn of(reports: &sluice_serving::ReportsState) -> Option<Self> {
        match (reports.jobs(), reports.jobs_failure()) {
            (Some(jobs), _) => Some(Self::Running(jobs.clone())),
            (None, Some(failure)) => Some(Self::Off(Arc::from(failure))),
            (None, None) => None,
        }
    }
}

impl Dependency for ExportJobsHealth {
    fn name(&self) -> &'static str {
        "export_jobs"
    }

    fn status(&self) -> (bool, serde_json::Value) {
        let failure = match self {
            Self::Running(jobs) => jobs.store_failure(),
            Self::Off(error) => Some(error.to_string()),
        };
        match failure {
            None => (true, json!({ "status": "up" })),
            Some(error) => (false, json!({ "status": "failed", "error": error })),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::sync::atomic::{AtomicBool, Ordering};

    use sluice_ingest::{EventLog, LogWriterConfig, click_channel, spawn_log_writer};
    use sluice_schemas::ClickEvent;

    use super::*;
    use crate::test_fs::{Mutable, set_immutable, wait_until};

    /// A log whose appends fail while `broken` is set (a full disk), then succeed.
    #[derive(Clone)]
    struct DiskLog {
        broken: Arc<AtomicBool>,
    }

    impl EventLog for DiskLog {
        fn append(&self, events: &[ClickEvent]) -> sluice_connectors::Result<Range<u64>> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(sluice_connectors::Error::Config("no space left on device".into()));
            }
            Ok(0..events.len() as u64)
        }

        fn probe(&self) -> Option<sluice_connectors::Result<()>> {
            Some(self.append(&[]).map(|_| ()))
        }
    }

    /// A failed writer comes back by itself once the log takes writes again, with no click
    /// after that: it probes the log on its backoff while nothing is queued.
    #[tokio::test]
    async fn readiness_recovers_without_clicks_once_the_log_takes_writes_again() {
        let broken = Arc::new(AtomicBool::new(true));
        let (tx, rx) = click_channel(16);
        let health = ClickLogWriterHealth(Arc::clone(tx.stats()));
        let config = LogWriterConfig {
            linger: Duration::ZERO,
            retry_initial: Duration::from_millis(1),
            retry_max: Duration::from_millis(20),
            max_attempts: 2,
            ..LogWriterConfig::default()
        };
        let writer = spawn_log_writer(rx, DiskLog { broken: Arc::clone(&broken) }, config);
        assert!(tx.try_send(click(1)));
        wait_until("the failing batch is dropped", || tx.stats().snapshot().dropped_log_error == 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            health.status(),
            (false, json!({"status": "failed", "error": "invalid configuration: no space left on device", "dropped": 1})),
            "failed probes keep it failed"
        );
        broken.store(false, Ordering::SeqCst);
        wait_until("readiness recovers without a click", || health.status().0).await;
        assert_eq!(health.status(), (true, json!({"status": "up", "logged": 0})));
        drop(tx);
        let summary = writer.await.expect("writer");
        assert_eq!((summary.batches, summary.logged, summary.dropped), (0, 0, 1));
    }

    /// The finding's repro on a real click log: `clicks.redb` made immutable (appends and
    /// reopens fail with EPERM, also for root) fails readiness with a message carrying no
    /// retry time; made writable again, readiness comes back with no click after it, and the
    /// next click is appended at the next offset.
    #[tokio::test]
    async fn readiness_recovers_without_clicks_once_an_immutable_click_log_is_writable_again() {
        use sluice_connectors::click_log::{CLICK_LOG_FILE_NAME, ClickLog};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CLICK_LOG_FILE_NAME);
        let log = ClickLog::open(dir.path()).expect("open");
        let _mutable = Mutable(&path);
        if !set_immutable(&path, true) || !set_immutable(&path, false) {
            eprintln!("skipped: cannot set the immutable attribute here (needs root and a file system with chattr +i)");
            return;
        }
        let (tx, rx) = click_channel(16);
        let health = ClickLogWriterHealth(Arc::clone(tx.stats()));
        let config = LogWriterConfig {
            linger: Duration::ZERO,
            retry_initial: Duration::from_millis(10),
            retry_max: Duration::from_millis(100),
            max_attempts: 3,
            ..LogWriterConfig::default()
        };
        let writer = spawn_log_writer(rx, log.clone(), config);
        assert!(tx.try_send(click(1)));
        wait_until("the first click is logged", || tx.stats().snapshot().logged == 1).await;
        assert_eq!(health.status(), (true, json!({"status": "up", "logged": 1})));
        assert!(set_immutable(&path, true), "chattr +i");
        for i in 2..7 {
            assert!(tx.try_send(click(i)));
        }
        wait_until("the failing clicks are dropped", || tx.stats().snapshot().dropped_log_error == 5).await;
        // Longer than the log's reopen backoff reaches in the meantime: the message must not
        // depend on when it is read.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let message = format!(
            "click log \"{}\" is closed after an I/O error (click log could not open: I/O error: Operation not permitted (os error 1)); \
             it is reopened by the next operation once the storage works again",
            path.display()
        );
        assert_eq!(health.status(), (false, json!({"status": "failed", "error": message, "dropped": 5})));
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(health.status(), (false, json!({"status": "failed", "error": message, "dropped": 5})), "the same later");
        assert!(set_immutable(&path, false), "chattr -i");
        // No click from here on until readiness is back.
        wait_until("readiness recovers without a click", || health.status().0).await;
        assert_eq!(health.status(), (true, json!({"status": "up", "logged": 1})));
        assert!(tx.try_send(click(7)));
        drop(tx);
        let summary = writer.await.expect("writer");
        assert_eq!((summary.logged, summary.dropped), (2, 5));
        assert_eq!(log.read(0, 10).expect("read"), vec![(0, click(1)), (1, click(7))]);
    }

    fn click(i: u128) -> ClickEvent {
        ClickEvent {
            event_id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | i),
            code: "c".into(),
            ts: 1_700_000_000_000,
            ip_trunc: None,
            visitor_id: 1,
            user_agent: "ua".into(),
            referrer: None,
            accept_language: None,
            edge_region: None,
        }
    }

    /// The writer checks the log's file: a deleted `clicks.redb` is restored (readiness stays
    /// up, every click is in the file after a restart); one replaced by another file fails
    /// readiness with the message naming it, while appends go on to the open file.
    #[tokio::test]
    async fn readiness_fails_while_the_click_log_file_is_replaced_and_a_deleted_one_is_restored() {
        use sluice_connectors::click_log::{CLICK_LOG_FILE_NAME, ClickLog};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CLICK_LOG_FILE_NAME);
        let log = ClickLog::open(dir.path()).expect("open");
        let (tx, rx) = click_channel(64);
        let health = ClickLogWriterHealth(Arc::clone(tx.stats()));
        let config = LogWriterConfig { linger: Duration::ZERO, file_check: Duration::from_millis(20), ..LogWriterConfig::default() };
        let writer = spawn_log_writer(rx, log.clone(), config);
        let wait_logged = |n: u64| {
            let stats = Arc::clone(tx.stats());
            async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while stats.snapshot().logged < n {
                    assert!(tokio::time::Instant::now() < deadline, "{n} clicks logged in time");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        for i in 0..3 {
            assert!(tx.try_send(click(i)));
        }
        wait_logged(3).await;
        // Deleted: restored from the open file by the next check.
        std::fs::remove_file(&path).expect("delete");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(tokio::time::Instant::now() < deadline, "the deleted log is restored in time");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(tx.try_send(click(3)));
        wait_logged(4).await;
        assert_eq!(health.status(), (true, json!({"status": "up", "logged": 4})));
        // Replaced: reported, the other file left alone; the open log is saved to a side file
        // and appends go on there.
        std::fs::remove_file(&path).expect("delete");
        std::fs::write(&path, b"not a click log").expect("another file");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while health.status().0 {
            assert!(tokio::time::Instant::now() < deadline, "the replaced file is noticed in time");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (up, body) = health.status();
        assert!(!up);
        assert_eq!((&body["status"], &body["dropped"]), (&json!("failed"), &json!(0)), "{body}");
        let error = body["error"].as_str().expect("error");
        let head = format!(
            "click log \"{}\" was replaced by another file while in use; sluice saved the log it had open, with every click, to \"{}.recovered-",
            path.display(),
            path.display()
        );
        assert!(error.starts_with(&head), "{error}");
        assert!(error.ends_with("and start it again"), "{error}");
        assert!(tx.try_send(click(4)));
        wait_logged(5).await;
        assert!(!health.status().0, "a successful append does not hide the replaced file");
        drop(tx);
        assert_eq!(writer.await.expect("writer").logged, 5);
        assert_eq!(std::fs::read(&path).expect("read"), b"not a click log", "the other file is left alone");
        assert_eq!(log.head(), 5);
    }

    /// Concurrent refreshes share one probe; its outcome is reused until it is `max_age` old,
    /// then probed again.
    #[tokio::test]
    async fn a_cached_probe_runs_once_per_max_age() {
        use std::sync::atomic::AtomicUsize;
        let probe = CachedProbe::new(Duration::from_millis(200));
        assert_eq!(probe.last(), None);
        let runs = AtomicUsize::new(0);
        let run = || async {
            let n = runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if n == 0 { Ok(()) } else { Err(format!("probe {n} failed")) }
        };
        futures::future::join_all((0..20).map(|_| probe.refresh(run))).await;
        assert_eq!((runs.load(Ordering::SeqCst), probe.last()), (1, Some(Ok(()))));
        probe.refresh(run).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "still fresh");
        tokio::time::sleep(Duration::from_millis(250)).await;
        probe.refresh(run).await;
        assert_eq!((runs.load(Ordering::SeqCst), probe.last()), (2, Some(Err("probe 1 failed".to_string()))));
    }

    /// Readiness follows the writer: failed (required, so `/readyz` is 503) while its appends
    /// fail and clicks are dropped, up again once an append succeeds.
    #[tokio::test]
    async fn readiness_fails_while_the_click_log_writer_cannot_append() {
        let broken = Arc::new(AtomicBool::new(true));
        let (tx, rx) = click_channel(16);
        let health = ClickLogWriterHealth(Arc::clone(tx.stats()));
        assert!(health.required());
        assert_eq!(health.status(), (true, json!({"status": "up", "logged": 0})), "no append tried yet");
        let config = LogWriterConfig {
            linger: Duration::ZERO,
            retry_initial: Duration::from_millis(1),
            retry_max: Duration::from_millis(1),
            max_attempts: 2,
            ..LogWriterConfig::default()
        };
        let writer = spawn_log_writer(rx, DiskLog { broken: Arc::clone(&broken) }, config);
        assert!(tx.try_send(click(1)));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tx.stats().snapshot().dropped_log_error < 1 {
            assert!(tokio::time::Instant::now() < deadline, "the failing batch is dropped");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(health.status(), (false, json!({"status": "failed", "error": "invalid configuration: no space left on device", "dropped": 1})));
        broken.store(false, Ordering::SeqCst);
        assert!(tx.try_send(click(2)));
        drop(tx);
        let summary = writer.await.expect("writer");
        assert_eq!((summary.logged, summary.dropped), (1, 1));
        assert_eq!(health.status(), (true, json!({"status": "up", "logged": 1})));
    }
}
