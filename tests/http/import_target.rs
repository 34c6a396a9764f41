//! `sluice import --target` through the real binary: an import that cannot reach the server
//! (from the start, or after a first batch) says how many events were stored, which lines
//! were not, the cause with its chain, and that running it again is safe; running it again
//! does count each click once; an event larger than the server's request-body limit (a
//! 100 KB user agent, cut as the server cuts it; a 70 KB event id, refused by its line)
//! no longer fails the other events.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_connectors::click_log::ClickLog;

use crate::child::{await_ready, free_port, serve_embedded, serve_embedded_ready};
use crate::cli_run::{create_link, import, now_ms, text};

/// An NDJSON event `id` on `code`, a minute old per `n`, from its own address.
pub(super) fn event(id: &str, code: &str, n: i64, ua: &str) -> Value {
    json!({"event_id": id, "code": code, "ts": now_ms() - 60_000 * (n + 1), "ip": format!("81.2.69.{n}"), "user_agent": ua})
}

pub(super) fn write_ndjson(path: &Path, events: &[Value]) {
    let lines: Vec<String> = events.iter().map(Value::to_string).collect();
    std::fs::write(path, lines.join("\n") + "\n").expect("write events");
}

/// What the end of every stopped import says.
pub(super) const AGAIN: &str = "Running the same import again is safe (within 48 h): its events keep their event_ids, and the dataflow drops the \
                     copies of those already stored (dedup by event_id)";

/// The chain of a refused connection to `url`, as reqwest and hyper give it, after the
/// attempts of `--retry-for 2s`: at 0, 0.5 and 1.5 s; the next would start at 3.5 s.
fn refused(url: &str) -> String {
    format!(
        "could not send events to {url} (3 attempts, retried for at most --retry-for 2s); the last failed: error sending request for \
         url ({url}): client error (Connect): tcp connect error: Connection refused (os error 111)"
    )
}

/// A one-shot `POST /v1/events` server on a free port: answers the first request with 200
/// and `{"accepted": accepted, "rejected": []}`, then closes its connection and its
/// listener (every later connection is refused).
fn one_answer_then_gone(accepted: u64) -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        drop(listener);
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        // Head, then the body by its content-length.
        loop {
            let n = c.read(&mut buf).expect("read");
            assert!(n > 0, "the client closed early");
            req.extend_from_slice(&buf[..n]);
            let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
            let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().expect("length"));
            if req.len() >= end + 4 + len {
                break;
            }
        }
        let body = format!("{{\"accepted\":{accepted},\"rejected\":[]}}");
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        c.write_all(answer.as_bytes()).expect("answer");
    });
    (port, handle)
}

/// Finding: an import whose server went away exited 1 with neither how many events were
/// stored nor why.
#[test]
fn an_import_that_cannot_reach_the_server_says_what_was_stored_and_why() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("events.ndjson");
    let events: Vec<Value> = (0..5).map(|i| event(&format!("gone-{i}"), "gone", i, "Mozilla/5.0")).collect();
    write_ndjson(&file, &events);
    let file_arg = file.to_str().expect("utf-8");

    // Nothing listens on the port (its lock file is ours): refused from the first request.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/v1/events?backfill=true");
    let out = import(&["--target", &format!("http://127.0.0.1:{port}"), "--retry-for", "2s", file_arg]);
    assert_eq!(
        (out.status.code(), text(&out.stderr)),
        (
            Some(1),
            format!(
                "error: import stopped before any event was stored; the 5 events of lines 1-5 were not stored, and nothing after them \
                 was sent: {}. {AGAIN}\n",
                refused(&url)
            )
        )
    );
    assert_eq!(text(&out.stdout), "");

    // The first batch (lines 1-2) is stored, then the server is gone.
    let (port, server) = one_answer_then_gone(2);
    let url = format!("http://127.0.0.1:{port}/v1/events?backfill=true");
    let out = import(&["--target", &format!("http://127.0.0.1:{port}"), "--batch-size", "2", "--retry-for", "2s", file_arg]);
    server.join().expect("server thread");
    assert_eq!(
        (out.status.code(), text(&out.stderr)),
        (
            Some(1),
            format!(
                "error: import stopped after 2 events were stored and 0 rejected, every line up to 2 answered; the 2 events of lines \
                 3-4 were not stored, and nothing after them was sent: {}. {AGAIN}\n",
                refused(&url)
            )
        )
    );
}

/// `GET /v1/links/{code}/stats` totals of today and yesterday: clicks, once `want` shows
/// (30 s at most).
async fn await_clicks(http: &reqwest::Client, listen: &str, code: &str, want: u64) {
    let day = 86_400_000;
    let now = now_ms();
    let q = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("ms").to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
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

/// What the message promises: the same import run again (here: whole, after a first run that
/// stored part of it) stores copies that the dataflow drops, so every click counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_the_same_import_again_counts_each_click_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_server, listen) = serve_embedded_ready(tmp.path()).await;
    let http = reqwest::Client::new();
    create_link(&http, &listen, "again").await;
    let events: Vec<Value> = (0..6).map(|i| event(&format!("again-{i}"), "again", i, "Mozilla/5.0 (X11; Linux x86_64)")).collect();
    let (part, whole, more) = (tmp.path().join("part.ndjson"), tmp.path().join("whole.ndjson"), tmp.path().join("more.ndjson"));
    write_ndjson(&part, &events[..2]);
    write_ndjson(&whole, &events);
    write_ndjson(&more, &[event("again-new", "again", 7, "Mozilla/5.0 (X11; Linux x86_64)")]);
    let target = format!("http://{listen}");
    for (file, stored) in [(&part, 2), (&whole, 6), (&more, 1)] {
        let out = import(&["--target", &target, file.to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains(&format!(" events parsed, {stored} stored, 0 rejected ")), "{}", text(&out.stdout));
    }
    // The log holds 9 events; the dataflow counts 7 (the new one comes last, so the copies
    // before it have been seen and dropped when it counts).
    await_clicks(&http, &listen, "again", 7).await;
}

/// Finding: one event line whose user agent alone was larger than the server's request-body
/// limit made the whole batch fail with 413, though the server keeps 8,192 bytes of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_larger_than_a_request_is_refused_by_line_and_the_rest_stored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("small-bodies.toml");
    std::fs::write(&config, "[ingest]\nmax-body-bytes = 65536\n").expect("write config");
    let config_arg = config.to_str().expect("utf-8");
    let data = tmp.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let log = tmp.path().join("serve.log");
    let mut server = serve_embedded(&listen, &data, &["--config", config_arg], &log);
    let http = reqwest::Client::new();
    await_ready(&mut server, &http, &listen, &log, Duration::from_secs(60)).await;
    create_link(&http, &listen, "big").await;

    let huge_ua = format!("Mozilla/5.0 {}", "a".repeat(100_000));
    let huge_id = "i".repeat(70_000);
    let events = [
        event("big-1", "big", 1, "Mozilla/5.0"),
        event("big-2", "big", 2, &huge_ua),
        event("big-3", "big", 3, "Mozilla/5.0"),
        event(&huge_id, "big", 4, "Mozilla/5.0"),
        event("big-5", "big", 5, "Mozilla/5.0"),
    ];
    let file = tmp.path().join("events.ndjson");
    write_ndjson(&file, &events);
    let huge_id_bytes = events[3].to_string().len();
    let target = format!("http://{listen}");
    let file_arg = file.to_str().expect("utf-8");
    let summary_tail = format!(
        "rejected events: payload_too_large 1\nevents larger than a request to the server may be, not sent or refused with 413 (the \
         other events were sent): line 4 ({huge_id_bytes} bytes)\n"
    );
    // Without the server's limit in the configuration: the request gets 413 and is split until
    // line 4 is alone. With it (`--config`): line 4 is never sent. Either way 4 are stored.
    for with_config in [false, true] {
        let mut args = vec!["--target", target.as_str(), file_arg];
        if with_config {
            args.extend(["--config", config_arg]);
        }
        let out = import(&args);
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(1), "error: 1 of 5 events were rejected (4 stored)\n".to_owned()));
        let stdout = text(&out.stdout);
        assert!(stdout.contains(": 5 lines, 5 events parsed, 4 stored, 1 rejected in "), "{stdout}");
        assert!(stdout.ends_with(&summary_tail), "{stdout}");
    }
    await_clicks(&http, &listen, "big", 4).await;
    let secret = std::fs::read_to_string(data.join("visitor_secret")).expect("visitor secret");
    server.terminate();

    // What the server stored, twice (two imports): lines 1, 2, 3 and 5, the user agent of
    // line 2 cut to 8,192 bytes; the very events an import straight into a data dir with the
    // same secret makes of the whole lines.
    let stored: Vec<_> = ClickLog::open(&data).expect("open log").read_entries(0, 100).expect("read").into_iter().map(|e| e.event).collect();
    assert_eq!(stored.len(), 8);
    assert_eq!(stored[..4], stored[4..]);
    assert_eq!(stored[1].user_agent, huge_ua[..8192]);
    let direct = tmp.path().join("direct");
    let direct_config = tmp.path().join("direct.toml");
    std::fs::write(&direct_config, format!("[visitor]\nsecret = \"{}\"\n", secret.trim())).expect("write config");
    let out = import(&["--data-dir", direct.to_str().expect("utf-8"), "--config", direct_config.to_str().expect("utf-8"), file_arg]);
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(1), "error: 1 of 5 events were rejected (4 stored)\n".to_owned()));
    assert!(text(&out.stdout).ends_with("rejected events: invalid_event_id 1\n"), "{}", text(&out.stdout));
    let direct_events: Vec<_> = ClickLog::open(&direct).expect("open log").read_entries(0, 100).expect("read").into_iter().map(|e| e.event).collect();
    assert_eq!(direct_events, stored[..4]);
}
