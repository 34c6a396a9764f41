//! Kafka value framings of Avro-encoded [`ClickEvent`]s, and decoding written by another
//! (compatible) version of `click_event.avsc`.
//!
//! Kafka values carry one Avro binary datum behind one of two framings, told apart by their
//! first byte:
//! - **single-object encoding** (first byte `0xC3`): `C3 01`, the 8-byte little-endian
//!   CRC-64-AVRO fingerprint of the writer schema, then the datum; written when no schema
//!   registry is configured (see [`crate::avro`]);
//! - **Confluent wire format** (first byte `0x00`): the magic byte `0`, the 4-byte big-endian
//!   schema id the registry assigned to the writer schema, then the datum (Confluent
//!   documentation, "Schema Registry → Wire format").
//!
//! Both framings wrap the *same* datum, so a single-object value becomes a Confluent one by
//! swapping the 10-byte header for the 5-byte one ([`single_object_to_confluent`]), without
//! re-encoding.
//!
//! Schema evolution: this crate's reader schema is `click_event.avsc`. A value written with
//! another schema is decoded by Avro schema resolution (Avro specification, "Schema
//! Resolution"): writer fields the reader lacks are skipped, reader fields the writer lacks take
//! their default. [`decode_click_event_datum_from`] takes the writer schema (looked up by the
//! caller through the fingerprint or the registry id); values written with
//! `click_event.avsc` itself take the fast, serde-driven path of [`crate::avro`].

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use uuid::Uuid;

use crate::avro::{
    CLICK_EVENT_FINGERPRINT, SINGLE_OBJECT_HEADER_LEN, click_event_header, click_event_schema, decode_click_event_datum, encode_click_event_datum_into,
    parsing_canonical_form, rabin_fingerprint,
};
use crate::{ClickEvent, Error, Result};

/// First byte of a Confluent-framed value.
pub const CONFLUENT_MAGIC: u8 = 0;

/// Length in bytes of the Confluent header (magic byte + 4-byte big-endian schema id).
pub const CONFLUENT_HEADER_LEN: usize = 5;

/// How a Kafka value names the schema that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Avro single-object encoding: the writer schema's CRC-64-AVRO fingerprint.
    SingleObject {
        /// Fingerprint as the signed `i64` of the Avro specification.
        fingerprint: i64,
    },
    /// Confluent wire format: the id a schema registry assigned to the writer schema.
    Confluent {
        /// Registry schema id.
        schema_id: u32,
    },
}

/// Splits a Kafka value into its framing and the bare Avro datum behind it.
///
/// Errors with [`Error::Decode`] when the value is shorter than its header or starts with
/// neither `C3 01` nor `00`.
pub fn split_framing(bytes: &[u8]) -> Result<(Framing, &[u8])> {
    match bytes.first() {
        Some(0xC3) => {
            if bytes.len() < SINGLE_OBJECT_HEADER_LEN {
                return Err(Error::Decode(format!("value is {} bytes, shorter than its header", bytes.len())));
            }
            if bytes[1] != 0x01 {
                return Err(Error::Decode("not avro single-object encoding (bad marker)".into()));
            }
            let fingerprint = i64::from_le_bytes(bytes[2..10].try_into().expect("8 fingerprint bytes"));
            Ok((Framing::SingleObject { fingerprint }, &bytes[SINGLE_OBJECT_HEADER_LEN..]))
        }
        Some(&CONFLUENT_MAGIC) => {
            if bytes.len() < CONFLUENT_HEADER_LEN {
                return Err(Error::Decode(format!("value is {} bytes, shorter than its header", bytes.len())));
            }
            let schema_id = u32::from_be_bytes(bytes[1..5].try_into().expect("4 id bytes"));
            Ok((Framing::Confluent { schema_id }, &bytes[CONFLUENT_HEADER_LEN..]))
        }
        Some(b) => Err(Error::Decode(format!("unknown value framing (first byte 0x{b:02x})"))),
        None => Err(Error::Decode("empty value".into())),
    }
}

/// The 5-byte Confluent header for `schema_id`.
pub fn confluent_header(schema_id: u32) -> [u8; CONFLUENT_HEADER_LEN] {
    let mut h = [0u8; CONFLUENT_HEADER_LEN];
    h[0] = CONFLUENT_MAGIC;
    h[1..].copy_from_slice(&schema_id.to_be_bytes());
    h
}

/// Appends the Confluent wire format of `ev` (header with `schema_id`, then the datum of
/// `click_event.avsc`) to `out`. `schema_id` must be the id the registry assigned to
/// `click_event.avsc`.
///
/// Errors with [`Error::Encode`] if the encoder rejects the value.
pub fn encode_click_event_confluent_into(schema_id: u32, ev: &ClickEvent, out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(&confluent_header(schema_id));
    encode_click_event_datum_into(ev, out)
}

/// Re-frames a single-object value written with `click_event.avsc` as the Confluent wire
/// format with `schema_id`, appending to `out` (the datum is copied, not re-encoded).
///
/// Errors with [`Error::Decode`] when `single_object` is not a single-object value of
/// `click_event.avsc` (other fingerprint, bad marker, shorter than the header).
pub fn single_object_to_confluent(single_object: &[u8], schema_id: u32, out: &mut Vec<u8>) -> Result<()> {
    if single_object.len() < SINGLE_OBJECT_HEADER_LEN || &single_object[..SINGLE_OBJECT_HEADER_LEN] != click_event_header() {
        return Err(Error::Decode("value is not a single-object click event of click_event.avsc".into()));
    }
    out.reserve(CONFLUENT_HEADER_LEN + single_object.len() - SINGLE_OBJECT_HEADER_LEN);
    out.extend_from_slice(&confluent_header(schema_id));
    out.extend_from_slice(&single_object[SINGLE_OBJECT_HEADER_LEN..]);
    Ok(())
}

/// CRC-64-AVRO fingerprint of `schema`'s Parsing Canonical Form (the value single-object
/// encoding puts in its header); equal fingerprints mean equal canonical schemas.
pub fn schema_fingerprint(schema: &Schema) -> i64 {
    rabin_fingerprint(parsing_canonical_form(schema).as_bytes())
}

/// The `code` field (the Kafka message key) of a single-object value of `click_event.avsc`,
/// read without decoding the rest of the record.
///
/// The datum starts with `event_id` then `code`, both Avro strings (zig-zag varint length,
/// then UTF-8 bytes), in the field order `click_event.avsc` fixes — the header check pins that
/// schema. Errors with [`Error::Decode`] on another schema, a truncated value or non-UTF-8 text.
pub fn click_event_code(single_object: &[u8]) -> Result<&str> {
    if single_object.len() < SINGLE_OBJECT_HEADER_LEN || &single_object[..SINGLE_OBJECT_HEADER_LEN] != click_event_header() {
        return Err(Error::Decode("value is not a single-object click event of click_event.avsc".into()));
    }
    let mut rest = &single_object[SINGLE_OBJECT_HEADER_LEN..];
    let _event_id = take_avro_string(&mut rest)?;
    let code = take_avro_string(&mut rest)?;
    std::str::from_utf8(code).map_err(|e| Error::Decode(format!("field \"code\" is not utf-8: {e}")))
}

/// Reads one Avro `string`/`bytes` (zig-zag varint length + bytes) from the front of `buf`.
fn take_avro_string<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8]> {
    let mut z: u64 = 0;
    let mut shift = 0u32;
    loop {
        let (&b, rest) = buf.split_first().ok_or_else(|| Error::Decode("truncated string length".into()))?;
        *buf = rest;
        if shift >= 64 {
            return Err(Error::Decode("string length varint is too long".into()));
        }
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let len = ((z >> 1) as i64) ^ -((z & 1) as i64);
    let len = usize::try_from(len).map_err(|_| Error::Decode(format!("negative string length {len}")))?;
    if buf.len() < len {
        return Err(Error::Decode(format!("string of {len} bytes truncated to {}", buf.len())));
    }
    let (s, rest) = buf.split_at(len);
    *buf = rest;
    Ok(s)
}

/// Decodes a bare Avro datum written with `writer` into a [`ClickEvent`] (the reader schema is
/// `click_event.avsc`), resolving schema differences per the Avro specification.
///
/// Values written with `click_event.avsc` itself (same fingerprint) take the fast path of
/// [`decode_click_event_datum`]; others are decoded to a generic value and resolved, which
/// costs a few microseconds more per record.
///
/// Errors with [`Error::Decode`] when the schemas are not compatible (for example a reader
/// field without default missing from the writer), the datum is truncated or malformed, bytes
/// are left over, or `event_id` is not a UUID.
pub fn decode_click_event_datum_from(writer: &Schema, datum: &[u8]) -> Result<ClickEvent> {
    if schema_fingerprint(writer) == CLICK_EVENT_FINGERPRINT {
        return decode_click_event_datum(datum);
    }
    let value = read_resolved(writer, click_event_schema(), datum)?;
    click_event_from_value(value)
}

/// Decodes `datum` (written with `writer`) and resolves it to `reader` (Avro "Schema
/// Resolution"); errors if bytes are left over.
pub fn read_resolved(writer: &Schema, reader: &Schema, mut datum: &[u8]) -> Result<Value> {
    let value = GenericDatumReader::builder(writer)
        .reader_schema(reader)
        .build()
        .and_then(|r| r.read_value(&mut datum))
        .map_err(|e| Error::Decode(format!("click event (resolving writer schema): {e}")))?;
    if !datum.is_empty() {
        return Err(Error::Decode(format!("{} trailing bytes after click event", datum.len())));
    }
    Ok(value)
}

/// Converts a generic record resolved to `click_event.avsc` into a [`ClickEvent`].
fn click_event_from_value(value: Value) -> Result<ClickEvent> {
    let Value::Record(fields) = value else {
        return Err(Error::Decode("click event is not a record".into()));
    };
    let mut ev = ClickEvent {
        event_id: Uuid::nil(),
        code: String::new(),
        ts: 0,
        ip_trunc: None,
        visitor_id: 0,
        user_agent: String::new(),
        referrer: None,
        accept_language: None,
        edge_region: None,
    };
    let mut seen = 0u32;
    for (name, v) in fields {
        match name.as_str() {
            "event_id" => {
                ev.event_id = match v {
                    Value::Uuid(u) => u,
                    Value::String(s) => Uuid::parse_str(&s).map_err(|e| Error::Decode(format!("field \"event_id\" is not a uuid: {e}")))?,
                    other => return Err(field_type("event_id", &other)),
                };
                seen |= 1;
            }
            "code" => {
                ev.code = string_of("code", v)?;
                seen |= 2;
            }
            "ts" => {
                ev.ts = match v {
                    Value::TimestampMillis(t) | Value::Long(t) => t,
                    other => return Err(field_type("ts", &other)),
                };
                seen |= 4;
            }
            "ip_trunc" => ev.ip_trunc = opt_string_of("ip_trunc", v)?,
            "visitor_id" => {
                ev.visitor_id = match v {
                    // Bit-for-bit reinterpretation, as in `crate::avro`.
                    Value::Long(n) => n as u64,
                    other => return Err(field_type("visitor_id", &other)),
                };
                seen |= 8;
            }
            "user_agent" => {
                ev.user_agent = string_of("user_agent", v)?;
                seen |= 16;
            }
            "referrer" => ev.referrer = opt_string_of("referrer", v)?,
            "accept_language" => ev.accept_language = opt_string_of("accept_language", v)?,
            "edge_region" => ev.edge_region = opt_string_of("edge_region", v)?,
            // Resolution to the reader schema yields exactly the reader's fields; anything
            // else would be a library bug, and ignoring it loses nothing the reader knows.
            _ => {}
        }
    }
    if seen != 31 {
        return Err(Error::Decode("click event lacks a required field after resolution".into()));
    }
    Ok(ev)
}

fn field_type(field: &str, v: &Value) -> Error {
    Error::Decode(format!("field \"{field}\" has unexpected avro value {v:?}"))
}

fn string_of(field: &str, v: Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(field_type(field, &other)),
    }
}

fn opt_string_of(field: &str, v: Value) -> Result<Option<String>> {
    match v {
        Value::Union(_, inner) => match *inner {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(field_type(field, &other)),
        },
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        other => Err(field_type(field, &other)),
    }
}

#[cfg(test)]
mod tests;
