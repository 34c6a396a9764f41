//! The anomaly outputs of a `sluice serve` process that runs the dataflow: the abuse
//! detectors' events go into the embedded anomaly store (`<data dir>/anomalies.redb`), which
//! `GET /v1/anomalies`, `GET /v1/anomalies/stream` and the webhook dispatcher read.
//!
//! The dataflow's [`AnomalySink`] is called on worker threads: it only sends the batch into
//! an unbounded channel (never blocks a worker; anomaly volume is tiny next to clicks). The
//! writer task ([`writer`]) stores what it receives, in order, holding it in memory and
//! retrying while the store fails, so nothing is dropped while the process runs (bounded by
//! [`writer::MAX_HELD_EVENTS`]); `/readyz` reports it as `anomaly_store`
//! ([`AnomalyStoreHealth`]). The detectors' windows are not in the dataflow's checkpoints, so
//! a restart that restores a checkpoint does not derive earlier events again: what the writer
//! could not store by the stop is handled there ([`AnomalyOutputs::shutdown`]).
//!
//! `[webhooks]` configures delivery ([`WebhooksSection`]); `[admin] token` guards the
//! routes ([`sluice_serving::auth`]). With `[admin.auto-actions] enabled`, the automatic
//! actions follow the store here too ([`crate::auto_actions`], started by
//! [`AnomalyOutputs::start_auto_actions`] once the link API's state exists).

pub mod writer;
#[cfg(test)]
mod writer_tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use serde::{Deserialize, Serialize};
use sluice_connectors::anomaly_store::AnomalyStore;
use sluice_dataflows::anomaly::{AnomalySink, ClosedAnomalyReader, StoredAnomalies};
use sluice_schemas::Anomaly;
use sluice_serving::anomalies::AnomaliesState;
use sluice_serving::auth::AdminAuth;
use sluice_serving::webhooks::{Dispatcher, WebhookConfig, WebhooksState};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{Config, Role};
pub use writer::{AnomalyStoreHealth, WriterConfig, WriterState, WriterSummary};

/// `[webhooks]`: delivery of anomaly events to subscribed URLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct WebhooksSection {
    /// Allow webhook URLs on loopback, private, link-local, CGNAT, documentation and other
    /// non-public addresses (SSRF guard off). For receivers on the same host or network.
    pub allow_private: bool,
    /// Deadline of one delivery attempt, at most 10 min.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per delivery (≥ 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles per attempt, jittered in [d/2, d]. At most 1 day.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Longest delay between attempts, at most 1 day.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Deliveries in flight at once.
    pub max_concurrent: usize,
    /// A PEM file of extra CA certificates trusted for `https://` receivers, on top of the
    /// platform's roots (e.g. a development CA). Unset: platform roots only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_ca_file: Option<PathBuf>,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        let d = WebhookConfig::default();
        WebhooksSection {
            allow_private: d.allow_private,
            timeout: d.timeout,
            max_attempts: d.max_attempts,
            backoff_base: d.backoff_base,
            backoff_max: d.backoff_max,
            max_concurrent: d.max_concurrent,
            extra_ca_file: None,
        }
    }
}

impl WebhooksSection {
    /// The dispatcher settings.
    ///
    /// Errors: `max-attempts` or `max-concurrent` of 0, a zero timeout, `backoff-max` below
    /// `backoff-base`, an `extra-ca-file` that cannot be read or holds no PEM certificate.
    pub fn webhook_config(&self) -> anyhow::Result<WebhookConfig> {
        anyhow::ensure!(self.max_attempts >= 1, "webhooks.max-attempts must be at least 1");
        anyhow::ensure!(self.max_concurrent >= 1, "webhooks.max-concurrent must be at least 1");
        anyhow::ensure!(!self.timeout.is_zero(), "webhooks.timeout must be positive");
        anyhow::ensure!(self.backoff_max >= self.backoff_base, "webhooks.backoff-max must be at least webhooks.backoff-base");
        let extra_ca_pem = match &self.extra_ca_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| format!("could not read webhooks.extra-ca-file \"{}\"", path.display()))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .with_context(|| format!("webhooks.extra-ca-file \"{}\" is not a valid PEM certificate bundle", path.display()))?;
                anyhow::ensure!(
                    !certs.is_empty(),
                    "webhooks.extra-ca-file \"{}\" holds no certificate (expected PEM blocks \"-----BEGIN CERTIFICATE-----\")",
                    path.display()
                );
                Some(pem)
            }
        };
        Ok(WebhookConfig {
            allow_private: self.allow_private,
            timeout: self.timeout,
            max_attempts: self.max_attempts,
            backoff_base: self.backoff_base,
            backoff_max: self.backoff_max,
            max_concurrent: self.max_concurrent,
            extra_ca_pem,
        })
    }
}

/// The admin auth of `cfg` (`[admin] token`; without one, loopback peers that carry no
/// client-address header, `server.forwarded-header` included).
pub fn admin_auth(cfg: &Config) -> AdminAuth {
    AdminAuth::new(cfg.admin.token.as_ref().map(|t| t.0.clone())).with_client_header(cfg.forwarded_header_name().as_deref())
}

/// The 503 `anomalies_not_local` routes for a process without the store (role `api`, or
/// the dataflow off); `None` when the store is local (`local`) or the role serves no API.
pub fn not_local_routes(cfg: &Config, local: bool) -> Option<Router> {
    use sluice_serving::anomalies::not_local::{NotLocalReason, routes};
    let reason = match cfg.server.role {
        _ if local => return None,
        Role::Redirect => return None,
        Role::Api => NotLocalReason::ApiRole,
        Role::All => NotLocalReason::DataflowOff,
    };
    Some(routes(admin_auth(cfg), reason))
}

/// The running anomaly outputs (module docs).
pub struct AnomalyOutputs {
    store: Arc<AnomalyStore>,
    tx: Option<mpsc::UnboundedSender<Vec<Anomaly>>>,
    writer: Option<JoinHandle<WriterSummary>>,
    writer_state: Arc<WriterState>,
    /// What makes the next start derive events this run could not store.
    rederive: Rederive,
    dispatcher: Option<Arc<Dispatcher>>,
    auth: AdminAuth,
    allow_private: bool,
    closing: tokio::sync::watch::Sender<bool>,
    stop_writer: tokio::sync::watch::Sender<Option<tokio::time::Instant>>,
    writer_config: WriterConfig,
    auto_actions: Option<crate::auto_actions::AutoActions>,
}

impl std::fmt::Debug for AnomalyOutputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnomalyOutputs").field("head", &self.store.head()).finish_non_exhaustive()
    }
}

/// The context of a refused anomaly store (its open, [`check_store_file`]).
const OPEN_FAILED: &str = "could not open the anomaly store (another sluice process using this data dir, or a damaged anomalies.redb)";

/// Refuses a damaged `anomalies.redb` in `cfg`'s data dir as [`AnomalyOutputs::start`] would,
/// without writing anything ([`AnomalyStore::check_existing`]): `sluice serve` runs it before
/// it opens the click log, so that a start refused for it leaves `clicks.redb` as it was
/// (the click log's open and close commit to it). Reads the whole file once.
///
/// Errors: the file is damaged.
pub async fn check_store_file(cfg: &Config) -> anyhow::Result<()> {
    let dir = cfg.server.data_dir.clone();
    tokio::task::spawn_blocking(move || AnomalyStore::check_existing(&dir)).await.context("anomaly store check task failed")?.context(OPEN_FAILED)
}

impl AnomalyOutputs {
    /// Opens the store in `cfg`'s data directory and starts the writer and the webhook
    /// dispatcher.
    ///
    /// Errors: invalid `[webhooks]`, the store cannot be opened (held by another process),
    /// the HTTP client cannot be built.
    pub async fn start(cfg: &Config) -> anyhow::Result<AnomalyOutputs> {
        Self::start_with(cfg, WriterConfig::default()).await
    }

    /// [`Self::start`] with writer settings (tests shorten them).
    ///
    /// Errors: as [`Self::start`].
    pub async fn start_with(cfg: &Config, writer_config: WriterConfig) -> anyhow::Result<AnomalyOutputs> {
        let webhooks = cfg.webhooks.webhook_config()?;
        let dir = cfg.server.data_dir.clone();
        warn_if_history_lost(&dir);
        let auto_actions = cfg.admin.auto_actions.enabled;
        let store = tokio::task::spawn_blocking(move || {
            let store = AnomalyStore::open(&dir)?;
            if auto_actions {
                // Before the dataflow can add events (crate::auto_actions::init_cursor).
                crate::auto_actions::init_cursor(&store)?;
            }
            Ok::<_, sluice_connectors::Error>(store)
        })
        .await
        .context("anomaly store open task failed")?
        .context(OPEN_FAILED)?;
        let store = Arc::new(store);
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_writer, writer_stopped) = tokio::sync::watch::channel(None);
        let writer_state = Arc::new(WriterState::default());
        let writer = tokio::spawn(writer::run(Arc::clone(&store), rx, writer_stopped, Arc::clone(&writer_state), writer_config.clone()));
        let allow_private = webhooks.allow_private;
        if allow_private {
            tracing::warn!("webhooks may target private and loopback addresses ([webhooks] allow-private = true)");
        }
        let dispatcher = Arc::new(Dispatcher::start(Arc::clone(&store), webhooks).context("could not start the webhook dispatcher")?);
        let auth = admin_auth(cfg);
        tracing::info!(events = store.head(), "anomaly store opened");
        let closing = tokio::sync::watch::channel(false).0;
        Ok(AnomalyOutputs {
            store,
            tx: Some(tx),
            writer: Some(writer),
            writer_state,
            rederive: Rederive::of(cfg),
            dispatcher: Some(dispatcher),
            auth,
            allow_private,
            closing,
            stop_writer,
            writer_config,
            auto_actions: None,
        })
    }

    /// Starts the automatic actions when `[admin.auto-actions] enabled` (acting through
    /// `api`: its store and link-change hooks); a no-op otherwise, and a logged error when the
    /// link store keeps no admin state.
    pub fn start_auto_actions(&mut self, cfg: &Config, api: &sluice_serving::ApiState) {
        let section = &cfg.admin.auto_actions;
        if !section.enabled || self.auto_actions.is_some() {
            return;
        }
        match sluice_serving::admin::auto::AutoAdmin::new(api.clone()) {
            Some(admin) => self.auto_actions = Some(crate::auto_actions::AutoActions::start(section, Arc::clone(&self.store), admin)),
            None => tracing::error!("[admin.auto-actions] is enabled but the link store keeps no admin state: no automatic actions"),
        }
    }

    /// `/readyz`'s `anomaly_store` entry ([`AnomalyStoreHealth`]).
    pub fn health(&self) -> Arc<dyn crate::health::Dependency> {
        Arc::new(AnomalyStoreHealth { store: Arc::clone(&self.store), state: Arc::clone(&self.writer_state) })
    }

    /// The writer's state (events held, dropped).
    pub fn writer_state(&self) -> &Arc<WriterState> {
        &self.writer_state
    }

    /// The store.
    pub fn store(&self) -> &Arc<AnomalyStore> {
        &self.store
    }

    /// The sink to hand to the dataflow (`PipelineOutputs.anomalies`).
    pub fn sink(&self) -> Option<AnomalySink> {
        let tx = self.tx.clone()?;
        Some(Arc::new(move |batch: &[Anomaly]| {
            // Fails only once the writer has ended (after the stop); the dataflow has stopped
            // by then, so nothing is sent.
            if tx.send(batch.to_vec()).is_err() {
                tracing::error!(events = batch.len(), "anomaly events arrived after the anomaly writer stopped; they are not stored");
            }
        }))
    }

    /// What the store holds, for the dataflow's start ([`crate::job::JobAnomalies`]): the
    /// latest state of every anomaly still open, read now (detectors restored from a
    /// checkpoint take them over; every start closes those it does not derive again), and a
    /// reader of the closed ones, which each detector calls once its event-time schedule
    /// starts, for those a replay can still meet (README, "Anomalies open across a
    /// restart"): a replayed episode continues the anomaly a previous run derived from the
    /// same clicks under another id instead of opening a twin. A store that cannot be read
    /// gives nothing, with an error log: the anomalies open then stay open (the start goes
    /// on; the next one reads them again), a replay may open twins of the closed ones.
    pub async fn stored_anomalies(&self) -> StoredAnomalies {
        let store = Arc::clone(&self.store);
        let open = match tokio::task::spawn_blocking(move || store.open_anomalies()).await {
            Ok(Ok(open)) => open,
            Ok(Err(e)) => {
                tracing::error!(
                    path = %self.store.path().display(),
                    error = %crate::health::error_chain(&e),
                    "could not read the anomalies from the anomaly store; those open at the last stop are not closed by this run"
                );
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "anomaly store read task failed; the anomalies open at the last stop are not closed by this run");
                Vec::new()
            }
        };
        let store = Arc::clone(&self.store);
        let closed: ClosedAnomalyReader = Arc::new(move |after_ms, keep| match store.closed_ending_after(after_ms, keep) {
            Ok(closed) => closed,
            Err(e) => {
                tracing::error!(
                    path = %store.path().display(),
                    error = %crate::health::error_chain(&e),
                    "could not read the closed anomalies from the anomaly store; a replay may open a second anomaly for an episode it derives differently"
                );
                Vec::new()
            }
        });
        StoredAnomalies { open: open.into(), closed: Some(closed) }
    }

    /// `/v1/anomalies`, `/v1/anomalies/stream` and `/v1/webhooks...`.
    pub fn routes(&self) -> Router {
        let state = AnomaliesState::new(Arc::clone(&self.store), self.auth.clone()).with_closing(self.closing.subscribe());
        let anomalies = sluice_serving::anomalies::routes(state);
        let hooks =
            sluice_serving::webhooks::routes(WebhooksState::new(Arc::clone(&self.store), self.auth.clone(), self.allow_private, self.dispatcher.clone()));
        anomalies.merge(hooks)
    }

    /// Stops the automatic actions (if running) and drops what they hold (the link API's
    /// state: call before waiting for the click senders to go).
    pub async fn stop_auto_actions(&mut self) {
        if let Some(a) = self.auto_actions.take() {
            a.shutdown().await;
        }
    }

    /// Ends the open anomaly streams (call before stopping the HTTP server, whose graceful
    /// stop would otherwise wait for them).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Stops: the writer stores everything queued, retrying for up to
    /// [`WriterConfig::stop_retry`] while the store fails (the dataflow must have stopped
    /// first, and its last checkpoint be written). Events it could not store (still held, or
    /// dropped at the bound) are logged as an error with their count, and the next start is
    /// made to derive them again ([`Rederive`]). Then the dispatcher stops (pending deliveries
    /// resume at the next start). Returns the writer's summary (`None` when it did not end in
    /// time).
    pub async fn shutdown(mut self, timeout: Duration) -> Option<WriterSummary> {
        self.stop_auto_actions().await;
        self.tx = None;
        // The dataflow has stopped: nothing more arrives, store what is queued and end.
        self.stop_writer.send_replace(Some(tokio::time::Instant::now() + self.writer_config.stop_retry.min(timeout)));
        let summary = match self.writer.take() {
            Some(w) => match tokio::time::timeout(timeout, w).await {
                Ok(Ok(s)) => Some(s),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "anomaly writer failed");
                    None
                }
                Err(_) => None,
            },
            None => None,
        };
        let unstored = summary.map_or(self.writer_state.held() + self.writer_state.dropped(), |s| s.unstored);
        if unstored > 0 {
            self.rederive.apply(&self.store, unstored);
        }
        if let Some(d) = self.dispatcher.take() {
            match Arc::try_unwrap(d) {
                Ok(d) => d.shutdown().await,
                Err(d) => drop(d),
            }
        }
        summary
    }
}

/// How the next start derives again the anomaly events this run could not store. The
/// detectors' windows are not checkpointed, so only a start that replays the input from its
/// first record derives them.
#[derive(Debug, Clone)]
pub enum Rederive {
    /// Embedded click log with checkpoints: remove the checkpoints in this directory, so the
    /// next start replays the click log from its first offset (the log keeps every click, so
    /// the views are rebuilt exactly; the store drops the events it already holds).
    RemoveCheckpoints(PathBuf),
    /// No checkpoints (`checkpoint-interval = "0s"` or several processes): every start
    /// replays the input anyway.
    AlwaysReplayed,
    /// Kafka mode with checkpoints: the topic's retention may have dropped early clicks, so
    /// removing the checkpoints could lose stats; the events are lost from the store.
    Lost,
}

impl Rederive {
    /// The approach for `cfg`.
    pub fn of(cfg: &Config) -> Rederive {
        let checkpoints = !cfg.dataflow.checkpoint_interval.is_zero() && cfg.dataflow.processes == 1;
        match (checkpoints, cfg.kafka.enabled()) {
            (false, _) => Rederive::AlwaysReplayed,
            (true, false) => Rederive::RemoveCheckpoints(crate::job::checkpoint::dir_of(&cfg.server.data_dir)),
            (true, true) => Rederive::Lost,
        }
    }

    /// Acts on `unstored` events not stored in `store` at the stop, with an error log that
    /// says what happens to them.
    pub fn apply(&self, store: &AnomalyStore, unstored: u64) {
        let path = store.path().display().to_string();
        match self {
            Rederive::RemoveCheckpoints(dir) => match crate::job::checkpoint::remove_all(dir) {
                Ok(removed) => tracing::error!(
                    path,
                    events = unstored,
                    checkpoints_removed = removed,
                    "anomaly events could not be stored; the dataflow checkpoints were removed so that the next start replays the click log from its first offset and derives them again (the store keeps each event once)"
                ),
                Err(e) => tracing::error!(
                    path,
                    events = unstored,
                    error = %format!("{e:#}"),
                    "anomaly events could not be stored, and the dataflow checkpoints could not be removed to derive them again at the next start: they are lost (remove the checkpoints directory before the next start to derive them again)"
                ),
            },
            Rederive::AlwaysReplayed => tracing::error!(
                path,
                events = unstored,
                "anomaly events could not be stored; the next start replays the input from its first record (no checkpoints) and derives them again"
            ),
            Rederive::Lost => tracing::error!(
                path,
                events = unstored,
                "anomaly events could not be stored and are lost from the anomaly store (Kafka mode keeps its checkpoints: the topic may no longer hold every click a full replay would need)"
            ),
        }
    }
}

/// Warns when `anomalies.redb` is missing from `data_dir` while the dataflow has checkpoints
/// there: the store is created empty, and the dataflow, restored from a checkpoint, does not
/// derive the earlier anomalies again. Only checkpoints a start could restore count
/// ([`crate::job::checkpoint::list_intact`]): any other file named like one is skipped with
/// a warning naming it and what is wrong with it (a start without a checkpoint replays the
/// click log and derives the anomalies again).
fn warn_if_history_lost(data_dir: &std::path::Path) {
    use sluice_connectors::anomaly_store::ANOMALY_STORE_FILE_NAME;
    let path = data_dir.join(ANOMALY_STORE_FILE_NAME);
    let checkpoints = crate::job::checkpoint::dir_of(data_dir);
    if !path.exists() && crate::job::checkpoint::list_intact(&checkpoints).is_ok_and(|f| !f.is_empty()) {
        tracing::warn!(
            path = %path.display(),
            checkpoints = %checkpoints.display(),
            "the anomaly store is missing while the dataflow has checkpoints: a new, empty anomaly store is created; the anomaly history and the event ids (the stream's Last-Event-ID) restart from zero, and the dataflow, restored from its checkpoint, does not derive the earlier anomalies again (put the old anomalies.redb back before starting to keep them)"
        );
    }
}

/// Combines sinks: each batch goes to every one, in order.
pub fn fan_out(sinks: Vec<AnomalySink>) -> Option<AnomalySink> {
    match sinks.len() {
        0 => None,
        1 => sinks.into_iter().next(),
        _ => Some(Arc::new(move |batch: &[Anomaly]| {
            for s in &sinks {
                s(batch);
            }
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_section_matches_the_dispatcher_defaults_and_validates() {
        let s = WebhooksSection::default();
        assert_eq!(s.webhook_config().expect("valid"), WebhookConfig::default());
        assert!(WebhooksSection { max_attempts: 0, ..s.clone() }.webhook_config().is_err());
        assert!(WebhooksSection { backoff_max: Duration::from_millis(1), ..s.clone() }.webhook_config().is_err());
        assert!(WebhooksSection { timeout: Duration::ZERO, ..s }.webhook_config().is_err());
    }

    #[test]
    fn extra_ca_file_must_be_a_readable_pem_bundle_with_a_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let with = |name: &str| WebhooksSection { extra_ca_file: Some(dir.path().join(name)), ..WebhooksSection::default() };
        let ca = rcgen::generate_simple_self_signed(vec!["dev-ca.test".to_string()]).expect("certificate");
        let pem = format!("{}{}", ca.cert.pem(), ca.cert.pem());
        std::fs::write(dir.path().join("ca.pem"), &pem).expect("write");
        assert_eq!(with("ca.pem").webhook_config().expect("valid").extra_ca_pem, Some(pem.into_bytes()));
        let err = format!("{:#}", with("missing.pem").webhook_config().expect_err("missing file"));
        assert!(err.contains("could not read webhooks.extra-ca-file") && err.contains("missing.pem"), "{err}");
        std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").expect("write");
        let err = format!("{:#}", with("empty.pem").webhook_config().expect_err("no certificate"));
        assert!(err.contains("holds no certificate"), "{err}");
        std::fs::write(dir.path().join("broken.pem"), "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").expect("write");
        let err = format!("{:#}", with("broken.pem").webhook_config().expect_err("bad base64"));
        assert!(err.contains("not a valid PEM certificate bundle"), "{err}");
    }
}
