//! The real binary's graceful stop when its last dataflow checkpoint cannot be written: the
//! stop goes on to its end, but the process exits with code 1 and one error line saying the
//! checkpoint was not written and that the next start replays from the previous one; that
//! start counts every click again.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::child::{ChildProcess, await_ready, free_port, serve_embedded};
use crate::harness::{BROWSER_UA, event, now_ms, q};

/// `sluice serve` on `data`, ready; its address and log file.
async fn start(data: &Path, http: &reqwest::Client) -> (ChildProcess, String, std::path::PathBuf) {
    let listen = format!("127.0.0.1:{}", free_port());
    let log = data.with_extension(format!("log-{}", now_ms()));
    let mut child = serve_embedded(&listen, data, &[], &log);
    await_ready(&mut child, http, &listen, &log, Duration::from_secs(60)).await;
    (child, listen, log)
}

/// SIGTERM, then the exit code (30 s at most).
fn stop(mut child: ChildProcess) -> Option<i32> {
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success());
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.exited() {
            return status.code();
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no stop within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `code` shows `want` clicks today (panics after 30 s with what it shows).
async fn await_clicks(http: &reqwest::Client, listen: &str, code: &str, want: u64) {
    let day = 86_400_000;
    let now = now_ms();
    let url = format!("http://{listen}/v1/links/{code}/stats?bucket=day&from={}&to={}", q((now / day - 1) * day), q((now / day + 1) * day));
    let t0 = Instant::now();
    loop {
        let v: Value = http.get(&url).send().await.expect("stats").json().await.expect("json");
        if v["totals"]["clicks"].as_u64() == Some(want) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{code}: want {want} clicks: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST /v1/events` of clicks `range` on `code`, each its own visitor → asserts 200.
async fn post_clicks(http: &reqwest::Client, listen: &str, code: &str, range: std::ops::Range<i64>) {
    let now = now_ms();
    let evs: Vec<Value> = range.map(|i| event(&format!("{code}-{i}"), code, now - i * 1000, &format!("81.2.71.{i}"), BROWSER_UA, None)).collect();
    assert_eq!(http.post(format!("http://{listen}/v1/events")).json(&evs).send().await.expect("events").status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_checkpoint_that_cannot_be_written_exits_1_and_the_next_start_replays_from_the_previous_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let checkpoints = data.join("checkpoints");
    let http = reqwest::Client::new();
    // A first run: 10 clicks, in the checkpoint of its graceful stop.
    let (child, listen, _log) = start(&data, &http).await;
    let r = http.post(format!("http://{listen}/v1/links")).json(&serde_json::json!({"long_url": "https://example.com/c", "custom_alias": "ck"})).send().await;
    assert_eq!(r.expect("create").status().as_u16(), 201);
    post_clicks(&http, &listen, "ck", 0..10).await;
    await_clicks(&http, &listen, "ck", 10).await;
    assert_eq!(stop(child), Some(0));
    assert!(std::fs::read_dir(&checkpoints).expect("checkpoints dir").next().is_some(), "a checkpoint at the first stop");

    // A second run: 5 more clicks, and a file where the checkpoint directory must be at its
    // stop, so no checkpoint can be written (tests run as root, who writes into a read-only
    // directory: permissions would not do). The previous checkpoint is kept aside.
    let (child, listen, log) = start(&data, &http).await;
    await_clicks(&http, &listen, "ck", 10).await;
    post_clicks(&http, &listen, "ck", 10..15).await;
    await_clicks(&http, &listen, "ck", 15).await;
    let aside = data.join("checkpoints.aside");
    std::fs::rename(&checkpoints, &aside).expect("move the checkpoints aside");
    std::fs::write(&checkpoints, b"not a directory").expect("a file in the way");
    assert_eq!(stop(child), Some(1), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let text = std::fs::read_to_string(&log).expect("log");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error:")).collect();
    let want = format!(
        "error: the dataflow checkpoint could not be written at shutdown (could not create {}: File exists (os error 17)); nothing is lost: the next \
         start resumes from the previous checkpoint (or, without one, from the first click) and replays the clicks after it",
        checkpoints.display()
    );
    assert_eq!(errors, [want.as_str()], "{text}");

    // Nothing was lost: the next start resumes from the previous checkpoint (10 clicks) and
    // replays the 5 logged after it.
    std::fs::remove_file(&checkpoints).expect("remove the file");
    std::fs::rename(&aside, &checkpoints).expect("put the checkpoints back");
    let (child, listen, _log) = start(&data, &http).await;
    await_clicks(&http, &listen, "ck", 15).await;
    assert_eq!(stop(child), Some(0));
}
