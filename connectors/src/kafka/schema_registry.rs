//! [`SchemaRegistry`]: the Confluent-compatible schema registry client, through the
//! `schema_registry_converter` crate (async API).
//!
//! Sluice uses three endpoints, which is all a registry (Confluent Schema Registry, Karapace,
//! Apicurio in Confluent mode, Redpanda) must offer:
//! - `POST /subjects/{subject}/versions` registers `click_event.avsc` under
//!   `<click-topic>-value` and returns its id (idempotent: the same schema gets the same id);
//! - `GET /schemas/ids/{id}` fetches the writer schema of a consumed value;
//! - `GET /subjects/{subject}/versions/latest` reports what the subject currently holds.
//!
//! No registry can be installed on our build machines, so this path is tested against a small
//! in-test HTTP double of exactly these endpoints (`registry_double.rs`), including its
//! backward-compatibility check on registration; the framing and schema resolution around it
//! are the same code the single-object path uses.
//!
//! The client is plain HTTP (the workspace builds `schema_registry_converter` without a TLS
//! backend); registry requests time out after 10 s. Fetched schemas are cached for the life of
//! the client (ids are immutable in a registry).

use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::{SrSettings, get_schema_by_subject_and_version};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema};
use sluice_schemas::avro::CLICK_EVENT_AVSC;

use crate::{Error, Result};

/// Timeout of one registry HTTP request.
pub const REGISTRY_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Fully qualified Avro name of the click event record.
const CLICK_EVENT_RECORD: &str = "sluice.events.ClickEvent";

/// What a subject currently holds (`GET /subjects/{subject}/versions/latest`).
#[derive(Debug, Clone)]
pub struct RegisteredSchema {
    /// Registry-wide schema id (the 4 bytes after the magic byte of a value).
    pub id: u32,
    /// Version within the subject, when the registry reports it.
    pub version: Option<u32>,
    /// The parsed schema.
    pub schema: Schema,
}

/// Async client of a Confluent-compatible schema registry; see the module docs.
pub struct SchemaRegistry {
    url: String,
    settings: SrSettings,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry").field("url", &self.url).finish()
    }
}

impl SchemaRegistry {
    /// A client for the registry at `url` (`http://host:port`, no trailing path). Does no I/O.
    ///
    /// Errors with [`Error::SchemaRegistry`] if the HTTP client cannot be built.
    pub fn new(url: &str) -> Result<SchemaRegistry> {
        let url = url.trim_end_matches('/').to_string();
        let mut builder = SrSettings::new_builder(url.clone());
        builder.set_timeout(REGISTRY_REQUEST_TIMEOUT);
        // A proxy from the environment must not intercept a registry on this machine.
        if ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|p| url.starts_with(p)) {
            builder.no_proxy();
        }
        let settings = builder.build().map_err(|e| sr_error("create client", &e))?;
        Ok(SchemaRegistry { encoder: AvroEncoder::new(settings.clone()), decoder: AvroDecoder::new(settings.clone()), settings, url })
    }

    /// The registry URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Registers `click_event.avsc` under `<topic>-value` (Confluent TopicNameStrategy) and
    /// returns its schema id; registering the same schema again returns the same id. The id
    /// is cached, so later calls do no I/O.
    ///
    /// Errors with [`Error::SchemaRegistry`]: retryable when the registry is unreachable or
    /// answers 502/503, not retryable when it rejects the schema (for example HTTP 409, not
    /// compatible with the subject's latest version).
    pub async fn register_click_event(&self, topic: &str) -> Result<u32> {
        let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
            topic.to_string(),
            false,
            SuppliedSchema::new(Some(CLICK_EVENT_RECORD.to_string()), SchemaType::Avro, CLICK_EVENT_AVSC.to_string()),
        );
        let subject = format!("{topic}-value");
        match self.encoder.get_schema_and_id(&subject, strategy).await {
            Ok(s) => Ok(s.id),
            Err(e) => {
                // The encoder caches non-retryable failures; forget them so a later attempt
                // (after an operator fixed the subject) asks the registry again.
                self.encoder.remove_errors_from_cache();
                Err(sr_error("register schema", &e))
            }
        }
    }

    /// The writer schema with registry id `id` (`GET /schemas/ids/{id}`), cached.
    ///
    /// Errors with [`Error::SchemaRegistry`]: retryable when the registry is unreachable,
    /// not retryable for an unknown id or a non-Avro schema.
    pub async fn writer_schema(&self, id: u32) -> Result<Arc<Schema>> {
        match self.decoder.get_schema(id).await {
            Ok(s) => Ok(Arc::new(s.parsed.clone())),
            Err(e) => {
                self.decoder.remove_errors_from_cache();
                Err(sr_error("fetch schema by id", &e))
            }
        }
    }

    /// The latest version registered under `subject`
    /// (`GET /subjects/{subject}/versions/latest`), not cached.
    ///
    /// Errors with [`Error::SchemaRegistry`] (unknown subject, unreachable registry,
    /// unparsable schema).
    pub async fn latest(&self, subject: &str) -> Result<RegisteredSchema> {
        let raw = get_schema_by_subject_and_version(&self.settings, subject, None).await.map_err(|e| sr_error("fetch latest schema", &e))?;
        let schema = Schema::parse_str(&raw.schema).map_err(|e| Error::SchemaRegistry {
            op: "fetch latest schema",
            message: format!("subject \"{subject}\" holds an unparsable avro schema: {e}"),
            retryable: false,
        })?;
        Ok(RegisteredSchema { id: raw.id, version: raw.version, schema })
    }
}

fn sr_error(op: &'static str, e: &SRCError) -> Error {
    let message = match &e.cause {
        Some(cause) => format!("{}: {}", e.error.to_lowercase(), cause),
        None => e.error.to_lowercase(),
    };
    Error::SchemaRegistry { op, message, retryable: e.retriable }
}
