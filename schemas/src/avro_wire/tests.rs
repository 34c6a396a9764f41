//! Tests of the value framings and of schema evolution between `click_event.avsc` (v1) and
//! the test-only `click_event_v2.avsc` (v1 plus an optional `utm_campaign`, default null).

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use uuid::Uuid;

use super::*;
use crate::avro::{CLICK_EVENT_AVSC, encode_click_event};

const V2_AVSC: &str = include_str!("../../avro/click_event_v2.avsc");

fn v2() -> Schema {
    Schema::parse_str(V2_AVSC).expect("v2 schema parses")
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
            // 200 bytes: a two-byte varint length
            code: "x".repeat(200),
            ts: i64::MAX,
            ip_trunc: Some("2001:db8:1::".into()),
            visitor_id: 1 << 63,
            user_agent: "curl/8.5.0".into(),
            referrer: Some(String::new()),
            accept_language: None,
            edge_region: Some("日本".into()),
        },
    ]
}

fn opt(s: &Option<String>) -> Value {
    match s {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
    }
}

/// The v2 record of `ev` plus `utm`, built field by field from the .avsc, independent of the
/// production encoder.
fn v2_value(ev: &ClickEvent, utm: Option<&str>) -> Value {
    Value::Record(vec![
        ("event_id".into(), Value::Uuid(ev.event_id)),
        ("code".into(), Value::String(ev.code.clone())),
        ("ts".into(), Value::TimestampMillis(ev.ts)),
        ("ip_trunc".into(), opt(&ev.ip_trunc)),
        ("visitor_id".into(), Value::Long(ev.visitor_id as i64)),
        ("user_agent".into(), Value::String(ev.user_agent.clone())),
        ("referrer".into(), opt(&ev.referrer)),
        ("accept_language".into(), opt(&ev.accept_language)),
        ("edge_region".into(), opt(&ev.edge_region)),
        ("utm_campaign".into(), opt(&utm.map(str::to_string))),
    ])
}

fn write_v2(ev: &ClickEvent, utm: Option<&str>) -> Vec<u8> {
    let schema = v2();
    GenericDatumWriter::builder(&schema).build().expect("writer").write_value_to_vec(v2_value(ev, utm)).expect("v2 encodes")
}

#[test]
fn framing_is_detected_from_the_first_byte() {
    let ev = &samples()[0];
    let so = encode_click_event(ev).expect("encode");
    let (framing, datum) = split_framing(&so).expect("single object");
    assert_eq!(framing, Framing::SingleObject { fingerprint: CLICK_EVENT_FINGERPRINT });
    assert_eq!(datum, &so[10..]);

    let mut cf = Vec::new();
    encode_click_event_confluent_into(0x0102_0304, ev, &mut cf).expect("confluent");
    assert_eq!(&cf[..5], &[0, 1, 2, 3, 4]);
    assert_eq!(&cf[5..], &so[10..], "both framings wrap the same datum");
    let (framing, datum) = split_framing(&cf).expect("confluent");
    assert_eq!(framing, Framing::Confluent { schema_id: 0x0102_0304 });
    assert_eq!(decode_click_event_datum(datum).expect("decode"), *ev);

    let mut reframed = Vec::new();
    single_object_to_confluent(&so, 0x0102_0304, &mut reframed).expect("reframe");
    assert_eq!(reframed, cf);

    for (name, bad) in [
        ("empty", vec![]),
        ("short single object", vec![0xC3, 0x01, 1, 2]),
        ("bad marker", vec![0xC3, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("short confluent", vec![0, 0, 0]),
        ("json", b"{\"code\":1}".to_vec()),
    ] {
        assert!(matches!(split_framing(&bad), Err(Error::Decode(_))), "{name}");
    }
    let mut other_fp = so.clone();
    other_fp[2] ^= 1;
    assert!(single_object_to_confluent(&other_fp, 1, &mut Vec::new()).is_err());
}

#[test]
fn code_is_read_without_a_full_decode() {
    for ev in samples() {
        let so = encode_click_event(&ev).expect("encode");
        assert_eq!(click_event_code(&so).expect("code"), ev.code);
        for cut in [10, 11, 12, 48] {
            if cut < 10 + 1 + 36 + ev.code.len() {
                assert!(click_event_code(&so[..cut]).is_err(), "cut at {cut}");
            }
        }
    }
    let mut cf = Vec::new();
    encode_click_event_confluent_into(7, &samples()[0], &mut cf).expect("confluent");
    assert!(click_event_code(&cf).is_err(), "only single-object values of v1");
}

#[test]
fn fingerprints_tell_v1_from_v2() {
    assert_eq!(schema_fingerprint(click_event_schema()), CLICK_EVENT_FINGERPRINT);
    assert_ne!(schema_fingerprint(&v2()), CLICK_EVENT_FINGERPRINT);
    // the same schema from another text (registry normalisation) has the same fingerprint
    let reparsed = Schema::parse_str(&parsing_canonical_form(click_event_schema())).expect("pcf parses");
    assert_eq!(schema_fingerprint(&reparsed), CLICK_EVENT_FINGERPRINT);
    assert!(CLICK_EVENT_AVSC.contains("sluice.events"));
}

#[test]
fn v1_and_v2_are_backward_and_forward_compatible() {
    let v1 = click_event_schema();
    let v2 = v2();
    SchemaCompatibility::can_read(v1, &v2).expect("v2 readers read v1 data (backward)");
    SchemaCompatibility::can_read(&v2, v1).expect("v1 readers read v2 data (forward)");
}

#[test]
fn a_v1_reader_reads_v2_data() {
    for ev in samples() {
        for utm in [None, Some("spring-sale")] {
            let datum = write_v2(&ev, utm);
            assert_eq!(decode_click_event_datum_from(&v2(), &datum).expect("v1 reads v2"), ev, "utm {utm:?}");
        }
    }
}

#[test]
fn a_v2_reader_reads_v1_data_with_the_default() {
    for ev in samples() {
        let so = encode_click_event(&ev).expect("v1 encode");
        let value = read_resolved(click_event_schema(), &v2(), &so[10..]).expect("v2 reads v1");
        assert_eq!(value, v2_value(&ev, None), "utm_campaign takes its default null");
        // and the fast path for v1 writers gives the same event as the plain decoder
        assert_eq!(decode_click_event_datum_from(click_event_schema(), &so[10..]).expect("fast path"), ev);
    }
}

#[test]
fn incompatible_or_broken_data_is_a_decode_error() {
    // a reader field without default that v1 data lacks
    let v3 =
        Schema::parse_str(&V2_AVSC.replace(r#""type": ["null", "string"], "default": null, "doc": "v2 addition"#, r#""type": "string", "doc": "v2 addition"#))
            .expect("v3 parses");
    let so = encode_click_event(&samples()[0]).expect("encode");
    assert!(matches!(read_resolved(click_event_schema(), &v3, &so[10..]), Err(Error::Decode(_))));

    let datum = write_v2(&samples()[0], Some("x"));
    for (name, bytes) in [("truncated", datum[..datum.len() - 2].to_vec()), ("trailing", [&datum[..], &[0u8][..]].concat()), ("empty", vec![])] {
        assert!(matches!(decode_click_event_datum_from(&v2(), &bytes), Err(Error::Decode(_))), "{name}");
    }
    // a writer with a different record shape (code is a long)
    let alien = Schema::parse_str(r#"{"type":"record","name":"ClickEvent","namespace":"sluice.events","fields":[{"name":"code","type":"long"}]}"#)
        .expect("alien parses");
    assert!(decode_click_event_datum_from(&alien, &[2]).is_err());
}
