//! Telemetry of the Kafka connector: one small event struct per thing that happens, each with
//! an `emit()` that updates the metric (and logs where a human should know), emitted once per
//! batch, never per record (STYLE.md §3.6).
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `sluice_kafka_delivered_total` | counter | `topic` | events the broker acknowledged (acks=all) |
//! | `sluice_kafka_delivery_errors_total` | counter | `topic`, `error_type` | failed delivery reports (the event stays in the spill and is re-sent) |
//! | `sluice_kafka_resent_total` | counter | `topic` | events handed to librdkafka again after a failed delivery |
//! | `sluice_kafka_spill_dropped_total` | counter | `topic` | events dropped because the spill was full |
//! | `sluice_kafka_spill_backlog_events` | gauge | `topic` | events in the spill not yet acknowledged by the broker |
//! | `sluice_kafka_consumed_total` | counter | `topic` | events the source decoded and yielded |
//! | `sluice_kafka_decode_errors_total` | counter | `topic`, `error_type` | dead-lettered (undecodable) messages |
//! | `sluice_kafka_consumer_errors_total` | counter | `topic`, `error_type` | consumer poll errors (librdkafka reconnects by itself) |
//! | `sluice_kafka_offset_commits_total` | counter | `topic` | successful offset commits |
//! | `sluice_kafka_commit_errors_total` | counter | `topic`, `error_type` | failed offset commits |
//!
//! `error_type` takes the bounded values of [`kafka_error_type`] and
//! [`super::DeadLetterReason::as_str`].

use std::sync::Once;
use std::time::{Duration, Instant};

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Registers descriptions and units of every Kafka metric with the installed recorder; safe
/// to call more than once (only the first call registers).
pub fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_counter!("sluice_kafka_delivered_total", Unit::Count, "Click events acknowledged by the Kafka broker.");
        describe_counter!("sluice_kafka_delivery_errors_total", Unit::Count, "Failed Kafka delivery reports; the event stays in the spill and is re-sent.");
        describe_counter!("sluice_kafka_resent_total", Unit::Count, "Click events re-sent after a failed delivery.");
        describe_counter!("sluice_kafka_spill_dropped_total", Unit::Count, "Click events dropped because the spill was full.");
        describe_gauge!("sluice_kafka_spill_backlog_events", Unit::Count, "Click events in the local spill not yet acknowledged by the broker.");
        describe_counter!("sluice_kafka_consumed_total", Unit::Count, "Click events decoded by the Kafka source.");
        describe_counter!("sluice_kafka_decode_errors_total", Unit::Count, "Kafka messages the source could not decode (dead-lettered).");
        describe_counter!("sluice_kafka_consumer_errors_total", Unit::Count, "Kafka consumer poll errors.");
        describe_counter!("sluice_kafka_offset_commits_total", Unit::Count, "Successful Kafka offset commits.");
        describe_counter!("sluice_kafka_commit_errors_total", Unit::Count, "Failed Kafka offset commits.");
    });
}

/// Bounded classification of a librdkafka error for the `error_type` label: `timeout`,
/// `transport`, `purged`, `queue_full`, `message_too_large`, `unknown_topic`,
/// `producer_state` (idempotence sequence/epoch), `fatal`, `broker` (other broker error
/// codes) or `client` (errors not carrying a code).
pub fn kafka_error_type(e: &KafkaError) -> &'static str {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut) => "timeout",
        Some(C::BrokerTransportFailure | C::AllBrokersDown | C::NetworkException | C::Resolve) => "transport",
        Some(C::PurgeQueue | C::PurgeInflight) => "purged",
        Some(C::QueueFull) => "queue_full",
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize) => "message_too_large",
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition) => "unknown_topic",
        Some(C::OutOfOrderSequenceNumber | C::InvalidProducerEpoch | C::UnknownProducerId) => "producer_state",
        Some(C::Fatal) => "fatal",
        Some(_) => "broker",
        None => "client",
    }
}

/// A batch of delivery reports acknowledged by the broker.
pub(crate) struct EventsDelivered<'a> {
    pub topic: &'a str,
    pub count: u64,
}

impl EventsDelivered<'_> {
    pub fn emit(self) {
        if self.count > 0 {
            counter!("sluice_kafka_delivered_total", "topic" => self.topic.to_string()).increment(self.count);
        }
    }
}

/// Failed delivery reports of one `error_type`.
pub(crate) struct DeliveryFailed<'a> {
    pub topic: &'a str,
    pub error_type: &'static str,
    pub count: u64,
}

impl DeliveryFailed<'_> {
    pub fn emit(self) {
        if self.count > 0 {
            counter!("sluice_kafka_delivery_errors_total", "topic" => self.topic.to_string(), "error_type" => self.error_type).increment(self.count);
        }
    }
}

/// Events handed to librdkafka again after failed deliveries.
pub(crate) struct EventsResent<'a> {
    pub topic: &'a str,
    pub count: u64,
}

impl EventsResent<'_> {
    pub fn emit(self) {
        if self.count > 0 {
            counter!("sluice_kafka_resent_total", "topic" => self.topic.to_string()).increment(self.count);
        }
    }
}

/// Events dropped because the spill was full.
pub(crate) struct SpillDropped<'a> {
    pub topic: &'a str,
    pub count: u64,
    pub backlog: u64,
}

impl SpillDropped<'_> {
    pub fn emit(self, log_limiter: &mut RateLimit) {
        if self.count > 0 {
            counter!("sluice_kafka_spill_dropped_total", "topic" => self.topic.to_string()).increment(self.count);
            if log_limiter.allow() {
                tracing::warn!(topic = self.topic, dropped = self.count, backlog = self.backlog, "kafka spill full, dropping click events");
            }
        }
    }
}

/// The spill's current backlog.
pub(crate) struct SpillBacklog<'a> {
    pub topic: &'a str,
    pub events: u64,
}

impl SpillBacklog<'_> {
    pub fn emit(self) {
        gauge!("sluice_kafka_spill_backlog_events", "topic" => self.topic.to_string()).set(self.events as f64);
    }
}

/// Events decoded by the source in one poll.
pub(crate) struct EventsConsumed<'a> {
    pub topic: &'a str,
    pub count: u64,
}

impl EventsConsumed<'_> {
    pub fn emit(self) {
        if self.count > 0 {
            counter!("sluice_kafka_consumed_total", "topic" => self.topic.to_string()).increment(self.count);
        }
    }
}

/// A dead-lettered message.
pub(crate) struct DecodeFailed<'a> {
    pub topic: &'a str,
    pub error_type: &'static str,
    pub partition: i32,
    pub offset: i64,
    pub message: &'a str,
}

impl DecodeFailed<'_> {
    pub fn emit(self, log_limiter: &mut RateLimit) {
        counter!("sluice_kafka_decode_errors_total", "topic" => self.topic.to_string(), "error_type" => self.error_type).increment(1);
        if log_limiter.allow() {
            tracing::warn!(
                topic = self.topic,
                partition = self.partition,
                offset = self.offset,
                error_type = self.error_type,
                error = self.message,
                "undecodable kafka message dead-lettered"
            );
        }
    }
}

/// A consumer poll error.
pub(crate) struct ConsumerError<'a> {
    pub topic: &'a str,
    pub error: &'a KafkaError,
}

impl ConsumerError<'_> {
    pub fn emit(self, log_limiter: &mut RateLimit) {
        let error_type = kafka_error_type(self.error);
        counter!("sluice_kafka_consumer_errors_total", "topic" => self.topic.to_string(), "error_type" => error_type).increment(1);
        if log_limiter.allow() {
            tracing::warn!(topic = self.topic, error_type, error = %self.error, "kafka consumer error");
        }
    }
}

/// An offset commit, successful or not.
pub(crate) struct OffsetsCommitted<'a> {
    pub topic: &'a str,
    pub partitions: usize,
    pub error: Option<&'a KafkaError>,
}

impl OffsetsCommitted<'_> {
    pub fn emit(self) {
        match self.error {
            None => {
                counter!("sluice_kafka_offset_commits_total", "topic" => self.topic.to_string()).increment(1);
                tracing::debug!(topic = self.topic, partitions = self.partitions, "kafka offsets committed");
            }
            Some(e) => {
                let error_type = kafka_error_type(e);
                counter!("sluice_kafka_commit_errors_total", "topic" => self.topic.to_string(), "error_type" => error_type).increment(1);
                tracing::warn!(topic = self.topic, error_type, error = %e, "kafka offset commit failed");
            }
        }
    }
}

/// Lets a repeated log line through at most once per period (STYLE.md §3.6: repeated errors
/// in loops are rate-limited); metrics are never rate-limited.
pub(crate) struct RateLimit {
    period: Duration,
    last: Option<Instant>,
}

impl RateLimit {
    pub fn new(period: Duration) -> Self {
        RateLimit { period, last: None }
    }

    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.period => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;

    #[test]
    fn error_types_are_bounded_and_specific() {
        let p = |c| KafkaError::MessageProduction(c);
        assert_eq!(kafka_error_type(&p(RDKafkaErrorCode::MessageTimedOut)), "timeout");
        assert_eq!(kafka_error_type(&p(RDKafkaErrorCode::AllBrokersDown)), "transport");
        assert_eq!(kafka_error_type(&p(RDKafkaErrorCode::PurgeInflight)), "purged");
        assert_eq!(kafka_error_type(&p(RDKafkaErrorCode::MessageSizeTooLarge)), "message_too_large");
        assert_eq!(kafka_error_type(&p(RDKafkaErrorCode::OutOfOrderSequenceNumber)), "producer_state");
        assert_eq!(kafka_error_type(&p(RDKafkaErrorCode::Fatal)), "fatal");
        assert_eq!(kafka_error_type(&p(RDKafkaErrorCode::KafkaStorageError)), "broker");
        assert_eq!(kafka_error_type(&KafkaError::Canceled), "client");
    }

    #[test]
    fn rate_limit_lets_one_line_through_per_period() {
        let mut r = RateLimit::new(Duration::from_secs(3600));
        assert!(r.allow());
        assert!(!r.allow());
        let mut r = RateLimit::new(Duration::ZERO);
        assert!(r.allow());
        assert!(r.allow());
    }
}
