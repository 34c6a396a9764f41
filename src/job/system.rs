//! One whole Sluice process, started on a listener: link store, click log and its writer,
//! the click dataflow, and the HTTP stack (API, stats, `POST /v1/events`, redirects,
//! health). `sluice serve`, `sluice demo`, `sluice bench freshness` and the tests run
//! exactly this.
//!
//! By role: `all` and `redirect` open the click log (held exclusively by one process) and
//! run the dataflow over it (`[dataflow] enabled`); `api` runs no dataflow and holds no
//! click log (it opens a log no other process holds only for its start, to check the link
//! store against it: `lost_store`), and its stats endpoints answer 503 `stats_unavailable`.
//! With the dataflow and the API (`all`), the export, report-job and live routes run too,
//! report jobs in `<data dir>/exports`.
//!
//! Stopping ([`System::shutdown`]): the HTTP server finishes in-flight requests and ends
//! its SSE streams (connections still open after `[server] shutdown-timeout` are dropped),
//! then the log writer appends every queued click (durable) and the dataflow stops, within
//! `[server] drain-timeout` ([`StopTimedOut`] past it; the stages share it, [`StopBudget`],
//! so a view sink whose service is down ends the stop in time with an error naming it).
//! The whole stop is bounded by the sum.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use sluice_connectors::click_log::{CLICK_LOG_FILE_NAME, ClickLog};
use sluice_connectors::{LinkStore, open_store_checked};
use sluice_dataflows::views::{AsOf, Views};
use sluice_ingest::{IngestStats, LogWriterConfig, WriterSummary, click_channel, spawn_log_writer};
use sluice_redirect::ClickSink;
use sluice_serving::ReportsState;
use sluice_serving::jobs::Jobs;
use sluice_serving::stats::StatsState;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

use super::counting_sink::CountingSink;
pub use super::stop::StopTimedOut;
use super::stop::{StopBudget, outcome};
use super::{CheckpointNotWritten, DataflowJob};
use crate::config::{Config, Role};
use crate::serve::{Stack, StackExtras, build_stack_app, stats_config};
use crate::{telemetry, visitor_secret};

/// How long a graceful stop waits for the Redis/ClickHouse sinks to write what they hold.
const SINK_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful stop keeps forwarding the Kafka spill to the broker.
const KAFKA_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

struct Intake {
    log: ClickLog,
    writer: JoinHandle<WriterSummary>,
    accepted: Arc<AtomicU64>,
    stats: Arc<IngestStats>,
    /// Clicks accepted and not yet in the log (the dataflow's log source respects them).
    pending: Arc<sluice_ingest::PendingFloor>,
    /// Kafka mode (`[kafka] brokers`): clicks go to the producer's spill, not `log`.
    kafka: Option<crate::kafka::KafkaIntake>,
    /// Records the link store's change mark in `log` (`None` until the start-up check applied).
    seq_mark: Option<super::lost_store::StoreSeqMark>,
}

/// What a start holds open while it runs its checks: the click log (its lock keeps other
/// processes out of the data dir) and the link store, closed when the start is refused.
#[derive(Default)]
struct Held {
    log: Option<ClickLog>,
    store: Option<Arc<dyn LinkStore>>,
}

/// How [`System::start_or_stop`] ended: started, or given up when its stop (output `S`)
/// came first.
#[derive(Debug)]
pub enum Start<S> {
    /// Serving (boxed: a [`System`] is large).
    Started(Box<System>),
    /// Given up; what the start created is removed.
    Stopped(S),
}

/// A running process (module docs).
pub struct System {
    addr: SocketAddr,
    config: Config,
    store: Arc<dyn LinkStore>,
    intake: Option<Intake>,
    job: Option<DataflowJob>,
    sinks: Option<crate::sinks::Sinks>,
    jobs: Option<Jobs>,
    anomalies: Option<crate::anomalies::AnomalyOutputs>,
    server: JoinHandle<()>,
    stop_http: oneshot::Sender<()>,
    /// Open once the HTTP server's start-up work is done (crate::start_gate).
    gate: crate::start_gate::StartGate,
}

impl std::fmt::Debug for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("System").field("addr", &self.addr).field("role", &self.config.server.role).finish_non_exhaustive()
    }
}

impl System {
    /// Starts everything `cfg` describes and serves on `listener` (module docs). A refused
    /// start removes what it created in the data dir (`start_cleanup.rs`).
    ///
    /// Listening on port 0 (`--listen 127.0.0.1:0`), the port the system chose is the one
    /// the configuration carries from here on: the default base URL (short URLs, own hosts)
    /// is `http://` + the bound address, never `…:0`.
    ///
    /// Errors: the data directory, link store, click log (e.g. held by another process),
    /// visitor secret or dataflow cannot be set up.
    pub async fn start(cfg: Config, listener: TcpListener) -> anyhow::Result<System> {
        match Self::start_or_stop(cfg, listener, std::future::pending::<()>()).await? {
            Start::Started(system) => Ok(*system),
            Start::Stopped(()) => unreachable!("a pending future never resolves"),
        }
    }

    /// [`Self::start`], given up as soon as `stop` resolves first (a stop signal while a store
    /// does not answer, say): what the start opened is closed and what it created in the data
    /// dir removed, exactly as for a refused start, and `stop`'s output is returned.
    ///
    /// Errors as [`Self::start`].
    pub async fn start_or_stop<S>(mut cfg: Config, listener: TcpListener, stop: impl Future<Output = S>) -> anyhow::Result<Start<S>> {
        if cfg.server.listen.port() == 0
            && let Ok(bound) = listener.local_addr()
        {
            cfg.server.listen.set_port(bound.port());
        }
        let before = super::start_cleanup::Before::look(&cfg.server.data_dir);
        let mut held = Held::default();
        // Probes are answered while the start runs (early_answers.rs); a start given up
        // drops it, which closes the listener.
        let early = super::early_answers::EarlyAnswers::spawn(listener);
        let outcome = tokio::select! {
            r = Self::start_holding(cfg, early, &mut held) => r.map(|system| Start::Started(Box::new(system))),
            s = stop => Ok(Start::Stopped(s)),
        };
        if let Ok(Start::Started(_)) = outcome {
            return outcome;
        }
        // Closed first, so that nothing writes to its files after they are removed.
        if let Some(store) = held.store.take() {
            store.close().await;
        }
        // Only while the click log (and its lock) is still held: no other process uses the
        // data dir meanwhile. Role `api` takes no lock (it shares the dir with a redirect
        // process that may have created the same files since the start looked), so it
        // removes nothing.
        // And when the data dir is this start's own (it did not exist) and the click log's
        // open failed for another reason than another process holding it (attack of
        // session 52: on a full disk the failed open left a file of zeros that every later
        // start refused as a damaged log).
        let log_failed = outcome.as_ref().err().and_then(|e| e.downcast_ref::<sluice_connectors::Error>()).is_some_and(|e| {
            matches!(e, sluice_connectors::Error::ClickLog { .. }) && e.open_failure() != sluice_connectors::redb_open::OpenFailure::HeldByAnotherProcess
        });
        if held.log.is_some() || (log_failed && !before.existed()) {
            before.remove_added();
        }
        drop(held);
        outcome
    }

    /// [`Self::start`], noting in `held` the click log and the link store once open.
    async fn start_holding(cfg: Config, early: super::early_answers::EarlyAnswers, held: &mut Held) -> anyhow::Result<System> {
        let data_dir = cfg.server.data_dir.clone();
        crate::config::create_data_dir(&data_dir)?;
        telemetry::prometheus();
        let before_open = super::lost_store::BeforeOpen::look(&cfg, &data_dir);
        let had_click_log = data_dir.join(CLICK_LOG_FILE_NAME).exists();
        // A damaged links.db (0 bytes: taken for a new one; failing PRAGMA quick_check) or
        // anomalies.redb is refused before the click log is opened: its open and close
        // commit to clicks.redb.
        let target = sluice_connectors::StoreTarget::parse(&cfg.store_location()).context("could not open the link store")?;
        let checked_store = target.check_existing_file().await.context("could not open the link store")?;
        if cfg.server.role != Role::Api && cfg.dataflow.enabled {
            crate::anomalies::check_store_file(&cfg).await?;
        }
        // The click log and the checkpoint the dataflow resumes from are checked first: a
        // start they refuse (a damaged clicks.redb, a checkpoint of another log, a log moved
        // away) creates nothing — no links.db, no visitor_secret, no empty clicks.redb.
        // Role api opens the log only for its start, to check the link store (lost_store).
        let mut api_log = None;
        let (opened_log, start_point) = if cfg.server.role == Role::Api {
            api_log = Some(super::lost_store::ApiLog::open(&cfg, &data_dir, had_click_log).await?);
            (None, None)
        } else {
            let checkpoints_on = cfg.dataflow.enabled && !cfg.kafka.enabled() && !cfg.dataflow.checkpoint_interval.is_zero() && cfg.dataflow.processes == 1;
            if checkpoints_on && !had_click_log {
                let (dir, partition) = (super::checkpoint::dir_of(&data_dir), cfg.dataflow.partition());
                tokio::task::spawn_blocking(move || super::checkpoint::refuse_without_log(&dir, partition)).await.context("checkpoint check task failed")??;
            }
            let dir = data_dir.clone();
            // The cause named as it is: a held lock (another `sluice serve`), a read-only
            // file system, a refused permission, damage (crate::log_open).
            // An `api` process holds the log for a moment at its start (lost_store docs).
            let log = tokio::task::spawn_blocking(move || crate::log_open::open_waiting(&dir, crate::log_open::HELD_WAIT))
                .await
                .context("click log open task failed")?
                .map_err(|e| crate::log_open::open_error(&data_dir, e, "stop it, or give this process another --data-dir"))?;
            held.log = Some(log.clone());
            let start = if cfg.dataflow.enabled { Some(DataflowJob::check_start(&cfg, log.clone()).await?) } else { None };
            (Some(log), start)
        };
        let store = open_store_checked(&cfg.store_location(), cfg.store.timeouts(), checked_store.as_ref()).await.context("could not open the link store")?;
        held.store = Some(Arc::clone(&store));
        // Logs an error when `links.db` is deleted or replaced while open (`/readyz` fails then).
        drop(crate::health::watch_store_file(Arc::downgrade(&store), crate::health::STORE_FILE_CHECK));
        let secret = visitor_secret::load_or_create_after(cfg.visitor.secret.as_ref().map(|s| s.0.as_str()), &data_dir, had_click_log)?;
        if cfg.visitor.secret.is_none() {
            drop(visitor_secret::watch(data_dir.clone(), secret, Arc::downgrade(&store), crate::health::STORE_FILE_CHECK));
        }
        // Every process taking clicks of one deployment must log the same fingerprint.
        tracing::info!(fingerprint = %visitor_secret::fingerprint(&secret), "visitor secret (the same in every process of a cluster)");
        // Applied with the others' below.
        let api_check = match api_log {
            Some(l) => l.check(&cfg, &store, before_open).await?,
            None => None,
        };
        let mut store_check = None;
        let (sink, mut intake): (Arc<dyn ClickSink>, Option<Intake>) = match opened_log {
            None => {
                let (sink, _receiver) = sluice_redirect::ChannelClickSink::new(1);
                (Arc::new(sink), None)
            }
            Some(log) => {
                // Read now, applied once every other check passed (lost_store docs).
                store_check = Some(super::lost_store::check_link_store(&cfg, &store, &log, before_open).await?);
                let (sender, receiver) = click_channel(cfg.redirect.click_channel_capacity);
                let stats = Arc::clone(sender.stats());
                let pending = Arc::clone(sender.pending());
                let accepted = Arc::new(AtomicU64::new(0));
                let kafka = if cfg.kafka.enabled() { Some(crate::kafka::KafkaIntake::start(&cfg.kafka, &data_dir).await?) } else { None };
                let writer_cfg = LogWriterConfig { linger: cfg.redirect.click_log_linger, ..LogWriterConfig::default() };
                let writer = match &kafka {
                    Some(k) => spawn_log_writer(receiver, k.event_log(), writer_cfg),
                    None => spawn_log_writer(receiver, log.clone(), writer_cfg),
                };
                (
                    Arc::new(CountingSink { inner: sender, accepted: Arc::clone(&accepted) }),
                    Some(Intake { log, writer, accepted, stats, pending, kafka, seq_mark: None }),
                )
            }
        };
        let mut sinks = crate::sinks::Sinks::start(&cfg)?;
        if let Some(i) = &intake {
            sinks.start_events(&cfg, i.log.clone()).await?;
        }
        // The anomaly store lives with the dataflow that feeds it (`crate::anomalies`).
        let mut anomalies = match &intake {
            Some(_) if cfg.dataflow.enabled => Some(crate::anomalies::AnomalyOutputs::start(&cfg).await?),
            _ => None,
        };
        // In Kafka mode the anomalies also go to `[kafka] anomalies-topic` (crate::kafka).
        let anomaly_sink = crate::anomalies::fan_out(
            anomalies
                .iter()
                .filter_map(crate::anomalies::AnomalyOutputs::sink)
                .chain(sinks.anomaly_sink())
                .chain(intake.as_ref().and_then(|i| i.kafka.as_ref()).map(crate::kafka::KafkaIntake::anomaly_sink))
                .collect(),
        );
        // Detectors restored from a checkpoint take over what is open in the store; every
        // start reconciles the episodes it derives with what the store holds.
        let stored_anomalies = match &anomalies {
            Some(a) => a.stored_anomalies().await,
            None => Default::default(),
        };
        let job = match (&intake, start_point) {
            (Some(i), Some(mut start)) => Some({
                if i.kafka.as_ref().is_some_and(crate::kafka::KafkaIntake::click_topic_created) {
                    start.forget_source_offsets();
                }
                DataflowJob::start_at(
                    &cfg,
                    start,
                    Arc::clone(&store),
                    sinks.change_sink(),
                    crate::job::JobAnomalies { sink: anomaly_sink, stored: stored_anomalies },
                    sinks.applied_probe(),
                    Some(Arc::clone(&i.pending)),
                )
                .await?
            }),
            _ => None,
        };
        sinks.resend_on_empty_store(job.as_ref().map(DataflowJob::views));
        // The dataflow's blocklist follows the store's run-time blocklist, whichever process changed it (the task ends with the runtime).
        if let Some(feed) = job.as_ref().and_then(DataflowJob::blocklist) {
            drop(sluice_serving::admin::feed::sync_blocklist(Arc::clone(&store), feed, cfg.dataflow.meta_poll_interval));
        }
        super::split_roles::warn_about_split_role(&cfg, job.is_some());
        let stats = match &job {
            Some(j) => StatsState::new(Arc::clone(&store), j.view_source(), stats_config(&cfg)),
            None => StatsState::without_views(Arc::clone(&store), stats_config(&cfg)),
        };
        let stats = match sinks.history() {
            Some(h) => stats.with_history(Arc::new(h)),
            None => stats,
        };
        let reports = match cfg.server.role {
            Role::Redirect => None,
            Role::All | Role::Api => Some(ReportsState::start(stats.clone(), &data_dir.join("exports"))),
        };
        let jobs = reports.as_ref().and_then(|r| r.jobs().cloned());
        let export_jobs_health = reports.as_ref().and_then(crate::health::ExportJobsHealth::of).map(|h| Arc::new(h) as Arc<dyn crate::health::Dependency>);
        let extras = StackExtras {
            hooks: job.as_ref().and_then(DataflowJob::link_hook).into_iter().collect(),
            events_log: intake.as_ref().map(|i| i.log.clone()),
            events_kafka: intake.as_ref().and_then(|i| i.kafka.as_ref()).map(crate::kafka::KafkaIntake::event_log),
            events_stats: intake.as_ref().map(|i| Arc::clone(&i.stats)),
            stats: Some(stats),
            api_routes: reports
                .into_iter()
                .map(sluice_serving::reports::routes)
                .chain(anomalies.iter().filter(|_| cfg.server.role != Role::Redirect).map(crate::anomalies::AnomalyOutputs::routes))
                .chain(crate::anomalies::not_local_routes(&cfg, anomalies.is_some()))
                .collect(),
            link_cache_l2: sinks.link_cache_l2(),
            dependencies: sinks
                .dependencies()
                .into_iter()
                .chain(job.as_ref().and_then(DataflowJob::health))
                .chain(job.as_ref().map(|j| Arc::new(j.dataflow_health()) as Arc<dyn crate::health::Dependency>))
                .chain(intake.as_ref().map(|i| Arc::new(crate::health::ClickLogWriterHealth(Arc::clone(&i.stats))) as Arc<dyn crate::health::Dependency>))
                .chain(intake.as_ref().and_then(|i| i.kafka.as_ref()).map(|k| Arc::new(k.health()) as Arc<dyn crate::health::Dependency>))
                .chain(export_jobs_health)
                .chain(anomalies.iter().map(crate::anomalies::AnomalyOutputs::health))
                .collect(),
        };
        let (Stack { router: _, api, redirect }, app) = build_stack_app(&cfg, Arc::clone(&store), sink, secret, extras)?;
        // Automatic actions act through the API's state (its link-change hooks).
        if let Some(a) = anomalies.as_mut() {
            a.start_auto_actions(&cfg, &api);
        }
        drop((api, redirect));
        // From here until the server below accepts, a new connection waits in the listen
        // queue (no await but the lost store's retirement lies between).
        let listener = early.finish().await?;
        let addr = listener.local_addr().context("listener has no local address")?;
        // Every start-up check passed: retire a lost store's codes before the HTTP server
        // (which alone creates links) starts.
        if let (Some(check), Some(i)) = (store_check, intake.as_mut()) {
            check.apply(&store, &i.log).await?;
            i.seq_mark = Some(super::lost_store::StoreSeqMark::start(Arc::clone(&store), i.log.clone()));
        }
        // Role api: then the log is closed, for the process that serves clicks.
        if let Some((check, log)) = api_check {
            check.apply(&store, &log).await?;
        }
        let (stop_http, stopped) = oneshot::channel::<()>();
        // HTTP/1.1; redirects ahead of the router; hyper's own 414/431 answers get the JSON
        // error shape (crate::http_server).
        let server_opts = crate::http_server::ServerOptions::from_config(&cfg)?;
        // Connections may use every descriptor the hard limit allows, less a reserve
        // (crate::http_server::limits).
        let nofile = crate::http_server::limits::raise_fd_limit();
        let open = crate::http_server::limits::open_fds();
        let max_connections = match server_opts.limits.max_connections {
            0 => nofile.map(|n| crate::http_server::limits::derived_max_connections(n, open)),
            n => Some(n),
        };
        crate::http_server::limits::warn_if_short(server_opts.limits.max_connections, max_connections, nofile, open);
        tracing::debug!(?max_connections, max_per_client = server_opts.limits.max_per_client, fd_limit = ?nofile, "connection limits");
        let gate = app.start_gate().clone();
        let server = tokio::spawn(crate::http_server::serve_with(listener, app, server_opts, async move {
            let _ = stopped.await;
        }));
        if cfg.base_url_guessed() {
            tracing::warn!(
                listen = %cfg.server.listen,
                base_url = %cfg.base_url()?,
                "listening on an unspecified address without a base URL: short URLs use the loopback address; set --base-url (server.base-url) to the public origin"
            );
        }
        tracing::info!(%addr, base_url = %cfg.base_url()?, role = ?cfg.server.role, data_dir = %data_dir.display(), store = %store.backend(), dataflow = job.is_some(), "sluice listening");
        Ok(System { addr, config: cfg, store, intake, job, sinks: Some(sinks), jobs, anomalies, server, stop_http, gate })
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>` (the listener's own address, also when `base-url` differs).
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}", self.addr)).unwrap_or_else(|_| unreachable!("a socket address is a valid host"))
    }

    /// The HTTP server's readiness gate: closed (every request but `/healthz`, `/readyz` and
    /// `/metrics` answered 503) until its start-up work, the configuration's `[links]
    /// blocklist` applied to the existing links, is done ([`crate::start_gate`]). `System::start`
    /// returns before that: a caller that sends requests at once awaits
    /// [`crate::start_gate::StartGate::wait_open`] first.
    pub fn start_gate(&self) -> &crate::start_gate::StartGate {
        &self.gate
    }

    /// The configuration the process runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The link store.
    pub fn store(&self) -> &Arc<dyn LinkStore> {
        &self.store
    }

    /// The click log (`None` for role `api`).
    pub fn click_log(&self) -> Option<&ClickLog> {
        self.intake.as_ref().map(|i| &i.log)
    }

    /// The dataflow (`None` for role `api` or `[dataflow] enabled = false`).
    pub fn job(&self) -> Option<&DataflowJob> {
        self.job.as_ref()
    }

    /// The Redis / ClickHouse sinks of this process.
    pub fn sinks(&self) -> Option<&crate::sinks::Sinks> {
        self.sinks.as_ref()
    }

    /// The dataflow's views.
    pub fn views(&self) -> Option<&Views> {
        self.job.as_ref().map(DataflowJob::views)
    }

    /// Waits until every click the redirect has handed off so far is in the click log (or
    /// counted as dropped after the writer's retries). Errors after `timeout`.
    pub async fn flush_clicks(&self, timeout: Duration) -> anyhow::Result<()> {
        let Some(i) = &self.intake else { return Ok(()) };
        let target = i.accepted.load(Ordering::Acquire);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = i.stats.snapshot();
            if s.logged + s.dropped_log_error >= target {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("{} redirect clicks still queued for the click log after {timeout:?}", target - s.logged - s.dropped_log_error);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until every click redirected or posted so far is counted in the views
    /// ([`Self::flush_clicks`], then [`DataflowJob::sync`]); returns the frontier reached.
    ///
    /// Errors after `timeout`, or when this process runs no dataflow.
    pub async fn sync(&self, timeout: Duration) -> anyhow::Result<AsOf> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.flush_clicks(timeout).await?;
        if let Some(k) = self.intake.as_ref().and_then(|i| i.kafka.as_ref()) {
            k.wait_drained(deadline.saturating_duration_since(tokio::time::Instant::now())).await?;
        }
        let job = self.job.as_ref().context("this process runs no dataflow")?;
        job.sync(deadline.saturating_duration_since(tokio::time::Instant::now())).await
    }

    /// Serves until `signal` resolves, then stops gracefully ([`Self::shutdown`]).
    ///
    /// Errors: as [`Self::shutdown`]; [`super::DataflowFailed`] once the stop is done when the
    /// dataflow failed while serving (module [`super::failure`]).
    pub async fn serve_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut this = self;
        let failure = this.job.as_ref().map(DataflowJob::failure);
        let processes = this.config.dataflow.processes;
        let failed = async {
            match &failure {
                Some(f) => f.failed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = signal => {}
            cause = failed => {
                tracing::error!(error = %cause, "the dataflow failed; stopping the process (restart it, and every process of a cluster)");
                if let Err(e) = this.shutdown().await {
                    tracing::warn!(error = format!("{e:#}"), "the stop after the dataflow failure did not end cleanly");
                }
                return Err(super::DataflowFailed { cause, processes }.into());
            }
            r = &mut this.server => {
                // The server ended by itself: report why, then stop the rest.
                let cause = match r {
                    Ok(()) => anyhow::anyhow!("the http server stopped unexpectedly"),
                    Err(e) => anyhow::Error::new(e).context("the http server task failed"),
                };
                this.stop_rest(StopBudget::new(this.config.server.drain_timeout)).await?;
                return Err(cause);
            }
        }
        this.shutdown().await
    }

    /// Stops gracefully: HTTP (in-flight requests finish, SSE streams end; at most
    /// `[server] shutdown-timeout`), then within `[server] drain-timeout` the report job
    /// runner (a running export is re-queued), the log writer (every queued click appended),
    /// the dataflow and the sinks.
    ///
    /// Errors if the server, the writer or a dataflow worker failed, or when the click log
    /// was found damaged, replaced or deleted and could not be put right, or when the last
    /// checkpoint could not be written ([`CheckpointNotWritten`]; both once the rest of the
    /// stop is done); [`StopTimedOut`] (in
    /// the `anyhow` chain) when the part after HTTP outlasts `drain-timeout`.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(a) = &self.anomalies {
            // Idle SSE streams would hold the graceful HTTP stop.
            a.close_streams();
        }
        let stop = std::mem::replace(&mut self.stop_http, oneshot::channel().0);
        let _ = stop.send(());
        (&mut self.server).await.context("http server task failed")?;
        let drain_timeout = self.config.server.drain_timeout;
        let budget = StopBudget::new(drain_timeout);
        match tokio::time::timeout(drain_timeout, self.stop_rest(budget)).await {
            Ok(r) => r,
            Err(_) => {
                tracing::error!(?drain_timeout, "the stop after the HTTP server did not finish within drain-timeout");
                Err(StopTimedOut { drain_timeout }.into())
            }
        }
    }

    async fn stop_rest(&mut self, budget: StopBudget) -> anyhow::Result<()> {
        if let Some(a) = self.anomalies.as_mut() {
            // The automatic actions hold the API state, whose hooks hold a redirect state
            // (and with it a click sender the log writer waits for).
            a.stop_auto_actions().await;
        }
        if let Some(jobs) = self.jobs.take() {
            // A running export goes back to `queued` and runs again at the next start.
            jobs.stop().await;
        }
        if let Some(s) = &self.sinks {
            // The Redis invalidation subscription holds a redirect state (and a click sender).
            s.stop_invalidations();
        }
        let mut log_problem = None;
        if let Some(i) = self.intake.take() {
            // The router (and with it every click sender) is gone once the server stopped.
            let summary = i.writer.await.context("click log writer panicked")?;
            tracing::info!(logged = summary.logged, dropped = summary.dropped, "click log writer drained");
            super::lost_store::StoreSeqMark::stop_if_started(i.seq_mark).await;
            if let Some(k) = &i.kafka {
                // What the broker does not take in time stays in the spill for the next start.
                // A third of the drain at most: the dataflow's last checkpoint and the
                // view sinks come after it (a broker that is down takes all it is given).
                k.shutdown(KAFKA_DRAIN_TIMEOUT.min(budget.left() / 3)).await;
            }
            // A last look at clicks.redb (the writer's check runs every 2 s): a file damaged,
            // replaced or deleted since is repaired or reported now, not at the next start.
            let log = i.log.clone();
            log_problem = tokio::task::spawn_blocking(move || log.check_file().err()).await.context("click log check task failed")?;
        }
        let mut checkpoint_problem = None;
        if let Some(job) = self.job.take() {
            // Writes the last checkpoint, also (above all) when the click log is damaged. One
            // it could not write ends the stop with an error too, after the rest of it.
            // It waits for the view sinks to apply its cut for half of what is left of
            // the drain at most (a sink whose service is down never does).
            if let Err(e) = job.shutdown_within(budget.checkpoint_acks()).await {
                let c = e.downcast::<CheckpointNotWritten>()?;
                let cause = match self.sinks.as_ref().and_then(crate::sinks::Sinks::behind) {
                    Some(behind) => anyhow::anyhow!("{:#}; still behind: {behind}", c.cause),
                    None => c.cause,
                };
                checkpoint_problem = Some(CheckpointNotWritten { cause }.into());
            }
        }
        if let Some(a) = self.anomalies.take() {
            a.shutdown(SINK_DRAIN_TIMEOUT.min(budget.left() / 2)).await;
        }
        if let Some(sinks) = self.sinks.take() {
            sinks.shutdown(SINK_DRAIN_TIMEOUT.min(budget.left())).await;
        }
        // A last look at links.db: written back if deleted; not at its path, its links are lost.
        let moved = |e: &sluice_connectors::Error| matches!(e, sluice_connectors::Error::LinkStoreFileMoved { .. });
        let store_problem = self.store.write_back_file().await.err().or_else(|| self.store.check_file().err().filter(moved));
        // Last user of the store: SQLite checkpoints its WAL as the last connection closes.
        self.store.close().await;
        super::stop::with_store_problem(outcome(log_problem, checkpoint_problem), store_problem)
    }
}
