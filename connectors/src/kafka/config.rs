//! [`KafkaConfig`]: the `[kafka]` section of Sluice's configuration, its validation and the
//! librdkafka client settings derived from it.
//!
//! Kafka is off unless `brokers` is set (`SLUICE__KAFKA__BROKERS`, or the conventional
//! `KAFKA_BROKERS` through [`KafkaConfig::apply_env`]); without it ingest writes the embedded
//! click log and the dataflow reads that.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Configuration of the Kafka connector (producer, spill, consumer source, topic admin).
///
/// Field names are kebab-case in TOML and `SLUICE__KAFKA__<FIELD>` (upper snake case) in the
/// environment; durations are human-readable (`"20ms"`, `"30s"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port` (`"127.0.0.1:9092,10.0.0.2:9092"`).
    /// `None` (the default) disables Kafka. Also read from `KAFKA_BROKERS`.
    #[serde(default)]
    pub brokers: Option<String>,
    /// Topic the redirect/ingest path publishes [`ClickEvent`](sluice_schemas::ClickEvent)s to,
    /// keyed by short code.
    #[serde(default = "default_click_topic")]
    pub click_topic: String,
    /// Topic the abuse detector publishes anomalies to (created with the click topic).
    #[serde(default = "default_anomalies_topic")]
    pub anomalies_topic: String,
    /// Partitions of topics Sluice creates (existing topics are left as they are). Partitions
    /// are the unit of parallelism of the dataflow's Kafka source.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of topics Sluice creates (1 for a single local broker; 3 in
    /// production).
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Create the click and anomalies topics at start-up when they are missing.
    #[serde(default = "default_true")]
    pub create_topics: bool,
    /// Consumer group under which the dataflow commits its source offsets.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Confluent-compatible schema registry (`http://host:8081`). When set, values use the
    /// Confluent wire format with the id the registry assigns to `click_event.avsc` under the
    /// subject `<click-topic>-value`; otherwise Avro single-object encoding. Also read from
    /// `SCHEMA_REGISTRY_URL`. Only `http://` is supported by this build.
    #[serde(default)]
    pub schema_registry_url: Option<String>,
    /// Directory of the producer's local spill (an embedded click log). Default:
    /// `<data-dir>/spill`, see [`KafkaConfig::spill_dir_in`].
    #[serde(default)]
    pub spill_dir: Option<PathBuf>,
    /// Most events the spill holds (sent-but-unacknowledged plus not-yet-sent). Events arriving
    /// while it is full are dropped and counted in `sluice_kafka_spill_dropped_total`.
    /// Default 2 000 000 (about 600 MB of 300-byte events).
    #[serde(default = "default_spill_max_events")]
    pub spill_max_events: u64,
    /// Producer `linger.ms`: how long librdkafka waits to fill a batch. 20 ms costs nothing
    /// against the 60 s freshness target and gives large lz4-compressed batches. At most 900 s.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// Producer `batch.size`, bytes per partition batch (default 1 MiB).
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: u32,
    /// Producer `batch.num.messages`, messages per batch (default 10 000).
    #[serde(default = "default_batch_max_messages")]
    pub batch_max_messages: u32,
    /// Producer `message.timeout.ms`, whole ms, at most 1 h; `0s` (the default) means never: while the broker is
    /// unreachable librdkafka keeps the handed-over events and retries them in order (the
    /// idempotent producer keeps each partition's order), and the rest waits in the spill.
    /// A finite timeout makes undelivered events fail after it and be re-sent from the spill;
    /// librdkafka then bumps the producer epoch and carries on with later messages, so an event
    /// that timed out can land after later events of its key (Kafka semantics; see
    /// `producer.rs`).
    #[serde(default = "default_message_timeout", with = "humantime_serde")]
    pub message_timeout: Duration,
    /// Most events handed to librdkafka and not yet acknowledged (default 100 000); the rest
    /// waits in the spill.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Extra librdkafka properties for production clusters (`security.protocol`,
    /// `sasl.mechanisms`, `sasl.username`, `sasl.password`, ...), applied to every client.
    /// Values are redacted in `Debug` output. Properties that would weaken the delivery
    /// guarantee (`enable.idempotence`, `acks`, `enable.auto.commit`, `transactional.id`, ...)
    /// are rejected by [`KafkaConfig::validate`].
    #[serde(default)]
    pub client_options: ClientOptions,
}

/// librdkafka properties whose values are secrets as often as not; `Debug` prints only keys.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientOptions(pub BTreeMap<String, String>);

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "***"))).finish()
    }
}

fn default_click_topic() -> String {
    "click_events_raw".into()
}
fn default_anomalies_topic() -> String {
    "anomalies".into()
}
fn default_partitions() -> i32 {
    4
}
fn default_replication_factor() -> i32 {
    1
}
fn default_true() -> bool {
    true
}
fn default_group_id() -> String {
    "sluice-dataflow".into()
}
fn default_spill_max_events() -> u64 {
    2_000_000
}
fn default_linger() -> Duration {
    Duration::from_millis(20)
}
fn default_batch_max_bytes() -> u32 {
    1 << 20
}
fn default_batch_max_messages() -> u32 {
    10_000
}
fn default_message_timeout() -> Duration {
    Duration::ZERO
}
fn default_max_in_flight() -> usize {
    100_000
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: None,
            click_topic: default_click_topic(),
            anomalies_topic: default_anomalies_topic(),
            partitions: default_partitions(),
            replication_factor: default_replication_factor(),
            create_topics: true,
            group_id: default_group_id(),
            schema_registry_url: None,
            spill_dir: None,
            spill_max_events: default_spill_max_events(),
            linger: default_linger(),
            batch_max_bytes: default_batch_max_bytes(),
            batch_max_messages: default_batch_max_messages(),
            message_timeout: default_message_timeout(),
            max_in_flight: default_max_in_flight(),
            client_options: ClientOptions::default(),
        }
    }
}

/// librdkafka properties Sluice sets itself; overriding them through `client-options` could
/// break the delivery guarantee or the offset protocol, so validation rejects them.
const RESERVED_OPTIONS: [&str; 10] = [
    "bootstrap.servers",
    "metadata.broker.list",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "transactional.id",
    "group.id",
    "max.in.flight.requests.per.connection",
];

impl KafkaConfig {
    /// Whether Kafka is switched on (`brokers` is set).
    pub fn enabled(&self) -> bool {
        self.brokers.is_some()
    }

    /// Fills `brokers` from `KAFKA_BROKERS` and `schema-registry-url` from
    /// `SCHEMA_REGISTRY_URL` when the corresponding `SLUICE__KAFKA__*` variable is not set
    /// (that one wins; the binary's config loader has already applied it). `get` reads an
    /// environment variable (`|k| std::env::var(k).ok()` in production; a map in tests).
    /// Empty values are ignored.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        let set = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if set("SLUICE__KAFKA__BROKERS").is_none()
            && let Some(b) = set("KAFKA_BROKERS")
        {
            self.brokers = Some(b.trim().to_string());
        }
        if set("SLUICE__KAFKA__SCHEMA_REGISTRY_URL").is_none()
            && let Some(u) = set("SCHEMA_REGISTRY_URL")
        {
            self.schema_registry_url = Some(u.trim().to_string());
        }
    }

    /// The spill directory: `spill-dir` if set, else `<data_dir>/spill`.
    pub fn spill_dir_in(&self, data_dir: &Path) -> PathBuf {
        self.spill_dir.clone().unwrap_or_else(|| data_dir.join("spill"))
    }

    /// The registry subject of click event values (`<click-topic>-value`, Confluent's
    /// TopicNameStrategy).
    pub fn click_value_subject(&self) -> String {
        format!("{}-value", self.click_topic)
    }

    /// Checks the configuration without any I/O.
    ///
    /// Errors with [`Error::Config`] naming the field: brokers not `host:port` list, topic
    /// names Kafka rejects (empty, over 249 characters, characters other than
    /// `[A-Za-z0-9._-]`, `.`/`..`), partitions or replication factor outside `1..=32767`, an
    /// empty group id, a registry URL that is not `http://…`, a zero spill bound or in-flight
    /// limit, linger above 900 s, batch limits librdkafka rejects, a message timeout above
    /// 1 h or not in whole milliseconds, or a reserved librdkafka property in `client-options`.
    pub fn validate(&self) -> Result<()> {
        if let Some(brokers) = &self.brokers {
            let list: Vec<&str> = brokers.split(',').map(str::trim).collect();
            for b in &list {
                let ok = match b.rsplit_once(':') {
                    Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
                    None => false,
                };
                if !ok {
                    return Err(cfg_err("brokers", format!("\"{b}\" is not host:port")));
                }
            }
        }
        for (field, topic) in [("click-topic", &self.click_topic), ("anomalies-topic", &self.anomalies_topic)] {
            validate_topic(field, topic)?;
        }
        if self.click_topic == self.anomalies_topic {
            return Err(cfg_err("anomalies-topic", "must differ from click-topic".into()));
        }
        for (field, n) in [("partitions", self.partitions), ("replication-factor", self.replication_factor)] {
            if !(1..=i32::from(i16::MAX)).contains(&n) {
                return Err(cfg_err(field, format!("{n} is outside 1..=32767")));
            }
        }
        if self.group_id.trim().is_empty() {
            return Err(cfg_err("group-id", "must not be empty".into()));
        }
        if let Some(url) = &self.schema_registry_url {
            let rest = url
                .strip_prefix("http://")
                .ok_or_else(|| cfg_err("schema-registry-url", format!("\"{url}\" must start with http:// (this build has no TLS for the registry)")))?;
            if rest.is_empty() || rest.starts_with('/') {
                return Err(cfg_err("schema-registry-url", format!("\"{url}\" has no host")));
            }
        }
        if self.spill_max_events == 0 {
            return Err(cfg_err("spill-max-events", "must be at least 1".into()));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 10_000_000 {
            return Err(cfg_err("max-in-flight", format!("{} is outside 1..=10000000", self.max_in_flight)));
        }
        if self.linger > Duration::from_secs(900) {
            return Err(cfg_err("linger", "must be at most 900s".into()));
        }
        if !(1..=1_000_000).contains(&self.batch_max_messages) {
            return Err(cfg_err("batch-max-messages", format!("{} is outside 1..=1000000", self.batch_max_messages)));
        }
        if !(1..=i32::MAX as u32).contains(&self.batch_max_bytes) {
            return Err(cfg_err("batch-max-bytes", "must be at least 1".into()));
        }
        if self.message_timeout > Duration::from_secs(3600) || !self.message_timeout.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(cfg_err("message-timeout", "must be whole milliseconds, at most 1h (0s: never)".into()));
        }
        for key in self.client_options.0.keys() {
            if RESERVED_OPTIONS.contains(&key.as_str()) {
                return Err(cfg_err("client-options", format!("\"{key}\" is set by sluice and cannot be overridden")));
            }
        }
        Ok(())
    }

    /// The broker list, or [`Error::Config`] when Kafka is not configured.
    pub(crate) fn brokers_or_err(&self) -> Result<&str> {
        self.brokers.as_deref().ok_or_else(|| cfg_err("brokers", "kafka is not configured (set KAFKA_BROKERS)".into()))
    }

    fn base_client_config(&self, client_id: &str) -> Result<ClientConfig> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers_or_err()?)
            .set("client.id", client_id)
            // Reconnect quickly after a broker restart (librdkafka default max is 10 s).
            .set("reconnect.backoff.ms", "50")
            .set("reconnect.backoff.max.ms", "1000");
        for (k, v) in &self.client_options.0 {
            c.set(k, v);
        }
        Ok(c)
    }

    /// Settings of the spill forwarder's producer: idempotent (`enable.idempotence=true`,
    /// which implies `acks=all` and at most 5 in-flight requests per connection with ordered
    /// retries), `compression.type=lz4`, `linger.ms`/`batch.size`/`batch.num.messages` from
    /// this config, and `partitioner=murmur2_random` so keys land on the partitions Java
    /// clients would choose.
    pub fn producer_client_config(&self) -> Result<ClientConfig> {
        let mut c = self.base_client_config("sluice-producer")?;
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", self.linger.as_millis().to_string())
            .set("batch.size", self.batch_max_bytes.to_string())
            .set("batch.num.messages", self.batch_max_messages.to_string())
            .set("message.timeout.ms", self.message_timeout.as_millis().to_string())
            .set("queue.buffering.max.messages", (self.max_in_flight + 1000).min(10_000_000).to_string())
            .set("queue.buffering.max.kbytes", "1048576")
            .set("partitioner", "murmur2_random")
            .set("retry.backoff.ms", "100")
            .set("retry.backoff.max.ms", "1000");
        Ok(c)
    }

    /// Settings of a source consumer: group `group-id` (offset storage only: partitions are
    /// assigned explicitly), `enable.auto.commit=false` and `enable.auto.offset.store=false`
    /// (offsets are committed only through [`super::KafkaSource::commit`]), and
    /// `auto.offset.reset=earliest` for partitions without a committed offset.
    pub fn consumer_client_config(&self) -> Result<ClientConfig> {
        let mut c = self.base_client_config("sluice-source")?;
        c.set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "100");
        Ok(c)
    }

    /// Settings of the admin client (topic creation, metadata).
    pub fn admin_client_config(&self) -> Result<ClientConfig> {
        self.base_client_config("sluice-admin")
    }
}

fn cfg_err(field: &str, reason: String) -> Error {
    Error::Config(format!("kafka.{field}: {reason}"))
}

fn validate_topic(field: &str, topic: &str) -> Result<()> {
    if topic.is_empty() || topic.len() > 249 || topic == "." || topic == ".." {
        return Err(cfg_err(field, format!("\"{topic}\" is not a valid topic name")));
    }
    if let Some(c) = topic.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(cfg_err(field, format!("\"{topic}\" contains '{c}' (allowed: A-Z a-z 0-9 . _ -)")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
brokers = "127.0.0.1:9092,10.0.0.2:9093"
click-topic = "clicks"
anomalies-topic = "abuse"
partitions = 8
replication-factor = 3
create-topics = false
group-id = "g1"
schema-registry-url = "http://127.0.0.1:8081"
spill-dir = "/var/lib/sluice/spill"
spill-max-events = 1000
linger = "5ms"
batch-max-bytes = 65536
batch-max-messages = 500
message-timeout = "10s"
max-in-flight = 2000

[client-options]
"security.protocol" = "SASL_PLAINTEXT"
"sasl.password" = "hunter2"
"#;

    #[test]
    fn defaults_are_documented_values() {
        let c: KafkaConfig = serde_json::from_str("{}").expect("empty config");
        assert_eq!(c, KafkaConfig::default());
        assert!(!c.enabled());
        assert_eq!(c.click_topic, "click_events_raw");
        assert_eq!(c.anomalies_topic, "anomalies");
        assert_eq!(c.partitions, 4);
        assert_eq!(c.linger, Duration::from_millis(20));
        assert_eq!(c.message_timeout, Duration::ZERO, "never time out");
        let p = KafkaConfig { brokers: Some("a:1".into()), ..KafkaConfig::default() }.producer_client_config().expect("p");
        assert_eq!(p.get("message.timeout.ms"), Some("0"));
        assert_eq!(c.spill_dir_in(Path::new("data")), PathBuf::from("data/spill"));
        assert_eq!(c.click_value_subject(), "click_events_raw-value");
        c.validate().expect("defaults validate");
    }

    #[test]
    fn sample_config_parses_round_trips_and_redacts() {
        let c: KafkaConfig = toml_like(SAMPLE);
        c.validate().expect("sample validates");
        assert_eq!(c.brokers.as_deref(), Some("127.0.0.1:9092,10.0.0.2:9093"));
        assert_eq!(c.linger, Duration::from_millis(5));
        assert_eq!(c.spill_max_events, 1000);
        let json = serde_json::to_string(&c).expect("serialize");
        let back: KafkaConfig = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, c);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "secret leaked: {dbg}");
        assert!(dbg.contains("sasl.password"));
        let p = c.producer_client_config().expect("producer config");
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("compression.type"), Some("lz4"));
        assert_eq!(p.get("linger.ms"), Some("5"));
        assert_eq!(p.get("message.timeout.ms"), Some("10000"));
        assert_eq!(p.get("sasl.password"), Some("hunter2"));
        let k = c.consumer_client_config().expect("consumer config");
        assert_eq!(k.get("enable.auto.commit"), Some("false"));
        assert_eq!(k.get("group.id"), Some("g1"));
    }

    /// The sample is TOML; this crate has no TOML parser, so translate the few shapes used.
    fn toml_like(text: &str) -> KafkaConfig {
        let mut top = serde_json::Map::new();
        let mut opts = serde_json::Map::new();
        let mut in_opts = false;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line == "[client-options]" {
                in_opts = true;
                continue;
            }
            let (k, v) = line.split_once(" = ").expect("key = value");
            let v: serde_json::Value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::Bool(v == "true"));
            if in_opts {
                opts.insert(k.trim_matches('"').to_string(), v);
            } else {
                top.insert(k.to_string(), v);
            }
        }
        top.insert("client-options".into(), serde_json::Value::Object(opts));
        serde_json::from_value(serde_json::Value::Object(top)).expect("sample deserializes")
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<KafkaConfig>(r#"{"broker": "x:1"}"#).expect_err("typo rejected");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn env_aliases_fill_only_unset_fields() {
        let env = |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        let mut c = KafkaConfig::default();
        c.apply_env(env(&[("KAFKA_BROKERS", " 127.0.0.1:9092 "), ("SCHEMA_REGISTRY_URL", "http://r:8081")]));
        assert_eq!(c.brokers.as_deref(), Some("127.0.0.1:9092"));
        assert_eq!(c.schema_registry_url.as_deref(), Some("http://r:8081"));

        let mut c = KafkaConfig { brokers: Some("a:1".into()), ..KafkaConfig::default() };
        c.apply_env(env(&[("SLUICE__KAFKA__BROKERS", "a:1"), ("KAFKA_BROKERS", "b:2")]));
        assert_eq!(c.brokers.as_deref(), Some("a:1"), "SLUICE__KAFKA__BROKERS wins");

        let mut c = KafkaConfig::default();
        c.apply_env(env(&[("KAFKA_BROKERS", "  ")]));
        assert_eq!(c.brokers, None, "empty is ignored");
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases: Vec<(&str, KafkaConfig)> = vec![
            ("brokers", KafkaConfig { brokers: Some("localhost".into()), ..Default::default() }),
            ("brokers", KafkaConfig { brokers: Some("a:1,,b:2".into()), ..Default::default() }),
            ("brokers", KafkaConfig { brokers: Some("a:99999".into()), ..Default::default() }),
            ("click-topic", KafkaConfig { click_topic: "has space".into(), ..Default::default() }),
            ("click-topic", KafkaConfig { click_topic: "x".repeat(250), ..Default::default() }),
            ("anomalies-topic", KafkaConfig { anomalies_topic: "..".into(), ..Default::default() }),
            ("anomalies-topic", KafkaConfig { anomalies_topic: "click_events_raw".into(), ..Default::default() }),
            ("partitions", KafkaConfig { partitions: 0, ..Default::default() }),
            ("replication-factor", KafkaConfig { replication_factor: 40_000, ..Default::default() }),
            ("group-id", KafkaConfig { group_id: " ".into(), ..Default::default() }),
            ("schema-registry-url", KafkaConfig { schema_registry_url: Some("https://r".into()), ..Default::default() }),
            ("schema-registry-url", KafkaConfig { schema_registry_url: Some("http://".into()), ..Default::default() }),
            ("spill-max-events", KafkaConfig { spill_max_events: 0, ..Default::default() }),
            ("max-in-flight", KafkaConfig { max_in_flight: 0, ..Default::default() }),
            ("linger", KafkaConfig { linger: Duration::from_secs(901), ..Default::default() }),
            ("batch-max-messages", KafkaConfig { batch_max_messages: 0, ..Default::default() }),
            ("message-timeout", KafkaConfig { message_timeout: Duration::from_micros(1500), ..Default::default() }),
            ("message-timeout", KafkaConfig { message_timeout: Duration::from_secs(3601), ..Default::default() }),
            (
                "client-options",
                KafkaConfig { client_options: ClientOptions([("enable.idempotence".to_string(), "false".to_string())].into()), ..Default::default() },
            ),
        ];
        for (field, c) in cases {
            match c.validate() {
                Err(Error::Config(msg)) => assert!(msg.starts_with(&format!("kafka.{field}:")), "{field}: {msg}"),
                other => panic!("{field}: expected a config error, got {other:?}"),
            }
        }
        assert!(matches!(KafkaConfig::default().producer_client_config(), Err(Error::Config(_))));
    }
}
