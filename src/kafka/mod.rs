//! Kafka as the click event log of `sluice serve`, switched on by `[kafka] brokers`
//! (`SLUICE__KAFKA__BROKERS`, or the conventional `KAFKA_BROKERS`, see [`apply_env`]).
//!
//! With Kafka on, the process wires:
//! - **intake** ([`KafkaIntake`]): the redirect's click writer and `POST /v1/events` append to
//!   the producer's bounded, fsync'd local spill ([`KafkaClickSink`]); a forwarder thread
//!   publishes it to `[kafka] click-topic` (default `click_events_raw`, key = short code) with
//!   the idempotent producer (acks=all, lz4). Redirects never wait for, and never fail
//!   because of, the broker: the spill absorbs outages up to `spill-max-events`, beyond which
//!   events are dropped and counted (`sluice_kafka_spill_dropped_total`).
//! - **dataflow input** (`crate::job::kafka_source`): one consumer per timely worker over
//!   explicitly assigned partitions, offsets committed to `[kafka] group-id` once every sink
//!   has durably applied the outputs of the inputs before them; the state is restored from
//!   the newest checkpoint (`crate::job::checkpoint`) and the consumers start at its offsets.
//! - **anomalies** ([`KafkaIntake::anomaly_sink`]): the abuse detectors' lifecycle events to
//!   `[kafka] anomalies-topic` (Avro of `schemas/avro/anomaly.avsc`, key `<kind>:<key>`,
//!   `sluice_connectors::kafka::KafkaAnomalyProducer`), besides the anomaly store.
//! - **events_enriched** (`crate::sinks::events`): with ClickHouse configured, the enriched
//!   events are read from the click topic.
//!
//! The embedded click log is still opened (it holds the data directory's lock) but receives
//! nothing; without `brokers` nothing here runs and the embedded log is the event log.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_connectors::kafka::{KafkaAnomalyProducer, KafkaClickSink, KafkaConfig, SinkStats, ensure_topics};
use sluice_ingest::EventLog;
use sluice_schemas::ClickEvent;

use crate::config::Config;
use crate::health::{CachedProbe, Dependency, PROBE_MAX_AGE, PROBE_TIMEOUT, RefreshFuture};

/// Fills `[kafka] brokers` / `schema-registry-url` from `KAFKA_BROKERS` /
/// `SCHEMA_REGISTRY_URL` where the `SLUICE__KAFKA__…` variables are not set. `sluice serve`
/// calls this; tests that start the binary remove those variables unless they mean Kafka.
pub fn apply_env(cfg: &mut Config) {
    cfg.kafka.apply_env(|k| std::env::var(k).ok());
}

/// The ingest side of Kafka mode: the producer with its spill (module docs). Cheap to clone.
#[derive(Clone, Debug)]
pub struct KafkaIntake {
    sink: Arc<KafkaClickSink>,
    anomalies: Arc<KafkaAnomalyProducer>,
    click_topic_created: bool,
}

impl KafkaIntake {
    /// Validates `[kafka]`, creates the click and anomalies topics when `create-topics` is on
    /// (this needs the broker: a process configured for Kafka does not start without it the
    /// first time), then opens the spill in `data_dir` and starts the forwarder. Afterwards
    /// the broker may come and go.
    ///
    /// Errors: an invalid `[kafka]` section, the broker unreachable while creating topics,
    /// the spill not opening (another process holds it).
    pub async fn start(cfg: &KafkaConfig, data_dir: &Path) -> anyhow::Result<KafkaIntake> {
        // Its message names the key (`invalid configuration: kafka.…`).
        cfg.validate()?;
        let mut click_topic_created = false;
        if cfg.create_topics {
            let topics = ensure_topics(cfg).await.context("could not create the kafka topics (is the broker at [kafka] brokers up?)")?;
            for t in topics {
                tracing::info!(topic = %t.topic, created = t.created, partitions = t.partitions, "kafka topic ready");
                click_topic_created |= t.created && t.topic == cfg.click_topic;
            }
        }
        let (cfg2, dir) = (cfg.clone(), data_dir.to_path_buf());
        let sink = tokio::task::spawn_blocking(move || KafkaClickSink::start(&cfg2, &dir))
            .await
            .context("kafka producer start task failed")?
            .context("could not start the kafka producer")?;
        tracing::info!(topic = %sink.topic(), backlog = sink.stats().backlog, "kafka producer started (spill-first)");
        let anomalies = KafkaAnomalyProducer::start(cfg).context("could not start the kafka anomaly producer")?;
        Ok(KafkaIntake { sink: Arc::new(sink), anomalies: Arc::new(anomalies), click_topic_created })
    }

    /// Whether this start created `[kafka] click-topic` (it did not exist): a checkpoint's
    /// offsets then belong to a topic that is gone (`crate::job::StartPoint::forget_source_offsets`).
    pub fn click_topic_created(&self) -> bool {
        self.click_topic_created
    }

    /// The event log the click writer and `POST /v1/events` append to.
    pub fn event_log(&self) -> KafkaEventLog {
        KafkaEventLog(Arc::clone(&self.sink))
    }

    /// The dataflow's anomaly sink publishing to `[kafka] anomalies-topic` (never blocks a
    /// worker: events are queued in librdkafka; see `KafkaAnomalyProducer::send`).
    pub fn anomaly_sink(&self) -> sluice_dataflows::anomaly::AnomalySink {
        let p = Arc::clone(&self.anomalies);
        Arc::new(move |batch: &[sluice_schemas::Anomaly]| {
            p.send(batch);
        })
    }

    /// `/readyz`'s view of the broker ([`KafkaHealth`]).
    pub fn health(&self) -> KafkaHealth {
        KafkaHealth { intake: self.clone(), probe: CachedProbe::new(PROBE_MAX_AGE) }
    }

    /// Producer counters (delivered, spill backlog, drops).
    pub fn stats(&self) -> SinkStats {
        self.sink.stats()
    }

    /// Waits until every event appended so far is acknowledged by the broker; errors after
    /// `timeout` naming the backlog left.
    pub async fn wait_drained(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let backlog = self.sink.stats().backlog;
            if backlog == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("{backlog} click events still in the kafka spill after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the forwarder after delivering for up to `drain` in all (what is left stays in
    /// the spill for the next start) and logs the final counters. Queued anomaly events get
    /// at most half of `drain` (a broker that is down must not take the clicks' share too),
    /// the click forwarder what is left of it.
    pub async fn shutdown(&self, drain: Duration) {
        let deadline = tokio::time::Instant::now() + drain;
        let anomalies = Arc::clone(&self.anomalies);
        match tokio::task::spawn_blocking(move || anomalies.flush(drain / 2)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "anomaly events still queued for kafka at shutdown"),
            Err(e) => tracing::error!(error = %e, "kafka anomaly flush task failed"),
        }
        let sink = Arc::clone(&self.sink);
        let drain = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::task::spawn_blocking(move || sink.shutdown(drain)).await {
            Ok(s) => tracing::info!(delivered = s.delivered, backlog = s.backlog, dropped = s.spill_dropped, "kafka producer stopped"),
            Err(e) => tracing::error!(error = %e, "kafka producer shutdown task failed"),
        }
    }
}

/// [`EventLog`] over the Kafka producer's spill: `append` returns once the events are on
/// local disk (offsets are spill offsets). Events the full spill refused are counted by the
/// sink (`sluice_kafka_spill_dropped_total`) and missing from the returned range.
#[derive(Clone, Debug)]
pub struct KafkaEventLog(Arc<KafkaClickSink>);

impl EventLog for KafkaEventLog {
    fn append(&self, events: &[ClickEvent]) -> sluice_connectors::Result<Range<u64>> {
        Ok(self.0.append(events)?.accepted)
    }

    fn append_backfill(&self, events: &[ClickEvent]) -> sluice_connectors::Result<Range<u64>> {
        Ok(self.0.append_backfill(events)?.accepted)
    }
}

/// `/readyz`'s view of the broker in Kafka mode (name `kafka`, optional): up while a metadata
/// request for the click topic, sent through the anomaly producer's long-lived client, is
/// answered within [`PROBE_TIMEOUT`] (probed at most once per [`PROBE_MAX_AGE`]). Optional,
/// because redirects and `POST /v1/events` keep working without the broker: clicks wait in
/// the spill (`backlog`; beyond `spill-max-events` they are dropped and counted in `dropped`)
/// and the stats resume when it returns. Shape: `{"status": "up", "backlog": N, "dropped": N}`
/// or `{"status": "down", "error": "...", "backlog": N, "dropped": N}`.
pub struct KafkaHealth {
    intake: KafkaIntake,
    probe: CachedProbe,
}

impl Dependency for KafkaHealth {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn status(&self) -> (bool, serde_json::Value) {
        let stats = self.intake.sink.stats();
        match self.probe.last() {
            Some(Err(error)) => (false, serde_json::json!({ "status": "down", "error": error, "backlog": stats.backlog, "dropped": stats.spill_dropped })),
            // Not probed yet (no /readyz so far): nothing says it is down.
            Some(Ok(())) | None => (true, serde_json::json!({ "status": "up", "backlog": stats.backlog, "dropped": stats.spill_dropped })),
        }
    }

    fn refresh(&self) -> RefreshFuture<'_> {
        Box::pin(self.probe.refresh(|| async {
            let (anomalies, topic) = (Arc::clone(&self.intake.anomalies), self.intake.sink.topic().to_owned());
            match tokio::task::spawn_blocking(move || anomalies.topic_partitions(&topic, PROBE_TIMEOUT)).await {
                Ok(Ok(_partitions)) => Ok(()),
                Ok(Err(e)) => {
                    let error = crate::health::error_chain(&e);
                    tracing::debug!(error, "readiness probe: kafka does not answer");
                    Err(error)
                }
                Err(e) => Err(format!("kafka probe task failed: {e}")),
            }
        }))
    }
}
