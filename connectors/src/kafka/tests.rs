//! Unit tests of the Kafka connector that need no broker: value codec, schema registry client
//! and decoder against the registry double, partition assignment, and the sink's behaviour
//! while no broker is reachable.

use std::time::{Duration, Instant};

use apache_avro::Schema;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use sluice_schemas::ClickEvent;
use sluice_schemas::avro::{CLICK_EVENT_AVSC, CLICK_EVENT_FINGERPRINT, encode_click_event};
use sluice_schemas::avro_wire::{encode_click_event_confluent_into, schema_fingerprint};
use uuid::Uuid;

use super::registry_double::RegistryDouble;
use super::*;
use crate::Error;

/// Test-only v2 of the click event schema (v1 plus optional `utm_campaign`).
pub(crate) const V2_AVSC: &str = include_str!("../../../schemas/avro/click_event_v2.avsc");

/// A deterministic event `i`: `code` cycles through 7 codes so keys repeat.
pub(crate) fn sample_event(i: u64) -> ClickEvent {
    ClickEvent {
        event_id: Uuid::from_u64_pair(0x0190_0000_0000_7000, i),
        code: format!("c{}", i % 7),
        ts: 1_700_000_000_000 + i as i64,
        ip_trunc: Some("203.0.113.0".into()),
        visitor_id: i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        user_agent: "Mozilla/5.0 (test)".into(),
        referrer: if i.is_multiple_of(2) { Some("https://example.com/".into()) } else { None },
        accept_language: None,
        edge_region: Some("local".into()),
    }
}

fn opt(s: &Option<String>) -> Value {
    match s {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
    }
}

/// The bare datum of `ev` written with the v2 schema and `utm_campaign = utm`.
pub(crate) fn v2_datum(ev: &ClickEvent, utm: Option<&str>) -> Vec<u8> {
    let schema = Schema::parse_str(V2_AVSC).expect("v2 parses");
    let value = Value::Record(vec![
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
    ]);
    GenericDatumWriter::builder(&schema).build().expect("writer").write_value_to_vec(value).expect("v2 encodes")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn value_format_frames_spilled_values() {
    let ev = sample_event(3);
    let so = encode_click_event(&ev).expect("encode");
    let mut out = vec![9, 9, 9];
    ValueFormat::SingleObject.frame_spilled(&so, &mut out).expect("single object");
    assert_eq!(out, so);
    ValueFormat::Confluent { schema_id: 258 }.frame_spilled(&so, &mut out).expect("confluent");
    let mut expected = Vec::new();
    encode_click_event_confluent_into(258, &ev, &mut expected).expect("confluent encode");
    assert_eq!(out, expected);
    assert_eq!(&out[..5], &[0, 0, 0, 1, 2]);
    assert!(ValueFormat::SingleObject.frame_spilled(b"garbage", &mut out).is_err());
    assert!(ValueFormat::Confluent { schema_id: 1 }.frame_spilled(&expected, &mut out).is_err());
}

#[test]
fn registry_client_registers_once_and_fetches_by_id_and_latest() {
    let double = RegistryDouble::start();
    let client = SchemaRegistry::new(&double.url).expect("client");
    let rt = rt();
    let id = rt.block_on(client.register_click_event("clicks")).expect("register");
    assert_eq!(rt.block_on(client.register_click_event("clicks")).expect("again"), id);
    assert_eq!(double.calls("post_version"), 1, "the id is cached");
    let writer = rt.block_on(client.writer_schema(id)).expect("by id");
    assert_eq!(schema_fingerprint(&writer), CLICK_EVENT_FINGERPRINT);
    let latest = rt.block_on(client.latest("clicks-value")).expect("latest");
    assert_eq!((latest.id, latest.version), (id, Some(1)));
    assert_eq!(double.calls("get_latest"), 1);

    // a compatible v2 registered by another producer becomes version 2 with a new id
    let v2_id = double.register("clicks-value", V2_AVSC);
    assert_ne!(v2_id, id);
    let latest = rt.block_on(client.latest("clicks-value")).expect("latest v2");
    assert_eq!((latest.id, latest.version), (v2_id, Some(2)));
    // the same schema under another subject keeps its global id
    assert_eq!(double.register("other-value", CLICK_EVENT_AVSC), id);

    match rt.block_on(client.writer_schema(999)) {
        Err(Error::SchemaRegistry { retryable: false, .. }) => {}
        other => panic!("unknown id: {other:?}"),
    }
    match rt.block_on(client.latest("missing-value")) {
        Err(Error::SchemaRegistry { retryable: false, .. }) => {}
        other => panic!("unknown subject: {other:?}"),
    }
}

#[test]
fn registry_errors_are_classified() {
    let double = RegistryDouble::start();
    // `code` as a long: click_event.avsc cannot read that data, so registering it is refused
    double.register("alien-value", r#"{"type":"record","name":"ClickEvent","namespace":"sluice.events","fields":[{"name":"code","type":"long"}]}"#);
    let client = SchemaRegistry::new(&double.url).expect("client");
    let rt = rt();
    match rt.block_on(client.register_click_event("alien")) {
        Err(e @ Error::SchemaRegistry { retryable: false, .. }) => {
            assert!(e.to_string().contains("409"), "{e}");
            assert_eq!(e.kind(), "external");
        }
        other => panic!("incompatible: {other:?}"),
    }
    double.set_unavailable(true);
    match rt.block_on(client.register_click_event("fresh")) {
        Err(e @ Error::SchemaRegistry { retryable: true, .. }) => assert!(e.retryable()),
        other => panic!("unavailable: {other:?}"),
    }
    double.set_unavailable(false);
    rt.block_on(client.register_click_event("fresh")).expect("a later attempt succeeds");

    let closed = SchemaRegistry::new("http://127.0.0.1:9").expect("client");
    match rt.block_on(closed.writer_schema(1)) {
        Err(Error::SchemaRegistry { retryable: true, .. }) => {}
        other => panic!("connection refused: {other:?}"),
    }
}

#[test]
fn decoder_reads_both_framings_and_evolved_writers() {
    let double = RegistryDouble::start();
    let v1_id = double.register("t-value", CLICK_EVENT_AVSC);
    let v2_id = double.register("t-value", V2_AVSC);
    let v2 = Schema::parse_str(V2_AVSC).expect("v2");
    let mut decoder = ValueDecoder::new(Some(&double.url)).expect("decoder");
    let ev = sample_event(11);

    let so = encode_click_event(&ev).expect("encode");
    assert_eq!(decoder.decode(Some(&so)).expect("single object"), ev);
    let mut cf = Vec::new();
    encode_click_event_confluent_into(v1_id, &ev, &mut cf).expect("confluent");
    assert_eq!(decoder.decode(Some(&cf)).expect("confluent v1"), ev);
    // forward compatibility through the registry: v2 data, v1 reader
    let v2_value = [&sluice_schemas::avro_wire::confluent_header(v2_id)[..], &v2_datum(&ev, Some("spring"))].concat();
    assert_eq!(decoder.decode(Some(&v2_value)).expect("confluent v2"), ev);
    assert_eq!(decoder.decode(Some(&v2_value)).expect("cached"), ev);
    assert_eq!(double.calls("get_by_id"), 2, "one fetch per schema id");

    let reason = |r: std::result::Result<ClickEvent, DecodeFailure>| match r {
        Err(DecodeFailure::DeadLetter(reason, _)) => Some(reason),
        Err(DecodeFailure::Retry(_)) => None,
        Ok(ev) => panic!("decoded {ev:?}"),
    };
    assert_eq!(reason(decoder.decode(None)), Some(DeadLetterReason::EmptyValue));
    assert_eq!(reason(decoder.decode(Some(&[]))), Some(DeadLetterReason::EmptyValue));
    assert_eq!(reason(decoder.decode(Some(b"{\"json\":1}"))), Some(DeadLetterReason::UnknownFraming));
    assert_eq!(reason(decoder.decode(Some(&so[..so.len() - 4]))), Some(DeadLetterReason::Malformed));
    let unknown_id = [&sluice_schemas::avro_wire::confluent_header(77)[..], &so[10..]].concat();
    assert_eq!(reason(decoder.decode(Some(&unknown_id))), Some(DeadLetterReason::UnknownSchema));
    // single-object v2 is unknown until the decoder is told about v2
    let v2_so = [&[0xC3, 0x01][..], &schema_fingerprint(&v2).to_le_bytes()[..], &v2_datum(&ev, None)[..]].concat();
    assert_eq!(reason(decoder.decode(Some(&v2_so))), Some(DeadLetterReason::UnknownSchema));
    let mut decoder = decoder.with_writer_schema(v2);
    assert_eq!(decoder.decode(Some(&v2_so)).expect("known v2 writer"), ev);

    // registry down: a new id is a retry, not a dead letter
    let v3_id = double.register("u-value", &V2_AVSC.replace("utm_campaign", "utm_source"));
    double.set_unavailable(true);
    let v3_value = [&sluice_schemas::avro_wire::confluent_header(v3_id)[..], &v2_datum(&ev, None)].concat();
    assert!(reason(decoder.decode(Some(&v3_value))).is_none(), "retry while unavailable");
    double.set_unavailable(false);
    assert_eq!(decoder.decode(Some(&v3_value)).expect("after recovery"), ev);

    let mut plain = ValueDecoder::new(None).expect("no registry");
    assert_eq!(reason(plain.decode(Some(&cf))), Some(DeadLetterReason::UnknownSchema));
    assert_eq!(plain.decode(Some(&so)).expect("single object without registry"), ev);
}

#[test]
fn partitions_are_spread_over_workers_exactly_once() {
    for partitions in [1, 4, 7, 12] {
        for peers in 1..=5 {
            let mut seen = Vec::new();
            for w in 0..peers {
                let mine = partitions_for_worker(partitions, w, peers).expect("assign");
                // naive reference: round robin
                let naive: Vec<i32> = (0..partitions).filter(|p| (*p as usize) % peers == w).collect();
                assert_eq!(mine, naive);
                seen.extend(mine);
            }
            seen.sort();
            assert_eq!(seen, (0..partitions).collect::<Vec<_>>());
        }
    }
    assert!(matches!(partitions_for_worker(4, 2, 2), Err(Error::Config(_))));
    assert!(matches!(partitions_for_worker(4, 0, 0), Err(Error::Config(_))));
}

#[test]
fn retryable_kafka_errors() {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};
    let k = |op, c| Error::Kafka { op, source: KafkaError::MessageProduction(c) };
    assert!(k("send", C::MessageTimedOut).retryable());
    assert!(k("send", C::AllBrokersDown).retryable());
    assert!(!k("send", C::MessageSizeTooLarge).retryable());
    assert!(!k("send", C::TopicAuthorizationFailed).retryable());
    assert_eq!(k("send", C::MessageTimedOut).kind(), "external");
}

/// The redirect path never waits for the broker: with nothing listening, `append` returns at
/// disk speed, events accumulate in the spill, the bound drops and counts, and a restart
/// finds the backlog again.
#[test]
fn the_sink_never_waits_for_an_unreachable_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    // the listener is dropped: nothing accepts on that port now
    super::test_metrics::install();
    let config = KafkaConfig {
        brokers: Some(format!("127.0.0.1:{dead_port}")),
        click_topic: "unit-no-broker".into(),
        spill_max_events: 2_500,
        message_timeout: Duration::from_millis(300),
        ..KafkaConfig::default()
    };
    let sink = KafkaClickSink::start(&config, dir.path()).expect("start without a broker");
    let started = Instant::now();
    let mut accepted = 0;
    for b in 0..30u64 {
        let batch: Vec<ClickEvent> = (b * 100..b * 100 + 100).map(sample_event).collect();
        let out = sink.append(&batch).expect("append");
        accepted += out.accepted.end - out.accepted.start;
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "30 appends took {took:?}");
    assert_eq!(accepted, 2_500);
    let stats = sink.stats();
    assert_eq!((stats.spill_dropped, stats.backlog, stats.delivered), (500, 2_500, 0));
    let stats = sink.shutdown(Duration::ZERO);
    assert_eq!(stats.backlog, 2_500, "undelivered events stay in the spill");
    let topic = [("topic", "unit-no-broker")];
    assert_eq!(super::test_metrics::counter("sluice_kafka_spill_dropped_total", &topic), 500);
    assert_eq!(super::test_metrics::gauge("sluice_kafka_spill_backlog_events", &topic), Some(2_500.0));
    assert_eq!(super::test_metrics::counter("sluice_kafka_delivered_total", &topic), 0);
    drop(sink);

    let sink = KafkaClickSink::start(&config, dir.path()).expect("restart");
    assert_eq!(sink.stats().backlog, 2_500);
    let first = sink.spill().read_raw(0, 1).expect("read");
    assert_eq!(sluice_schemas::avro::decode_click_event(&first[0].1).expect("decode"), sample_event(0));
}

#[test]
fn the_sink_refuses_a_disabled_or_invalid_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(KafkaClickSink::start(&KafkaConfig::default(), dir.path()), Err(Error::Config(_))));
    let bad = KafkaConfig { brokers: Some("nope".into()), ..KafkaConfig::default() };
    assert!(matches!(KafkaClickSink::start(&bad, dir.path()), Err(Error::Config(_))));
}
