//! Helpers of the Kafka integration tests: broker address, fresh topics and groups, polling
//! with a timeout, raw produce/consume, and private tansu brokers the outage tests stop and
//! restart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::kafka::{KafkaClickRecord, KafkaConfig, KafkaSource, StartOffsets, ensure_topics};

#[path = "../../../../tests/support/tansu.rs"]
mod tansu;
pub use tansu::Tansu;

/// The shared broker (`infra/services/kafka.sh start`).
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// A config with a fresh topic pair and consumer group on `brokers`.
pub fn fresh_config(tag: &str, brokers: &str) -> KafkaConfig {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let suffix = &id[..10];
    KafkaConfig {
        brokers: Some(brokers.to_string()),
        click_topic: format!("it-{tag}-{suffix}"),
        anomalies_topic: format!("it-{tag}-{suffix}-anomalies"),
        group_id: format!("it-{tag}-{suffix}"),
        partitions: 4,
        linger: Duration::from_millis(5),
        ..KafkaConfig::default()
    }
}

/// Creates the config's topics (blocking).
pub fn create_topics(config: &KafkaConfig) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let status = rt.block_on(ensure_topics(config)).expect("create topics");
    assert!(status.iter().all(|s| s.created && s.partitions == config.partitions), "{status:?}");
}

/// Polls `pred` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads with one source over all partitions until `n` records arrived or `timeout` passed.
pub fn consume(source: &mut KafkaSource, n: usize, timeout: Duration) -> Vec<KafkaClickRecord> {
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < n && Instant::now() < deadline {
        let batch = source.poll_batch(10_000, Duration::from_millis(200)).expect("poll");
        out.extend(batch.records);
    }
    out
}

/// A source of worker 0 of 1 starting at the earliest offsets.
pub fn source_from_start(config: &KafkaConfig) -> KafkaSource {
    KafkaSource::open(config, 0, 1, StartOffsets::Explicit(BTreeMap::new())).expect("open source")
}

/// A raw message as stored on the topic.
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Every message of `topic` (all partitions, from the start) once `n` have arrived.
pub fn raw_messages(brokers: &str, topic: &str, partitions: i32, n: usize, timeout: Duration) -> Vec<RawMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("raw-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("raw consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push(RawMessage { partition: m.partition(), offset: m.offset(), key: m.key().map(<[u8]>::to_vec), value: m.payload().map(<[u8]>::to_vec) });
        }
    }
    out
}

/// Produces raw (key, value) messages to partition 0 and waits for their acknowledgement.
pub fn produce_raw(brokers: &str, topic: &str, messages: &[(&str, Vec<u8>)]) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("raw producer");
    for (k, v) in messages {
        producer.send(BaseRecord::to(topic).partition(0).key(*k).payload(v)).expect("enqueue raw message");
    }
    producer.flush(Duration::from_secs(30)).expect("raw messages acknowledged");
}
