//! `/readyz` in Kafka mode lists the broker as the optional dependency `kafka`: up while a
//! metadata request for the click topic is answered, down (with the reason, `/readyz` still
//! 200: redirects go on, clicks wait in the spill) while the broker is unreachable.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// `/readyz`'s status code and its `dependencies.kafka` (or the whole body when absent).
async fn kafka_readiness(p: &Proc) -> (u16, Value) {
    let r = reqwest::get(format!("{}/readyz", p.base)).await.expect("readyz");
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("json");
    (status, body["dependencies"].get("kafka").cloned().unwrap_or(body))
}

/// Polls until `kafka.status` is `want` (30 s at most); returns the last answer.
async fn await_kafka(p: &Proc, want: &str) -> (u16, Value) {
    let t0 = Instant::now();
    loop {
        let (status, kafka) = kafka_readiness(p).await;
        if kafka["status"] == want {
            return (status, kafka);
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "kafka never {want} in /readyz: {status} {kafka}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The shared broker: up at once, nothing waiting in the spill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_the_shared_broker_up() {
    let target = KafkaTarget::fresh(shared_brokers(), "readyz");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let p = Proc::start(&dir.path().join("data"), &config, &target).await;
    assert_eq!(kafka_readiness(&p).await, (200, json!({"status": "up", "backlog": 0, "dropped": 0})));
    p.terminate();
}

/// A private broker that goes away: `kafka` turns down with the probe's error while `/readyz`
/// stays 200 and redirects keep working, and turns up again when the broker returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_an_unreachable_broker_down_and_its_return() {
    let broker_dir = tempfile::tempdir().expect("tempdir");
    let mut tansu = Tansu::start(broker_dir.path());
    let target = KafkaTarget::fresh(tansu.brokers(), "readyz-down");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    without_abuse(&config);
    let p = Proc::start(&dir.path().join("data"), &config, &target).await;
    assert_eq!(await_kafka(&p, "up").await, (200, json!({"status": "up", "backlog": 0, "dropped": 0})));

    tokio::task::block_in_place(|| tansu.stop());
    let (status, kafka) = await_kafka(&p, "down").await;
    assert_eq!(status, 200, "an optional dependency: {kafka}");
    let error = kafka["error"].as_str().unwrap_or_else(|| panic!("an error: {kafka}"));
    assert!(error.starts_with("kafka could not fetch topic metadata: "), "{error}");
    assert_eq!((&kafka["backlog"], &kafka["dropped"]), (&json!(0), &json!(0)), "{kafka}");
    let created = p.post_json("/v1/links", json!({"long_url": "https://example.com/while-kafka-is-down"})).await;
    let code = created["code"].as_str().expect("code");
    let redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let r = redirect.get(format!("{}/{code}", p.base)).header("user-agent", "Mozilla/5.0").send().await.expect("redirect");
    assert_eq!(r.status().as_u16(), 302, "redirects work without the broker");
    // The click waits in the spill.
    let t0 = Instant::now();
    while kafka_readiness(&p).await.1["backlog"] != 1 {
        assert!(t0.elapsed() < Duration::from_secs(10), "the click reaches the spill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    tokio::task::block_in_place(|| tansu.restart());
    let (status, kafka) = await_kafka(&p, "up").await;
    assert_eq!((status, &kafka["error"], &kafka["dropped"]), (200, &Value::Null, &json!(0)), "{kafka}");
    p.terminate();
}
