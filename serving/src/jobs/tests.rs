//! Report jobs over the real dataflow: create → poll → download equals the synchronous
//! export; restarts (re-queue, interrupted-too-often, expiry, stray files); the readiness
//! gate; `Idempotency-Key`; every error code.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use sluice_dataflows::clock::ManualClock;

use super::store::{JobRecord, JobSpec, JobStore};
use super::{JobState, JobsConfig};
use crate::export::ExportFormat;
use crate::reports::ReportsState;
use crate::reports::test_harness::*;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const CAFE_APP: &str = "Café, Zürich/3 CFNetwork/1494.0.7 Darwin/23.4.0";
pub(super) const NOW: &str = "2024-06-02T00:00:00Z";
const RANGE: &str = r#""from": "2024-06-01T00:00:00+05:30", "to": "2024-06-02T00:00:00+05:30", "bucket": "hour", "tz": "Asia/Kolkata""#;
const RANGE_Q: &str = "from=2024-06-01T00:00:00%2B05:30&to=2024-06-02T00:00:00%2B05:30&bucket=hour&tz=Asia/Kolkata";

fn input() -> Vec<sluice_schemas::ClickEvent> {
    vec![
        click(1, "ab", ms("2024-06-01T03:31:00Z"), 1, CHROME, Some("81.2.69.0"), Some("ios-app://a,\"b\"/x")),
        click(2, "ab", ms("2024-06-01T05:00:00Z"), 2, CAFE_APP, Some("8.8.8.0"), None),
        click(3, "cd", ms("2024-06-01T04:00:00Z"), 3, CHROME, Some("8.8.8.0"), Some("https://www.google.com/")),
        click(4, "cd", ms("2024-06-01T04:10:00Z"), 3, CHROME, Some("8.8.8.0"), Some("https://www.google.com/")),
    ]
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("json body")
}

async fn post(state: &ReportsState, body: &str, key: Option<&str>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let headers: Vec<(&str, &str)> = key.map(|k| vec![("idempotency-key", k)]).unwrap_or_default();
    let (st, h, b) = send_with(state, "POST", "/v1/reports/export", &headers, Some(("application/json", body))).await;
    (st, h, json_of(&b))
}

async fn wait_done(state: &ReportsState, id: &str) -> Value {
    wait_until(Duration::from_secs(30), "the job to finish", || async {
        let (st, _, b) = send(state, "GET", &format!("/v1/jobs/{id}"), None).await;
        assert_eq!(st, StatusCode::OK);
        let v = json_of(&b);
        matches!(v["status"].as_str(), Some("succeeded" | "failed")).then_some(v)
    })
    .await
}

async fn download(state: &ReportsState, id: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let (st, h, b) = send(state, "GET", &format!("/v1/jobs/{id}/download"), None).await;
    (st, h, String::from_utf8(b.to_vec()).expect("utf-8"))
}

async fn sync_export(state: &ReportsState, query: &str) -> String {
    let (st, _, b) = send(state, "GET", &format!("/v1/stats/export?{query}"), None).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    String::from_utf8(b.to_vec()).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_and_its_file_equals_the_synchronous_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab", "cd", "quiet"], ms(NOW), dir.path()).await;
    h.ingest(input());
    let state = h.state();

    // `["referrer_domain"]` is `"referrer_domain"`.
    let (st, headers, v) = post(state, &format!(r#"{{"codes": ["ab"], {RANGE}, "dimensions": ["referrer_domain"]}}"#), None).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().expect("job_id").to_owned();
    assert_eq!(headers["location"], format!("/v1/jobs/{id}").as_str());
    assert_eq!(v["created_at"], "2024-06-02T00:00:00Z");
    assert_eq!((v["from"].as_str(), v["to"].as_str()), (Some("2024-05-31T18:30:00Z"), Some("2024-06-01T18:30:00Z")));
    let done = wait_done(state, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["rows"], 2);
    assert_eq!(done["download"], format!("/v1/jobs/{id}/download").as_str());
    assert_eq!(done["finished_at"], "2024-06-02T00:00:00Z");
    assert!(done.get("error").is_none());

    let want = sync_export(state, &format!("code=ab&{RANGE_Q}&dimensions=referrer_domain")).await;
    assert_eq!(
        want,
        "bucket,code,referrer_domain,clicks,uniques\r\n\
         2024-06-01T09:00:00+05:30,ab,(invalid),1,1\r\n\
         2024-06-01T10:00:00+05:30,ab,(direct),1,1\r\n"
    );
    let (st, headers, got) = download(state, &id).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got, want);
    // UUIDs are case-insensitive (RFC 9562): the uppercase spelling is the same job.
    let (st, _, b) = send(state, "GET", &format!("/v1/jobs/{}", id.to_ascii_uppercase()), None).await;
    assert_eq!((st, json_of(&b)), (StatusCode::OK, done.clone()));
    assert_eq!(download(state, &id.to_ascii_uppercase()).await.2, want);
    assert_eq!(done["bytes"], want.len());
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8; header=present");
    assert_eq!(headers["content-length"], want.len().to_string().as_str());
    assert_eq!(headers["content-disposition"], "attachment; filename=\"sluice-ab-hour-20240531T1830Z-20240601T1830Z.csv\"");
    let path = h.state().jobs().expect("runner").dir().join(format!("{id}.csv"));
    assert!(path.is_file());
    // A file changed on disk since (newcomer, session 18: a 200 cut short) is 410, and a
    // file of the right size again is served.
    std::fs::write(&path, b"garbage\n").expect("overwrite");
    let (st, _, b) = send(state, "GET", &format!("/v1/jobs/{id}/download"), None).await;
    let v = json_of(&b);
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::GONE, Some("export_gone")), "{v}");
    assert_eq!(
        v["error"]["message"],
        format!("the export file changed on disk since the job wrote it (8 bytes, the job wrote {}): run the export again", want.len()).as_str()
    );
    std::fs::write(&path, want.as_bytes()).expect("put back");
    assert_eq!(download(state, &id).await.2, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_codes_and_all_links_concatenate_per_code_exports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab", "cd", "quiet"], ms(NOW), dir.path()).await;
    h.ingest(input());
    let state = h.state();
    let ab = sync_export(state, &format!("code=ab&{RANGE_Q}&format=ndjson")).await;
    let cd = sync_export(state, &format!("code=cd&{RANGE_Q}&format=ndjson")).await;
    let quiet = sync_export(state, &format!("code=quiet&{RANGE_Q}&format=ndjson")).await;
    assert_eq!((ab.lines().count(), cd.lines().count(), quiet.len()), (2, 1, 0));

    // Codes are sorted and deduplicated.
    let (st, _, v) = post(state, &format!(r#"{{"codes": ["cd", "ab", "cd"], {RANGE}, "format": "ndjson"}}"#), None).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(v["codes"], json!(["ab", "cd"]));
    let id = v["job_id"].as_str().expect("id").to_owned();
    assert_eq!(wait_done(state, &id).await["rows"], 3);
    let (_, headers, got) = download(state, &id).await;
    assert_eq!(got, format!("{ab}{cd}"));
    assert_eq!(headers["content-disposition"], "attachment; filename=\"sluice-report-hour-20240531T1830Z-20240601T1830Z.ndjson\"");

    // All links (ab, cd, quiet), as one JSON array.
    let (st, _, v) = post(state, &format!(r#"{{"all_links": true, {RANGE}, "format": "json"}}"#), None).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(v["codes"], Value::Null);
    let id = v["job_id"].as_str().expect("id").to_owned();
    assert_eq!(wait_done(state, &id).await["status"], "succeeded");
    let (_, headers, got) = download(state, &id).await;
    assert_eq!(headers["content-type"], "application/json");
    let rows: Vec<&str> = ab.lines().chain(cd.lines()).collect();
    assert_eq!(got, format!("[\n{}\n]\n", rows.join(",\n")));
}

/// Posts a job for `ab` and checks it is still queued (not started, no download) 300 ms
/// later; returns its id.
async fn post_and_see_it_held(state: &ReportsState) -> String {
    let (_, _, v) = post(state, &format!(r#"{{"codes": ["ab"], {RANGE}}}"#), None).await;
    let id = v["job_id"].as_str().expect("id").to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, _, b) = send(state, "GET", &format!("/v1/jobs/{id}"), None).await;
    let v = json_of(&b);
    assert_eq!((v["status"].as_str(), &v["download"], &v["started_at"]), (Some("queued"), &Value::Null, &Value::Null));
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readiness_gate_holds_jobs_queued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(ms(NOW)));
    let mut h = Harness::pipeline(&["ab"], clock.clone(), clock).await;
    let ready = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&ready);
    h.state = Some(h.reports(dir.path(), JobsConfig { ready: Some(Arc::new(move || gate.load(Ordering::Acquire))), ..Default::default() }));
    h.ingest(input());
    let state = h.state();
    let id = post_and_see_it_held(state).await;
    let (st, _, b) = send(state, "GET", &format!("/v1/jobs/{id}/download"), None).await;
    assert_eq!((st, error_code(&b).as_str()), (StatusCode::CONFLICT, "job_not_ready"));
    ready.store(true, Ordering::Release);
    assert_eq!(wait_done(state, &id).await["status"], "succeeded");
}

/// Finding (newcomer, session 21): a job created right after a click (answered with its
/// redirect) ran at once on views that did not hold the click yet and exported nothing. A job
/// now waits until the views hold every click logged before its creation (bounded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waits_until_the_views_hold_the_clicks_logged_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(ms(NOW)));
    let mut h = Harness::pipeline(&["ab"], clock.clone(), clock).await;
    let covered = Arc::new(AtomicI64::new(ms(NOW) - 1_000));
    let seen = Arc::clone(&covered);
    let config = JobsConfig { covered_until: Some(Arc::new(move || Some(seen.load(Ordering::Acquire)))), ..Default::default() };
    h.state = Some(h.reports(dir.path(), config));
    h.ingest(input());
    let state = h.state();
    let id = post_and_see_it_held(state).await; // the views are 1 s behind its creation
    covered.store(ms(NOW), Ordering::Release);
    assert_eq!(wait_done(state, &id).await["status"], "succeeded");
    assert_eq!(download(state, &id).await.2, sync_export(state, &format!("code=ab&{RANGE_Q}")).await);

    // Views that never catch up: the job runs after the bounded wait.
    drop(h.state.take());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = JobsConfig { covered_until: Some(Arc::new(|| None)), freshness_wait: Duration::from_millis(200), ..Default::default() };
    h.state = Some(h.reports(dir.path(), config));
    let (_, _, v) = post(h.state(), &format!(r#"{{"codes": ["ab"], {RANGE}}}"#), None).await;
    let id = v["job_id"].as_str().expect("id").to_owned();
    assert_eq!(wait_done(h.state(), &id).await["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_the_runner_keeps_queued_jobs_and_releases_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(ms(NOW)));
    let mut h = Harness::pipeline(&["ab"], clock.clone(), clock).await;
    h.ingest(input());
    // Never ready: the runner waits on the gate when the stop comes.
    h.state = Some(h.reports(dir.path(), JobsConfig { ready: Some(Arc::new(|| false)), ..Default::default() }));
    let (_, _, v) = post(h.state(), &format!(r#"{{"codes": ["ab"], {RANGE}}}"#), None).await;
    let id = v["job_id"].as_str().expect("id").to_owned();
    let jobs = h.state().jobs().expect("runner").clone();
    tokio::time::timeout(Duration::from_secs(5), jobs.stop()).await.expect("the stop does not wait for the gate");
    jobs.stop().await; // idempotent
    drop((jobs, h.state.take()));
    {
        // The job table is free again (redb refuses a second open while one is live).
        let table = JobStore::open(dir.path()).expect("the job table reopens in the same process");
        let rec = table.get(&id).expect("get").expect("record");
        assert_eq!((rec.status, rec.attempts), (JobState::Queued, 0));
    }
    h.state = Some(h.reports(dir.path(), JobsConfig::default()));
    assert_eq!(wait_done(h.state(), &id).await["status"], "succeeded");
    let want = sync_export(h.state(), &format!("code=ab&{RANGE_Q}")).await;
    assert_eq!(download(h.state(), &id).await.2, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_interrupted_by_a_stop_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(ms(NOW)));
    let h = Harness::pipeline(&["ab"], clock.clone(), clock).await;
    h.ingest(input());
    let plan = super::runner::plan_of(&record("x", JobState::Running, 1, None).spec).expect("plan");
    let (part, done) = (dir.path().join("x.part"), dir.path().join("x.csv"));
    let stopping = AtomicBool::new(true);
    let e = super::runner::write_export(&crate::export::RowSource::new(h.handle.views().clone(), None), &plan, &["ab".to_owned()], &part, &done, &stopping)
        .expect_err("stopped");
    assert_eq!(e.code, "job_stopped");
    assert!(!part.exists() && !done.exists());
    stopping.store(false, Ordering::Release);
    let (rows, bytes) =
        super::runner::write_export(&crate::export::RowSource::new(h.handle.views().clone(), None), &plan, &["ab".to_owned()], &part, &done, &stopping)
            .expect("written");
    assert_eq!((rows, bytes), (2, std::fs::metadata(&done).expect("file").len()));
    assert!(!part.exists());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

pub(super) fn record(id: &str, status: JobState, attempts: u32, finished_at_ms: Option<i64>) -> JobRecord {
    JobRecord {
        job_id: id.to_owned(),
        status,
        created_at_ms: ms("2024-06-01T23:00:00Z"),
        started_at_ms: Some(ms("2024-06-01T23:00:01Z")),
        finished_at_ms,
        rows: 0,
        bytes: 0,
        attempts,
        error: None,
        spec: JobSpec {
            codes: Some(vec!["ab".into()]),
            from_ms: ms("2024-05-31T18:30:00Z"),
            to_ms: ms("2024-06-01T18:30:00Z"),
            bucket: "hour".into(),
            tz: "Asia/Kolkata".into(),
            dimensions: "referrer_domain".into(),
            include_bots: false,
            format: ExportFormat::Csv,
            escape_formulas: false,
        },
    }
}

#[test]
fn jobs_survive_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(ms(NOW)));
    // "Process" 1: a job succeeds.
    let rt = runtime();
    let h = rt.block_on(Harness::pipeline(&["ab", "cd"], clock.clone(), clock.clone()));
    h.ingest(input());
    let (done_id, want) = rt.block_on(async {
        let state = h.reports(dir.path(), JobsConfig::default());
        let (_, _, v) = post(&state, &format!(r#"{{"codes": ["ab"], {RANGE}, "dimensions": "referrer_domain"}}"#), Some("k-1")).await;
        let id = v["job_id"].as_str().expect("id").to_owned();
        assert_eq!(wait_done(&state, &id).await["status"], "succeeded");
        (id, sync_export(&state, &format!("code=ab&{RANGE_Q}&dimensions=referrer_domain")).await)
    });
    drop(rt); // the runner and the job table close with the runtime

    // The process "dies" during two jobs: one on its first attempt, one on its last allowed;
    // an old finished job is past retention; a partial file is left behind.
    let (running, exhausted, old) = ("0190a6e0-0000-7000-8000-000000000001", "0190a6e0-0000-7000-8000-000000000002", "0190a6e0-0000-7000-8000-000000000003");
    {
        let table = JobStore::open(dir.path()).expect("open table");
        table.put(&record(running, JobState::Running, 1, None)).expect("put");
        table.put(&record(exhausted, JobState::Running, 3, None)).expect("put");
        table.put(&record(old, JobState::Succeeded, 1, Some(ms("2024-05-20T00:00:00Z")))).expect("put");
    }
    std::fs::write(dir.path().join(format!("{running}.part")), b"half a fi").expect("part");
    std::fs::write(dir.path().join(format!("{old}.csv")), b"old").expect("old file");

    // "Process" 2.
    let rt = runtime();
    rt.block_on(async {
        let state = h.reports(dir.path(), JobsConfig::default());
        // The finished job is still there and downloadable.
        let (_, _, v) = send(&state, "GET", &format!("/v1/jobs/{done_id}"), None).await;
        assert_eq!(json_of(&v)["status"], "succeeded");
        assert_eq!(download(&state, &done_id).await.2, want);
        // The interrupted job runs again from scratch.
        let v = wait_done(&state, running).await;
        assert_eq!((v["status"].as_str(), v["rows"].as_u64()), (Some("succeeded"), Some(2)));
        assert_eq!(download(&state, running).await.2, want);
        assert!(!dir.path().join(format!("{running}.part")).exists());
        // The one interrupted too often failed.
        let (_, _, b) = send(&state, "GET", &format!("/v1/jobs/{exhausted}"), None).await;
        let v = json_of(&b);
        assert_eq!((v["status"].as_str(), v["error"]["code"].as_str()), (Some("failed"), Some("job_interrupted")));
        assert_eq!(v["download"], Value::Null);
        // The expired one is gone with its file.
        let (st, _, b) = send(&state, "GET", &format!("/v1/jobs/{old}"), None).await;
        assert_eq!((st, error_code(&b).as_str()), (StatusCode::NOT_FOUND, "not_found"));
        assert!(!dir.path().join(format!("{old}.csv")).exists());
        // The Idempotency-Key still answers the first job after the restart.
        let (st, headers, v) = post(&state, &format!(r#"{{"codes": ["ab"], {RANGE}, "dimensions": "referrer_domain"}}"#), Some("k-1")).await;
        assert_eq!((st, v["job_id"].as_str()), (StatusCode::ACCEPTED, Some(done_id.as_str())));
        assert_eq!(headers["idempotent-replayed"], "true");
    });
    let table_rec = {
        drop(rt);
        JobStore::open(dir.path()).expect("reopen").get(running).expect("get").expect("record")
    };
    assert_eq!(table_rec.attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_the_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab"], ms(NOW), dir.path()).await;
    let state = h.state();
    let body = format!(r#"{{"codes": ["ab"], {RANGE}}}"#);
    let (st, _, first) = post(state, &body, Some("key-1")).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    wait_done(state, first["job_id"].as_str().expect("id")).await;
    // Same key, same body (other key order and spacing): the same job, in its current state.
    let reordered = format!(r#"{{{RANGE},"codes":["ab"]}}"#);
    let (st, headers, again) = post(state, &reordered, Some("key-1")).await;
    assert_eq!((st, &again["job_id"], again["status"].as_str()), (StatusCode::ACCEPTED, &first["job_id"], Some("succeeded")));
    assert_eq!(headers["idempotent-replayed"], "true");
    // Same key, other body.
    let (st, _, v) = post(state, &format!(r#"{{"codes": ["ab"], {RANGE}, "format": "json"}}"#), Some("key-1")).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused")));
    // Another key: another job.
    let (_, _, other) = post(state, &body, Some("key-2")).await;
    assert_ne!(other["job_id"], first["job_id"]);
    let (st, _, v) = post(state, &body, Some("bad key with spaces")).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_idempotency_key")));
}

/// Two `Idempotency-Key` headers on one request: 400 `duplicate_header`, no job (the
/// handler's own check; the served router refuses it before, `single_headers`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_given_twice_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab"], ms(NOW), dir.path()).await;
    let state = h.state();
    let body = format!(r#"{{"codes": ["ab"], {RANGE}}}"#);
    let headers = [("idempotency-key", "key-1"), ("idempotency-key", "key-2")];
    let (st, _, b) = send_with(state, "POST", "/v1/reports/export", &headers, Some(("application/json", &body))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(&b),
        json!({"error": {"code": "duplicate_header", "message": "the Idempotency-Key header appears 2 times; send it exactly once", "details": {"header": "Idempotency-Key", "count": 2}}})
    );
    // key-1 was not used: with it, a new job is created (not a replay).
    let (st, headers, v) = post(state, &body, Some("key-1")).await;
    assert_eq!((st, headers.get("idempotent-replayed")), (StatusCode::ACCEPTED, None), "{v}");
}

/// Without a long-term store, a report over a range the views no longer hold is refused when
/// it is created, with exactly the error `GET /v1/stats/export` gives (code, message and
/// details), instead of a 202 and a job that can only fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_the_views_cannot_answer_is_refused_up_front_like_the_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab"], ms("2024-06-10T00:00:00Z"), dir.path()).await;
    h.ingest(input());
    // Four days later: minute rows before 2024-06-03 are evicted (48 h minute retention).
    h.ingest(vec![click(99, "ab", ms("2024-06-05T00:00:00Z"), 9, CHROME, Some("8.8.8.0"), None)]);
    let state = h.state();
    let retained = json!({"minute": "2024-06-03T00:00:00Z", "hour": "2023-05-02T00:00:00Z", "day": "2023-05-02T00:00:00Z"});
    let cases = [
        // An unaligned edge older than the minute rows (hour buckets).
        (
            r#"{"codes": ["ab"], "from": "2024-06-01T03:31:00Z", "to": "2024-06-01T06:00:00Z", "bucket": "hour"}"#,
            "code=ab&from=2024-06-01T03:31:00Z&to=2024-06-01T06:00:00Z&bucket=hour",
            "the range's edges are not whole quarter hours and minute rows before 2024-06-03T00:00:00Z are no longer held in memory, and no long-term store (ClickHouse) is configured; align from and to to 15 minutes (:00, :15, :30, :45) or start the range at or after 2024-06-03T00:00:00Z",
            "2024-06-01T03:31:00Z",
        ),
        // Minute buckets before the minute rows, for every link (all_links).
        (
            r#"{"all_links": true, "from": "2024-06-01T03:00:00Z", "to": "2024-06-01T04:00:00Z", "bucket": "minute", "format": "ndjson"}"#,
            "code=ab&from=2024-06-01T03:00:00Z&to=2024-06-01T04:00:00Z&bucket=minute&format=ndjson",
            "clicks before 2024-06-03T00:00:00Z are no longer held in memory for bucket=minute and no long-term store (ClickHouse) is configured; start the range at or after it",
            "2024-06-01T03:00:00Z",
        ),
    ];
    for (body, query, message, from) in cases {
        let (st, _, v) = post(state, body, None).await;
        let want = json!({"error": {"code": "range_not_retained", "message": message, "details": {"from": from, "retained_from": retained}}});
        assert_eq!((st, &v), (StatusCode::BAD_REQUEST, &want), "{body}");
        let (st, _, b) = send(state, "GET", &format!("/v1/stats/export?{query}"), None).await;
        assert_eq!((st, json_of(&b)), (StatusCode::BAD_REQUEST, want), "{query}");
    }
    assert_eq!(h.state().jobs().expect("runner").records().expect("records").len(), 0, "no job was stored");
    // Aligned to quarter hours, the same range is answered from the 15-minute rows.
    let (st, _, v) = post(state, r#"{"codes": ["ab"], "from": "2024-06-01T03:30:00Z", "to": "2024-06-01T06:00:00Z", "bucket": "hour"}"#, None).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let v = wait_done(state, v["job_id"].as_str().expect("id")).await;
    assert_eq!(v["status"], "succeeded", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_unknown_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab", "cd"], ms(NOW), dir.path()).await;
    let state = h.state();
    let many: Vec<String> = (0..1001).map(|i| format!("c{i}")).collect();
    let many = serde_json::to_string(&many).expect("json");
    let cases: Vec<(String, StatusCode, &str)> = vec![
        ("{}".into(), StatusCode::BAD_REQUEST, "invalid_codes"),
        (r#"{"codes": []}"#.into(), StatusCode::BAD_REQUEST, "invalid_codes"),
        (r#"{"codes": ["ab"], "all_links": true}"#.into(), StatusCode::BAD_REQUEST, "invalid_codes"),
        (r#"{"all_links": false}"#.into(), StatusCode::BAD_REQUEST, "invalid_codes"),
        (format!(r#"{{"codes": {many}}}"#), StatusCode::BAD_REQUEST, "invalid_codes"),
        (r#"{"codes": ["ab"], "format": "xml"}"#.into(), StatusCode::BAD_REQUEST, "invalid_format"),
        (r#"{"codes": ["ab"], "from": "2024-06-02T00:00:00Z", "to": "2024-06-01T00:00:00Z"}"#.into(), StatusCode::BAD_REQUEST, "invalid_range"),
        (r#"{"codes": ["ab"], "tz": "Nowhere/Else"}"#.into(), StatusCode::BAD_REQUEST, "unknown_timezone"),
        (r#"{"codes": ["ab"], "tz": ""}"#.into(), StatusCode::BAD_REQUEST, "unknown_timezone"),
        (r#"{"codes": ["ab"], "dimensions": "os,browser"}"#.into(), StatusCode::BAD_REQUEST, "invalid_dimensions"),
        // An array is the comma-separated string: the same validation.
        (r#"{"codes": ["ab"], "dimensions": ["os", "browser"]}"#.into(), StatusCode::BAD_REQUEST, "invalid_dimensions"),
        (r#"{"codes": ["ab"], "dimensions": ["country", 1]}"#.into(), StatusCode::BAD_REQUEST, "invalid_request"),
        // One name per element (the string form's "" and "a,b" are not array elements).
        (r#"{"codes": ["ab"], "dimensions": [""]}"#.into(), StatusCode::BAD_REQUEST, "invalid_request"),
        (r#"{"codes": ["ab"], "dimensions": ["country", " "]}"#.into(), StatusCode::BAD_REQUEST, "invalid_request"),
        (r#"{"codes": ["ab"], "dimensions": ["country,device"]}"#.into(), StatusCode::BAD_REQUEST, "invalid_request"),
        // A JSON string is not form-decoded: a space is no '+'.
        (r#"{"codes": ["ab"], "tz": "Etc/GMT 5"}"#.into(), StatusCode::BAD_REQUEST, "unknown_timezone"),
        (r#"{"codes": ["ab"], "dimensions": 5}"#.into(), StatusCode::BAD_REQUEST, "invalid_request"),
        (r#"{"codes": ["ab"], "bucket": "minute", "from": "2024-05-01T00:00:00Z"}"#.into(), StatusCode::BAD_REQUEST, "range_too_long"),
        (r#"{"codes": ["ab"], "limit": 3}"#.into(), StatusCode::BAD_REQUEST, "unknown_field"),
        (r#"{"codes": "ab"}"#.into(), StatusCode::BAD_REQUEST, "invalid_request"),
        (r#"{"codes": ["ab""#.into(), StatusCode::BAD_REQUEST, "malformed_json"),
        (r#"{"codes": ["ab", "zz", "yy"]}"#.into(), StatusCode::NOT_FOUND, "not_found"),
    ];
    for (body, status, code) in &cases {
        let (st, _, b) = send(state, "POST", "/v1/reports/export", Some(("application/json", body))).await;
        assert_eq!((st, error_code(&b).as_str()), (*status, *code), "{body}");
    }
    // Too many codes says how many, and the most (not the message of an empty list).
    let (_, _, b) = send(state, "POST", "/v1/reports/export", Some(("application/json", &format!(r#"{{"codes": {many}}}"#)))).await;
    let b: serde_json::Value = serde_json::from_slice(&b).expect("json");
    assert_eq!(
        b["error"],
        json!({"code": "invalid_codes", "message": "1001 distinct link codes: a report takes at most 1000 (or \"all_links\": true)", "details": {"codes": 1001, "max_codes": 1000}})
    );
    // A body that is not a JSON object is never read by position (`[["ab"]]` as
    // `{"codes": ["ab"]}`): 400 invalid_request, and no job.
    for (body, got) in [
        (r#"[["ab"]]"#, "an array"),
        (r#"[["hello"]]"#, "an array"),
        ("[]", "an array"),
        (r#""ab""#, "a string"),
        ("7", "a number"),
        ("false", "a boolean"),
        ("null", "null"),
    ] {
        let (st, _, b) = send(state, "POST", "/v1/reports/export", Some(("application/json", body))).await;
        let want = json!({"error": {"code": "invalid_request", "message": format!("request body must be a JSON object, got {got}")}});
        assert_eq!((st, json_of(&b)), (StatusCode::BAD_REQUEST, want), "{body}");
        let (st, _, b) = send_with(state, "POST", "/v1/reports/export", &[("idempotency-key", "k-shape")], Some(("application/json", body))).await;
        assert_eq!((st, error_code(&b).as_str()), (StatusCode::BAD_REQUEST, "invalid_request"), "{body}");
    }
    let (_, _, b) = send(state, "POST", "/v1/reports/export", Some(("application/json", r#"{"codes": ["ab", "zz", "yy"]}"#))).await;
    assert_eq!(json_of(&b)["error"]["details"]["codes"], json!(["yy", "zz"]));
    assert_eq!(json_of(&b)["error"]["details"]["unknown_count"], json!(2));
    // 1,000 long unknown codes: the body names the first 20 (sorted, each cut to 256 bytes)
    // and counts them all, so it stays small.
    let many: Vec<String> = (0..1000).map(|i| format!("{i:04}{}", "x".repeat(300))).collect();
    let (st, _, b) = send(state, "POST", "/v1/reports/export", Some(("application/json", &json!({ "codes": many }).to_string()))).await;
    assert_eq!((st, error_code(&b).as_str()), (StatusCode::NOT_FOUND, "not_found"));
    let details = &json_of(&b)["error"]["details"];
    let want: Vec<String> = many[..20].iter().map(|c| c[..256].to_owned()).collect();
    assert_eq!((&details["codes"], &details["unknown_count"], &details["truncated"]), (&json!(want), &json!(1000), &json!(true)));
    assert!(b.len() < 8 * 1024, "{} bytes", b.len());
    let (st, _, b) = send(state, "POST", "/v1/reports/export", Some(("text/plain", r#"{"codes": ["ab"]}"#))).await;
    assert_eq!((st, error_code(&b).as_str()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
    for uri in ["/v1/jobs/0190a6e0-0000-7000-8000-00000000beef", "/v1/jobs/not-a-job", "/v1/jobs/0190a6e0-0000-7000-8000-00000000beef/download"] {
        let (st, _, b) = send(state, "GET", uri, None).await;
        assert_eq!((st, error_code(&b).as_str()), (StatusCode::NOT_FOUND, "not_found"), "{uri}");
    }
    // No job was created by any of the refused requests.
    assert!(state.jobs().expect("runner").records().expect("records").is_empty());
}

/// The 1,000-code limit counts distinct codes: one code named 1,001 times (or with spaces
/// around it) is a report of one code, 202; 1,001 distinct codes stay 400 `invalid_codes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_codes_count_once_toward_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["g1"], ms(NOW), dir.path()).await;
    let state = h.state();
    let mut repeated: Vec<&str> = vec!["g1"; 1001];
    repeated.push(" g1 ");
    let (st, _, v) = post(state, &json!({ "codes": repeated }).to_string(), None).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().expect("job_id").to_owned();
    let record = state.jobs().expect("runner").get(&id).await.expect("read").expect("the job");
    assert_eq!(record.spec.codes.as_deref(), Some(&["g1".to_owned()][..]));
    let many: Vec<String> = (0..1001).map(|i| format!("g{i}")).collect();
    let (st, _, v) = post(state, &json!({ "codes": many }).to_string(), None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_codes")), "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.starts_with("1001 distinct link codes: a report takes at most 1000")), "{v}");
}

/// A job id that is not UTF-8 once percent-decoded is 400 `invalid_path` in the JSON error
/// shape (never axum's plain-text "Invalid URL").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_ids_that_are_not_utf8_are_400_invalid_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab"], ms(NOW), dir.path()).await;
    for uri in ["/v1/jobs/%FF", "/v1/jobs/%FF/download", "/v1/jobs/a%C3%28"] {
        let (st, headers, b) = send(h.state(), "GET", uri, None).await;
        assert_eq!((st, headers.get("content-type").and_then(|v| v.to_str().ok())), (StatusCode::BAD_REQUEST, Some("application/json")), "{uri}");
        let v = json_of(&b);
        assert_eq!((v["error"]["code"].as_str(), &v["error"]["details"]), (Some("invalid_path"), &json!({"parameter": "job_id"})), "{uri}: {v}");
    }
}

/// The job routes take no query parameter: an unknown, repeated or non-UTF-8 one is refused
/// like on every `/v1/` route (before the job is looked up), and no job is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_routes_refuse_query_parameters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab"], ms(NOW), dir.path()).await;
    let state = h.state();
    let id = "0190a6e0-0000-7000-8000-00000000beef";
    for (q, want, param) in
        [("foo=1", "unknown_parameter", "foo"), ("limit=1&limit=2", "unknown_parameter", "limit"), ("%FF=1", "invalid_parameter", "\u{FFFD}")]
    {
        for (method, path) in [("POST", "/v1/reports/export".to_owned()), ("GET", format!("/v1/jobs/{id}")), ("GET", format!("/v1/jobs/{id}/download"))] {
            let body = (method == "POST").then_some(("application/json", r#"{"codes": ["ab"]}"#));
            let (st, _, b) = send(state, method, &format!("{path}?{q}"), body).await;
            let v = json_of(&b);
            assert_eq!(
                (st, v["error"]["code"].as_str(), &v["error"]["details"]["parameter"]),
                (StatusCode::BAD_REQUEST, Some(want), &json!(param)),
                "{method} {path}?{q}: {v}"
            );
        }
    }
    assert!(state.jobs().expect("runner").records().expect("records").is_empty());
}
