//! The anomaly outputs of a `sluice serve` process that runs the dataflow: the abuse
//! detectors' events go into the embedded anomaly store (`<data dir>/anomalies.redb`), which
//! `GET /v1/anomalies`, `GET /v1/anomalies/stream` and the webhook dispatcher read.
//!
//! The dataflow's [`AnomalySink`] is called on worker threads: it only sends the batch into
//! an unbounded channel (never blocks a worker; anomaly volume is tiny next to clicks). A
//! writer task appends what it receives, coalescing whatever is queued into one
//! transaction. A failed append is retried with capped exponential backoff; the click log
//! stays the source of truth (the dataflow replays it at every start and the store drops
//! events it already holds), so a batch given up on after the retries comes back at the
//! next start. Metrics: `sluice_anomaly_store_events_total{outcome="stored|duplicate"}`,
//! `sluice_anomaly_store_errors_total`.
//!
//! `[webhooks]` configures delivery ([`WebhooksSection`]); `[admin] token` guards the
//! routes ([`sluice_serving::auth`]). With `[admin.auto-actions] enabled`, the automatic
//! actions follow the store here too ([`crate::auto_actions`], started by
//! [`AnomalyOutputs::start_auto_actions`] once the link API's state exists).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use serde::{Deserialize, Serialize};
use sluice_connectors::anomaly_store::AnomalyStore;
use sluice_dataflows::anomaly::AnomalySink;
use sluice_schemas::Anomaly;
use sluice_serving::anomalies::AnomaliesState;
use sluice_serving::auth::AdminAuth;
use sluice_serving::webhooks::{Dispatcher, WebhookConfig, WebhooksState};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{Config, Role};

/// Attempts of one append before the batch is left to the next replay.
const APPEND_ATTEMPTS: u32 = 6;

/// `[webhooks]`: delivery of anomaly events to subscribed URLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct WebhooksSection {
    /// Allow webhook URLs on loopback, private, link-local, CGNAT, documentation and other
    /// non-public addresses (SSRF guard off). For receivers on the same host or network.
    pub allow_private: bool,
    /// Deadline of one delivery attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per delivery (≥ 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles per attempt, jittered in [d/2, d].
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Longest delay between attempts.
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

/// The admin auth of `cfg` (`[admin] token`).
pub fn admin_auth(cfg: &Config) -> AdminAuth {
    AdminAuth::new(cfg.admin.token.as_ref().map(|t| t.0.clone()))
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
    writer: Option<JoinHandle<()>>,
    dispatcher: Option<Arc<Dispatcher>>,
    auth: AdminAuth,
    allow_private: bool,
    closing: tokio::sync::watch::Sender<bool>,
    stop_writer: tokio::sync::watch::Sender<bool>,
    auto_actions: Option<crate::auto_actions::AutoActions>,
}

impl std::fmt::Debug for AnomalyOutputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnomalyOutputs").field("head", &self.store.head()).finish_non_exhaustive()
    }
}

impl AnomalyOutputs {
    /// Opens the store in `cfg`'s data directory and starts the writer and the webhook
    /// dispatcher.
    ///
    /// Errors: invalid `[webhooks]`, the store cannot be opened (held by another process),
    /// the HTTP client cannot be built.
    pub async fn start(cfg: &Config) -> anyhow::Result<AnomalyOutputs> {
        let webhooks = cfg.webhooks.webhook_config()?;
        let dir = cfg.server.data_dir.clone();
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
        .context("could not open the anomaly store (another sluice process using this data dir, or a damaged anomalies.redb)")?;
        let store = Arc::new(store);
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_writer, writer_stopped) = tokio::sync::watch::channel(false);
        let writer = tokio::spawn(write_loop(Arc::clone(&store), rx, writer_stopped));
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
            dispatcher: Some(dispatcher),
            auth,
            allow_private,
            closing,
            stop_writer,
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

    /// The store.
    pub fn store(&self) -> &Arc<AnomalyStore> {
        &self.store
    }

    /// The sink to hand to the dataflow (`PipelineOutputs.anomalies`).
    pub fn sink(&self) -> Option<AnomalySink> {
        let tx = self.tx.clone()?;
        Some(Arc::new(move |batch: &[Anomaly]| {
            // Fails only after shutdown; the next start's replay brings the batch back.
            let _ = tx.send(batch.to_vec());
        }))
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

    /// Stops: the writer stores everything queued (the dataflow must have stopped first, or
    /// later batches are left to the next replay), then the dispatcher stops (pending
    /// deliveries resume at the next start).
    pub async fn shutdown(mut self, timeout: Duration) {
        self.stop_auto_actions().await;
        self.tx = None;
        // The dataflow has stopped: nothing more arrives, store what is queued and end.
        self.stop_writer.send_replace(true);
        if let Some(w) = self.writer.take()
            && tokio::time::timeout(timeout, w).await.is_err()
        {
            tracing::warn!("anomaly writer did not drain in time");
        }
        if let Some(d) = self.dispatcher.take() {
            match Arc::try_unwrap(d) {
                Ok(d) => d.shutdown().await,
                Err(d) => drop(d),
            }
        }
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

async fn write_loop(store: Arc<AnomalyStore>, mut rx: mpsc::UnboundedReceiver<Vec<Anomaly>>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let stored = metrics::counter!("sluice_anomaly_store_events_total", "outcome" => "stored");
    let duplicate = metrics::counter!("sluice_anomaly_store_events_total", "outcome" => "duplicate");
    let errors = metrics::counter!("sluice_anomaly_store_errors_total");
    loop {
        let mut batch = if *stop.borrow() {
            match rx.try_recv() {
                Ok(b) => b,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                biased;
                b = rx.recv() => match b {
                    Some(b) => b,
                    None => return,
                },
                r = stop.changed() => {
                    if r.is_err() {
                        return;
                    }
                    continue;
                }
            }
        };
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        let n = batch.len() as u64;
        let batch = Arc::new(batch);
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=APPEND_ATTEMPTS {
            let (s, b) = (Arc::clone(&store), Arc::clone(&batch));
            match tokio::task::spawn_blocking(move || s.append(&b)).await {
                Ok(Ok(ids)) => {
                    stored.increment(ids.len() as u64);
                    duplicate.increment(n - ids.len() as u64);
                    break;
                }
                Ok(Err(e)) => {
                    errors.increment(1);
                    if attempt == APPEND_ATTEMPTS {
                        tracing::error!(error = %e, events = n, "could not store anomalies; they return when the dataflow next replays the click log");
                    } else {
                        tracing::warn!(error = %e, attempt, "could not store anomalies, retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
                Err(e) => {
                    errors.increment(1);
                    tracing::error!(error = %e, "anomaly store task failed");
                    break;
                }
            }
        }
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
