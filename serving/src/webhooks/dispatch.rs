//! The webhook dispatcher: turns stored anomaly events into deliveries and runs them.
//!
//! One task follows the anomaly store's head. For each webhook whose cursor is behind, it
//! reads the events after the cursor, keeps those matching the webhook (`kinds`,
//! `min_severity`; a `closed` event by the highest severity the anomaly reached, so that a
//! subscriber told about an anomaly also learns that it ended), and enqueues one delivery per event while advancing the cursor (one
//! transaction, [`AnomalyStore::enqueue_deliveries`]). Each delivery runs in its own task
//! (at most [`WebhookConfig::max_concurrent`] at once): `POST <url>` with the
//! [`AnomalyEventBody`] JSON and the headers `Sluice-Signature` ([`super::signature`]),
//! `Sluice-Event-Id`, `Sluice-Delivery-Id`, `Sluice-Webhook-Id`. A 2xx answer succeeds; any
//! other answer or error is retried after
//! `d = min(backoff_max, backoff_base · 2^(attempt−1))`, jittered uniformly in `[d/2, d]`
//! ("equal jitter", AWS Architecture Blog, "Exponential Backoff And Jitter", 2015), up to
//! `max_attempts`. The body is fixed when the delivery is created (stored with it), so every
//! attempt of one `Sluice-Delivery-Id`, after a restart too, sends the same bytes; only the
//! signature's timestamp `t` is the attempt's own. Every attempt is recorded. Redirects are not followed (a 3xx is a failed
//! attempt) and no proxy is used, so the SSRF check ([`super::ssrf`]) covers the address
//! actually connected to. Pending deliveries resume at the next start.
//!
//! TLS (`https://` receivers): rustls with the aws-lc-rs provider, certificates verified
//! against the platform's roots (`rustls-platform-verifier`: on Linux the system CA bundle)
//! plus [`WebhookConfig::extra_ca_pem`]. A handshake or certificate failure is a failed
//! attempt like any other (its error recorded, e.g. `invalid peer certificate:
//! UnknownIssuer`) and retried by the same backoff.
//!
//! Metrics: `sluice_webhook_deliveries_total{outcome="succeeded|failed"}`,
//! `sluice_webhook_attempts_total{result="ok|http_error|error"}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use sluice_connectors::anomaly_store::webhooks::{DeliveryAttempt, DeliveryRecord, DeliveryState, WebhookRecord};
use sluice_connectors::anomaly_store::{AnomalyStore, StoredEvent};
use sluice_schemas::{AnomalyStatus, Severity};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::signature;
use super::ssrf::{GuardedResolver, check_literal_at_delivery};
use crate::anomalies::dto::AnomalyEventBody;

/// Events read per webhook and step.
const PAGE: usize = 500;

/// Settings of webhook delivery (`[webhooks]` in the binary's configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// Allow receivers on loopback, private, link-local and other non-public addresses.
    pub allow_private: bool,
    /// Deadline of one attempt (connect + request + response head).
    pub timeout: Duration,
    /// Attempts per delivery, ≥ 1.
    pub max_attempts: u32,
    /// Delay before the second attempt (before jitter).
    pub backoff_base: Duration,
    /// Longest delay between attempts (before jitter).
    pub backoff_max: Duration,
    /// Deliveries in flight at once.
    pub max_concurrent: usize,
    /// Extra trusted CA certificates (a PEM bundle) for `https://` receivers, on top of the
    /// platform's roots (e.g. a development CA). `None`: platform roots only.
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private: false,
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            max_concurrent: 64,
            extra_ca_pem: None,
        }
    }
}

impl WebhookConfig {
    /// The delay after failed attempt `attempt` (1-based), before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
        self.backoff_base.saturating_mul(factor).min(self.backoff_max)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The running dispatcher; dropping it (or [`Self::shutdown`]) stops every task. Pending
/// deliveries stay pending and resume at the next start.
#[derive(Debug)]
pub struct Dispatcher {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    wake: Arc<tokio::sync::Notify>,
}

impl Dispatcher {
    /// Starts following `store` (resuming its pending deliveries).
    ///
    /// Errors: the HTTP client cannot be built (system TLS/DNS setup, an undecodable
    /// certificate in `extra_ca_pem`).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(store: Arc<AnomalyStore>, config: WebhookConfig) -> Result<Dispatcher, reqwest::Error> {
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = &config.extra_ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .dns_resolver(GuardedResolver { allow_private: config.allow_private })
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("sluice-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let (stop, stopped) = watch::channel(false);
        let wake = Arc::new(tokio::sync::Notify::new());
        let semaphore = Arc::new(Semaphore::new(config.max_concurrent.max(1)));
        let runner = Runner { store, config: Arc::new(config), client, stopped, semaphore, wake: Arc::clone(&wake) };
        let task = tokio::spawn(runner.run());
        Ok(Dispatcher { stop, task: Some(task), wake })
    }

    /// Makes the dispatcher look at the webhooks again now (after one was created or
    /// deleted).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops the dispatcher and every delivery task, and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[derive(Clone)]
struct Runner {
    store: Arc<AnomalyStore>,
    config: Arc<WebhookConfig>,
    client: reqwest::Client,
    stopped: watch::Receiver<bool>,
    semaphore: Arc<Semaphore>,
    wake: Arc<tokio::sync::Notify>,
}

async fn blocking<T: Send + 'static>(store: &Arc<AnomalyStore>, f: impl FnOnce(&AnomalyStore) -> sluice_connectors::Result<T> + Send + 'static) -> Option<T> {
    let store = Arc::clone(store);
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "webhook dispatcher could not use the anomaly store");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "webhook dispatcher store task failed");
            None
        }
    }
}

/// Whether `hook` gets event `a`: its kind is subscribed and its severity reaches the
/// hook's `min_severity`; a `closed` event is judged by `closed_peak`, the highest severity
/// the anomaly reached, so a subscriber told about an anomaly also learns that it ended
/// when it closes at a lower severity.
fn matches(hook: &WebhookRecord, a: &sluice_schemas::Anomaly, closed_peak: Option<Severity>) -> bool {
    let level = if a.status == AnomalyStatus::Closed { closed_peak.map_or(a.severity, |p| p.max(a.severity)) } else { a.severity };
    level >= hook.min_severity && (hook.kinds.is_empty() || hook.kinds.contains(&a.kind))
}

/// The peak severity of every anomaly closed by one of `events` (closed is final, so the
/// stored peak is the anomaly's whole life).
fn closed_peaks(store: &AnomalyStore, events: &[StoredEvent]) -> sluice_connectors::Result<HashMap<[u8; 16], Severity>> {
    let mut peaks = HashMap::new();
    for e in events.iter().filter(|e| e.anomaly.status == AnomalyStatus::Closed) {
        let id = *e.anomaly.anomaly_id.as_bytes();
        if let Some(latest) = store.get(&id)? {
            peaks.insert(id, latest.peak_severity());
        }
    }
    Ok(peaks)
}

impl Runner {
    async fn run(self) {
        let mut tasks = JoinSet::new();
        if let Some(pending) = blocking(&self.store, |s| s.pending_deliveries()).await {
            if !pending.is_empty() {
                tracing::info!(deliveries = pending.len(), "resuming pending webhook deliveries");
            }
            for d in pending {
                tasks.spawn(self.clone().deliver(d));
            }
        }
        let mut head = self.store.subscribe();
        let mut stopped = self.stopped.clone();
        loop {
            head.borrow_and_update();
            let progressed = self.enqueue_round(&mut tasks).await;
            // Reap finished delivery tasks.
            while tasks.try_join_next().is_some() {}
            if progressed {
                continue;
            }
            tokio::select! {
                r = head.changed() => if r.is_err() { break },
                () = self.wake.notified() => {}
                _ = stopped.changed() => {}
                // Retry a round that failed on the store.
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            if *stopped.borrow() {
                break;
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }

    /// One pass over the webhooks; whether any cursor moved (more may be waiting).
    async fn enqueue_round(&self, tasks: &mut JoinSet<()>) -> bool {
        let Some(hooks) = blocking(&self.store, |s| s.webhooks()).await else { return false };
        let head = self.store.head();
        let mut progressed = false;
        for hook in hooks {
            if hook.cursor >= head {
                continue;
            }
            let after = hook.cursor;
            let Some((events, peaks)) = blocking(&self.store, move |s| {
                let events = s.events_after(after, PAGE)?;
                let peaks = closed_peaks(s, &events)?;
                Ok((events, peaks))
            })
            .await
            else {
                continue;
            };
            let Some(last) = events.last().map(|e| e.event_id) else { continue };
            let peak = |e: &StoredEvent| peaks.get(e.anomaly.anomaly_id.as_bytes()).copied();
            // Each delivery's body is fixed here, at its creation (actions recorded later do
            // not change what a retry sends under the same delivery id).
            let Ok(bodies) =
                events.iter().filter(|e| matches(&hook, &e.anomaly, peak(e))).map(|e| event_body(e).map(|b| (e.event_id, b))).collect::<Result<Vec<_>, _>>()
            else {
                continue;
            };
            let id = hook.id.clone();
            let now = now_ms();
            if let Some(Some(deliveries)) = blocking(&self.store, move |s| s.enqueue_deliveries(&id, &bodies, last, now)).await {
                progressed = true;
                for d in deliveries {
                    tasks.spawn(self.clone().deliver(d));
                }
            }
        }
        progressed
    }

    /// Runs one delivery to its end (or until stopped).
    async fn deliver(self, mut d: DeliveryRecord) {
        let mut stopped = self.stopped.clone();
        loop {
            if *stopped.borrow() {
                return;
            }
            let wait = d.next_attempt_at_ms.map_or(0, |at| at - now_ms()).max(0);
            if wait > 0 {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                    _ = stopped.changed() => return,
                }
            }
            let Ok(_permit) = self.semaphore.acquire().await else { return };
            let hook_id = d.webhook_id.clone();
            let Some(hook) = blocking(&self.store, move |s| s.webhook(&hook_id)).await else { return };
            let Some(hook) = hook else {
                // Deleted meanwhile: close the record.
                d.state = DeliveryState::Failed;
                d.next_attempt_at_ms = None;
                let rec = d.clone();
                blocking(&self.store, move |s| s.update_delivery(&rec)).await;
                return;
            };
            let body = match d.body.clone() {
                Some(b) => b,
                // A record written before bodies were kept: built now, kept from then on.
                None => {
                    let event_id = d.event_id;
                    let Some(events) = blocking(&self.store, move |s| s.events_after(event_id.saturating_sub(1), 1)).await else { return };
                    let Some(event) = events.into_iter().find(|e| e.event_id == event_id) else {
                        tracing::warn!(event_id, delivery_id = d.delivery_id, "webhook delivery's event is missing from the store");
                        return;
                    };
                    let Ok(b) = event_body(&event) else { return };
                    d.body = Some(b.clone());
                    b
                }
            };
            let attempt = self.attempt(&hook, &d, body.into_bytes()).await;
            let ok = attempt.status_code.is_some_and(|c| (200..300).contains(&c));
            let n = attempt.attempt;
            metrics::counter!("sluice_webhook_attempts_total", "result" => if ok { "ok" } else if attempt.status_code.is_some() { "http_error" } else { "error" })
                .increment(1);
            tracing::debug!(webhook_id = %d.webhook_id, delivery_id = d.delivery_id, attempt = n, status = ?attempt.status_code, error = ?attempt.error, "webhook attempt");
            d.attempts.push(attempt);
            if ok {
                d.state = DeliveryState::Succeeded;
                d.next_attempt_at_ms = None;
            } else if n >= self.config.max_attempts {
                d.state = DeliveryState::Failed;
                d.next_attempt_at_ms = None;
                tracing::warn!(webhook_id = %d.webhook_id, delivery_id = d.delivery_id, attempts = n, "webhook delivery failed after every attempt");
            } else {
                let full = self.config.backoff(n).as_millis() as i64;
                let jittered = if full > 1 { rand::rng().random_range(full / 2..=full) } else { full };
                d.next_attempt_at_ms = Some(now_ms() + jittered);
            }
            let rec = d.clone();
            blocking(&self.store, move |s| s.update_delivery(&rec)).await;
            if d.state != DeliveryState::Pending {
                metrics::counter!("sluice_webhook_deliveries_total", "outcome" => if ok { "succeeded" } else { "failed" }).increment(1);
                return;
            }
        }
    }

    /// One `POST` of `bytes` (the delivery's fixed body), signed at the attempt's time.
    async fn attempt(&self, hook: &WebhookRecord, d: &DeliveryRecord, bytes: Vec<u8>) -> DeliveryAttempt {
        let n = u32::try_from(d.attempts.len()).unwrap_or(u32::MAX).saturating_add(1);
        let at_ms = now_ms();
        let started = std::time::Instant::now();
        let done = |status_code: Option<u16>, error: Option<String>| DeliveryAttempt {
            attempt: n,
            at_ms,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            status_code,
            error,
        };
        let url = match url::Url::parse(&hook.url) {
            Ok(u) => u,
            Err(e) => return done(None, Some(format!("stored url is invalid: {e}"))),
        };
        if let Err(why) = check_literal_at_delivery(&url, self.config.allow_private) {
            return done(None, Some(format!("blocked: {why}")));
        }
        let t = at_ms.div_euclid(1000);
        let sig = signature::header_value(hook.secret.as_bytes(), t, &bytes);
        let req = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signature::SIGNATURE_HEADER, sig)
            .header("sluice-event-id", d.event_id.to_string())
            .header("sluice-delivery-id", d.delivery_id.to_string())
            .header("sluice-webhook-id", hook.id.as_str())
            .body(bytes);
        match req.send().await {
            Ok(resp) => done(Some(resp.status().as_u16()), None),
            Err(e) => done(None, Some(error_chain(&e))),
        }
    }
}

/// The JSON request body of a delivery of `event` (as read, with its actions so far).
fn event_body(event: &StoredEvent) -> Result<String, serde_json::Error> {
    serde_json::to_string(&AnomalyEventBody::from(event))
        .inspect_err(|e| tracing::warn!(error = %e, event_id = event.event_id, "could not encode an anomaly event"))
}

/// The error and its causes, `": "`-joined (reqwest's own message is generic).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = WebhookConfig { backoff_base: Duration::from_millis(100), backoff_max: Duration::from_millis(1000), ..Default::default() };
        let got: Vec<u128> = (1..=7).map(|n| c.backoff(n).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(c.backoff(u32::MAX), Duration::from_millis(1000));
    }
}
