//! Kafka value encoding and decoding of click events: [`ValueFormat`] frames spilled values
//! for the producer, [`ValueDecoder`] turns consumed values back into events, telling the two
//! framings apart by their first byte and resolving older or newer writer schemas.
//!
//! | first byte | framing | writer schema looked up by |
//! |---|---|---|
//! | `0xC3` | Avro single-object encoding | 8-byte fingerprint: `click_event.avsc`, or one added with [`ValueDecoder::with_writer_schema`] |
//! | `0x00` | Confluent wire format | 4-byte schema id, fetched once from the schema registry |

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;
use sluice_schemas::ClickEvent;
use sluice_schemas::avro::{CLICK_EVENT_FINGERPRINT, decode_click_event_datum};
use sluice_schemas::avro_wire::{Framing, decode_click_event_datum_from, schema_fingerprint, single_object_to_confluent, split_framing};

use super::schema_registry::SchemaRegistry;
use crate::{Error, Result};

/// How the producer frames values on the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    /// Avro single-object encoding (no registry configured): values are the spilled bytes.
    SingleObject,
    /// Confluent wire format with the registry id of `click_event.avsc`.
    Confluent {
        /// Id the registry assigned to `click_event.avsc` under `<topic>-value`.
        schema_id: u32,
    },
}

impl ValueFormat {
    /// Writes the Kafka value for one spilled value (single-object bytes of
    /// `click_event.avsc`) into `out`, which is cleared first. Single-object values are copied
    /// unchanged; for the Confluent format only the header is swapped.
    ///
    /// Errors with [`sluice_schemas::Error::Decode`] if `spilled` is not a single-object
    /// value of `click_event.avsc` (a corrupt spill entry).
    pub fn frame_spilled(&self, spilled: &[u8], out: &mut Vec<u8>) -> sluice_schemas::Result<()> {
        out.clear();
        match *self {
            ValueFormat::SingleObject => {
                split_framing(spilled)?;
                out.extend_from_slice(spilled);
                Ok(())
            }
            ValueFormat::Confluent { schema_id } => single_object_to_confluent(spilled, schema_id, out),
        }
    }
}

/// Why the source dead-lettered a message (the `error_type` label of
/// `sluice_kafka_decode_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// The message has no value (tombstone) or an empty one.
    EmptyValue,
    /// The value starts with neither the single-object marker nor the Confluent magic byte.
    UnknownFraming,
    /// The writer schema is unknown: a fingerprint not registered with the decoder, a
    /// Confluent value without a registry configured, or an id the registry does not have.
    UnknownSchema,
    /// The framing and schema are known but the datum does not decode (truncated, trailing
    /// bytes, incompatible writer schema, `event_id` not a UUID, ...).
    Malformed,
}

impl DeadLetterReason {
    /// The metric label value: `empty_value`, `unknown_framing`, `unknown_schema` or
    /// `malformed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::EmptyValue => "empty_value",
            DeadLetterReason::UnknownFraming => "unknown_framing",
            DeadLetterReason::UnknownSchema => "unknown_schema",
            DeadLetterReason::Malformed => "malformed",
        }
    }
}

/// A message the source could not decode: skipped (its offset still counts as consumed),
/// counted, and handed to the pipeline for its dead-letter output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Partition of the message.
    pub partition: i32,
    /// Offset of the message.
    pub offset: i64,
    /// Classification.
    pub reason: DeadLetterReason,
    /// The decoder's message (lowercase).
    pub message: String,
}

/// Outcome of decoding one value that did not produce an event.
#[derive(Debug)]
pub enum DecodeFailure {
    /// Permanently undecodable: dead-letter it.
    DeadLetter(DeadLetterReason, String),
    /// The schema registry could not be asked (transient): retry the same message later.
    Retry(Error),
}

/// Decodes Kafka values into [`ClickEvent`]s; see the module docs. Owned by one source (one
/// timely worker); the registry lookups block the calling thread, so call it from a plain
/// thread, never from an async task.
pub struct ValueDecoder {
    registry: Option<BlockingRegistry>,
    by_id: HashMap<u32, Arc<Schema>>,
    by_fingerprint: HashMap<i64, Arc<Schema>>,
}

struct BlockingRegistry {
    client: SchemaRegistry,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for ValueDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueDecoder")
            .field("registry", &self.registry.as_ref().map(|r| r.client.url()))
            .field("cached_ids", &self.by_id.len())
            .field("fingerprints", &self.by_fingerprint.len())
            .finish()
    }
}

impl ValueDecoder {
    /// A decoder knowing `click_event.avsc` by fingerprint, and asking the registry at
    /// `registry_url` (if any) for the writer schemas of Confluent-framed values.
    ///
    /// Errors with [`Error::SchemaRegistry`] if the HTTP client cannot be built and
    /// [`Error::Config`] if the helper runtime for registry calls cannot be created.
    pub fn new(registry_url: Option<&str>) -> Result<ValueDecoder> {
        let registry = match registry_url {
            None => None,
            Some(url) => Some(BlockingRegistry {
                client: SchemaRegistry::new(url)?,
                runtime: tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Config(format!("could not start the schema registry runtime: {e}")))?,
            }),
        };
        Ok(ValueDecoder { registry, by_id: HashMap::new(), by_fingerprint: HashMap::new() })
    }

    /// Also accepts single-object values written with `schema` (for example a newer version of
    /// `click_event.avsc` deployed to producers first), decoding them by schema resolution.
    pub fn with_writer_schema(mut self, schema: Schema) -> ValueDecoder {
        self.by_fingerprint.insert(schema_fingerprint(&schema), Arc::new(schema));
        self
    }

    /// Decodes one Kafka value.
    ///
    /// Errors: [`DecodeFailure::DeadLetter`] for permanently undecodable values (see
    /// [`DeadLetterReason`]), [`DecodeFailure::Retry`] when the registry is unreachable.
    pub fn decode(&mut self, value: Option<&[u8]>) -> std::result::Result<ClickEvent, DecodeFailure> {
        let bytes = match value {
            Some(b) if !b.is_empty() => b,
            _ => return Err(dead(DeadLetterReason::EmptyValue, "message has no value".into())),
        };
        let (framing, datum) = split_framing(bytes).map_err(|e| dead(DeadLetterReason::UnknownFraming, e.to_string()))?;
        let malformed = |e: sluice_schemas::Error| dead(DeadLetterReason::Malformed, e.to_string());
        match framing {
            Framing::SingleObject { fingerprint } if fingerprint == CLICK_EVENT_FINGERPRINT => decode_click_event_datum(datum).map_err(malformed),
            Framing::SingleObject { fingerprint } => match self.by_fingerprint.get(&fingerprint) {
                Some(writer) => decode_click_event_datum_from(writer, datum).map_err(malformed),
                None => Err(dead(DeadLetterReason::UnknownSchema, format!("single-object value written with unknown schema fingerprint {fingerprint}"))),
            },
            Framing::Confluent { schema_id } => {
                let writer = self.writer_by_id(schema_id)?;
                decode_click_event_datum_from(&writer, datum).map_err(malformed)
            }
        }
    }

    fn writer_by_id(&mut self, id: u32) -> std::result::Result<Arc<Schema>, DecodeFailure> {
        if let Some(s) = self.by_id.get(&id) {
            return Ok(s.clone());
        }
        let Some(reg) = &self.registry else {
            return Err(dead(DeadLetterReason::UnknownSchema, format!("confluent-framed value (schema id {id}) but no schema registry is configured")));
        };
        match reg.runtime.block_on(reg.client.writer_schema(id)) {
            Ok(schema) => {
                self.by_id.insert(id, schema.clone());
                Ok(schema)
            }
            Err(e) if e.retryable() => Err(DecodeFailure::Retry(e)),
            Err(e) => Err(dead(DeadLetterReason::UnknownSchema, format!("schema id {id}: {e}"))),
        }
    }
}

fn dead(reason: DeadLetterReason, message: String) -> DecodeFailure {
    DecodeFailure::DeadLetter(reason, message)
}
