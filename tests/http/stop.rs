//! The real `sluice serve` binary's stop: SSE streams end at the first SIGTERM, a second
//! signal during the stop exits at once.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::wait_until;

/// A `sluice serve` child, killed and reaped when dropped.
struct Serve {
    child: std::process::Child,
    listen: String,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Starts `sluice serve` with a one-hour graceful-stop deadline and no header read
    /// deadline (so only what the test checks can end the stop in time); stderr to `stderr`
    /// when given. Waits for `/readyz`.
    async fn start(stderr: Option<std::fs::File>) -> Serve {
        Serve::start_with_env(stderr, &[]).await
    }

    /// [`Serve::start`] with `env` added to the child's environment.
    async fn start_with_env(stderr: Option<std::fs::File>, env: &[(&str, &str)]) -> Serve {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = crate::child::free_port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--listen", &listen, "--data-dir", dir.path().join("data").to_str().expect("utf-8")])
            .env("SLUICE_LOG", "info")
            .env("SLUICE__SERVER__SHUTDOWN_TIMEOUT", "3600s")
            .env("SLUICE__SERVER__HEADER_READ_TIMEOUT", "0s")
            .env_remove("KAFKA_BROKERS")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr.map_or_else(Stdio::null, Stdio::from))
            .spawn()
            .expect("spawn sluice serve");
        let s = Serve { child, listen, _dir: dir };
        let http = reqwest::Client::new();
        let url = format!("http://{}/readyz", s.listen);
        let ready = || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(&url).send().await.is_ok_and(|r| r.status() == 200) }
        };
        assert!(wait_until(Duration::from_secs(60), ready).await, "sluice serve came up");
        s
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().expect("kill").success();
        assert!(ok, "kill -{name}");
    }

    /// The exit status, waiting up to 30 s.
    async fn exit_status(&mut self) -> std::process::ExitStatus {
        for _ in 0..1500 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("sluice serve did not exit within 30 s");
    }
}

/// Reads from `c` until the server closes it; panics after 30 s.
async fn read_to_close(c: &mut TcpStream, mut out: Vec<u8>) -> String {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    String::from_utf8(out).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_ends_the_live_stats_stream_and_the_process_exits_0() {
    let mut s = Serve::start(None).await;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("http://{}/v1/links", s.listen))
        .json(&json!({"long_url": "https://example.com/live", "custom_alias": "live-1"}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(created["code"], "live-1");
    let mut c = TcpStream::connect(&s.listen).await.expect("connect");
    c.write_all(b"GET /v1/links/live-1/stats/live HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut head = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut head)).await.expect("stream head").expect("read");
    head.truncate(n);
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200 ") && text.contains("content-type: text/event-stream"), "{text}");

    // With a one-hour stop deadline, the process exits in time only if the stream ends.
    s.signal("TERM");
    let status = s.exit_status().await;
    assert_eq!(status.code(), Some(0), "graceful stop: {status}");
    let all = read_to_close(&mut c, head).await;
    assert!(all.ends_with("\r\n0\r\n\r\n"), "the stream ends with the last chunk: {all:?}");
}

/// A server logging to a file (returned with its directory), and a half-sent request (its
/// connection) that holds the graceful HTTP stop for its one-hour deadline.
async fn held_stop() -> (Serve, TcpStream, tempfile::TempDir, std::path::PathBuf) {
    held_stop_with_env(&[]).await
}

/// [`held_stop`] with `env` added to the server's environment.
async fn held_stop_with_env(env: &[(&str, &str)]) -> (Serve, TcpStream, tempfile::TempDir, std::path::PathBuf) {
    let log_dir = tempfile::tempdir().expect("tempdir");
    let log_path = log_dir.path().join("stderr.log");
    let s = Serve::start_with_env(Some(std::fs::File::create(&log_path).expect("log file")), env).await;
    let mut half = TcpStream::connect(&s.listen).await.expect("connect");
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nuser-agent: slo").await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    (s, half, log_dir, log_path)
}

/// The second signal ends the process at once: well within 2 s (the held graceful stop
/// would take its one-hour deadline), and with nothing after its log line: the process ends
/// without the C library's exit handlers (`_exit`). Those handlers grow with the process's
/// state (mimalloc's final collection took ~1.1 s after the line on a server holding
/// 12.8 GB) and can wait for other threads (the TLS library's zeroization);
/// `MIMALLOC_SHOW_STATS=1` makes the first of them visible, as the statistics it prints to
/// stderr when it runs (35 lines after the exit's line before the fix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_during_the_stop_exits_at_once_with_a_log_line() {
    let (mut s, half, _log_dir, log_path) = held_stop_with_env(&[("MIMALLOC_SHOW_STATS", "1")]).await;
    s.signal("TERM");
    // The stop has begun once the listener is closed.
    let listen = s.listen.clone();
    let closed = || {
        let listen = listen.clone();
        async move { TcpStream::connect(&listen).await.is_err() }
    };
    assert!(wait_until(Duration::from_secs(30), closed).await, "the listener closes at the first signal");
    assert!(s.child.try_wait().expect("try_wait").is_none(), "still stopping (the half request holds it)");
    let t0 = std::time::Instant::now();
    s.signal("INT");
    let status = s.exit_status().await;
    let took = t0.elapsed();
    assert_eq!(status.code(), Some(130), "128 + SIGINT: {status}");
    assert!(took < Duration::from_secs(2), "exit {took:?} after the second signal");
    let log = std::fs::read_to_string(&log_path).expect("log");
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("WARN sluice::serve: second stop signal during the graceful stop: exiting now, without finishing it signal=\"SIGINT\""),
        "the last line of stderr is the exit's, nothing ran after it: {log}"
    );
    drop(half);
}

/// `timeout` and a `kill` of the process group deliver one stop twice, ~0.2 ms apart: the
/// same signal again within 250 ms is the same stop, not the "second Ctrl-C" that abandons
/// it; another signal still ends the stop at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_stop_signal_right_after_it_is_the_same_stop() {
    let (mut s, half, _log_dir, log_path) = held_stop().await;
    s.signal("TERM");
    // The copy arrives after the first was taken (30 ms), well inside the 250 ms.
    tokio::time::sleep(Duration::from_millis(30)).await;
    s.signal("TERM");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(s.child.try_wait().expect("try_wait").is_none(), "the copy did not abandon the graceful stop");
    s.signal("INT");
    let status = s.exit_status().await;
    assert_eq!(status.code(), Some(130), "a later signal still exits at once: {status}");
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert_eq!(log.matches("second stop signal during the graceful stop").count(), 1, "{log}");
    drop(half);
}

/// A second `sluice serve` on a data dir another one serves is refused at start: the
/// message says another process holds the click log and what to do, exit code 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_data_dir_names_the_holder() {
    let s = Serve::start(None).await;
    let data = s._dir.path().join("data");
    let listen = format!("127.0.0.1:{}", crate::child::free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", &listen, "--data-dir", data.to_str().expect("utf-8")])
        .env_remove("KAFKA_BROKERS")
        .output()
        .expect("run a second sluice serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!(
        "could not open the click log in \"{}\": another process has it open (is `sluice serve` running on it? stop it, or give this \
         process another --data-dir)",
        data.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
    drop(s);
}

/// SIGHUP (the terminal or ssh session went away) stops gracefully like SIGTERM: the link
/// created before it is kept and the process exits 0, not 129 (the default action).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_stops_gracefully_and_the_process_exits_0() {
    let log_dir = tempfile::tempdir().expect("tempdir");
    let log_path = log_dir.path().join("stderr.log");
    let mut s = Serve::start(Some(std::fs::File::create(&log_path).expect("log file"))).await;
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/links", s.listen))
        .json(&json!({"long_url": "https://example.com/hup", "custom_alias": "hup-1"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    s.signal("HUP");
    let status = s.exit_status().await;
    assert_eq!(status.code(), Some(0), "graceful stop: {status}");
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(log.contains("shutting down") && log.contains("SIGHUP"), "{log}");
}
