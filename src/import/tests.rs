//! `sluice import` into a data directory and through a real server: the stored events are
//! the same either way and the same as the events posted live, only the backfill mark
//! differs; a second import of the file repeats the same event ids.

use std::path::PathBuf;

use sluice_connectors::click_log::{CLICK_LOG_FILE_NAME, ClickLog, LogEntry};
use sluice_ingest::import::line_event_id;
use sluice_schemas::{ClickEvent, VisitorSalt, visitor_id};

use super::*;
use crate::config::Secret;
use crate::loadgen::test_server::TestServer;

const SECRET: &str = "abababababababababababababababababababababababababababababababab";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (set by cargo test and nextest at run time)"))
        .join("ingest/tests/data/import")
        .join(name)
}

fn import_args(file: PathBuf) -> ImportArgs {
    ImportArgs {
        file,
        format: None,
        target: None,
        data_dir: None,
        config: None,
        ingest_token: None,
        path_prefix: "/".into(),
        batch_size: 3,
        retry_for: std::time::Duration::from_secs(60),
        no_backfill: false,
        quiet: true,
    }
}

/// [`super::run`] without the process's `KAFKA_BROKERS` (the test command sets it for the
/// Kafka tests; these imports mean the embedded log or a test server).
async fn run(args: &ImportArgs) -> anyhow::Result<ImportReport> {
    super::run_with_env(args, &|_| None).await
}

fn split(entries: Vec<LogEntry>) -> (Vec<ClickEvent>, Vec<bool>) {
    entries.into_iter().map(|e| (e.event, e.backfill)).unzip()
}

async fn server() -> TestServer {
    let s = TestServer::start(|c| c.visitor.secret = Some(Secret(SECRET.into()))).await;
    create_links(&s).await;
    s
}

/// The links the access log's clicks are for: POST /v1/events refuses codes no link has.
async fn create_links(s: &TestServer) {
    let http = reqwest::Client::new();
    for code in ["abc123", "Promo-2024", "xyz"] {
        let r = http
            .post(s.url.join("/v1/links").expect("url"))
            .json(&serde_json::json!({"long_url": format!("https://example.com/{code}"), "custom_alias": code}))
            .send()
            .await
            .expect("create link");
        assert_eq!(r.status(), reqwest::StatusCode::CREATED, "{code}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_server_and_live_imports_store_the_same_events() {
    let log_file = fixture("access.log");
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let cfg_file = cfg_dir.path().join("sluice.toml");
    std::fs::write(&cfg_file, format!("[visitor]\nsecret = \"{SECRET}\"\n")).expect("write config");

    // A: straight into a data directory
    let dir_a = tempfile::tempdir().expect("tempdir");
    let mut a = import_args(log_file.clone());
    a.data_dir = Some(dir_a.path().to_path_buf());
    a.config = Some(cfg_file);
    let ra = run(&a).await.expect("direct import");
    assert_eq!((ra.tally.lines, ra.tally.events, ra.accepted), (20, 8, 8));
    assert_eq!(ra.tally.skipped.values().sum::<u64>(), 12);
    assert!(ra.rejected.is_empty());
    let (events_a, marks_a) = split(ClickLog::open(dir_a.path()).expect("open").read_entries(0, 100).expect("read"));

    // B: through a server, live (no backfill mark)
    let sb = server().await;
    let mut b = import_args(log_file.clone());
    b.target = Some(sb.url.clone());
    b.no_backfill = true;
    assert_eq!(run(&b).await.expect("live import").accepted, 8);
    let (_dir_b, log_b) = sb.stop().await;
    let (events_b, marks_b) = split(log_b.read_entries(0, 100).expect("read"));

    // C: through a server, backfill, twice
    let sc = server().await;
    let mut c = import_args(log_file.clone());
    c.target = Some(sc.url.clone());
    c.batch_size = 5000;
    assert_eq!(run(&c).await.expect("import").accepted, 8);
    assert_eq!(run(&c).await.expect("re-import").accepted, 8);
    let (_dir_c, log_c) = sc.stop().await;
    let (events_c, marks_c) = split(log_c.read_entries(0, 100).expect("read"));

    assert_eq!(events_a.len(), 8);
    assert_eq!(events_a, events_b, "direct import = events posted live");
    assert_eq!(events_c[..8], events_a[..]);
    assert_eq!(events_c[8..], events_a[..], "a re-import repeats the same ids (the dataflow dedups them)");
    assert_eq!((marks_a, marks_b, marks_c), (vec![true; 8], vec![false; 8], vec![true; 16]));

    // one event checked field by field against values computed here
    let text = std::fs::read_to_string(&log_file).expect("read fixture");
    let line17 = text.lines().nth(16).expect("line 17");
    let ua = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";
    let ts = 1_728_568_740_000; // 2024-10-10T13:59:00Z
    let salt = VisitorSalt::new([0xab; 32], Some(86_400_000));
    let expected = ClickEvent {
        event_id: line_event_id(17, line17),
        code: "abc123".into(),
        ts,
        ip_trunc: Some("192.0.2.0".into()),
        visitor_id: visitor_id(&salt, ts, "192.0.2.19".parse().expect("ip"), ua),
        user_agent: ua.into(),
        referrer: Some("https://www.facebook.com/".into()),
        accept_language: None,
        edge_region: None,
    };
    assert_eq!(events_a[6], expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_import_counts_invalid_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = import_args(fixture("events.ndjson"));
    a.data_dir = Some(dir.path().to_path_buf());
    let r = run(&a).await.expect("import");
    assert_eq!((r.tally.lines, r.tally.events, r.accepted), (10, 3, 3));
    let invalid: Vec<(&str, u64)> = r.tally.invalid.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(invalid, vec![("invalid_ts", 1), ("malformed_json", 1), ("missing_field", 1), ("not_an_object", 1), ("unknown_field", 1)]);
    assert_eq!(r.tally.skipped.get("blank"), Some(&2));
    let log = ClickLog::open(dir.path()).expect("open");
    let ids: Vec<uuid::Uuid> = log.read(0, 10).expect("read").into_iter().map(|(_, e)| e.event_id).collect();
    let e = sluice_ingest::event_input::event_uuid;
    assert_eq!(ids, vec![e("c19-0001"), e("c19-0002"), e("c19-0001")]);
}

/// Attack of session 46: an NDJSON line that is not UTF-8 (Latin-1 `Caf\xe9`, bytes `\xff\xfe`)
/// was stored with U+FFFD in place of the bytes, while `POST /v1/events` answers 400
/// `invalid_utf8`: now an invalid line (exit 1), the valid lines around it stored as given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_not_utf8_is_invalid_not_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let line = |id: &str, ua: &[u8]| {
        let mut l = format!(r#"{{"event_id":"{id}","code":"L1","ts":"2024-03-10T06:30:00Z","ip":"192.0.2.30","user_agent":""#).into_bytes();
        l.extend_from_slice(ua);
        l.extend_from_slice(b"\"}\n");
        l
    };
    let body: Vec<u8> = [line("u-1", b"Caf\xc3\xa9"), line("u-2", b"Caf\xe9"), line("u-3", b"\xff\xfe"), line("u-4", b"ok")].concat();
    let file = dir.path().join("latin1.ndjson");
    std::fs::write(&file, body).expect("write");
    let mut a = import_args(file);
    a.data_dir = Some(dir.path().join("data"));
    let r = run(&a).await.expect("import");
    assert_eq!((r.tally.lines, r.tally.events, r.accepted), (4, 2, 2));
    assert_eq!(r.tally.invalid.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), vec![("invalid_utf8", 2)]);
    let log = ClickLog::open(&dir.path().join("data")).expect("open");
    let uas: Vec<String> = log.read(0, 10).expect("read").into_iter().map(|(_, e)| e.user_agent).collect();
    assert_eq!(uas, vec!["Café".to_string(), "ok".to_string()]);
}

/// A click log that cannot be opened for writing for another reason than a running server
/// (here immutable, which refuses root too) is reported as what it is, without asking
/// whether `sluice serve` runs on the data dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_cannot_be_written_names_the_cause() {
    use crate::test_fs::{Mutable, set_immutable};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = import_args(fixture("events.ndjson"));
    a.data_dir = Some(dir.path().to_path_buf());
    assert_eq!(run(&a).await.expect("first import").accepted, 3);
    let file = dir.path().join(CLICK_LOG_FILE_NAME);
    let _file = Mutable(&file);
    if !set_immutable(&file, true) {
        eprintln!("skipped: cannot set the immutable attribute here (needs root and a file system with chattr +i)");
        return;
    }
    let err = format!("{:#}", run(&a).await.expect_err("immutable log"));
    assert_eq!(
        err,
        format!(
            "could not open the click log in \"{}\": permission denied (check the owner and mode of the directory and of the log file, \
             and that neither is immutable: `lsattr`): click log could not open: I/O error: Operation not permitted (os error 1)",
            dir.path().display()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_clear_errors() {
    let s = TestServer::start(|c| c.ingest.token = Some(Secret("tok".into()))).await;
    create_links(&s).await;
    let mut a = import_args(fixture("access.log"));
    a.target = Some(s.url.clone());
    let err = format!("{:#}", run(&a).await.expect_err("no token"));
    assert!(err.contains("401") && err.contains("unauthorized"), "{err}");
    a.ingest_token = Some("tok".into());
    assert_eq!(run(&a).await.expect("with token").accepted, 8);
    // the data directory of a running server is locked
    let mut d = import_args(fixture("access.log"));
    d.data_dir = Some(s.data_dir().to_path_buf());
    let err = format!("{:#}", run(&d).await.expect_err("log held by the server"));
    assert!(err.contains("is `sluice serve` running on it?"), "{err}");
    let (_dir, log) = s.stop().await;
    assert_eq!(log.head(), 8);
    let mut big = import_args(fixture("access.log"));
    big.batch_size = 10_001;
    assert!(run(&big).await.is_err());
}

#[test]
fn rejected_events_make_the_import_fail_and_a_clean_one_succeeds() {
    let mut r = ImportReport { accepted: 5, ..ImportReport::default() };
    r.tally.events = 5;
    assert!(import_outcome(&r, "/").is_ok());
    r.tally.events = 8;
    r.rejected.insert("unknown_code".into(), 3);
    let err = import_outcome(&r, "/").expect_err("3 rejected").to_string();
    assert_eq!(err, "3 of 8 events were rejected (5 stored)");
    r.accepted = 0;
    r.rejected.insert("too_late".into(), 5);
    assert_eq!(import_outcome(&r, "/").expect_err("all rejected").to_string(), "8 of 8 events were rejected (0 stored)");
}

#[test]
fn no_click_under_the_path_prefix_fails_the_import() {
    let mut r = ImportReport::default();
    r.tally.lines = 7;
    r.tally.skipped.insert("blank", 1);
    r.tally.skipped.insert("not_code_path", 5);
    r.tally.skipped.insert("not_redirect", 1);
    for given in ["s/", "/s", "s", "/s/"] {
        assert_eq!(
            import_outcome(&r, given).expect_err(given).to_string(),
            "no line is a click on a short link under the path prefix \"/s/\" (5 of 6 non-blank lines have another path), nothing was imported: \
             is --path-prefix right (\"/\" when codes sit at the root, \"/s/\" for https://host/s/CODE)?",
            "{given}"
        );
    }
    assert!(import_outcome(&r, "/").expect_err("root").to_string().contains("under the path prefix \"/\" (5 of 6"));
    // one click under the prefix and the rest elsewhere: a normal import
    r.tally.events = 1;
    r.accepted = 1;
    assert!(import_outcome(&r, "s/").is_ok());
    // a log of 404s only has nothing outside the prefix: no error
    let mut only_404 = ImportReport::default();
    only_404.tally.lines = 3;
    only_404.tally.skipped.insert("not_redirect", 3);
    assert!(import_outcome(&only_404, "/").is_ok());
}

/// Finding (newcomer, session 18): a file of JSON lines that are not objects (a JSON array
/// of events, the `POST /v1/events` body, on one line) imported nothing and exited 0.
#[test]
fn lines_that_are_json_but_not_objects_fail_the_import() {
    let mut r = ImportReport::default();
    r.tally.lines = 1;
    r.tally.invalid.insert("not_an_object", 1);
    assert_eq!(
        import_outcome(&r, "/").expect_err("an array line").to_string(),
        "none of the 1 non-blank lines is an event (1 are JSON but not an object), nothing was imported: \
         NDJSON takes one event object per line (`jq -c '.[]' FILE` turns a JSON array, such as a POST /v1/events body, into that)"
    );
    r.tally.lines = 5;
    r.tally.invalid.insert("not_an_object", 3);
    r.tally.invalid.insert("malformed_json", 1);
    r.tally.skipped.insert("blank", 1);
    assert!(
        import_outcome(&r, "/")
            .expect_err("mixed")
            .to_string()
            .starts_with("none of the 4 non-blank lines is an event (3 are JSON but not an object, 1 malformed)")
    );
    // Finding (newcomer, session 21): lines that are objects but no valid event (a missing
    // field) imported nothing and exited 0.
    let mut fields = ImportReport::default();
    fields.tally.lines = 3;
    fields.tally.skipped.insert("blank", 1);
    fields.tally.invalid.insert("missing_field", 2);
    assert_eq!(
        import_outcome(&fields, "/").expect_err("no valid event").to_string(),
        "none of the 2 non-blank lines is a valid event (invalid lines: missing_field 2), nothing was imported: see the event fields in `sluice import --help`"
    );
    // Finding (attack, session 44): one event among them was a partial import that exited
    // 0, while a rejected event fails the import: an invalid line fails it too.
    r.tally.lines = 6;
    r.tally.events = 1;
    r.accepted = 1;
    assert_eq!(
        import_outcome(&r, "/").expect_err("partial").to_string(),
        "4 of the 5 non-blank lines are not valid events (malformed_json 1, not_an_object 3), not imported; 1 event stored"
    );
    r.tally.events = 3;
    r.rejected.insert("invalid_code".into(), 1);
    r.accepted = 2;
    assert_eq!(
        import_outcome(&r, "/").expect_err("partial and rejected").to_string(),
        "4 of the 5 non-blank lines are not valid events (malformed_json 1, not_an_object 3), not imported; and 1 of 3 events were rejected (2 stored)"
    );
}

/// An import into a data dir that did not exist, which stores nothing and fails (no line
/// read, only events refused, an input that cannot be opened), removes the directories it
/// created with the visitor secret and click log it made there; a data dir that existed is
/// kept, and an import that stores events keeps the one it created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_import_leaves_no_data_dir_it_created() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let garbage = tmp.path().join("garbage.ndjson");
    std::fs::write(&garbage, "not json\n{also not\n").expect("write");
    let refused = tmp.path().join("refused.ndjson");
    std::fs::write(&refused, "{\"event_id\":\"r1\",\"code\":\"no spaces\",\"ts\":1710052200000,\"ip\":\"192.0.2.1\",\"user_agent\":\"\"}\n").expect("write");
    let new = tmp.path().join("a");
    let nested = new.join("b").join("c");
    for (file, outcome_fails) in [(garbage.clone(), true), (refused.clone(), true), (tmp.path().join("missing.ndjson"), false)] {
        let mut args = import_args(file.clone());
        args.data_dir = Some(nested.clone());
        match run(&args).await {
            Ok(r) => {
                assert!(outcome_fails, "{}", file.display());
                assert_eq!(r.accepted, 0);
                assert!(import_outcome(&r, "/").is_err(), "{}: exit 1", file.display());
            }
            Err(e) => assert!(!outcome_fails, "{}: {e:#}", file.display()),
        }
        assert!(!new.exists(), "{}: {:?} left behind", file.display(), std::fs::read_dir(tmp.path()).map(|d| d.count()));
    }
    // An existing data dir is never removed; what the import made in it is (here: all).
    let existing = tmp.path().join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    let mut args = import_args(garbage);
    args.data_dir = Some(existing.clone());
    assert_eq!(run(&args).await.expect("import").accepted, 0);
    assert_eq!(std::fs::read_dir(&existing).expect("existing is kept").count(), 0);
    // Events stored: the new data dir stays, with its secret and log.
    let mut args = import_args(fixture("events.ndjson"));
    args.data_dir = Some(nested.clone());
    assert_eq!(run(&args).await.expect("import").accepted, 3);
    assert!(nested.join(crate::visitor_secret::FILE_NAME).is_file() && nested.join(CLICK_LOG_FILE_NAME).is_file());
}

/// The `too_late` edges of an offline import (`lateness.rs`): against the newest event time
/// the data dir holds, `limit` (long retention for backfill, allowed lateness live) minus
/// the in-flight margin back, an event exactly there is stored and one 1 ms older refused;
/// within one import, without the margin, `limit` behind an event stored before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_imports_refuse_too_late_events_at_the_exact_edges() {
    const DAY: i64 = 86_400_000;
    let margin = crate::intake_gate::in_flight_margin_ms();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = super::sink::now_ms() - 3_600_000;
    let import = |name: &str, times: &[i64], no_backfill: bool| {
        let file = dir.path().join(name);
        let lines: Vec<String> = times
            .iter()
            .enumerate()
            .map(|(i, ts)| {
                serde_json::json!({"event_id": format!("{name}-{i}"), "code": "edge", "ts": ts, "ip": "192.0.2.1", "user_agent": "Mozilla/5.0"}).to_string()
            })
            .collect();
        std::fs::write(&file, lines.join("\n") + "\n").expect("write events");
        let mut args = import_args(file);
        args.data_dir = Some(data.clone());
        args.no_backfill = no_backfill;
        args
    };
    let verdict = |r: &ImportReport| (r.accepted, r.rejected.get("too_late").copied().unwrap_or(0));

    // An empty data dir has no watermark: only the import's own events bound the others.
    let args = import("first.ndjson", &[t, t - 400 * DAY - 1, t - 400 * DAY], false);
    assert_eq!(verdict(&run(&args).await.expect("import")), (2, 1));

    // Now the log's newest event time is t.
    let floor = t + margin - 400 * DAY;
    let args = import("backfill.ndjson", &[floor - 1, floor, floor + 1], false);
    assert_eq!(verdict(&run(&args).await.expect("import")), (2, 1));
    let floor = t + margin - 2 * DAY;
    let args = import("live.ndjson", &[floor - 1, floor], true);
    assert_eq!(verdict(&run(&args).await.expect("import")), (1, 1));
    let stored: Vec<i64> = ClickLog::open(&data).expect("open").read(0, 100).expect("read").into_iter().map(|(_, e)| e.ts).collect();
    assert_eq!(stored, [t, t - 400 * DAY, t + margin - 400 * DAY, t + margin - 400 * DAY + 1, floor]);
}

/// A log record stamped ahead of its append (within the future skew) counts, in the
/// watermark an offline import measures against, at the append time the log recorded, as the
/// dataflow's gate caps it: the `too_late` edge is the limit behind that time, not behind
/// the record's own stamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_import_measures_a_record_stamped_ahead_at_its_arrival() {
    const DAY: i64 = 86_400_000;
    let margin = crate::intake_gate::in_flight_margin_ms();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let now = super::sink::now_ms();
    let arrival = {
        let log = ClickLog::open(&data).expect("open");
        let ahead = ClickEvent {
            event_id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            code: "edge".into(),
            ts: now + 4 * 60_000,
            ip_trunc: None,
            visitor_id: 1,
            user_agent: "Mozilla/5.0".into(),
            referrer: None,
            accept_language: None,
            edge_region: None,
        };
        log.append(&[ahead]).expect("append");
        let arrivals = log.arrival_times(0..1).expect("arrival times");
        assert_eq!(arrivals.len(), 1, "{arrivals:?}");
        arrivals[0].1
    };
    // The secret its server made (an import refuses a log without one).
    crate::visitor_secret::load_or_create_after(None, &data, false).expect("visitor secret");
    let floor = arrival + margin - 2 * DAY;
    let file = dir.path().join("live.ndjson");
    let lines: Vec<String> = [floor - 1, floor]
        .iter()
        .enumerate()
        .map(|(i, ts)| {
            serde_json::json!({"event_id": format!("live-{i}"), "code": "edge", "ts": ts, "ip": "192.0.2.1", "user_agent": "Mozilla/5.0"}).to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").expect("write events");
    let mut args = import_args(file);
    args.data_dir = Some(data.clone());
    args.no_backfill = true;
    let report = run(&args).await.expect("import");
    assert_eq!((report.accepted, report.rejected.get("too_late").copied().unwrap_or(0)), (1, 1));
    let stored: Vec<i64> = ClickLog::open(&data).expect("open").read(0, 100).expect("read").into_iter().map(|(_, e)| e.ts).collect();
    assert_eq!(stored, [now + 4 * 60_000, floor]);
}

/// The waits between attempts: a 503's `Retry-After` in seconds, within 100 ms..=30 s (an
/// HTTP date or garbage is no wait of its own); without one, 0.5 s doubling to 5 s.
#[test]
fn retry_waits_follow_retry_after_within_bounds_and_back_off_otherwise() {
    use std::time::Duration;

    use super::sink::{MAX_RETRY_WAIT, backoff, retry_after};
    let asked = |v: &str| {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, reqwest::header::HeaderValue::from_str(v).expect("header value"));
        retry_after(&h)
    };
    assert_eq!(MAX_RETRY_WAIT, Duration::from_secs(30));
    assert_eq!(asked("1"), Some(Duration::from_secs(1)));
    assert_eq!(asked(" 7 "), Some(Duration::from_secs(7)));
    assert_eq!(asked("0"), Some(Duration::from_millis(100)));
    assert_eq!(asked("30"), Some(Duration::from_secs(30)));
    assert_eq!(asked("3600"), Some(Duration::from_secs(30)));
    assert_eq!(asked("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    assert_eq!(asked("-1"), None);
    assert_eq!(retry_after(&reqwest::header::HeaderMap::new()), None);
    let waits: Vec<u64> = (1..=6).map(|a| backoff(a).as_millis() as u64).collect();
    assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000]);
    assert_eq!(backoff(u32::MAX), Duration::from_secs(5));
}

/// A JSON array of events (the `POST /v1/events` body, pretty-printed over many lines) in
/// an NDJSON import is refused whole before anything is stored, naming the conversion
/// (attack of session 44: "10 lines, 1 events parsed, 1 stored, malformed_json 9", exit 0).
/// A BOM and blank lines before the `[` do not hide it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_array_file_is_refused_whole_as_not_ndjson() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("ev1.json");
    let event = |id: &str| format!("  {{\"event_id\": \"{id}\", \"code\": \"abc\", \"ts\": 1710052200000, \"ip\": \"192.0.2.1\", \"user_agent\": \"x\"}}");
    for prefix in ["", "\u{feff}\n  \n"] {
        std::fs::write(&file, format!("{prefix}[\n{},\n{}\n]\n", event("a1"), event("a2"))).expect("write");
        let mut args = import_args(file.clone());
        let data = tmp.path().join("d");
        args.data_dir = Some(data.clone());
        let line = if prefix.is_empty() { 1 } else { 3 };
        let e = run(&args).await.expect_err("refused");
        assert_eq!(
            format!("{e:#}"),
            format!(
                "\"{f}\" holds a JSON array (line {line} starts with '['), the body shape of POST /v1/events; `sluice import` reads NDJSON, \
                 one event object per line: convert it first, e.g. `jq -c '.[]' {f} > events.ndjson`, and import that",
                f = file.display()
            )
        );
        assert!(!data.exists(), "nothing stored, nothing left behind");
    }
}

/// Attack of session 51: `import --data-dir` into the data dir of a running server whose
/// secret is configured (no `visitor_secret` file) created the file before it found the click
/// log locked, and left it; a later import without the server's configuration then keyed
/// visitors with it (one visitor counted twice). An import into a data dir that holds a
/// click log but no secret (file or configured) is now refused before anything in it is
/// opened or created, naming the fix; with the server's configuration, a held log is refused
/// as before, and nothing is written either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_into_a_held_or_secretless_data_dir_creates_no_visitor_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join(crate::visitor_secret::FILE_NAME);
    let log_file = dir.path().join(CLICK_LOG_FILE_NAME);
    let held = ClickLog::open(dir.path()).expect("open the log, as a server does");
    let log_bytes = std::fs::read(&log_file).expect("log bytes");
    let mut args = import_args(fixture("events.ndjson"));
    args.data_dir = Some(dir.path().to_path_buf());
    let secretless = format!(
        "\"{}\" holds a click log but no visitor_secret file, and no [visitor] secret is configured: the server that writes this data dir \
         keys visitor ids with its [visitor] secret, so import with its configuration (--config, or SLUICE__VISITOR__SECRET); a new \
         secret would count its returning visitors as new uniques",
        dir.path().display()
    );
    assert_eq!(run(&args).await.expect_err("no secret").to_string(), secretless);
    let cfg_file = dir.path().join("sluice.toml");
    std::fs::write(&cfg_file, format!("[visitor]\nsecret = \"{SECRET}\"\n")).expect("write config");
    let mut with_config = args.clone();
    with_config.config = Some(cfg_file);
    let err = run(&with_config).await.expect_err("the log is held");
    assert!(format!("{err:#}").contains("then import with --target"), "{err:#}");
    assert!(!secret_file.exists(), "a refused import created the visitor secret");
    assert_eq!(std::fs::read(&log_file).expect("log bytes"), log_bytes, "a refused import rewrote the log");
    drop(held);
    // (Closing it writes the file.)
    let log_bytes = std::fs::read(&log_file).expect("log bytes");
    assert_eq!(run(&args).await.expect_err("still no secret").to_string(), secretless);
    assert_eq!(std::fs::read(&log_file).expect("log bytes"), log_bytes, "a refused import rewrote the log");
    // With the server's configuration, the import stores its events, keyed with that secret.
    assert_eq!(run(&with_config).await.expect("import").accepted, 3);
    assert!(!secret_file.exists(), "a configured secret is not written to the data dir");
}

/// Attack of session 52: two imports into one new data dir at once; the one that found the
/// click log held by the other removed the log and the visitor secret the other had just
/// stored its events with (it had looked at the dir while it did not exist yet). A log held
/// by another process now means the dir is in use: the refused import removes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_refused_because_another_holds_the_new_data_dirs_log_removes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("new");
    let mut args = import_args(fixture("events.ndjson"));
    args.data_dir = Some(dir.clone());
    let flags = |d: &std::path::Path| FlagOverrides { data_dir: Some(d.to_path_buf()), ..FlagOverrides::default() };
    let cfg = Config::load(None, &flags(&dir)).expect("config");
    // This import looks first (no dir yet) ...
    let before = Before::look(&dir);
    // ... then the other creates the dir and holds its log, as an import storing its events does.
    std::fs::create_dir_all(&dir).expect("mkdir");
    let held = ClickLog::open(&dir).expect("open the log");
    let secret = dir.join(crate::visitor_secret::FILE_NAME);
    std::fs::write(&secret, SECRET).expect("secret");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let mut report = ImportReport::default();
    let err = import_into(&args, &cfg, ImportFormat::Ndjson, &mut report, Some(&before)).await.expect_err("the log is held");
    assert!(format!("{err:#}").contains("another process has it open"), "{err:#}");
    assert!(dir.join(CLICK_LOG_FILE_NAME).exists() && secret.exists(), "the other import's log and secret stay");
    drop(held);
    // Without a holder, a failed open of a dir this import created is still cleaned up.
    let gone = tmp.path().join("gone");
    let before = Before::look(&gone);
    std::fs::create_dir_all(&gone).expect("mkdir");
    std::fs::write(gone.join(crate::visitor_secret::FILE_NAME), "not a secret").expect("bad secret");
    std::fs::set_permissions(gone.join(crate::visitor_secret::FILE_NAME), std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    args.data_dir = Some(gone.clone());
    let cfg = Config::load(None, &flags(&gone)).expect("config");
    import_into(&args, &cfg, ImportFormat::Ndjson, &mut report, Some(&before)).await.expect_err("a bad secret");
    assert!(!gone.exists(), "removed with what this import made");
}
