//! Topic administration and the connector's healthcheck.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use super::config::KafkaConfig;
use super::context::LogContext;
use super::source::partition_count;
use crate::{Error, Result};

/// Timeout of admin requests (topic creation, metadata).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// What [`ensure_topics`] found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStatus {
    /// Topic name.
    pub topic: String,
    /// Whether this call created it (false: it existed).
    pub created: bool,
    /// Its partition count as the broker reports it afterwards.
    pub partitions: i32,
}

fn admin_client(config: &KafkaConfig) -> Result<AdminClient<LogContext>> {
    config.admin_client_config()?.create_with_context(LogContext::new("kafka_admin")).map_err(|source| Error::Kafka { op: "create admin client", source })
}

/// Creates the click and anomalies topics when missing, with `partitions` partitions and
/// `replication-factor` replicas; existing topics are left as they are (their partition count
/// is reported, not changed). Idempotent; safe to run from several processes at once.
///
/// Errors: [`Error::Config`] for an invalid configuration, [`Error::Kafka`] if the broker
/// does not answer within [`ADMIN_TIMEOUT`] or refuses a creation for another reason than
/// "already exists".
pub async fn ensure_topics(config: &KafkaConfig) -> Result<Vec<TopicStatus>> {
    config.validate()?;
    let admin = admin_client(config)?;
    let topics = [config.click_topic.as_str(), config.anomalies_topic.as_str()];
    let new: Vec<NewTopic<'_>> = topics.iter().map(|t| NewTopic::new(t, config.partitions, TopicReplication::Fixed(config.replication_factor))).collect();
    let opts = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT)).operation_timeout(Some(ADMIN_TIMEOUT));
    let results = admin.create_topics(new.iter(), &opts).await.map_err(|source| Error::Kafka { op: "create topics", source })?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(topic) => created.push(topic),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::warn!(topic, ?code, "kafka refused to create topic");
                return Err(Error::Kafka { op: "create topics", source: rdkafka::error::KafkaError::AdminOp(code) });
            }
        }
    }
    drop(admin);
    let cfg = config.clone();
    let counts = tokio::task::spawn_blocking(move || -> Result<Vec<i32>> {
        let admin = admin_client(&cfg)?;
        [cfg.click_topic.as_str(), cfg.anomalies_topic.as_str()].iter().map(|t| wait_for_metadata(admin.inner(), t)).collect()
    })
    .await
    .map_err(|e| Error::Config(format!("topic metadata task failed: {e}")))??;
    let mut out = Vec::with_capacity(topics.len());
    for (t, partitions) in topics.iter().zip(counts) {
        let was_created = created.iter().any(|c| c == t);
        if was_created {
            tracing::info!(topic = t, partitions, "kafka topic created");
        }
        out.push(TopicStatus { topic: t.to_string(), created: was_created, partitions });
    }
    Ok(out)
}

/// Metadata can lag a creation briefly; retry for up to [`ADMIN_TIMEOUT`] (blocking).
fn wait_for_metadata(client: &rdkafka::client::Client<LogContext>, topic: &str) -> Result<i32> {
    let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
    loop {
        match partition_count(client, topic) {
            Ok(n) => return Ok(n),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The connector's healthcheck: fetches the click topic's metadata, which is exactly what the
/// source does first; returns its partition count.
///
/// Errors with [`Error::Kafka`] when the broker does not answer or the topic is missing.
pub async fn healthcheck(config: &KafkaConfig) -> Result<i32> {
    config.validate()?;
    let cfg = config.clone();
    tokio::task::spawn_blocking(move || {
        let admin = admin_client(&cfg)?;
        partition_count(admin.inner(), &cfg.click_topic)
    })
    .await
    .map_err(|e| Error::Config(format!("healthcheck task failed: {e}")))?
}
