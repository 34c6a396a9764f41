//! A Kafka-mode start whose dataflow runtime cannot start must end the process with the
//! error (attack of session 49: a multi-process start whose cluster port was taken opened the
//! click topic's consumers and watermark thread, then failed; that thread never saw a stop
//! signal, held the runtime's shutdown, and the process hung for ever, deaf to SIGTERM).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::{ChildProcess, free_port};
use crate::support::{KafkaTarget, shared_brokers};

#[test]
fn a_dataflow_that_cannot_start_in_kafka_mode_exits_1_with_its_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // This process's cluster address is taken: the timely runtime cannot listen on it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, format!("{}\n127.0.0.1:{}\n", taken.local_addr().expect("addr"), free_port())).expect("hostfile");
    let target = KafkaTarget::fresh(shared_brokers(), "failed-start");
    let log = dir.path().join("serve.log");
    let data = dir.path().join("data");
    let mut child = ChildProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir", data.to_str().expect("utf-8")])
            .args(["--processes", "2", "--process-id", "0", "--hostfile", hostfile.to_str().expect("utf-8")])
            .env("SLUICE__KAFKA__BROKERS", &target.brokers)
            .env("SLUICE__KAFKA__CLICK_TOPIC", &target.topic)
            .env("SLUICE__KAFKA__GROUP_ID", &target.group)
            .env("SLUICE__VISITOR__SECRET", "5e".repeat(32))
            .env("SLUICE_LOG", "warn")
            .env("NO_COLOR", "1")
            .env_remove("SLUICE__STORE__URL")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file")),
        "sluice serve",
    );
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.exited() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(90), "still running after 90 s: {}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("error: could not start the dataflow") && text.contains("Address already in use"), "{text}");
    drop(taken);
}
