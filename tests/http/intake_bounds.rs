//! The bounds `POST /v1/events` and `sluice import` put on event times, through the real
//! binary: an event too late behind one an earlier request stored (which the views'
//! watermark does not show yet) is refused `too_late`, with `--target` as with `--data-dir`;
//! the future bound is the smaller of `[ingest] max-future-skew` and `[dataflow]
//! future-skew`. The dataflow then dead-letters nothing.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::child::{await_ready, free_port, serve_embedded};
use crate::cli_run::{create_link, import, now_ms, text};
use crate::import_data_dir::{clicks_of, dead_letters, event};

const DAY: i64 = 86_400_000;
const H: i64 = 3_600_000;

/// A server on a fresh data dir under `dir` with `args`, and a link `code`.
async fn server_with_link(dir: &Path, args: &[&str], http: &reqwest::Client, code: &str) -> (String, crate::child::ChildProcess) {
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.join("serve.log");
    let mut server = serve_embedded(&listen, &dir.join("data"), args, &log);
    await_ready(&mut server, http, &listen, &log, Duration::from_secs(60)).await;
    create_link(http, &listen, code).await;
    (listen, server)
}

/// `POST /v1/events` (`?backfill=true` when `backfill`): status and JSON body.
async fn post(http: &reqwest::Client, listen: &str, backfill: bool, events: Value) -> (u16, Value) {
    let q = if backfill { "?backfill=true" } else { "" };
    let r = http.post(format!("http://{listen}/v1/events{q}")).json(&events).send().await.expect("post");
    (r.status().as_u16(), r.json().await.expect("json"))
}

/// The (index, reason) pairs of a 400 `all_events_rejected` answer.
fn all_rejected(body: &Value) -> Vec<(u64, String)> {
    assert_eq!(body["error"]["code"], "all_events_rejected", "{body}");
    let list = body["error"]["details"]["rejected"].as_array().expect("rejected");
    list.iter().map(|r| (r["index"].as_u64().expect("index"), r["reason"].as_str().expect("reason").to_owned())).collect()
}

fn write_ndjson(path: &Path, events: &[Value]) -> String {
    std::fs::write(path, events.iter().map(|e| e.to_string() + "\n").collect::<String>()).expect("write events");
    path.to_str().expect("utf-8").to_owned()
}

/// Finding (QA, H2): on a fresh server a backfill event of now was accepted, then one 401
/// days old right after it too, and the dataflow dead-lettered it `too_late` (the views'
/// watermark had not moved yet). Now the second request is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_right_after_a_newer_one_is_refused_what_the_dataflow_would_dead_letter() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::new();
    let (listen, server) = server_with_link(tmp.path(), &[], &http, "race").await;
    let now = now_ms();
    assert_eq!(post(&http, &listen, true, json!([event("r1", "race", now)])).await, (200, json!({"accepted": 1, "rejected": []})));
    let (status, body) = post(&http, &listen, true, json!([event("r2", "race", now - 401 * DAY)])).await;
    assert_eq!((status, all_rejected(&body)), (400, vec![(0, "too_late".to_owned())]));
    // One more event of now, read after anything stored before it: the dataflow counts the
    // two and dead-letters nothing.
    assert_eq!(post(&http, &listen, false, json!([event("r3", "race", now)])).await, (200, json!({"accepted": 1, "rejected": []})));
    clicks_of(&http, &listen, "race", 2).await;
    assert_eq!(dead_letters(&http, &listen, "too_late").await, Some(0.0));
    server.terminate();
}

/// Finding (QA, H2): `sluice import --target --no-backfill --batch-size 1` of events 1 h,
/// 50 h and 60 h old stored all 3 and the server dead-lettered 2; `--data-dir` refused 2.
/// Both now refuse the same 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_one_event_per_request_refuses_what_the_offline_import_refuses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::new();
    let (listen, server) = server_with_link(tmp.path(), &[], &http, "race").await;
    let now = now_ms();
    let file = tmp.path().join("race.ndjson");
    let file_arg = write_ndjson(&file, &[event("i1", "race", now - H), event("i2", "race", now - 50 * H), event("i3", "race", now - 60 * H)]);
    let offline = tmp.path().join("offline");
    for dest in [
        vec!["--target".to_owned(), format!("http://{listen}"), "--batch-size".into(), "1".into()],
        vec!["--data-dir".to_owned(), offline.to_str().expect("utf-8").to_owned()],
    ] {
        let mut args: Vec<&str> = dest.iter().map(String::as_str).collect();
        args.extend(["--no-backfill", &file_arg]);
        let out = import(&args);
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(1), "error: 2 of 3 events were rejected (1 stored)\n".to_owned()), "{dest:?}");
        let stdout = text(&out.stdout);
        assert!(stdout.contains(": 3 lines, 3 events parsed, 1 stored, 2 rejected in "), "{stdout}");
        assert!(stdout.ends_with(" events/s)\nrejected events: too_late 2\n"), "{stdout}");
    }
    assert_eq!(post(&http, &listen, false, json!([event("i4", "race", now)])).await, (200, json!({"accepted": 1, "rejected": []})));
    clicks_of(&http, &listen, "race", 2).await;
    assert_eq!(dead_letters(&http, &listen, "too_late").await, Some(0.0));
    server.terminate();
}

/// Finding (QA, H3): with `[dataflow] future-skew = "1m"` an event 3 minutes ahead was
/// accepted (`[ingest] max-future-skew` 5m) and then dead-lettered `future`. The intake and
/// the offline import now refuse it `ts_in_future`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_future_bound_is_the_smaller_of_the_ingest_and_dataflow_skews() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("skew.toml");
    std::fs::write(&config, "[dataflow]\nfuture-skew = \"1m\"\n").expect("write config");
    let config_arg = config.to_str().expect("utf-8");
    let http = reqwest::Client::new();
    let (listen, server) = server_with_link(tmp.path(), &["--config", config_arg], &http, "fut").await;
    let now = now_ms();
    let (status, body) = post(&http, &listen, false, json!([event("f1", "fut", now + 3 * 60_000), event("f2", "fut", now)])).await;
    assert_eq!(
        (status, &body["accepted"], &body["rejected"][0]["index"], &body["rejected"][0]["reason"]),
        (200, &json!(1), &json!(0), &json!("ts_in_future")),
        "{body}"
    );
    assert_eq!(body["rejected"].as_array().map(Vec::len), Some(1), "{body}");
    let message = body["rejected"][0]["message"].as_str().expect("message");
    assert!(message.contains(" is more than 60000 ms ahead of the server clock "), "{message}");

    let file_arg = write_ndjson(&tmp.path().join("future.ndjson"), &[event("f3", "fut", now_ms() + 3 * 60_000)]);
    let offline = tmp.path().join("offline");
    for dest in [["--target", &format!("http://{listen}")], ["--data-dir", offline.to_str().expect("utf-8")]] {
        let out = import(&[dest[0], dest[1], "--config", config_arg, &file_arg]);
        assert_eq!(out.status.code(), Some(1), "{dest:?}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains(": 1 lines, 1 events parsed, 0 stored, 1 rejected in "), "{stdout}");
        // Nothing stored into a new data dir: the summary says it was not created.
        let end = if dest[0] == "--data-dir" { format!(" events/s); nothing stored, {:?} not created", dest[1]) } else { " events/s)".to_owned() };
        assert!(stdout.ends_with(&format!("{end}\nrejected events: ts_in_future 1\n")), "{stdout}");
    }
    clicks_of(&http, &listen, "fut", 1).await;
    assert_eq!(dead_letters(&http, &listen, "future").await, Some(0.0));
    assert_eq!(dead_letters(&http, &listen, "too_late").await, Some(0.0));
    server.terminate();
}
