//! Integration tests against a real Kafka-API broker at `KAFKA_BROKERS` (tansu started by
//! `infra/services/kafka.sh start`). Each test uses a fresh topic pair and consumer group and
//! polls with a timeout. `outage.rs` starts private brokers it stops and restarts.
//!
//! Run: `cargo test -p sluice-connectors --features kafka,integration-tests kafka::integration_tests -- --nocapture`

mod anomalies;
mod outage;
mod support;
mod timestamps;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use sluice_schemas::ClickEvent;
use sluice_schemas::avro::{CLICK_EVENT_AVSC, encode_click_event};
use sluice_schemas::avro_wire::{confluent_header, schema_fingerprint};

use super::registry_double::RegistryDouble;
use super::test_metrics::{counter, gauge};
use super::tests::{V2_AVSC, sample_event, v2_datum};
use super::*;
use support::*;

const LONG: Duration = Duration::from_secs(60);

fn events(range: std::ops::Range<u64>) -> Vec<ClickEvent> {
    range.map(sample_event).collect()
}

fn sorted(mut v: Vec<ClickEvent>) -> Vec<ClickEvent> {
    v.sort();
    v
}

/// Sink → broker → source: the consumed events equal the appended ones exactly (no loss,
/// no duplicates without failures); the key is the short code, one code stays in one
/// partition, and each code's events keep their append order.
#[test]
fn round_trip_is_exact_keyed_by_code_and_ordered_per_key() {
    super::test_metrics::install();
    let config = fresh_config("roundtrip", &brokers());
    create_topics(&config);
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = KafkaClickSink::start(&config, dir.path()).expect("sink");
    let sent = events(0..3_000);
    for chunk in sent.chunks(250) {
        assert_eq!(sink.append(chunk).expect("append").dropped, 0);
    }
    assert!(sink.wait_drained(LONG), "spill did not drain: {:?}", sink.stats());
    let stats = sink.stats();
    assert_eq!((stats.delivered, stats.delivery_errors, stats.resent, stats.backlog), (3_000, 0, 0, 0));

    let mut source = source_from_start(&config);
    let got = consume(&mut source, sent.len(), LONG);
    assert_eq!(got.len(), sent.len());
    assert_eq!(sorted(got.iter().map(|r| r.event.clone()).collect()), sorted(sent.clone()));
    assert!(got.iter().all(|r| r.catch_up), "the source opened after the spill drained");
    let topic = [("topic", config.click_topic.as_str())];
    assert_eq!(counter("sluice_kafka_delivered_total", &topic), 3_000);
    assert_eq!(counter("sluice_kafka_consumed_total", &topic), 3_000);

    let raw = raw_messages(&config.brokers.clone().expect("brokers"), &config.click_topic, 4, sent.len(), LONG);
    assert_eq!(raw.len(), sent.len());
    let by_id: HashMap<uuid::Uuid, &ClickEvent> = sent.iter().map(|e| (e.event_id, e)).collect();
    let mut partition_of_code: HashMap<String, i32> = HashMap::new();
    let mut per_partition: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
    for m in &raw {
        let ev = sluice_schemas::avro::decode_click_event(m.value.as_deref().expect("value")).expect("decode");
        assert_eq!(m.key.as_deref(), Some(ev.code.as_bytes()), "key = code");
        assert_eq!(by_id[&ev.event_id], &ev);
        let p = *partition_of_code.entry(ev.code.clone()).or_insert(m.partition);
        assert_eq!(p, m.partition, "code {} in two partitions", ev.code);
        per_partition.entry(m.partition).or_default().push((m.offset, ev.ts as u64));
    }
    for (p, mut v) in per_partition {
        v.sort();
        // ts encodes the append index (sample_event): offsets order = append order
        assert!(v.windows(2).all(|w| w[0].1 < w[1].1), "partition {p} out of order");
    }
    sink.shutdown(Duration::from_secs(5));
    // the forwarder publishes the backlog gauge when it stops
    let topic = [("topic", config.click_topic.as_str())];
    assert_eq!(gauge("sluice_kafka_spill_backlog_events", &topic), Some(0.0));
}

/// Backfill events (`sluice import`) reach the source flagged (Kafka header), live ones not,
/// in the same partitions and order as live events.
#[test]
fn backfill_marks_travel_as_a_header() {
    let config = fresh_config("backfill", &brokers());
    create_topics(&config);
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = KafkaClickSink::start(&config, dir.path()).expect("sink");
    sink.append(&events(0..50)).expect("live");
    sink.append_backfill(&events(50..80)).expect("backfill");
    sink.append(&events(80..100)).expect("live");
    assert!(sink.wait_drained(LONG), "{:?}", sink.stats());
    let mut source = source_from_start(&config);
    let got = consume(&mut source, 100, LONG);
    assert_eq!(got.len(), 100);
    for r in &got {
        let index = (r.event.ts - sample_event(0).ts) as u64;
        assert_eq!(r.event, sample_event(index));
        assert_eq!(r.backfill, (50..80).contains(&index), "event {index}");
    }
    sink.shutdown(Duration::from_secs(5));
}

struct StatsCapture {
    eos: Mutex<Option<serde_json::Value>>,
}

impl ClientContext for StatsCapture {
    fn stats_raw(&self, statistics: &[u8]) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(statistics) {
            *self.eos.lock().expect("lock") = v.get("eos").cloned();
        }
    }
}

impl ProducerContext for StatsCapture {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// The producer settings the sink uses make the broker assign an idempotent producer id
/// (librdkafka statistics `eos.idemp_state == "Assigned"`), and acks=all + lz4 are set.
#[test]
fn the_producer_is_idempotent_against_the_broker() {
    let config = fresh_config("idempotent", &brokers());
    create_topics(&config);
    let mut client = config.producer_client_config().expect("config");
    assert_eq!(client.get("enable.idempotence"), Some("true"));
    assert_eq!(client.get("acks"), Some("all"));
    assert_eq!(client.get("compression.type"), Some("lz4"));
    client.set("statistics.interval.ms", "100");
    let producer: BaseProducer<StatsCapture> = client.create_with_context(StatsCapture { eos: Mutex::new(None) }).expect("producer");
    let value = encode_click_event(&sample_event(1)).expect("encode");
    producer.send(BaseRecord::to(&config.click_topic).key("c1").payload(&value)).expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
    let assigned = wait_until(LONG, || {
        producer.poll(Duration::from_millis(50));
        let eos = producer.context().eos.lock().expect("lock").clone();
        eos.is_some_and(|e| e["idemp_state"] == "Assigned" && e["producer_id"].as_i64().is_some_and(|id| id >= 0))
    });
    assert!(assigned, "no idempotent producer id: {:?}", producer.context().eos.lock().expect("lock"));
}

/// Nothing is committed until `commit`; a new source of the group resumes exactly after the
/// committed offsets; explicit (checkpoint) offsets win over committed ones; two workers read
/// disjoint partitions covering the topic.
#[test]
fn offsets_are_committed_only_when_told_and_resumed_from() {
    super::test_metrics::install();
    let config = fresh_config("commits", &brokers());
    create_topics(&config);
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = KafkaClickSink::start(&config, dir.path()).expect("sink");
    sink.append(&events(0..400)).expect("append");
    assert!(sink.wait_drained(LONG));

    let all: BTreeSet<(i32, i64)> = {
        let mut s = KafkaSource::open(&config, 0, 1, StartOffsets::Committed).expect("source a");
        let got = consume(&mut s, 400, LONG);
        assert_eq!(got.len(), 400);
        assert!(s.committed_offsets(Duration::from_secs(10)).expect("committed").is_empty(), "auto-committed");
        got.iter().map(|r| (r.partition, r.offset)).collect()
    };
    // nothing committed: the group starts over
    let mut s = KafkaSource::open(&config, 0, 1, StartOffsets::Committed).expect("source b");
    let got = consume(&mut s, 400, LONG);
    assert_eq!(got.iter().map(|r| (r.partition, r.offset)).collect::<BTreeSet<_>>(), all);
    assert!(got.iter().all(|r| r.catch_up), "everything was there before the source opened");
    // commit the first 150 records of consumption order
    let mut commit = BTreeMap::new();
    for r in &got[..150] {
        commit.insert(r.partition, r.offset + 1);
    }
    s.commit(&commit).expect("commit");
    assert_eq!(s.committed_offsets(Duration::from_secs(10)).expect("committed"), commit);
    drop(s);

    let expected_rest: BTreeSet<(i32, i64)> = all.iter().copied().filter(|(p, o)| commit.get(p).is_none_or(|&c| *o >= c)).collect();
    let mut s = KafkaSource::open(&config, 0, 1, StartOffsets::Committed).expect("source c");
    let rest = consume(&mut s, expected_rest.len(), LONG);
    assert_eq!(rest.iter().map(|r| (r.partition, r.offset)).collect::<BTreeSet<_>>(), expected_rest);
    drop(s);

    // a checkpoint's offsets win over the group's
    let checkpoint: BTreeMap<i32, i64> = (0..4).map(|p| (p, 0)).collect();
    let mut s = KafkaSource::open(&config, 0, 1, StartOffsets::Explicit(checkpoint)).expect("source d");
    assert_eq!(consume(&mut s, 400, LONG).len(), 400);

    // a separate committer and two workers
    let committer = OffsetCommitter::new(&config).expect("committer");
    let full: BTreeMap<i32, i64> = all.iter().fold(BTreeMap::new(), |mut m, &(p, o)| {
        let e = m.entry(p).or_insert(0);
        *e = (*e).max(o + 1);
        m
    });
    committer.commit(&full).expect("commit all");
    assert_eq!(committer.committed_offsets(&[0, 1, 2, 3], Duration::from_secs(10)).expect("read back"), full);
    assert!(matches!(committer.commit(&BTreeMap::from([(0, -1)])), Err(crate::Error::InvalidValue { .. })));
    assert_eq!(counter("sluice_kafka_offset_commits_total", &[("topic", config.click_topic.as_str())]), 2);
    let checkpoint: BTreeMap<i32, i64> = (0..4).map(|p| (p, 0)).collect();
    let mut w0 = KafkaSource::open(&config, 0, 2, StartOffsets::Explicit(checkpoint.clone())).expect("w0");
    let mut w1 = KafkaSource::open(&config, 1, 2, StartOffsets::Explicit(checkpoint)).expect("w1");
    assert_eq!((w0.assigned_partitions(), w1.assigned_partitions()), (&[0, 2][..], &[1, 3][..]));
    let n0 = all.iter().filter(|(p, _)| p % 2 == 0).count();
    let a = consume(&mut w0, n0, LONG);
    let b = consume(&mut w1, 400 - n0, LONG);
    assert!(a.iter().all(|r| r.partition % 2 == 0) && b.iter().all(|r| r.partition % 2 == 1));
    assert_eq!(a.len() + b.len(), 400);
    // nothing new after the committed position for a fresh committed-offset source
    let mut s = KafkaSource::open(&config, 0, 1, StartOffsets::Committed).expect("source e");
    assert!(s.poll_batch(100, Duration::from_secs(2)).expect("poll").records.is_empty());
}

/// Undecodable messages become counted dead letters with a reason; the source moves past them
/// and keeps decoding the good ones around them.
#[test]
fn undecodable_messages_are_dead_lettered() {
    super::test_metrics::install();
    let config = fresh_config("deadletter", &brokers());
    create_topics(&config);
    let b = config.brokers.clone().expect("brokers");
    let good0 = encode_click_event(&sample_event(0)).expect("encode");
    let good1 = encode_click_event(&sample_event(1)).expect("encode");
    let mut truncated = good1.clone();
    truncated.truncate(20);
    produce_raw(&b, &config.click_topic, &[("c0", good0), ("x", b"{\"not\":\"avro\"}".to_vec()), ("x", Vec::new()), ("c1", truncated), ("c1", good1)]);
    let mut source = source_from_start(&config);
    let mut records = Vec::new();
    let mut dead = Vec::new();
    let mut next = BTreeMap::new();
    assert!(wait_until(LONG, || {
        let batch = source.poll_batch(100, Duration::from_millis(200)).expect("poll");
        records.extend(batch.records);
        dead.extend(batch.dead_letters);
        next.extend(batch.next_offsets);
        records.len() + dead.len() >= 5
    }));
    assert_eq!(records.iter().map(|r| (r.offset, r.event.clone())).collect::<Vec<_>>(), vec![(0, sample_event(0)), (4, sample_event(1))]);
    let reasons: Vec<(i64, DeadLetterReason)> = dead.iter().map(|d| (d.offset, d.reason)).collect();
    assert_eq!(reasons, vec![(1, DeadLetterReason::UnknownFraming), (2, DeadLetterReason::EmptyValue), (3, DeadLetterReason::Malformed)]);
    assert_eq!(next, BTreeMap::from([(0, 5)]));
    let t = config.click_topic.as_str();
    for reason in ["unknown_framing", "empty_value", "malformed"] {
        assert_eq!(counter("sluice_kafka_decode_errors_total", &[("topic", t), ("error_type", reason)]), 1, "{reason}");
    }
    assert_eq!(counter("sluice_kafka_consumed_total", &[("topic", t)]), 2);
}

/// With a schema registry (the in-test double): values on the topic are Confluent-framed with
/// the registered id, the source decodes them, and a v2 value another producer wrote is read
/// by this v1 source (forward compatibility through the broker); a single-object v2 value is
/// read once the decoder knows v2.
#[test]
fn registry_values_round_trip_and_evolve_through_the_broker() {
    let registry = RegistryDouble::start();
    let mut config = fresh_config("registry", &brokers());
    config.schema_registry_url = Some(registry.url.clone());
    create_topics(&config);
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = KafkaClickSink::start(&config, dir.path()).expect("sink");
    let sent = events(0..200);
    sink.append(&sent).expect("append");
    assert!(sink.wait_drained(LONG), "{:?}", sink.stats());
    let id = sink.stats().schema_id.expect("registered");
    assert_eq!(registry.calls("post_version"), 1);
    let b = config.brokers.clone().expect("brokers");
    let raw = raw_messages(&b, &config.click_topic, 4, 200, LONG);
    assert_eq!(raw.len(), 200);
    assert!(raw.iter().all(|m| m.value.as_deref().is_some_and(|v| v[..5] == confluent_header(id))));

    let v2_id = registry.register(&config.click_value_subject(), V2_AVSC);
    let extra = sample_event(1_000);
    let v2_confluent = [&confluent_header(v2_id)[..], &v2_datum(&extra, Some("launch"))].concat();
    let v2 = apache_avro::Schema::parse_str(V2_AVSC).expect("v2");
    let extra2 = sample_event(1_001);
    let v2_single = [&[0xC3, 0x01][..], &schema_fingerprint(&v2).to_le_bytes()[..], &v2_datum(&extra2, None)].concat();
    produce_raw(&b, &config.click_topic, &[("c6", v2_confluent), ("c0", v2_single)]);

    let decoder = ValueDecoder::new(Some(&registry.url)).expect("decoder").with_writer_schema(v2);
    let mut source = KafkaSource::open_with_decoder(&config, 0, 1, StartOffsets::Explicit(BTreeMap::new()), decoder).expect("source");
    let got = consume(&mut source, 202, LONG);
    let mut expected = sent.clone();
    expected.extend([extra, extra2]);
    assert_eq!(sorted(got.into_iter().map(|r| r.event).collect()), sorted(expected));
    assert_eq!(registry.calls("get_by_id"), 2, "v1 id and v2 id, each fetched once");
    assert!(CLICK_EVENT_AVSC.contains("ClickEvent"));
    sink.shutdown(Duration::from_secs(5));
}

/// Produce and consume throughput through the broker (events/s), printed for BENCHMARKS.md.
/// The default of 10,000 events keeps the test run steady: tansu 0.6 can wedge after a burst
/// of ~50k+ events with idempotent-producer retries (BENCHMARKS.md, Kafka); benchmark runs set
/// `SLUICE_KAFKA_BENCH_EVENTS=100000` against a private broker.
#[test]
fn throughput_is_measured() {
    let n: u64 = std::env::var("SLUICE_KAFKA_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let config = fresh_config("throughput", &brokers());
    create_topics(&config);
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = KafkaClickSink::start(&config, dir.path()).expect("sink");
    let sent = events(0..n);
    let bytes: usize = sent.iter().map(|e| encode_click_event(e).expect("encode").len()).sum();
    let t0 = Instant::now();
    for chunk in sent.chunks(1_000) {
        sink.append(chunk).expect("append");
    }
    let appended = t0.elapsed();
    assert!(sink.wait_drained(Duration::from_secs(300)), "{:?}", sink.stats());
    let produced = t0.elapsed();
    assert_eq!(sink.stats().delivered, n);
    let t1 = Instant::now();
    let mut source = source_from_start(&config);
    let got = consume(&mut source, n as usize, Duration::from_secs(300));
    let consumed = t1.elapsed();
    assert_eq!(got.len() as u64, n);
    println!(
        "kafka throughput: {n} events of {} bytes avg; spill append {:.0} events/s; \
         produce (append -> acks=all, drained) {:.0} events/s in {:.2} s; consume+decode {:.0} events/s in {:.2} s",
        bytes / n as usize,
        n as f64 / appended.as_secs_f64(),
        n as f64 / produced.as_secs_f64(),
        produced.as_secs_f64(),
        n as f64 / consumed.as_secs_f64(),
        consumed.as_secs_f64(),
    );
    sink.shutdown(Duration::from_secs(5));
}
