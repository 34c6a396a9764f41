//! Kafka connector (feature `kafka`): the click event log between ingest and the dataflow
//! when `KAFKA_BROKERS` is set (the embedded click log otherwise).
//!
//! | piece | what |
//! |---|---|
//! | [`KafkaClickSink`] (`kafka_sink`) | ingest side: appends to a bounded local [`Spill`] and forwards it to topic `click_events_raw` with an idempotent producer (acks=all, lz4), key = short code |
//! | [`KafkaSource`] (`kafka_source`) | dataflow side: one consumer per timely worker over explicitly assigned partitions, manual offset commits |
//! | [`OffsetCommitter`] | commits the offsets whose outputs every sink has durably applied |
//! | [`ValueDecoder`], [`ValueFormat`] | Avro values: single-object encoding, or the Confluent wire format with a [`SchemaRegistry`] |
//! | [`ensure_topics`], [`healthcheck`] | topic creation (click + anomalies topics) and the connector healthcheck |
//! | [`KafkaConfig`] | the `[kafka]` configuration section |
//!
//! # Delivery guarantee
//!
//! **Producer: at-least-once, ordered per key, never blocking the redirect.** Every event
//! [`KafkaClickSink::append`] accepts is on local disk (fsync'd spill) before it returns, and
//! leaves the spill only after the broker acknowledged it with `acks=all`. Broker outages and
//! process restarts therefore lose nothing while the spill has room; beyond its bound
//! (`spill-max-events`) new events are dropped and counted in
//! `sluice_kafka_spill_dropped_total`. Events whose acknowledgement was lost are sent again, so
//! the topic can hold duplicates; each keeps the spill's order for its key (see
//! [`producer`](self::producer) for the exact ordering argument).
//!
//! **Source: at-least-once input, offsets committed only on request.** The source never
//! commits by itself (`enable.auto.commit=false`); the pipeline commits the offsets of inputs
//! whose outputs every sink has durably applied. After a crash, reading resumes from the
//! committed offsets (or a checkpoint's own offsets) and replays what was not applied.
//!
//! **End to end: effectively once.** Duplicates from either side are removed by the
//! dataflow's `event_id` deduplication, and sinks apply idempotently, so results equal the
//! ground truth. Kafka transactions are not used (the test broker, tansu 0.6, lacks `EndTxn`).
//!
//! # Schema registry
//!
//! With `schema-registry-url` (or `SCHEMA_REGISTRY_URL`) set, values use the Confluent wire
//! format through `schema_registry_converter` (subject `<topic>-value`); decoding detects the
//! framing by its first byte and so reads both. No schema registry can be installed on our
//! build machines (Confluent's, Karapace, Apicurio and Redpanda's are unavailable, and tansu's
//! built-in validation is file-based without an HTTP API), so the registry path is tested
//! against a small in-test HTTP double of the three endpoints the client uses
//! (`POST /subjects/{subject}/versions`, `GET /schemas/ids/{id}`,
//! `GET /subjects/{subject}/versions/latest`), see `registry_double.rs`.
//!
//! # Tests
//!
//! Unit tests run without a broker. `integration_tests` (features `kafka` and
//! `integration-tests`) need a Kafka-API broker at `KAFKA_BROKERS` (`infra/services/kafka.sh
//! start`); the outage test also starts private tansu brokers from the cached binary
//! (`SLUICE_TANSU_BIN`, default `$XDG_CACHE_HOME/sluice/tansu/bin/tansu`).

pub mod admin;
pub mod anomalies;
pub mod codec;
pub mod config;
mod context;
mod forwarder;
pub mod metrics;
pub mod producer;
pub mod schema_registry;
pub mod source;
pub mod spill;

#[cfg(all(test, feature = "integration-tests"))]
mod integration_tests;
#[cfg(test)]
mod registry_double;
#[cfg(test)]
pub(crate) mod test_metrics;
#[cfg(test)]
mod tests;

pub use admin::{TopicStatus, ensure_topics, healthcheck};
pub use anomalies::{KafkaAnomalyProducer, anomaly_record_key};
pub use codec::{DeadLetter, DeadLetterReason, DecodeFailure, ValueDecoder, ValueFormat};
pub use config::{ClientOptions, KafkaConfig};
pub use producer::{KafkaClickSink, SinkStats};
pub use schema_registry::{RegisteredSchema, SchemaRegistry};
pub use source::{KafkaBatch, KafkaClickRecord, KafkaSource, OffsetCommitter, StartOffsets, partitions_for_worker};
pub use spill::{Spill, SpillAppend};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Kafka header marking a backfill event (`sluice import`, value `"1"`): such events bypass
/// the dataflow's lateness limit (not dedup). Live events carry no header.
pub const BACKFILL_HEADER: &str = "sluice-backfill";

/// Whether a librdkafka error is transient (timeouts, transport, leadership changes,
/// coordinator moves, full queues): retrying the same operation later may succeed.
pub(crate) fn kafka_error_retryable(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageTimedOut
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::NetworkException
                | C::Resolve
                | C::QueueFull
                | C::PurgeQueue
                | C::PurgeInflight
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::NotEnoughReplicas
                | C::NotEnoughReplicasAfterAppend
                | C::CoordinatorLoadInProgress
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
                | C::RebalanceInProgress
                | C::KafkaStorageError
                | C::UnknownTopicOrPartition
        )
    )
}
