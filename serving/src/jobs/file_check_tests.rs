//! The job table's file deleted or replaced while the runner has it open (e.g. `exports/`
//! removed while `sluice serve` runs): the job routes answer 503 `jobs_store_unavailable`,
//! [`super::Jobs::store_failure`] names the file and what to do, and a file moved back is
//! used again; an export recreates a missing exports directory.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use sluice_dataflows::clock::ManualClock;

use super::JobsConfig;
use super::runner::{plan_of, write_export};
use super::store::JobSpec;
use crate::export::ExportFormat;
use crate::reports::ReportsState;
use crate::reports::test_harness::*;

const NOW: &str = "2024-06-02T00:00:00Z";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const BODY: &str = r#"{"codes": ["ab"], "from": "2024-06-01T00:00:00Z", "to": "2024-06-02T00:00:00Z", "bucket": "day"}"#;
/// What the CSV export of `ab` over [`BODY`]'s range holds (two clicks, two visitors).
const CSV: &str = "bucket,code,clicks,uniques\r\n2024-06-01T00:00:00Z,ab,2,2\r\n";

fn input() -> Vec<sluice_schemas::ClickEvent> {
    vec![
        click(1, "ab", ms("2024-06-01T03:31:00Z"), 1, CHROME, Some("81.2.69.0"), None),
        click(2, "ab", ms("2024-06-01T05:00:00Z"), 2, CHROME, Some("8.8.8.0"), None),
    ]
}

/// The stored spec of a job posted with [`BODY`] (CSV).
pub(super) fn body_spec() -> JobSpec {
    JobSpec {
        codes: Some(vec!["ab".into()]),
        from_ms: ms("2024-06-01T00:00:00Z"),
        to_ms: ms("2024-06-02T00:00:00Z"),
        bucket: "day".into(),
        tz: "UTC".into(),
        dimensions: String::new(),
        include_bots: false,
        format: ExportFormat::Csv,
        escape_formulas: false,
    }
}

async fn call(state: &ReportsState, method: &str, uri: &str) -> (StatusCode, Value) {
    let body = (method == "POST").then_some(("application/json", BODY));
    let (st, _, b) = send(state, method, uri, body).await;
    (st, if b.is_empty() { Value::Null } else { serde_json::from_slice(&b).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into())) })
}

/// Posts [`BODY`] and waits for the job's end; returns its id and final state.
async fn run_job(state: &ReportsState) -> (String, Value) {
    let (st, v) = call(state, "POST", "/v1/reports/export").await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().expect("job_id").to_owned();
    let done = wait_until(Duration::from_secs(30), "the job to finish", || async {
        let (st, v) = call(state, "GET", &format!("/v1/jobs/{id}")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        matches!(v["status"].as_str(), Some("succeeded" | "failed")).then_some(v)
    })
    .await;
    (id, done)
}

fn unavailable(what: &str) -> Value {
    json!({"error": {"code": "jobs_store_unavailable", "message": format!(
        "export jobs are unavailable: the export job table was {what} while the server runs \
         (/readyz and the server log name the file and what to do); other endpoints work"
    )}})
}

fn failure(table: &std::path::Path, what: &str) -> String {
    format!(
        "jobs_store_unavailable: export job table \"{}\" was {what} while sluice has it open: export jobs are off \
         (503 jobs_store_unavailable; a job stored now would only reach the file sluice opened, which is lost when it stops); \
         restart sluice to use the file at that path: put the old one back there first (e.g. from a backup) to keep its jobs \
         and downloads, or an empty job table is created there",
        table.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_replaced_job_table_is_503_and_a_table_moved_back_works_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exports = dir.path().join("exports");
    let table = exports.join("jobs.redb");
    let clock = Arc::new(ManualClock::new(ms(NOW)));
    let mut h = Harness::pipeline(&["ab"], clock.clone(), clock).await;
    h.ingest(input());
    h.state = Some(h.reports(&exports, JobsConfig { file_check: Duration::from_millis(20), ..Default::default() }));
    let state = h.state();
    let jobs = state.jobs().expect("runner").clone();
    let (first, done) = run_job(state).await;
    assert_eq!((done["status"].as_str(), done["rows"].as_u64()), (Some("succeeded"), Some(1)), "{done}");
    assert_eq!(jobs.store_failure(), None);

    // The whole directory moved away: deleted, as far as the path tells.
    let moved = dir.path().join("exports.moved");
    std::fs::rename(&exports, &moved).expect("move exports/ away");
    assert_eq!(jobs.store_failure(), Some(failure(&table, "deleted or moved away")));
    for (method, uri) in [("POST", "/v1/reports/export".to_owned()), ("GET", format!("/v1/jobs/{first}")), ("GET", format!("/v1/jobs/{first}/download"))] {
        assert_eq!(call(state, method, &uri).await, (StatusCode::SERVICE_UNAVAILABLE, unavailable("deleted or moved away")), "{method} {uri}");
    }
    // Moved back (the same file): jobs work again, without a restart.
    std::fs::rename(&moved, &exports).expect("move exports/ back");
    assert_eq!(jobs.store_failure(), None);
    let (second, done) = run_job(state).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (st, _, b) = send(state, "GET", &format!("/v1/jobs/{second}/download"), None).await;
    assert_eq!((st, String::from_utf8(b.to_vec()).expect("utf-8")), (StatusCode::OK, CSV.to_owned()));

    // Deleted for good, then another file put at the path: replaced.
    std::fs::remove_dir_all(&exports).expect("delete exports/");
    assert_eq!(jobs.store_failure(), Some(failure(&table, "deleted or moved away")));
    assert_eq!(call(state, "GET", &format!("/v1/jobs/{second}")).await, (StatusCode::SERVICE_UNAVAILABLE, unavailable("deleted or moved away")));
    std::fs::create_dir_all(&exports).expect("mkdir exports/");
    std::fs::write(&table, b"not a job table").expect("another file");
    assert_eq!(jobs.store_failure(), Some(failure(&table, "replaced by another file")));
    assert_eq!(call(state, "POST", "/v1/reports/export").await, (StatusCode::SERVICE_UNAVAILABLE, unavailable("replaced by another file")));
    assert_eq!(std::fs::read(&table).expect("read"), b"not a job table", "the other file is left alone");
    assert_eq!(std::fs::read_dir(&exports).expect("ls").count(), 1, "no export file was written meanwhile");
}

/// An export whose directory is gone (removed after the runner started) recreates it and
/// writes the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_recreates_a_missing_exports_directory() {
    let clock = Arc::new(ManualClock::new(ms(NOW)));
    let h = Harness::pipeline(&["ab"], clock.clone(), clock).await;
    h.ingest(input());
    let dir = tempfile::tempdir().expect("tempdir");
    let exports = dir.path().join("exports");
    let spec = body_spec();
    let plan = plan_of(&spec).expect("plan");
    let (part, done) = (exports.join("j.part"), exports.join("j.csv"));
    let got = write_export(&crate::export::RowSource::new(h.handle.views().clone(), None), &plan, &["ab".to_owned()], &part, &done, &AtomicBool::new(false))
        .expect("export");
    assert_eq!(got, (1, CSV.len() as u64));
    assert_eq!(std::fs::read_to_string(&done).expect("the file"), CSV);
    assert!(!part.exists());
}

/// Finding (newcomer, session 18): an export that failed (a full disk) left its `.part`
/// file until the next start. Here the rename into place fails (a directory holds the
/// file's path): the error names it and no `.part` is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_leaves_no_part_file() {
    let clock = Arc::new(ManualClock::new(ms(NOW)));
    let h = Harness::pipeline(&["ab"], clock.clone(), clock).await;
    h.ingest(input());
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = body_spec();
    let (part, done) = (dir.path().join("j.part"), dir.path().join("j.csv"));
    std::fs::create_dir(&done).expect("a directory where the file goes");
    std::fs::write(done.join("x"), b"x").expect("non-empty");
    let source = crate::export::RowSource::new(h.handle.views().clone(), None);
    let e = write_export(&source, &plan_of(&spec).expect("plan"), &["ab".to_owned()], &part, &done, &AtomicBool::new(false)).expect_err("rename fails");
    assert_eq!((e.code, e.message.starts_with("could not rename into place the export file")), ("export_write_failed", true), "{}", e.message);
    assert!(!part.exists(), "the .part file is removed");
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1, "only the blocking directory is left");
}

/// Finding (newcomer, session 18): a job whose start could not be recorded (the job table
/// failed: a full disk) stayed `queued` until a restart. The runner now tries it again:
/// here the table's directory is moved away while the job waits for the readiness gate,
/// the gate opens (the runner fails to read the table), and once the directory is back the
/// job runs to its end without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_table_failed_to_record_runs_once_the_table_works_again() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().expect("tempdir");
    let exports = dir.path().join("exports");
    let clock = Arc::new(ManualClock::new(ms(NOW)));
    let mut h = Harness::pipeline(&["ab"], clock.clone(), clock).await;
    h.ingest(input());
    let ready = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&ready);
    let config = JobsConfig { file_check: Duration::from_millis(20), ready: Some(Arc::new(move || gate.load(Ordering::Acquire))), ..Default::default() };
    h.state = Some(h.reports(&exports, config));
    let state = h.state();
    let jobs = state.jobs().expect("runner").clone();
    let (st, v) = call(state, "POST", "/v1/reports/export").await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().expect("job_id").to_owned();
    let moved = dir.path().join("exports.moved");
    std::fs::rename(&exports, &moved).expect("move exports/ away");
    assert!(jobs.store_failure().is_some());
    ready.store(true, Ordering::Release);
    // The runner takes the job and cannot read or record it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::rename(&moved, &exports).expect("move exports/ back");
    let done = wait_until(Duration::from_secs(30), "the job to finish after the table is back", || async {
        let (st, v) = call(state, "GET", &format!("/v1/jobs/{id}")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        matches!(v["status"].as_str(), Some("succeeded" | "failed")).then_some(v)
    })
    .await;
    assert_eq!((done["status"].as_str(), done["rows"].as_u64()), (Some("succeeded"), Some(1)), "{done}");
    let (st, _, b) = send(state, "GET", &format!("/v1/jobs/{id}/download"), None).await;
    assert_eq!((st, String::from_utf8(b.to_vec()).expect("utf-8")), (StatusCode::OK, CSV.to_owned()));
}
