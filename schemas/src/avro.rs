//! Avro wire encoding of [`ClickEvent`]: the value format of the embedded click log and of
//! the Kafka topic `click_events_raw`.
//!
//! The schema file `schemas/avro/click_event.avsc` is the source of truth; it is compiled in
//! with `include_str!`. Records are written with Avro **single-object encoding** (Avro 1.11
//! specification, section "Single-object encoding"): the two marker bytes `C3 01`, the 8-byte
//! little-endian CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form, then
//! the Avro binary encoding of the record. A reader therefore knows which schema wrote a value
//! and rejects values written with a schema it does not know.
//!
//! Field mapping (Rust → Avro):
//! - `event_id: Uuid` → `string` with `logicalType: uuid` (canonical hyphenated text);
//! - `ts: i64` (ms since the epoch, UTC) → `long` with `logicalType: timestamp-millis`;
//! - `visitor_id: u64` → `long`, the same 64 bits reinterpreted as two's-complement `i64`
//!   (`u64::MAX` is stored as `-1`); decoding reverses the cast, so every `u64` round-trips;
//! - `Option<String>` → union `["null", "string"]` with default `null`.

use std::sync::OnceLock;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use serde::Deserialize;
use uuid::Uuid;

use crate::{ClickEvent, Error, Result};

/// The `click_event.avsc` schema text (JSON), as compiled into this crate.
pub const CLICK_EVENT_AVSC: &str = include_str!("../avro/click_event.avsc");

/// CRC-64-AVRO (Rabin) fingerprint of the Parsing Canonical Form of [`CLICK_EVENT_AVSC`],
/// as the `i64` the Avro specification defines; bytes 2..10 of every encoded value are its
/// little-endian form. A test pins it, so a schema change is a deliberate act (old log
/// entries must stay readable).
pub const CLICK_EVENT_FINGERPRINT: i64 = -5_459_960_646_114_495_563;

/// Length in bytes of the single-object header (marker + fingerprint).
pub const SINGLE_OBJECT_HEADER_LEN: usize = 10;

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// The Avro specification's Parsing Canonical Form of `schema`.
///
/// apache-avro's `Schema::canonical_form` keeps a logical type's underlying primitive in
/// object form (`{"type":"string"}`, as the Python `avro` package also does), while the
/// specification's [PRIMITIVES] rule requires the simple form (`"string"`) once [STRIP] has
/// removed `logicalType`, which is what the reference Java implementation
/// (`SchemaNormalization`) emits. We follow the specification and Java, so fingerprints match
/// the reference implementation. In PCF such an object has no other attribute, so a textual
/// replacement is exact.
pub fn parsing_canonical_form(schema: &Schema) -> String {
    let mut pcf = schema.canonical_form();
    for p in PRIMITIVES {
        pcf = pcf.replace(&format!(r#"{{"type":"{p}"}}"#), &format!(r#""{p}""#));
    }
    pcf
}

/// CRC-64-AVRO (Rabin) fingerprint of `bytes`, as given in the Avro specification, section
/// "Schema Fingerprints" (64-bit polynomial, initial value `0xc15d213aa4d7a795`).
pub fn rabin_fingerprint(bytes: &[u8]) -> i64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    static TABLE: OnceLock<[u64; 256]> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (EMPTY & 0u64.wrapping_sub(fp & 1));
            }
            *slot = fp;
        }
        t
    });
    let mut fp = EMPTY;
    for &b in bytes {
        fp = (fp >> 8) ^ table[((fp ^ u64::from(b)) & 0xff) as usize];
    }
    fp as i64
}

/// The wire shape of a click event, owned for decoding.
#[derive(Deserialize)]
#[serde(rename = "ClickEvent")] // the schema-aware deserializer checks the record name
struct Wire {
    event_id: String,
    code: String,
    ts: i64,
    ip_trunc: Option<String>,
    visitor_id: i64,
    user_agent: String,
    referrer: Option<String>,
    accept_language: Option<String>,
    edge_region: Option<String>,
}

struct ClickEventCodec {
    header: [u8; SINGLE_OBJECT_HEADER_LEN],
    reader: GenericDatumReader<'static>,
}

fn codec() -> &'static ClickEventCodec {
    static CODEC: OnceLock<ClickEventCodec> = OnceLock::new();
    CODEC.get_or_init(|| {
        let schema = click_event_schema();
        let fp = rabin_fingerprint(parsing_canonical_form(schema).as_bytes()).to_le_bytes();
        let mut header = [0u8; SINGLE_OBJECT_HEADER_LEN];
        header[0] = 0xC3;
        header[1] = 0x01;
        header[2..].copy_from_slice(&fp);
        ClickEventCodec {
            header,
            // Serde-driven (schema-aware) decoding: no intermediate `Value`, and unlike the
            // `Value` decoder it treats a truncated datum as an error. Encoding is written
            // out by hand ([`encode_click_event_datum_into`]).
            reader: GenericDatumReader::builder(schema).human_readable(true).build().expect("click_event.avsc resolves (checked by tests)"),
        }
    })
}

/// The parsed `click_event.avsc` schema.
///
/// # Panics
/// Never in a released build: the compiled-in schema text is parsed by a unit test.
pub fn click_event_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse_str(CLICK_EVENT_AVSC).expect("click_event.avsc is valid Avro"))
}

/// The 10-byte single-object header (`C3 01` + little-endian fingerprint) of every encoded
/// [`ClickEvent`].
pub fn click_event_header() -> &'static [u8] {
    &codec().header
}

/// Appends the bare Avro binary datum of `ev` (no header) to `out`; for framings that carry
/// the schema identity elsewhere (e.g. a schema registry's wire format).
///
/// Written out by hand after the Avro 1.11 specification, section "Binary Encoding", for
/// the record layout of `click_event.avsc` (fields in schema order): `long` = zig-zag then
/// base-128 varint, least significant group first; `string` = its byte length as a `long`,
/// then the UTF-8 bytes; union `["null", "string"]` = branch index as a `long` (0 null,
/// 1 string), then the string. Byte-for-byte the same as apache-avro's schema-aware
/// encoder (a property test compares the two); it skips that encoder's per-field schema
/// walk and serde dispatch, which were the larger part of the click log writer's encoding
/// time.
///
/// Never fails (the `Result` is kept for callers of the former serde-driven encoder).
pub fn encode_click_event_datum_into(ev: &ClickEvent, out: &mut Vec<u8>) -> Result<()> {
    let mut id_buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let event_id = ev.event_id.hyphenated().encode_lower(&mut id_buf);
    out.reserve(
        64 + event_id.len()
            + ev.code.len()
            + ev.user_agent.len()
            + ev.ip_trunc.as_deref().map_or(0, str::len)
            + ev.referrer.as_deref().map_or(0, str::len)
            + ev.accept_language.as_deref().map_or(0, str::len)
            + ev.edge_region.as_deref().map_or(0, str::len),
    );
    put_str(out, event_id);
    put_str(out, &ev.code);
    put_long(out, ev.ts);
    put_opt_str(out, ev.ip_trunc.as_deref());
    // Bit-for-bit reinterpretation (documented in the module and the .avsc).
    put_long(out, ev.visitor_id as i64);
    put_str(out, &ev.user_agent);
    put_opt_str(out, ev.referrer.as_deref());
    put_opt_str(out, ev.accept_language.as_deref());
    put_opt_str(out, ev.edge_region.as_deref());
    Ok(())
}

/// Avro `long`: zig-zag, then base-128 varint (at most 10 bytes).
fn put_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Avro `string`: length as a `long`, then the UTF-8 bytes.
fn put_str(out: &mut Vec<u8>, s: &str) {
    put_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// Avro union `["null", "string"]`.
fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(2); // branch 1, zig-zag encoded
            put_str(out, s);
        }
    }
}

/// Decodes a bare Avro binary datum written by [`encode_click_event_datum_into`].
///
/// Errors with [`Error::Decode`] when the datum is truncated or malformed, when `event_id`
/// is not a UUID, or when bytes are left over.
pub fn decode_click_event_datum(mut bytes: &[u8]) -> Result<ClickEvent> {
    let wire: Wire = codec().reader.read_deser(&mut bytes).map_err(|e| Error::Decode(format!("click event: {e}")))?;
    if !bytes.is_empty() {
        return Err(Error::Decode(format!("{} trailing bytes after click event", bytes.len())));
    }
    let event_id = Uuid::parse_str(&wire.event_id).map_err(|e| Error::Decode(format!("field \"event_id\" is not a uuid: {e}")))?;
    Ok(ClickEvent {
        event_id,
        code: wire.code,
        ts: wire.ts,
        ip_trunc: wire.ip_trunc,
        visitor_id: wire.visitor_id as u64,
        user_agent: wire.user_agent,
        referrer: wire.referrer,
        accept_language: wire.accept_language,
        edge_region: wire.edge_region,
    })
}

/// Appends the single-object encoding of `ev` (header, then the Avro binary datum) to `out`.
///
/// Errors with [`Error::Encode`] if the encoder rejects the value.
pub fn encode_click_event_into(ev: &ClickEvent, out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(&codec().header);
    encode_click_event_datum_into(ev, out)
}

/// The single-object encoding of `ev` as a new buffer; see [`encode_click_event_into`].
pub fn encode_click_event(ev: &ClickEvent) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(96 + ev.code.len() + ev.user_agent.len());
    encode_click_event_into(ev, &mut out)?;
    Ok(out)
}

/// Decodes one single-object-encoded [`ClickEvent`].
///
/// Errors with [`Error::Decode`] when the marker or fingerprint is not the one of
/// `click_event.avsc`, when the datum is truncated or malformed, or when bytes are left over.
pub fn decode_click_event(bytes: &[u8]) -> Result<ClickEvent> {
    if bytes.len() < SINGLE_OBJECT_HEADER_LEN {
        return Err(Error::Decode(format!("click event is {} bytes, shorter than its header", bytes.len())));
    }
    let (header, body) = bytes.split_at(SINGLE_OBJECT_HEADER_LEN);
    if header[..2] != [0xC3, 0x01] {
        return Err(Error::Decode("not avro single-object encoding (bad marker)".into()));
    }
    if header != codec().header {
        let fp = i64::from_le_bytes(header[2..].try_into().expect("8 header bytes"));
        return Err(Error::Decode(format!("click event written with unknown schema fingerprint {fp}")));
    }
    decode_click_event_datum(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-64-AVRO as written in the Avro specification ("Schema Fingerprints"), kept
    /// separate from the production copy on purpose.
    fn spec_rabin(buf: &[u8]) -> i64 {
        const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
        let mut table = [0u64; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (EMPTY & 0u64.wrapping_sub(fp & 1));
            }
            *slot = fp;
        }
        let mut fp = EMPTY;
        for &b in buf {
            fp = (fp >> 8) ^ table[((fp ^ b as u64) & 0xff) as usize];
        }
        fp as i64
    }

    /// Avro binary encoding of a long (zig-zag + base-128 varint), per the specification.
    fn spec_long(n: i64, out: &mut Vec<u8>) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        loop {
            if z < 0x80 {
                out.push(z as u8);
                break;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }

    fn spec_str(s: &str, out: &mut Vec<u8>) {
        spec_long(s.len() as i64, out);
        out.extend_from_slice(s.as_bytes());
    }

    fn spec_opt(s: &Option<String>, out: &mut Vec<u8>) {
        match s {
            None => spec_long(0, out),
            Some(s) => {
                spec_long(1, out);
                spec_str(s, out);
            }
        }
    }

    /// Independent encoder of the record layout written in click_event.avsc.
    fn spec_encode(ev: &ClickEvent) -> Vec<u8> {
        let mut out = vec![0xC3, 0x01];
        out.extend_from_slice(&CLICK_EVENT_FINGERPRINT.to_le_bytes());
        spec_str(&ev.event_id.hyphenated().to_string(), &mut out);
        spec_str(&ev.code, &mut out);
        spec_long(ev.ts, &mut out);
        spec_opt(&ev.ip_trunc, &mut out);
        spec_long(ev.visitor_id as i64, &mut out);
        spec_str(&ev.user_agent, &mut out);
        spec_opt(&ev.referrer, &mut out);
        spec_opt(&ev.accept_language, &mut out);
        spec_opt(&ev.edge_region, &mut out);
        out
    }

    fn samples() -> Vec<ClickEvent> {
        vec![
            ClickEvent {
                event_id: Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").expect("uuid"),
                code: "abc1234".into(),
                ts: 1_700_000_000_123,
                ip_trunc: Some("203.0.113.0".into()),
                visitor_id: u64::MAX,
                user_agent: "Mozilla/5.0 (X11; Linux x86_64)".into(),
                referrer: Some("https://news.ycombinator.com/".into()),
                accept_language: Some("de-CH,de;q=0.9".into()),
                edge_region: Some("eu-central".into()),
            },
            ClickEvent {
                event_id: Uuid::nil(),
                code: "Ünïcødé-✓".into(),
                ts: -1,
                ip_trunc: None,
                visitor_id: 0,
                user_agent: String::new(),
                referrer: None,
                accept_language: None,
                edge_region: None,
            },
            ClickEvent {
                event_id: Uuid::max(),
                code: "x".repeat(64),
                ts: i64::MAX,
                ip_trunc: Some("2001:db8:1::".into()),
                visitor_id: 1 << 63,
                user_agent: "curl/8.5.0\u{0}with nul".into(),
                referrer: Some(String::new()),
                accept_language: None,
                edge_region: Some("日本".into()),
            },
        ]
    }

    #[test]
    fn canonical_form_and_fingerprint_match_the_spec() {
        let schema = click_event_schema();
        let expected_pcf = concat!(
            r#"{"name":"sluice.events.ClickEvent","type":"record","fields":["#,
            r#"{"name":"event_id","type":"string"},{"name":"code","type":"string"},"#,
            r#"{"name":"ts","type":"long"},{"name":"ip_trunc","type":["null","string"]},"#,
            r#"{"name":"visitor_id","type":"long"},{"name":"user_agent","type":"string"},"#,
            r#"{"name":"referrer","type":["null","string"]},"#,
            r#"{"name":"accept_language","type":["null","string"]},"#,
            r#"{"name":"edge_region","type":["null","string"]}]}"#
        );
        assert_eq!(parsing_canonical_form(schema), expected_pcf);
        assert_eq!(spec_rabin(expected_pcf.as_bytes()), CLICK_EVENT_FINGERPRINT, "pinned fingerprint");
        assert_eq!(rabin_fingerprint(expected_pcf.as_bytes()), CLICK_EVENT_FINGERPRINT);
        // apache-avro's own Rabin digest over the spec PCF (a schema without logical types,
        // whose canonical form the library renders per the specification).
        let plain = Schema::parse_str(expected_pcf).expect("pcf parses");
        assert_eq!(plain.canonical_form(), expected_pcf);
        let lib = plain.fingerprint::<apache_avro::rabin::Rabin>();
        assert_eq!(lib.bytes, CLICK_EVENT_FINGERPRINT.to_le_bytes().to_vec());
        let mut header = vec![0xC3, 0x01];
        header.extend_from_slice(&CLICK_EVENT_FINGERPRINT.to_le_bytes());
        assert_eq!(click_event_header(), header.as_slice());
    }

    #[test]
    fn encoding_matches_an_independent_encoder_and_round_trips() {
        for ev in samples() {
            let bytes = encode_click_event(&ev).expect("encode");
            assert_eq!(bytes, spec_encode(&ev), "layout of {ev:?}");
            assert_eq!(decode_click_event(&bytes).expect("decode"), ev);
            let mut datum = Vec::new();
            encode_click_event_datum_into(&ev, &mut datum).expect("datum");
            assert_eq!(datum, bytes[SINGLE_OBJECT_HEADER_LEN..]);
            assert_eq!(decode_click_event_datum(&datum).expect("decode datum"), ev);
        }
    }

    /// apache-avro's schema-aware (serde) encoding of `ev`'s datum: the reference the
    /// hand-written encoder must match byte for byte.
    fn apache_datum(ev: &ClickEvent) -> Vec<u8> {
        #[derive(serde::Serialize)]
        #[serde(rename = "ClickEvent")]
        struct WireRef<'a> {
            event_id: &'a str,
            code: &'a str,
            ts: i64,
            ip_trunc: Option<&'a str>,
            visitor_id: i64,
            user_agent: &'a str,
            referrer: Option<&'a str>,
            accept_language: Option<&'a str>,
            edge_region: Option<&'a str>,
        }
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(click_event_schema()).human_readable(true).build().expect("writer");
        let id = ev.event_id.hyphenated().to_string();
        let wire = WireRef {
            event_id: &id,
            code: &ev.code,
            ts: ev.ts,
            ip_trunc: ev.ip_trunc.as_deref(),
            visitor_id: ev.visitor_id as i64,
            user_agent: &ev.user_agent,
            referrer: ev.referrer.as_deref(),
            accept_language: ev.accept_language.as_deref(),
            edge_region: ev.edge_region.as_deref(),
        };
        let mut out = Vec::new();
        writer.write_ser(&mut out, &wire).expect("apache-avro encodes");
        out
    }

    #[test]
    fn samples_encode_as_apache_avro_does() {
        for ev in samples() {
            let mut datum = Vec::new();
            encode_click_event_datum_into(&ev, &mut datum).expect("datum");
            assert_eq!(datum, apache_datum(&ev), "{ev:?}");
        }
    }

    /// Hostile strings: any Unicode (controls, NUL, astral planes, combining marks), long
    /// runs that need multi-byte lengths, and empty strings.
    fn hostile() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<String>(),
            "\\PC{0,40}",
            "[\\x00-\\x1f\\x7f\u{80}-\u{10ffff}]{0,20}",
            (0usize..300, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
            Just(String::new()),
        ]
    }

    proptest::proptest! {
        #[test]
        fn any_event_encodes_as_apache_avro_does_and_round_trips(
            id in proptest::prelude::any::<u128>(),
            code in hostile(),
            ts in proptest::prelude::any::<i64>(),
            ip_trunc in proptest::option::of(hostile()),
            visitor_id in proptest::prelude::any::<u64>(),
            user_agent in hostile(),
            referrer in proptest::option::of(hostile()),
            accept_language in proptest::option::of(hostile()),
            edge_region in proptest::option::of(hostile()),
        ) {
            let ev = ClickEvent { event_id: Uuid::from_u128(id), code, ts, ip_trunc, visitor_id, user_agent, referrer, accept_language, edge_region };
            let mut datum = Vec::new();
            encode_click_event_datum_into(&ev, &mut datum).expect("datum");
            proptest::prop_assert_eq!(&datum, &apache_datum(&ev));
            proptest::prop_assert_eq!(&datum, &spec_encode(&ev)[SINGLE_OBJECT_HEADER_LEN..].to_vec());
            proptest::prop_assert_eq!(decode_click_event_datum(&datum).expect("decodes"), ev);
        }
    }

    #[test]
    fn avsc_fields_are_exactly_the_rust_fields() {
        let json: serde_json::Value = serde_json::from_str(CLICK_EVENT_AVSC).expect("avsc is json");
        let avsc: Vec<String> = json["fields"].as_array().expect("fields").iter().map(|f| f["name"].as_str().expect("name").to_string()).collect();
        let rust = serde_json::to_value(&samples()[0]).expect("serialize");
        let mut rust: Vec<String> = rust.as_object().expect("object").keys().cloned().collect();
        let mut sorted = avsc.clone();
        sorted.sort();
        rust.sort();
        assert_eq!(sorted, rust);
    }

    #[test]
    fn bad_input_is_a_decode_error() {
        let good = encode_click_event(&samples()[0]).expect("encode");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("short header", good[..5].to_vec()),
            ("bad marker", [&[0xC3, 0x02][..], &good[2..]].concat()),
            ("other fingerprint", [&good[..2], &[0u8; 8][..], &good[10..]].concat()),
            ("truncated body", good[..good.len() - 3].to_vec()),
            ("trailing bytes", [&good[..], &[0u8][..]].concat()),
            ("event_id not a uuid", {
                let mut b = good.clone();
                b[11] = b'z';
                b
            }),
            ("invalid utf-8 in code", {
                let mut b = good.clone();
                b[48] = 0xff;
                b
            }),
        ];
        for (name, bytes) in cases {
            match decode_click_event(&bytes) {
                Err(Error::Decode(_)) => {}
                other => panic!("{name}: expected a decode error, got {other:?}"),
            }
        }
    }
}
