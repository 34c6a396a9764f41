//! The anomaly producer against the real broker: events read back from the anomalies topic
//! decode (single-object Avro of anomaly.avsc) to the values sent, keyed `<kind>:<key>`,
//! every event of one anomaly on one partition in lifecycle order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sluice_schemas::anomaly::avro::decode_anomaly;
use sluice_schemas::anomaly::{anomaly_id, link_key, visitor_key};
use sluice_schemas::{Anomaly, AnomalyKind, AnomalyStatus, Evidence, Severity, Tally};

use super::support::*;
use crate::kafka::{KafkaAnomalyProducer, anomaly_record_key};

fn anomaly(kind: AnomalyKind, key: String, revision: u32, status: AnomalyStatus) -> Anomaly {
    let window_start = 1_780_000_000_000;
    Anomaly {
        anomaly_id: anomaly_id(kind, &key, window_start),
        revision,
        status,
        kind,
        key,
        severity: if revision == 0 { Severity::Warning } else { Severity::Critical },
        code: Some("ab12".into()),
        org: None,
        window_start,
        window_end: window_start + 60_000 * i64::from(revision + 1),
        observed: 120.0 + f64::from(revision),
        expected: 10.5,
        score: 7.25,
        summary: format!("revision {revision}"),
        evidence: Evidence {
            window_ms: 60_000,
            clicks: 130,
            human_clicks: 120,
            bot_clicks: 10,
            visitors: 3,
            top_visitor_share: 0.9,
            top_countries: vec![Tally { value: "US".into(), count: 100 }],
            ..Evidence::default()
        },
        detected_at: window_start + 61_000,
    }
}

#[test]
fn anomalies_are_published_as_avro_keyed_by_kind_and_key() {
    let config = fresh_config("anomalies", &brokers());
    create_topics(&config);
    let producer = KafkaAnomalyProducer::start(&config).expect("producer");
    let burst = link_key("ab12");
    let flood = visitor_key(0xdead_beef);
    let sent = vec![
        anomaly(AnomalyKind::ClickBurst, burst.clone(), 0, AnomalyStatus::Open),
        anomaly(AnomalyKind::VisitorFlood, flood.clone(), 0, AnomalyStatus::Open),
        anomaly(AnomalyKind::ClickBurst, burst.clone(), 1, AnomalyStatus::Updated),
        anomaly(AnomalyKind::ClickBurst, burst.clone(), 2, AnomalyStatus::Closed),
    ];
    assert_eq!(producer.send(&sent), sent.len());
    producer.flush(Duration::from_secs(30)).expect("delivered");

    let consumer: BaseConsumer = config.consumer_client_config().expect("consumer config").create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..config.partitions {
        tpl.add_partition_offset(&config.anomalies_topic, p, Offset::Beginning).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut got: Vec<(i32, String, Anomaly)> = Vec::new();
    let t0 = Instant::now();
    while got.len() < sent.len() {
        assert!(t0.elapsed() < Duration::from_secs(30), "read {} of {} anomalies", got.len(), sent.len());
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("message");
            let key = String::from_utf8(m.key().expect("key").to_vec()).expect("utf-8 key");
            got.push((m.partition(), key, decode_anomaly(m.payload().expect("value")).expect("decodes")));
        }
    }
    // Keys, values, and per anomaly: one partition, lifecycle order.
    let mut by_key: BTreeMap<String, Vec<(i32, Anomaly)>> = BTreeMap::new();
    for (p, k, a) in got {
        assert_eq!(k, anomaly_record_key(&a));
        by_key.entry(k).or_default().push((p, a));
    }
    assert_eq!(by_key.keys().cloned().collect::<Vec<_>>(), vec![format!("click_burst:{burst}"), format!("visitor_flood:{flood}")]);
    let bursts = &by_key[&format!("click_burst:{burst}")];
    assert!(bursts.iter().all(|(p, _)| *p == bursts[0].0), "one partition per anomaly");
    let values: Vec<Anomaly> = bursts.iter().map(|(_, a)| a.clone()).collect();
    assert_eq!(values, vec![sent[0].clone(), sent[2].clone(), sent[3].clone()]);
    assert_eq!(by_key[&format!("visitor_flood:{flood}")][0].1, sent[1]);
}
