//! Avro wire encoding of [`Anomaly`]: the value format of the Kafka topic `anomalies` and of
//! the embedded anomaly log.
//!
//! `schemas/avro/anomaly.avsc` is the source of truth (compiled in with `include_str!`).
//! Values use Avro **single-object encoding** exactly like click events
//! ([`crate::avro`]): `C3 01`, the little-endian CRC-64-AVRO fingerprint of the schema's
//! Parsing Canonical Form ([`ANOMALY_FINGERPRINT`]), then the binary datum.
//!
//! Field mapping (Rust → Avro): `Uuid` → `string`/`uuid`; `i64` times → `long`/
//! `timestamp-millis`; `u32`/`u64` counts → `long` (counts never exceed `i64::MAX`; a larger
//! one is an encode error); enums → Avro enums with the snake_case names as symbols;
//! `Option<String>` → `["null", "string"]`; lists → arrays.

use std::sync::OnceLock;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;

use super::{Anomaly, AnomalyKind, AnomalyStatus, Evidence, Severity, Tally};
use crate::avro::{SINGLE_OBJECT_HEADER_LEN, parsing_canonical_form, rabin_fingerprint};
use crate::{Error, Result};

/// The `anomaly.avsc` schema text (JSON), as compiled into this crate.
pub const ANOMALY_AVSC: &str = include_str!("../../avro/anomaly.avsc");

/// CRC-64-AVRO (Rabin) fingerprint of the Parsing Canonical Form of [`ANOMALY_AVSC`]; bytes
/// 2..10 of every encoded anomaly are its little-endian form. Pinned by a test.
pub const ANOMALY_FINGERPRINT: i64 = 5_834_396_097_800_221_578;

const STATUS: [AnomalyStatus; 3] = [AnomalyStatus::Open, AnomalyStatus::Updated, AnomalyStatus::Closed];

/// The parsed `anomaly.avsc` schema.
///
/// # Panics
/// Never in a released build: the compiled-in schema text is parsed by a unit test.
pub fn anomaly_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse_str(ANOMALY_AVSC).expect("anomaly.avsc is valid Avro"))
}

/// The 10-byte single-object header (`C3 01` + little-endian fingerprint) of every encoded
/// [`Anomaly`].
pub fn anomaly_header() -> &'static [u8] {
    static HEADER: OnceLock<[u8; SINGLE_OBJECT_HEADER_LEN]> = OnceLock::new();
    HEADER.get_or_init(|| {
        let fp = rabin_fingerprint(parsing_canonical_form(anomaly_schema()).as_bytes()).to_le_bytes();
        let mut h = [0u8; SINGLE_OBJECT_HEADER_LEN];
        h[0] = 0xC3;
        h[1] = 0x01;
        h[2..].copy_from_slice(&fp);
        h
    })
}

fn long(field: &'static str, v: u64) -> Result<Value> {
    i64::try_from(v).map(Value::Long).map_err(|_| Error::Encode(format!("anomaly field \"{field}\" is {v}, beyond an avro long")))
}

fn opt(s: &Option<String>) -> Value {
    match s {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
    }
}

fn tallies(field: &'static str, v: &[Tally]) -> Result<Value> {
    let items = v
        .iter()
        .map(|t| Ok(Value::Record(vec![("value".into(), Value::String(t.value.clone())), ("count".into(), long(field, t.count)?)])))
        .collect::<Result<Vec<_>>>()?;
    Ok(Value::Array(items))
}

fn to_value(a: &Anomaly) -> Result<Value> {
    let e = &a.evidence;
    let evidence = Value::Record(vec![
        ("window_ms".into(), Value::Long(e.window_ms)),
        ("clicks".into(), long("clicks", e.clicks)?),
        ("human_clicks".into(), long("human_clicks", e.human_clicks)?),
        ("bot_clicks".into(), long("bot_clicks", e.bot_clicks)?),
        ("visitors".into(), long("visitors", e.visitors)?),
        ("top_visitor_share".into(), Value::Double(e.top_visitor_share)),
        ("top_countries".into(), tallies("top_countries", &e.top_countries)?),
        ("top_referrers".into(), tallies("top_referrers", &e.top_referrers)?),
        ("top_user_agents".into(), tallies("top_user_agents", &e.top_user_agents)?),
        ("top_codes".into(), tallies("top_codes", &e.top_codes)?),
        ("top_visitors".into(), tallies("top_visitors", &e.top_visitors)?),
        ("network".into(), opt(&e.network)),
        ("target_host".into(), opt(&e.target_host)),
        ("blocklist_patterns".into(), Value::Array(e.blocklist_patterns.iter().cloned().map(Value::String).collect())),
        ("baseline_minutes".into(), Value::Long(i64::from(e.baseline_minutes))),
    ]);
    let status = STATUS.iter().position(|s| *s == a.status).expect("every status listed") as u32;
    let kind = AnomalyKind::ALL.iter().position(|k| *k == a.kind).expect("every kind listed") as u32;
    let severity = Severity::ALL.iter().position(|s| *s == a.severity).expect("every severity listed") as u32;
    Ok(Value::Record(vec![
        ("anomaly_id".into(), Value::Uuid(a.anomaly_id)),
        ("revision".into(), Value::Long(i64::from(a.revision))),
        ("status".into(), Value::Enum(status, a.status.as_str().into())),
        ("kind".into(), Value::Enum(kind, a.kind.as_str().into())),
        ("key".into(), Value::String(a.key.clone())),
        ("severity".into(), Value::Enum(severity, a.severity.as_str().into())),
        ("code".into(), opt(&a.code)),
        ("org".into(), opt(&a.org)),
        ("window_start".into(), Value::TimestampMillis(a.window_start)),
        ("window_end".into(), Value::TimestampMillis(a.window_end)),
        ("observed".into(), Value::Double(a.observed)),
        ("expected".into(), Value::Double(a.expected)),
        ("score".into(), Value::Double(a.score)),
        ("summary".into(), Value::String(a.summary.clone())),
        ("evidence".into(), evidence),
        ("detected_at".into(), Value::TimestampMillis(a.detected_at)),
    ]))
}

/// Appends the bare Avro binary datum of `a` (no header) to `out`.
///
/// Errors with [`Error::Encode`] if a count exceeds an Avro `long` or the encoder rejects
/// the value.
pub fn encode_anomaly_datum_into(a: &Anomaly, out: &mut Vec<u8>) -> Result<()> {
    static WRITER: OnceLock<GenericDatumWriter<'static>> = OnceLock::new();
    let writer = WRITER.get_or_init(|| GenericDatumWriter::builder(anomaly_schema()).build().expect("anomaly.avsc resolves (tested)"));
    let value = to_value(a)?;
    writer.write_value_ref(out, &value).map_err(|e| Error::Encode(format!("anomaly: {e}")))?;
    Ok(())
}

/// Appends the single-object encoding of `a` (header, then the datum) to `out`.
///
/// Errors as [`encode_anomaly_datum_into`].
pub fn encode_anomaly_into(a: &Anomaly, out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(anomaly_header());
    encode_anomaly_datum_into(a, out)
}

/// The single-object encoding of `a` as a new buffer; see [`encode_anomaly_into`].
pub fn encode_anomaly(a: &Anomaly) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256 + a.summary.len());
    encode_anomaly_into(a, &mut out)?;
    Ok(out)
}

/// Decodes one single-object-encoded [`Anomaly`].
///
/// Errors with [`Error::Decode`] when the marker or fingerprint is not the one of
/// `anomaly.avsc`, when the datum is truncated or malformed, or when bytes are left over.
pub fn decode_anomaly(bytes: &[u8]) -> Result<Anomaly> {
    if bytes.len() < SINGLE_OBJECT_HEADER_LEN {
        return Err(Error::Decode(format!("anomaly is {} bytes, shorter than its header", bytes.len())));
    }
    let (header, body) = bytes.split_at(SINGLE_OBJECT_HEADER_LEN);
    if header[..2] != [0xC3, 0x01] {
        return Err(Error::Decode("not avro single-object encoding (bad marker)".into()));
    }
    if header != anomaly_header() {
        let fp = i64::from_le_bytes(header[2..].try_into().expect("8 header bytes"));
        return Err(Error::Decode(format!("anomaly written with unknown schema fingerprint {fp}")));
    }
    decode_anomaly_datum(body)
}

/// Decodes a bare datum written by [`encode_anomaly_datum_into`].
///
/// Errors with [`Error::Decode`] when the datum is truncated, malformed or followed by
/// trailing bytes.
pub fn decode_anomaly_datum(mut bytes: &[u8]) -> Result<Anomaly> {
    static READER: OnceLock<GenericDatumReader<'static>> = OnceLock::new();
    let reader = READER.get_or_init(|| GenericDatumReader::builder(anomaly_schema()).build().expect("anomaly.avsc resolves (tested)"));
    let value = reader.read_value(&mut bytes).map_err(|e| Error::Decode(format!("anomaly: {e}")))?;
    if !bytes.is_empty() {
        return Err(Error::Decode(format!("{} trailing bytes after anomaly", bytes.len())));
    }
    from_value(value)
}

struct Fields(Vec<(String, Value)>);

impl Fields {
    fn take(&mut self, name: &'static str) -> Result<Value> {
        let i = self.0.iter().position(|(n, _)| n == name).ok_or_else(|| Error::Decode(format!("anomaly: missing field \"{name}\"")))?;
        Ok(self.0.swap_remove(i).1)
    }
}

fn bad(name: &str, v: &Value) -> Error {
    Error::Decode(format!("anomaly: field \"{name}\" has unexpected value {v:?}"))
}

fn get_long(f: &mut Fields, name: &'static str) -> Result<i64> {
    match f.take(name)? {
        Value::Long(v) | Value::TimestampMillis(v) => Ok(v),
        v => Err(bad(name, &v)),
    }
}

fn get_count(f: &mut Fields, name: &'static str) -> Result<u64> {
    let v = get_long(f, name)?;
    u64::try_from(v).map_err(|_| Error::Decode(format!("anomaly: field \"{name}\" is negative ({v})")))
}

fn get_f64(f: &mut Fields, name: &'static str) -> Result<f64> {
    match f.take(name)? {
        Value::Double(v) => Ok(v),
        v => Err(bad(name, &v)),
    }
}

fn get_string(f: &mut Fields, name: &'static str) -> Result<String> {
    match f.take(name)? {
        Value::String(s) => Ok(s),
        v => Err(bad(name, &v)),
    }
}

fn get_opt(f: &mut Fields, name: &'static str) -> Result<Option<String>> {
    match f.take(name)? {
        Value::Union(_, b) => match *b {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            v => Err(bad(name, &v)),
        },
        v => Err(bad(name, &v)),
    }
}

fn get_symbol(f: &mut Fields, name: &'static str) -> Result<String> {
    match f.take(name)? {
        Value::Enum(_, s) => Ok(s),
        v => Err(bad(name, &v)),
    }
}

fn get_record(f: &mut Fields, name: &'static str) -> Result<Fields> {
    match f.take(name)? {
        Value::Record(r) => Ok(Fields(r)),
        v => Err(bad(name, &v)),
    }
}

fn get_array(f: &mut Fields, name: &'static str) -> Result<Vec<Value>> {
    match f.take(name)? {
        Value::Array(a) => Ok(a),
        v => Err(bad(name, &v)),
    }
}

fn get_tallies(f: &mut Fields, name: &'static str) -> Result<Vec<Tally>> {
    get_array(f, name)?
        .into_iter()
        .map(|item| match item {
            Value::Record(r) => {
                let mut r = Fields(r);
                Ok(Tally { value: get_string(&mut r, "value")?, count: get_count(&mut r, "count")? })
            }
            v => Err(bad(name, &v)),
        })
        .collect()
}

fn from_value(v: Value) -> Result<Anomaly> {
    let Value::Record(fields) = v else { return Err(bad("(record)", &v)) };
    let mut f = Fields(fields);
    let anomaly_id = match f.take("anomaly_id")? {
        Value::Uuid(u) => u,
        Value::String(s) => uuid::Uuid::parse_str(&s).map_err(|e| Error::Decode(format!("anomaly: field \"anomaly_id\" is not a uuid: {e}")))?,
        v => return Err(bad("anomaly_id", &v)),
    };
    let revision = get_long(&mut f, "revision")?;
    let revision = u32::try_from(revision).map_err(|_| Error::Decode(format!("anomaly: revision {revision} out of range")))?;
    let status = get_symbol(&mut f, "status")?;
    let status = STATUS.into_iter().find(|s| s.as_str() == status).ok_or_else(|| Error::Decode(format!("anomaly: unknown status \"{status}\"")))?;
    let kind = get_symbol(&mut f, "kind")?;
    let kind = AnomalyKind::parse(&kind).ok_or_else(|| Error::Decode(format!("anomaly: unknown kind \"{kind}\"")))?;
    let key = get_string(&mut f, "key")?;
    let severity = get_symbol(&mut f, "severity")?;
    let severity = Severity::parse(&severity).ok_or_else(|| Error::Decode(format!("anomaly: unknown severity \"{severity}\"")))?;
    let mut e = get_record(&mut f, "evidence")?;
    let baseline_minutes = get_long(&mut e, "baseline_minutes")?;
    let evidence = Evidence {
        window_ms: get_long(&mut e, "window_ms")?,
        clicks: get_count(&mut e, "clicks")?,
        human_clicks: get_count(&mut e, "human_clicks")?,
        bot_clicks: get_count(&mut e, "bot_clicks")?,
        visitors: get_count(&mut e, "visitors")?,
        top_visitor_share: get_f64(&mut e, "top_visitor_share")?,
        top_countries: get_tallies(&mut e, "top_countries")?,
        top_referrers: get_tallies(&mut e, "top_referrers")?,
        top_user_agents: get_tallies(&mut e, "top_user_agents")?,
        top_codes: get_tallies(&mut e, "top_codes")?,
        top_visitors: get_tallies(&mut e, "top_visitors")?,
        network: get_opt(&mut e, "network")?,
        target_host: get_opt(&mut e, "target_host")?,
        blocklist_patterns: get_array(&mut e, "blocklist_patterns")?
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                v => Err(bad("blocklist_patterns", &v)),
            })
            .collect::<Result<_>>()?,
        baseline_minutes: u32::try_from(baseline_minutes).map_err(|_| Error::Decode(format!("anomaly: baseline_minutes {baseline_minutes} out of range")))?,
    };
    Ok(Anomaly {
        anomaly_id,
        revision,
        status,
        kind,
        key,
        severity,
        code: get_opt(&mut f, "code")?,
        org: get_opt(&mut f, "org")?,
        window_start: get_long(&mut f, "window_start")?,
        window_end: get_long(&mut f, "window_end")?,
        observed: get_f64(&mut f, "observed")?,
        expected: get_f64(&mut f, "expected")?,
        score: get_f64(&mut f, "score")?,
        summary: get_string(&mut f, "summary")?,
        evidence,
        detected_at: get_long(&mut f, "detected_at")?,
    })
}

#[cfg(test)]
mod tests;
