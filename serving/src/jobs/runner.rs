//! The job runner: creates jobs in the [`JobStore`], re-queues unfinished ones on start, and
//! runs them one at a time on a background task, writing each export to
//! `<exports dir>/<job_id>.part` and renaming it to `<job_id>.<csv|json|ndjson>` once complete
//! and fsync'd (a crash never leaves a partial file under the final name).
//!
//! Restart semantics: on [`Jobs::start`], jobs found `running` (the process died during
//! them) go back to `queued` and run again from the beginning; unfinished jobs run in
//! creation order (UUIDv7 ids sort by creation time); a job whose attempts reached [`JobsConfig::max_attempts`]
//! fails with `job_interrupted` instead, so an export that kills the process cannot loop.
//! Succeeded jobs stay downloadable across restarts until [`JobsConfig::retention`] after
//! they finished; then the record and its file are deleted (checked at start and after each
//! job).
//!
//! A graceful stop ([`Jobs::stop`], called by the serving process on shutdown) interrupts the
//! running export at its next chunk, puts that job back to `queued` without counting the
//! attempt, ends the runner task and closes the job table, so the directory can be opened
//! again (e.g. by a restarted server in the same process).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use sluice_connectors::{LinkStore, ListQuery};
use sluice_dataflows::clock::{Clock, SystemClock};
use sluice_dataflows::views::Views;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::JobState;
use super::store::{JobFailure, JobRecord, JobSpec, JobStore, KeyRecord, KeyedPut};
use crate::error::ApiError;
use crate::export::{ExportPlan, RowSource};
use crate::stats::StatsHistory;
use crate::stats::params::{parse_stats_with, rfc3339_utc};

/// Bytes buffered before a write to the export file.
const WRITE_BYTES: usize = 256 * 1024;
/// Page size when listing every link for an all-links report.
const LIST_PAGE: u32 = 1000;
/// Error code of an export interrupted by [`Jobs::stop`] (never stored: the job is re-queued).
const STOPPED: &str = "job_stopped";
/// Default of [`JobsConfig::file_check`].
pub const FILE_CHECK: Duration = Duration::from_secs(2);
/// Wait before a job whose record could not be written (the job table failed: a full disk)
/// is tried again; its last record write is retried at this pace too, until the stop.
const STORE_RETRY: Duration = Duration::from_secs(2);

/// Settings of the job runner.
#[derive(Clone)]
pub struct JobsConfig {
    /// How long a finished job (and its file) is kept after it finished (default 7 days).
    pub retention: Duration,
    /// Attempts after which a job interrupted by restarts fails with `job_interrupted`
    /// (default 3).
    pub max_attempts: u32,
    /// Polled (every 100 ms) before each job starts; the runner waits while it returns
    /// `false`, e.g. until the dataflow has replayed the click log after a restart so a
    /// re-run job sees the same data. `None`: always ready.
    pub ready: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// The instant (ms UTC) before which every logged click is in the views (the stats
    /// endpoints' `freshness.as_of`; `None` while unknown). A job waits, before it starts, up
    /// to [`JobsConfig::freshness_wait`] for it to reach the job's creation, so a job created
    /// right after a click (answered with its redirect) exports that click. `None`: no wait.
    pub covered_until: Option<Arc<dyn Fn() -> Option<i64> + Send + Sync>>,
    /// Longest wait for [`JobsConfig::covered_until`] (default 10 s; the views are normally
    /// under a second behind the log). A job that waited this long runs on what is there.
    pub freshness_wait: Duration,
    /// Clock of the job timestamps and of retention.
    pub clock: Arc<dyn Clock>,
    /// The long-term store (ClickHouse) that answers what the views no longer hold and
    /// dimension combinations they do not maintain, as for `GET /v1/stats/export` (`None`:
    /// the views only).
    pub history: Option<Arc<dyn StatsHistory>>,
    /// How often a background task checks that the job table's file is still the one opened
    /// and logs an error when it was deleted or replaced ([`Jobs::store_failure`]; default 2 s,
    /// zero = never). The job routes check it at every call regardless.
    pub file_check: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            retention: Duration::from_secs(7 * 86_400),
            max_attempts: 3,
            ready: None,
            covered_until: None,
            freshness_wait: Duration::from_secs(10),
            clock: Arc::new(SystemClock),
            history: None,
            file_check: FILE_CHECK,
        }
    }
}

impl std::fmt::Debug for JobsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobsConfig")
            .field("retention", &self.retention)
            .field("max_attempts", &self.max_attempts)
            .field("ready", &self.ready.is_some())
            .field("covered_until", &self.covered_until.is_some())
            .field("freshness_wait", &self.freshness_wait)
            .field("history", &self.history.is_some())
            .field("file_check", &self.file_check)
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: JobStore,
    dir: PathBuf,
    tx: mpsc::UnboundedSender<String>,
    config: JobsConfig,
    /// Set by [`Jobs::stop`]; checked by the export between chunks.
    stopping: Arc<AtomicBool>,
    stop_tx: watch::Sender<bool>,
    worker: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

/// Handle to the job runner (clone freely).
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

/// 500 `export_write_failed` for an I/O error `e` while `step` (`"create"`, `"write"`, …) on
/// `path`: the message names the file (relative to the data directory) and the OS error,
/// e.g. `could not write the export file "exports/<job id>.csv.part": No space left on device
/// (os error 28)`.
pub(super) fn write_error(step: &str, path: &Path, e: &std::io::Error) -> ApiError {
    let file = path.file_name().map_or_else(|| path.display().to_string(), |n| format!("exports/{}", n.to_string_lossy()));
    tracing::error!(path = %path.display(), error = %e, "could not {step} the export file");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "export_write_failed", format!("could not {step} the export file \"{file}\": {e}"))
}

/// How long an `Idempotency-Key` of `POST /v1/reports/export` is honoured (ms; 24 h, as on
/// `POST /v1/links`: [`sluice_connectors::link_store::IDEMPOTENCY_TTL`]).
pub const KEY_TTL_MS: i64 = sluice_connectors::link_store::IDEMPOTENCY_TTL.num_milliseconds();

/// What [`Jobs::create_keyed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyed {
    /// The job was created, with its key.
    Created(JobRecord),
    /// The key was already stored: no job was created; the record names the key's job.
    Existing(KeyRecord),
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(&e))?
}

impl Jobs {
    /// Opens the job table in `dir` (the exports directory, created if missing), re-queues
    /// unfinished jobs (module docs), deletes expired ones and stray `.part` files, and spawns
    /// the runner on the current tokio runtime. Errors: 500 `jobs_store_failed`.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(dir: &Path, views: Views, store: Arc<dyn LinkStore>, config: JobsConfig) -> Result<Jobs, ApiError> {
        let table = JobStore::open(dir)?;
        let mut queue = Vec::new();
        for mut rec in table.all()? {
            match rec.status {
                JobState::Queued => queue.push(rec.job_id),
                JobState::Running if rec.attempts >= config.max_attempts => {
                    rec.status = JobState::Failed;
                    rec.finished_at_ms = Some(config.clock.now_ms());
                    rec.error =
                        Some(JobFailure { code: "job_interrupted".into(), message: format!("the job was interrupted by a restart {} times", rec.attempts) });
                    table.put(&rec)?;
                }
                JobState::Running => {
                    tracing::info!(job_id = %rec.job_id, attempts = rec.attempts, "re-queueing export job interrupted by a restart");
                    rec.status = JobState::Queued;
                    table.put(&rec)?;
                    queue.push(rec.job_id);
                }
                JobState::Succeeded | JobState::Failed => {}
            }
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "part") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let inner = Inner {
            store: table,
            dir: dir.to_path_buf(),
            tx,
            config,
            stopping: Arc::new(AtomicBool::new(false)),
            stop_tx,
            worker: parking_lot::Mutex::new(None),
        };
        let jobs = Jobs { inner: Arc::new(inner) };
        jobs.expire()?;
        for id in queue {
            jobs.enqueue(&id);
        }
        if !jobs.inner.config.file_check.is_zero() {
            tokio::spawn(watch_file(Arc::downgrade(&jobs.inner), jobs.inner.config.file_check, stop_rx.clone()));
        }
        let source = RowSource::new(views, jobs.inner.config.history.clone());
        let handle = tokio::spawn(jobs.clone().work(source, store, rx, stop_rx));
        *jobs.inner.worker.lock() = Some(handle);
        Ok(jobs)
    }

    /// Why export jobs are unusable although the runner started: the job table's file was
    /// deleted or replaced while open (e.g. `exports/` removed). `"jobs_store_unavailable:
    /// <message>"`, the message naming the file and what to do (the shape of
    /// [`crate::ReportsState::jobs_failure`]); `None` while the file is in place. One `stat`.
    pub fn store_failure(&self) -> Option<String> {
        self.inner.store.file_failure().map(|m| format!("jobs_store_unavailable: {m}"))
    }

    /// Stops the runner gracefully (module docs) and waits for it: a running export stops at
    /// its next chunk and goes back to `queued` (it runs again at the next start, the attempt
    /// not counted); queued jobs stay queued. Idempotent. Afterwards [`Self::create`] still
    /// stores jobs, but nothing runs them in this process.
    pub async fn stop(&self) {
        self.inner.stopping.store(true, Ordering::Release);
        self.inner.stop_tx.send_replace(true);
        let handle = self.inner.worker.lock().take();
        if let Some(h) = handle
            && let Err(e) = h.await
        {
            tracing::error!(error = %e, "export job runner task failed");
        }
    }

    /// The exports directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Stores a new `queued` job for `spec` (not yet handed to the runner: see
    /// [`Self::enqueue`]). Errors: 503 `jobs_store_unavailable` (the table's file deleted or replaced, an I/O error), 500 `jobs_store_failed`.
    pub async fn create(&self, spec: JobSpec) -> Result<JobRecord, ApiError> {
        let rec = self.new_record(spec);
        let (inner, r) = (Arc::clone(&self.inner), rec.clone());
        blocking(move || inner.store.put(&r)).await?;
        Ok(rec)
    }

    /// [`Self::create`] for a request with an `Idempotency-Key`: the job and `key` (with
    /// `request_hash`) are stored in one transaction ([`JobStore::put_keyed`]), so a retry
    /// after any failure finds both or neither. When `key` is already stored (within
    /// [`KEY_TTL_MS`]), nothing is created and the key's record is returned.
    ///
    /// Errors: as [`Self::create`].
    pub async fn create_keyed(&self, spec: JobSpec, key: &str, request_hash: &str) -> Result<Keyed, ApiError> {
        let rec = self.new_record(spec);
        let (inner, r, key, hash) = (Arc::clone(&self.inner), rec.clone(), key.to_owned(), request_hash.to_owned());
        match blocking(move || inner.store.put_keyed(&r, &key, &hash, KEY_TTL_MS)).await? {
            KeyedPut::Stored => Ok(Keyed::Created(rec)),
            KeyedPut::KeyTaken(existing) => Ok(Keyed::Existing(existing)),
        }
    }

    /// The record of the `Idempotency-Key` `key`, if stored within [`KEY_TTL_MS`] (by the
    /// jobs' clock). Errors: as [`Self::create`].
    pub async fn key(&self, key: &str) -> Result<Option<KeyRecord>, ApiError> {
        let (inner, key) = (Arc::clone(&self.inner), key.to_owned());
        let now = self.inner.config.clock.now_ms();
        blocking(move || inner.store.key(&key, now, KEY_TTL_MS)).await
    }

    /// A new `queued` job for `spec`, created now.
    fn new_record(&self, spec: JobSpec) -> JobRecord {
        JobRecord::queued(uuid::Uuid::now_v7().to_string(), self.inner.config.clock.now_ms(), spec)
    }

    /// Hands a stored job to the runner.
    pub fn enqueue(&self, job_id: &str) {
        // The receiver lives as long as the runner task, i.e. the runtime.
        let _ = self.inner.tx.send(job_id.to_owned());
    }

    /// The job `job_id`, if stored. Errors as [`Self::create`].
    pub async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, ApiError> {
        let (inner, id) = (Arc::clone(&self.inner), job_id.to_owned());
        blocking(move || inner.store.get(&id)).await
    }

    /// Path of a succeeded job's file.
    pub fn file_path(&self, rec: &JobRecord) -> PathBuf {
        self.inner.dir.join(format!("{}.{}", rec.job_id, rec.spec.format.extension()))
    }

    /// Every stored job (tests).
    #[cfg(test)]
    pub(crate) fn records(&self) -> Result<Vec<JobRecord>, ApiError> {
        self.inner.store.all()
    }

    fn put(&self, rec: &JobRecord) -> Result<(), ApiError> {
        self.inner.store.put(rec)
    }

    /// Deletes jobs (and files) finished more than `retention` ago, and `Idempotency-Key`s
    /// older than [`KEY_TTL_MS`].
    fn expire(&self) -> Result<(), ApiError> {
        let retention = i64::try_from(self.inner.config.retention.as_millis()).unwrap_or(i64::MAX);
        let now = self.inner.config.clock.now_ms();
        self.inner.store.expire_keys(now.saturating_sub(KEY_TTL_MS))?;
        let cutoff = now.saturating_sub(retention);
        for rec in self.inner.store.all()? {
            if rec.finished_at_ms.is_some_and(|f| f < cutoff) {
                let _ = std::fs::remove_file(self.file_path(&rec));
                self.inner.store.delete(&rec.job_id)?;
                tracing::debug!(job_id = %rec.job_id, "expired export job deleted");
            }
        }
        Ok(())
    }

    async fn work(self, source: RowSource, store: Arc<dyn LinkStore>, mut rx: mpsc::UnboundedReceiver<String>, mut stop: watch::Receiver<bool>) {
        loop {
            let id = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                id = rx.recv() => match id {
                    Some(id) => id,
                    None => break,
                },
            };
            if let Some(ready) = &self.inner.config.ready {
                while !ready() {
                    tokio::select! {
                        biased;
                        _ = stop.wait_for(|s| *s) => return,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
            if let Err(e) = self.run_one(&source, &store, &id).await {
                // The record still says `queued` (its start could not be written): try it
                // again once the table may work again, not only at the next start.
                tracing::error!(error = %e, job_id = %id, retry_in_ms = STORE_RETRY.as_millis() as u64, "export job could not be recorded; it is tried again");
                let tx = self.inner.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(STORE_RETRY).await;
                    let _ = tx.send(id);
                });
            }
            if self.inner.stopping.load(Ordering::Acquire) {
                break;
            }
            let me = self.clone();
            if let Err(e) = blocking(move || me.expire()).await {
                tracing::warn!(error = %e, "could not expire old export jobs");
            }
        }
        tracing::debug!("export job runner stopped");
    }

    async fn run_one(&self, source: &RowSource, store: &Arc<dyn LinkStore>, id: &str) -> Result<(), ApiError> {
        let Some(mut rec) = self.get(id).await? else { return Ok(()) };
        if rec.status != JobState::Queued {
            return Ok(());
        }
        self.await_fresh(rec.created_at_ms).await;
        rec.status = JobState::Running;
        rec.started_at_ms = Some(self.inner.config.clock.now_ms());
        rec.attempts += 1;
        let (me, r) = (self.clone(), rec.clone());
        blocking(move || me.put(&r)).await?;
        tracing::info!(job_id = %id, attempt = rec.attempts, "export job started");
        let outcome = self.export(source, store, &rec).await;
        if outcome.as_ref().is_err_and(|e| e.code == STOPPED) {
            // Graceful stop: not an attempt that failed; it runs again at the next start.
            rec.status = JobState::Queued;
            rec.started_at_ms = None;
            rec.attempts = rec.attempts.saturating_sub(1);
            tracing::info!(job_id = %id, "export job interrupted by a stop, re-queued");
            let me = self.clone();
            return blocking(move || me.put(&rec)).await;
        }
        rec.finished_at_ms = Some(self.inner.config.clock.now_ms());
        match outcome {
            Ok((rows, bytes)) => {
                rec.status = JobState::Succeeded;
                (rec.rows, rec.bytes) = (rows, bytes);
                tracing::info!(job_id = %id, rows, bytes, "export job succeeded");
                metrics::counter!("sluice_export_jobs_total", "status" => "succeeded").increment(1);
            }
            Err(e) => {
                rec.status = JobState::Failed;
                tracing::warn!(job_id = %id, error = %e, "export job failed");
                rec.error = Some(JobFailure { code: e.code.to_owned(), message: e.message });
                metrics::counter!("sluice_export_jobs_total", "status" => "failed").increment(1);
            }
        }
        self.put_final(rec).await
    }

    /// Waits (polling every 10 ms, at most [`JobsConfig::freshness_wait`], until the stop)
    /// until the views hold every click logged before `created_at_ms`.
    async fn await_fresh(&self, created_at_ms: i64) {
        let Some(covered_until) = &self.inner.config.covered_until else { return };
        let t0 = std::time::Instant::now();
        while covered_until().is_none_or(|c| c < created_at_ms) {
            if t0.elapsed() >= self.inner.config.freshness_wait || self.inner.stopping.load(Ordering::Acquire) {
                tracing::warn!(created_at_ms, covered_until = ?covered_until(), "export job starts on views that do not yet hold every click logged before it was created");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Writes a finished job's record, retrying every [`STORE_RETRY`] while the table fails
    /// (a `running` record left behind would never finish before a restart); gives up at
    /// the stop (the start-up scan then re-queues or fails the `running` job).
    async fn put_final(&self, rec: JobRecord) -> Result<(), ApiError> {
        loop {
            let (me, r) = (self.clone(), rec.clone());
            match blocking(move || me.put(&r)).await {
                Ok(()) => return Ok(()),
                Err(e) if self.inner.stopping.load(Ordering::Acquire) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, job_id = %rec.job_id, "export job's result could not be recorded; trying again");
                    tokio::time::sleep(STORE_RETRY).await;
                }
            }
        }
    }

    /// Runs the export of `rec` into its file; returns (rows, bytes).
    async fn export(&self, source: &RowSource, store: &Arc<dyn LinkStore>, rec: &JobRecord) -> Result<(u64, u64), ApiError> {
        let plan = plan_of(&rec.spec)?;
        let codes = match &rec.spec.codes {
            Some(c) => c.clone(),
            None => all_codes(store.as_ref()).await?,
        };
        let (source, part, done) = (source.clone(), self.inner.dir.join(format!("{}.part", rec.job_id)), self.file_path(rec));
        let stopping = Arc::clone(&self.inner.stopping);
        tokio::task::spawn_blocking(move || write_export(&source, &plan, &codes, &part, &done, &stopping)).await.map_err(|e| ApiError::internal(&e))?
    }
}

/// The export plan of a stored spec, validated by the stats endpoints' parser again (any
/// combination of dimensions passes here: without a long-term store, an unmaintained one
/// fails the export with `invalid_dimensions`). Errors: 400 codes of
/// [`crate::stats::params`] (a spec stored by a version with other limits).
pub fn plan_of(spec: &JobSpec) -> Result<ExportPlan, ApiError> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("from", &rfc3339_utc(spec.from_ms))
        .append_pair("to", &rfc3339_utc(spec.to_ms))
        .append_pair("bucket", &spec.bucket)
        .append_pair("tz", &spec.tz)
        .append_pair("dimensions", &spec.dimensions)
        .append_pair("include_bots", if spec.include_bots { "true" } else { "false" });
    let params = parse_stats_with(Some(&query.finish()), spec.to_ms, true)?;
    Ok(ExportPlan::new(&params, spec.format)?.escaping_formulas(spec.escape_formulas))
}

/// Every link code in the store, sorted.
async fn all_codes(store: &dyn LinkStore) -> Result<Vec<String>, ApiError> {
    let mut codes = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(&ListQuery { limit: LIST_PAGE, after_seq: after, ..ListQuery::default() }).await?;
        let Some(&(last, _)) = page.last() else { break };
        let full = page.len() == LIST_PAGE as usize;
        codes.extend(page.into_iter().map(|(_, l)| l.code));
        if !full {
            break;
        }
        after = Some(last);
    }
    codes.sort();
    codes.dedup();
    Ok(codes)
}

/// Every `every`, logs an error when the job table's file is deleted or replaced (once per
/// distinct problem) and an info line when it is back; ends at the stop signal or when the
/// runner is dropped.
async fn watch_file(inner: std::sync::Weak<Inner>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut logged: Option<String> = None;
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        match inner.store.file_failure() {
            Some(message) if logged.as_deref() != Some(message.as_str()) => {
                tracing::error!(error = %message, "the export job table's file is gone; export jobs answer 503 jobs_store_unavailable while it is");
                logged = Some(message);
            }
            None if logged.is_some() => {
                tracing::info!(path = %inner.store.path().display(), "the export job table's file is back at its path");
                logged = None;
            }
            _ => {}
        }
    }
}

/// Writes header, every code's chunks and footer to `part`, fsyncs, renames it to `done`.
/// When `stopping` is set between two chunks, returns the `job_stopped` error. On any error
/// `part` is removed. Errors: `export_write_failed` (500, names the file and the OS error),
/// the chunk renderer's.
pub(super) fn write_export(
    source: &RowSource,
    plan: &ExportPlan,
    codes: &[String],
    part: &Path,
    done: &Path,
    stopping: &AtomicBool,
) -> Result<(u64, u64), ApiError> {
    let written = write_part(source, plan, codes, part, done, stopping);
    if written.is_err() {
        // A failed export leaves no partial file behind (on a full disk it would keep the
        // disk full until the next start).
        let _ = std::fs::remove_file(part);
    }
    written
}

fn write_part(source: &RowSource, plan: &ExportPlan, codes: &[String], part: &Path, done: &Path, stopping: &AtomicBool) -> Result<(u64, u64), ApiError> {
    if let Some(dir) = part.parent() {
        // The exports directory may have been removed since the start: recreate it.
        std::fs::create_dir_all(dir).map_err(|e| write_error("create the directory of", part, &e))?;
    }
    let mut file = std::fs::File::create(part).map_err(|e| write_error("create", part, &e))?;
    let mut writer = plan.writer();
    let mut buf = Vec::with_capacity(WRITE_BYTES);
    let mut bytes = 0u64;
    writer.header(&mut buf);
    for code in codes {
        for index in 0..plan.chunk_count() {
            if stopping.load(Ordering::Acquire) {
                drop(file);
                let _ = std::fs::remove_file(part);
                return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, STOPPED, "the export was interrupted by a stop"));
            }
            plan.render_chunk(source, code, index, &mut writer, &mut buf)?;
            if buf.len() >= WRITE_BYTES {
                file.write_all(&buf).map_err(|e| write_error("write", part, &e))?;
                bytes += buf.len() as u64;
                buf.clear();
            }
        }
    }
    writer.footer(&mut buf);
    file.write_all(&buf).map_err(|e| write_error("write", part, &e))?;
    bytes += buf.len() as u64;
    file.sync_all().map_err(|e| write_error("sync", part, &e))?;
    drop(file);
    std::fs::rename(part, done).map_err(|e| write_error("rename into place", part, &e))?;
    if let Some(dir) = done.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        // Makes the rename durable on file systems that need a directory fsync.
        let _ = d.sync_all();
    }
    Ok((writer.rows(), bytes))
}
