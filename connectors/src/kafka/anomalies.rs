//! Anomaly lifecycle events to `[kafka] anomalies-topic` (default `anomalies`).
//!
//! * **Key**: `<kind>:<key>` (e.g. `click_burst:link:ab12`), so every event of one anomaly
//!   (open, updated…, closed) lands on one partition, in order.
//! * **Value**: the Avro single-object encoding of `schemas/avro/anomaly.avsc`
//!   ([`sluice_schemas::anomaly::avro::encode_anomaly`]; the schema's fingerprint is in the
//!   header, readable with [`sluice_schemas::anomaly::avro::decode_anomaly`]). The Confluent
//!   wire format is used for click events only: anomalies have no registry subject yet.
//! * **Producer**: the idempotent settings of [`KafkaConfig::producer_client_config`]
//!   (`acks=all`, lz4); a librdkafka background thread delivers. [`KafkaAnomalyProducer::send`]
//!   never blocks: when librdkafka's queue is full the event is dropped and counted.
//!   Anomaly events are rare and the anomaly store keeps them durably; the topic is a feed
//!   for other consumers, not the record.
//!
//! Metrics: `sluice_kafka_anomalies_total{outcome="delivered"|"failed"|"dropped"}`.

use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use sluice_schemas::Anomaly;
use sluice_schemas::anomaly::avro::encode_anomaly;

use super::KafkaConfig;
use crate::{Error, Result};

/// Delivery reports of the anomaly producer, counted in metrics.
struct AnomalyDeliveries;

impl ClientContext for AnomalyDeliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(?level, fac, "kafka anomalies: {log_message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka anomaly producer error");
    }
}

impl ProducerContext for AnomalyDeliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let outcome = if result.is_ok() { "delivered" } else { "failed" };
        metrics::counter!("sluice_kafka_anomalies_total", "outcome" => outcome).increment(1);
        if let Err((e, _)) = result {
            tracing::warn!(error = %e, "an anomaly event was not delivered to kafka");
        }
    }
}

/// Publishes anomaly events to the anomalies topic (module docs).
pub struct KafkaAnomalyProducer {
    producer: ThreadedProducer<AnomalyDeliveries>,
    topic: String,
}

impl std::fmt::Debug for KafkaAnomalyProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAnomalyProducer").field("topic", &self.topic).finish_non_exhaustive()
    }
}

/// The record key of an anomaly event: `<kind>:<key>`.
pub fn anomaly_record_key(a: &Anomaly) -> String {
    format!("{}:{}", a.kind.as_str(), a.key)
}

impl KafkaAnomalyProducer {
    /// A producer for `config.anomalies_topic`.
    ///
    /// Errors: [`Error::Config`] for an invalid configuration, [`Error::Kafka`] if librdkafka
    /// refuses the producer settings.
    pub fn start(config: &KafkaConfig) -> Result<KafkaAnomalyProducer> {
        config.validate()?;
        for outcome in ["delivered", "failed", "dropped"] {
            metrics::counter!("sluice_kafka_anomalies_total", "outcome" => outcome).increment(0);
        }
        let producer =
            config.producer_client_config()?.create_with_context(AnomalyDeliveries).map_err(|source| Error::Kafka { op: "create anomaly producer", source })?;
        Ok(KafkaAnomalyProducer { producer, topic: config.anomalies_topic.clone() })
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queues `anomalies` for delivery (never blocks); returns how many were queued. Events
    /// that do not encode or do not fit librdkafka's queue are dropped, logged and counted.
    pub fn send(&self, anomalies: &[Anomaly]) -> usize {
        let mut queued = 0;
        for a in anomalies {
            let value = match encode_anomaly(a) {
                Ok(v) => v,
                Err(e) => {
                    metrics::counter!("sluice_kafka_anomalies_total", "outcome" => "dropped").increment(1);
                    tracing::warn!(error = %e, anomaly_id = %a.anomaly_id, "anomaly does not encode; not published");
                    continue;
                }
            };
            let key = anomaly_record_key(a);
            match self.producer.send(BaseRecord::to(&self.topic).key(&key).payload(&value)) {
                Ok(()) => queued += 1,
                Err((e, _)) => {
                    metrics::counter!("sluice_kafka_anomalies_total", "outcome" => "dropped").increment(1);
                    tracing::warn!(error = %e, anomaly_id = %a.anomaly_id, "anomaly not queued for kafka");
                }
            }
        }
        queued
    }

    /// The partition count of `topic` as the broker reports it now, through this producer's
    /// client (one metadata request, no new connection once connected): the readiness probe
    /// of Kafka mode. Blocking for up to `timeout`: call from `spawn_blocking`.
    ///
    /// Errors: [`Error::Kafka`] when no broker answers within `timeout` or the topic is
    /// missing.
    pub fn topic_partitions(&self, topic: &str, timeout: Duration) -> Result<i32> {
        super::source::partition_count_within(self.producer.client(), topic, timeout)
    }

    /// Waits up to `timeout` for queued events to be delivered (call before stopping).
    ///
    /// Errors: [`Error::Kafka`] when events are still queued at the timeout.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.producer.flush(timeout).map_err(|source| Error::Kafka { op: "flush anomalies", source })
    }
}
