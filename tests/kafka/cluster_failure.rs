//! A two-process cluster whose peer dies: the survivor must not go on answering ready with
//! stats that no longer move (attack of session 49: after `kill -9` of process 1, process 0's
//! timely workers panicked with "MergeQueue poisoned." and it stayed ready, its views frozen,
//! accepted clicks never counted until every process was restarted by hand). It now reports
//! the failure in `/readyz` and exits with code 1 and an error that says what to restart.
//! Before that, each process's `GET /v1/stats/summary` says it is `partial` (attack M1: it
//! counted the local links only, unmarked).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::child::{ChildProcess, await_ready, free_port};
use crate::support::{KafkaTarget, shared_brokers};

fn spawn(process_id: usize, hostfile: &Path, listen: &str, dir: &Path, target: &KafkaTarget) -> ChildProcess {
    let data = dir.join(format!("data{process_id}"));
    let log = std::fs::File::create(dir.join(format!("serve{process_id}.log"))).expect("log file");
    ChildProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--listen", listen, "--data-dir", data.to_str().expect("utf-8")])
            .args(["--processes", "2", "--process-id", &process_id.to_string(), "--hostfile", hostfile.to_str().expect("utf-8")])
            .env("SLUICE__KAFKA__BROKERS", &target.brokers)
            .env("SLUICE__KAFKA__CLICK_TOPIC", &target.topic)
            .env("SLUICE__KAFKA__ANOMALIES_TOPIC", format!("{}-anomalies", target.topic))
            .env("SLUICE__KAFKA__GROUP_ID", &target.group)
            .env("SLUICE__VISITOR__SECRET", "5e".repeat(32))
            .env("SLUICE_LOG", "warn")
            .env("NO_COLOR", "1")
            .env_remove("SLUICE__STORE__URL")
            .env_remove("SLUICE__REDIS__URL")
            .env_remove("REDIS_URL")
            .env_remove("CLICKHOUSE_URL")
            .stdout(Stdio::null())
            .stderr(log),
        "sluice serve",
    )
}

async fn readyz(http: &reqwest::Client, listen: &str) -> Option<(u16, Value)> {
    let r = http.get(format!("http://{listen}/readyz")).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json::<Value>().await.ok()?["dependencies"]["dataflow"].clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_whose_cluster_peer_dies_reports_it_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).expect("hostfile");
    let target = KafkaTarget::fresh(shared_brokers(), "cluster-failure");
    let listen: Vec<String> = (0..2).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let mut p0 = spawn(0, &hostfile, &listen[0], dir.path(), &target);
    let mut p1 = spawn(1, &hostfile, &listen[1], dir.path(), &target);
    let http = reqwest::Client::new();
    await_ready(&mut p0, &http, &listen[0], &dir.path().join("serve0.log"), Duration::from_secs(120)).await;
    await_ready(&mut p1, &http, &listen[1], &dir.path().join("serve1.log"), Duration::from_secs(120)).await;
    assert_eq!(readyz(&http, &listen[0]).await, Some((200, json!({"status": "up"}))));
    // Each process's summary counts the links its workers own, and says so.
    for l in &listen {
        let summary: Value = http.get(format!("http://{l}/v1/stats/summary")).send().await.expect("summary").json().await.expect("json");
        assert_eq!(summary["partial"], true, "{summary}");
    }

    p1.kill9();
    let t0 = Instant::now();
    let mut seen = Vec::new();
    let status = loop {
        if let Some(s) = p0.exited() {
            break s;
        }
        if let Some(answer) = readyz(&http, &listen[0]).await {
            // `null`: an answer of the stop, which lists no dependencies.
            seen.push(answer);
        }
        let log = std::fs::read_to_string(dir.path().join("serve0.log")).unwrap_or_default();
        assert!(t0.elapsed() < Duration::from_secs(60), "process 0 still running 60 s after its peer died; /readyz said {seen:?}; its log:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let log = std::fs::read_to_string(dir.path().join("serve0.log")).expect("log");
    assert_eq!(status.code(), Some(1), "{log}");
    let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.starts_with("error: the dataflow stopped working (dataflow worker 0 panicked: "), "last line: {last}\nlog:\n{log}");
    assert!(last.contains("restart every process of the cluster"), "{last}");
    // Until it exited, /readyz never said ready with the dataflow failed (503 while it
    // stopped: failed, or shutting down without the dependency list).
    for (code, dataflow) in &seen {
        assert!(*code == 503 || dataflow == &json!({"status": "up"}), "{code} {dataflow}");
        assert!(dataflow["status"] != "failed" || *code == 503, "{code} {dataflow}");
    }
}
