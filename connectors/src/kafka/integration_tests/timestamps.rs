//! Message timestamps, the dataflow's arrival of a Kafka record (`source.rs`, "Record
//! timestamps"): the forwarder stamps an event stamped ahead of its spill append with that
//! append time, any other event with the time it hands it over; the source reports what the
//! message carries, another producer's `CreateTime` as it was set.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::support::*;
use super::{LONG, events};
use crate::kafka::spill::Spill;
use crate::kafka::{KafkaClickSink, KafkaSource};

const MIN: i64 = 60_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).expect("clock after 1970")
}

#[test]
fn the_spill_arrival_of_an_event_stamped_ahead_is_its_message_timestamp() {
    let config = fresh_config("arrival", &brokers());
    create_topics(&config);
    let dir = tempfile::tempdir().expect("tempdir");
    let now = now_ms();
    let mut evs = events(0..2);
    evs[0].ts = now + 4 * MIN;
    evs[1].ts = now - MIN;
    // Left in the spill by a previous run: the spill recorded the append time then.
    let arrival = {
        let spill = Spill::open(&config.spill_dir_in(dir.path()), 100).expect("spill");
        assert_eq!(spill.append(&evs).expect("append").accepted, 0..2);
        let arrivals = spill.arrival_times(0..2).expect("arrival times");
        assert_eq!(arrivals.iter().map(|&(o, _)| o).collect::<Vec<_>>(), vec![0], "only the event stamped ahead has one");
        arrivals[0].1
    };
    assert!((now..now + MIN).contains(&arrival), "{arrival} vs {now}");
    std::thread::sleep(Duration::from_millis(1_100));
    let sink = KafkaClickSink::start(&config, dir.path()).expect("sink");
    assert!(sink.wait_drained(LONG), "{:?}", sink.stats());
    let drained = now_ms();
    sink.shutdown(Duration::from_secs(5));
    let mut source = source_from_start(&config);
    let mut got = consume(&mut source, 2, LONG);
    got.sort_by_key(|r| std::cmp::Reverse(r.event.ts));
    assert_eq!(got.iter().map(|r| r.event.clone()).collect::<Vec<_>>(), evs);
    assert_eq!(got[0].timestamp_ms, Some(arrival), "the event stamped ahead carries its spill arrival");
    let sent = got[1].timestamp_ms.expect("librdkafka stamps the send time");
    assert!((arrival + 1_100..=drained).contains(&sent), "the other event carries the time it was sent: {sent}, arrival {arrival}, drained {drained}");
}

#[test]
fn another_producers_create_time_reaches_the_source_as_set() {
    let config = fresh_config("createtime", &brokers());
    create_topics(&config);
    let create_time = 1_767_225_600_000;
    let mut value = Vec::new();
    sluice_schemas::avro::encode_click_event_into(&events(0..1)[0], &mut value).expect("encode");
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("producer");
    producer.send(BaseRecord::to(&config.click_topic).partition(0).key("c0").payload(&value).timestamp(create_time)).expect("enqueue");
    producer.flush(Duration::from_secs(30)).expect("acknowledged");
    let mut source: KafkaSource = source_from_start(&config);
    let got = consume(&mut source, 1, LONG);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].event.clone(), got[0].timestamp_ms), (events(0..1)[0].clone(), Some(create_time)));
}
