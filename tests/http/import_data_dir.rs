//! `sluice import --data-dir` through the real binary: it refuses (`too_late`, exit 1, as
//! `--target` does) the events the dataflow would dead-letter when the server reads them,
//! stores the others (an event whose code no link has included: the dataflow counts it in
//! the summary), and the server then counts exactly the stored events with no dead letter;
//! an input that cannot be read at all (a directory) is said to be just that.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::child::{await_ready, free_port, serve_embedded};
use crate::cli_run::{import, now_ms, text};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const DAY: i64 = 86_400_000;

pub(super) fn event(id: &str, code: &str, ts: i64) -> Value {
    json!({"event_id": id, "code": code, "ts": ts, "ip": "203.0.113.9", "user_agent": UA})
}

/// `GET {path}` of the server at `listen` until `done` holds for its JSON (30 s at most).
pub(super) async fn await_json(http: &reqwest::Client, listen: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let v: Value = http.get(format!("http://{listen}{path}")).send().await.expect("get").json().await.expect("json");
        if done(&v) {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{path}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn clicks_of(http: &reqwest::Client, listen: &str, code: &str, want: u64) {
    let now = now_ms();
    let q = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("ms").to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let path = format!("/v1/links/{code}/stats?bucket=day&from={}&to={}", q((now / DAY - 1) * DAY), q((now / DAY + 1) * DAY));
    await_json(http, listen, &path, |v| v["totals"]["clicks"].as_u64() == Some(want)).await;
}

/// The sample `sluice_events_dead_lettered_total{reason="too_late"}` of `/metrics`.
async fn too_late_dead_letters(http: &reqwest::Client, listen: &str) -> Option<f64> {
    dead_letters(http, listen, "too_late").await
}

/// The sample `sluice_events_dead_lettered_total{reason="<reason>"}` of `/metrics`.
pub(super) async fn dead_letters(http: &reqwest::Client, listen: &str, reason: &str) -> Option<f64> {
    let text = http.get(format!("http://{listen}/metrics")).send().await.expect("metrics").text().await.expect("text");
    let name = format!("sluice_events_dead_lettered_total{{reason=\"{reason}\"}}");
    text.lines().find(|l| l.starts_with(&name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

/// Finding (QA): an offline import into a data dir a server had run on stored an event 500
/// days old and exited 0; the restarted server dead-lettered it `too_late` and never counted
/// it, while `--target` refused it. Now the offline import refuses it the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_import_refuses_what_the_dataflow_would_dead_letter_and_the_server_counts_the_rest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let data_arg = data.to_str().expect("utf-8");
    let http = reqwest::Client::new();

    // A server has run on the data dir: a link, and one click of now (its watermark).
    let listen = format!("127.0.0.1:{}", free_port());
    let log = tmp.path().join("serve-1.log");
    let mut server = serve_embedded(&listen, &data, &[], &log);
    await_ready(&mut server, &http, &listen, &log, Duration::from_secs(60)).await;
    let r = http
        .post(format!("http://{listen}/v1/links"))
        .json(&json!({"long_url": "https://example.com/mix", "custom_alias": "mix"}))
        .send()
        .await
        .expect("create link");
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let now = now_ms();
    let r = http.post(format!("http://{listen}/v1/events")).json(&json!([event("live-1", "mix", now - 60_000)])).send().await.expect("post");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    clicks_of(&http, &listen, "mix", 1).await;
    server.terminate();

    // Offline: two recent events of the link, one 500 days old, one recent of a code no link has.
    let file = tmp.path().join("mix.ndjson");
    let lines = [
        event("mix-1", "mix", now - 2 * 60_000),
        event("old-1", "mix", now - 500 * DAY),
        event("zzz-1", "zzz", now - 3 * 60_000),
        event("mix-2", "mix", now - 4 * 60_000),
    ];
    std::fs::write(&file, lines.iter().map(|l| l.to_string() + "\n").collect::<String>()).expect("write events");
    let file_arg = file.to_str().expect("utf-8");
    let out = import(&["--data-dir", data_arg, file_arg]);
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(1), "error: 1 of 4 events were rejected (3 stored)\n".to_owned()));
    let stdout = text(&out.stdout);
    let head = format!("imported \"{file_arg}\" into {}/clicks.redb (backfill): 4 lines, 4 events parsed, 3 stored, 1 rejected in ", data_arg);
    assert!(stdout.starts_with(&head), "{stdout}");
    assert!(stdout.ends_with(" events/s)\nrejected events: too_late 1\n"), "{stdout}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");

    // The server counts exactly the stored events: the link's 1 + 2, the summary 1 + 3 (the
    // unknown code's click counts there), and dead-letters none.
    let listen = format!("127.0.0.1:{}", free_port());
    let log = tmp.path().join("serve-2.log");
    let mut server = serve_embedded(&listen, &data, &[], &log);
    await_ready(&mut server, &http, &listen, &log, Duration::from_secs(60)).await;
    clicks_of(&http, &listen, "mix", 3).await;
    await_json(&http, &listen, "/v1/stats/summary", |v| v["totals"]["clicks"].as_u64() == Some(4)).await;
    assert_eq!(too_late_dead_letters(&http, &listen).await, Some(0.0));
    server.terminate();
}

/// Finding: `sluice import /var/log` said the import "stopped before any event was stored" with
/// advice to run it again; a directory is no input at all, and the error says just that.
#[test]
fn a_directory_as_input_is_refused_as_such() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8");
    let data = tmp.path().join("data");
    let out = import(&["--data-dir", data.to_str().expect("utf-8"), dir]);
    assert_eq!(
        (out.status.code(), text(&out.stderr), text(&out.stdout)),
        (
            Some(1),
            format!("error: could not read \"{dir}\": it is a directory; expected an NDJSON file or an access log (or - for standard input)\n"),
            String::new()
        )
    );
    assert!(!data.exists(), "nothing created");
    let out = import(&["--target", &format!("http://127.0.0.1:{}", free_port()), dir]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with(&format!("error: could not read \"{dir}\": it is a directory")), "{}", text(&out.stderr));
}

/// Names in `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    n.sort();
    n
}

/// Finding: an import whose input holds no event (an empty file, blank lines, empty standard
/// input) exited 0 and left the data dir it had created behind, with a visitor secret and an
/// empty click log in it (and its missing parents). Now it removes what it created, as an
/// import that stores nothing and fails does (and a refused `sluice serve` start); a data
/// dir that existed stays, and one holding events keeps them and its secret.
#[test]
fn an_import_of_no_event_leaves_nothing_it_created() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (empty, blank) = (tmp.path().join("empty.ndjson"), tmp.path().join("blank.ndjson"));
    std::fs::write(&empty, "").expect("write");
    std::fs::write(&blank, "\n\n").expect("write");
    let empty_arg = empty.to_str().expect("utf-8");
    let data = tmp.path().join("new").join("data");
    let data_arg = data.to_str().expect("utf-8");
    for (file, lines, tail) in [(empty_arg, 0, ""), (blank.to_str().expect("utf-8"), 2, "skipped lines: blank 2\n"), ("-", 0, "")] {
        let out = import(&["--data-dir", data_arg, file]);
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(0), String::new()), "{file}");
        let stdout = text(&out.stdout);
        // Names no file: the click log it created is gone again.
        let head = format!("imported \"{file}\": {lines} lines, 0 events parsed, 0 stored, 0 rejected in ");
        assert!(stdout.starts_with(&head) && stdout.ends_with(&format!(" (0 events/s); nothing stored, \"{data_arg}\" not created\n{tail}")), "{stdout}");
        assert_eq!(names(tmp.path()), ["blank.ndjson", "empty.ndjson"], "{file}: new/data removed with its parent");
    }

    // A data dir that existed (empty): kept, and empty again.
    let existing = tmp.path().join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    let out = import(&["--data-dir", existing.to_str().expect("utf-8"), empty_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(names(&existing), Vec::<String>::new());

    // A data dir holding events: an empty import changes nothing in it.
    let one = tmp.path().join("one.ndjson");
    std::fs::write(&one, event("one-1", "one", now_ms() - 60_000).to_string() + "\n").expect("write");
    let out = import(&["--data-dir", data_arg, one.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let secret = std::fs::read(data.join("visitor_secret")).expect("visitor secret");
    let out = import(&["--data-dir", data_arg, empty_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with(&format!(" (0 events/s); nothing stored, \"{data_arg}\" left as it was\n")), "{}", text(&out.stdout));
    assert_eq!(names(&data), ["clicks.redb", "visitor_secret"]);
    assert_eq!(std::fs::read(data.join("visitor_secret")).expect("visitor secret"), secret);
    let stored = sluice_connectors::click_log::ClickLog::open(&data).expect("open").read(0, 10).expect("read");
    assert_eq!(stored.iter().map(|(_, e)| e.code.as_str()).collect::<Vec<_>>(), ["one"]);
}

/// Attack of session 49: `--data-dir` with a configuration in Kafka mode stored the events
/// in the embedded click log and exited 0, but a Kafka-mode server reads the click topic and
/// never counted them. Now it is a usage error (exit 2) that says to import through the
/// server, and nothing is created.
#[test]
fn an_offline_import_with_a_kafka_configuration_is_refused_and_creates_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("kafka.toml");
    std::fs::write(&config, "[kafka]\nbrokers = \"127.0.0.1:9\"\n").expect("write config");
    let file = tmp.path().join("one.ndjson");
    std::fs::write(&file, event("k-1", "k", now_ms() - 60_000).to_string() + "\n").expect("write");
    let data = tmp.path().join("data");
    let out = import(&["--data-dir", data.to_str().expect("utf-8"), "--config", config.to_str().expect("utf-8"), file.to_str().expect("utf-8")]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("reads clicks from Kafka") && err.contains("--target http://"), "{err}");
    assert!(!data.exists(), "nothing created");
}

/// Attack of session 52: with only `KAFKA_BROKERS` set, `import --data-dir` stored into the
/// embedded log (which a Kafka-mode server never reads) and `log reset` went ahead; both
/// now see Kafka mode as `sluice serve` does.
#[test]
fn kafka_brokers_in_the_environment_is_kafka_mode_for_import_and_log_reset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("d");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .env("KAFKA_BROKERS", "127.0.0.1:9")
            .env_remove("SLUICE__KAFKA__BROKERS")
            .env_remove("SLUICE_LOG")
            .output()
            .expect("run sluice")
    };
    let file = tmp.path().join("e.ndjson");
    std::fs::write(&file, format!("{}\n", event("k1", "abc", now_ms()))).expect("write");
    let out = run(&["--log", "error", "import", "--quiet", "--data-dir", dir.to_str().expect("utf-8"), file.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("this configuration reads clicks from Kafka"), "{err}");
    assert!(!dir.exists(), "nothing created");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let out = run(&["--log", "error", "log", "reset", "--data-dir", dir.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("[kafka] brokers is set"), "{err}");
}
