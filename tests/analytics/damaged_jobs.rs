//! A damaged `exports/jobs.redb` through the real binary: exports are a side feature, so
//! `sluice serve` starts without the export jobs API (503 `jobs_store_unavailable`, an error
//! log naming the file and what to do, `/readyz` listing `export_jobs` as a failed optional
//! dependency) and redirects and stats serve as usual. The same when `exports/` is deleted
//! while `serve` runs (never a 500 `export_write_failed`, never a silent `up`).

use std::process::Stdio;

use serde_json::{Value, json};

use crate::damaged::garble;
use crate::process::Proc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_export_job_table_turns_export_jobs_off_and_the_rest_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Proc::start(dir.path()).await;
    p.create_link("https://example.com/jobs", "dmgj-a").await;
    let r = p.http.post(format!("{}/v1/reports/export", p.base)).json(&json!({"codes": ["dmgj-a"]})).send().await.expect("report");
    assert_eq!(r.status().as_u16(), 202, "a job is stored in the table");
    p.terminate();
    let table = dir.path().join("exports").join("jobs.redb");
    garble(&table, 0, 100);
    let damaged = std::fs::read(&table).expect("read the table");

    let log = dir.path().join("serve.log");
    let p = Proc::start_logged(dir.path(), &[], Stdio::from(std::fs::File::create(&log).expect("log file"))).await;
    let get = |path: &'static str| {
        let (http, url) = (p.http.clone(), format!("{}{path}", p.base));
        async move {
            let r = http.get(url).send().await.expect("get");
            let status = r.status().as_u16();
            (status, r.text().await.expect("body"))
        }
    };
    // Redirects, stats and the synchronous export serve.
    let r = p.http.get(format!("{}/dmgj-a", p.base)).send().await.expect("redirect");
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(get("/v1/stats/summary?limit=1").await.0, 200);
    assert_eq!(get("/v1/stats/export?code=dmgj-a").await.0, 200);
    // The job routes answer 503 jobs_store_unavailable.
    let unavailable = json!({"error": {
        "code": "jobs_store_unavailable",
        "message": "export jobs are unavailable: the export job table could not be opened when the server started (see the server log); other endpoints work"
    }});
    let r = p.http.post(format!("{}/v1/reports/export", p.base)).json(&json!({"codes": ["dmgj-a"]})).send().await.expect("report");
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.json::<Value>().await.expect("json"), unavailable);
    let (status, body) = get("/v1/jobs/0190a6e0-0000-7000-8000-000000000000").await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).expect("json")), (503, unavailable.clone()));
    let (status, body) = get("/v1/jobs/0190a6e0-0000-7000-8000-000000000000/download").await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).expect("json")), (503, unavailable));
    // Ready, with export_jobs failed (optional) and naming the file.
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).expect("json");
    let export_jobs = &ready["dependencies"]["export_jobs"];
    assert_eq!(export_jobs["status"], "failed", "{ready}");
    let error = export_jobs["error"].as_str().expect("error");
    assert!(error.starts_with(&format!("jobs_store_damaged: export job table \"{}\" is damaged and could not be repaired (", table.display())), "{error}");
    let suffix = format!(
        "); export jobs are off until it is fixed. Stop every process using this data dir, move the file aside (e.g. to {}.damaged) \
         and restore it from a backup, or start without it: the export jobs in it and their downloads are forgotten",
        table.display()
    );
    assert!(error.ends_with(&suffix), "{error}");
    p.terminate();
    assert_eq!(std::fs::read(&table).expect("read the table"), damaged, "the damaged table is left as it was");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("the export job table could not be opened: serving without the export jobs API"), "{text}");
    assert!(text.contains(&table.display().to_string()), "the log names the file: {text}");
    assert!(!text.contains("panicked"), "{text}");
}

/// `exports/` (with `jobs.redb`) deleted while `serve` runs: the job routes answer 503
/// `jobs_store_unavailable`, `/readyz` lists `export_jobs` as failed naming the file and what
/// to do, an error is logged within the 2 s check, and redirects go on; a restart starts a
/// new, empty job table and exports work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_exports_directory_turns_export_jobs_off_until_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("serve.log");
    let p = Proc::start_logged(dir.path(), &[], Stdio::from(std::fs::File::create(&log).expect("log file"))).await;
    p.create_link("https://example.com/jobs", "delj-a").await;
    let report = |p: &Proc| p.http.post(format!("{}/v1/reports/export", p.base)).json(&json!({"codes": ["delj-a"]})).send();
    let r = report(&p).await.expect("report");
    assert_eq!(r.status().as_u16(), 202, "a job before the deletion");
    let first = r.json::<Value>().await.expect("json")["job_id"].as_str().expect("id").to_owned();
    let ready = |p: &Proc| {
        let (http, url) = (p.http.clone(), format!("{}/readyz", p.base));
        async move {
            let r = http.get(url).send().await.expect("readyz");
            assert_eq!(r.status().as_u16(), 200, "export jobs are optional");
            r.json::<Value>().await.expect("json")["dependencies"]["export_jobs"].clone()
        }
    };
    assert_eq!(ready(&p).await, json!({"status": "up"}));
    // The first job must be done before the deletion: a job still running then would write
    // its file (recreating the directory), which is not what this test is about.
    let t0 = std::time::Instant::now();
    loop {
        let r = p.http.get(format!("{}/v1/jobs/{first}", p.base)).send().await.expect("job");
        let v = r.json::<Value>().await.expect("json");
        if v["status"] == "succeeded" {
            break;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(30), "the first job did not finish: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let exports = dir.path().join("exports");
    let table = exports.join("jobs.redb");
    std::fs::remove_dir_all(&exports).expect("delete exports/");
    let unavailable = json!({"error": {
        "code": "jobs_store_unavailable",
        "message": "export jobs are unavailable: the export job table was deleted or moved away while the server runs \
                    (/readyz and the server log name the file and what to do); other endpoints work"
    }});
    let r = report(&p).await.expect("report");
    assert_eq!((r.status().as_u16(), r.json::<Value>().await.expect("json")), (503, unavailable.clone()));
    let r = p.http.get(format!("{}/v1/jobs/{first}", p.base)).send().await.expect("job");
    assert_eq!((r.status().as_u16(), r.json::<Value>().await.expect("json")), (503, unavailable));
    let message = format!(
        "export job table \"{}\" was deleted or moved away while sluice has it open: export jobs are off \
         (503 jobs_store_unavailable; a job stored now would only reach the file sluice opened, which is lost when it stops); \
         restart sluice to use the file at that path: put the old one back there first (e.g. from a backup) to keep its jobs \
         and downloads, or an empty job table is created there",
        table.display()
    );
    assert_eq!(ready(&p).await, json!({"status": "failed", "error": format!("jobs_store_unavailable: {message}")}));
    let r = p.http.get(format!("{}/delj-a", p.base)).send().await.expect("redirect");
    assert_eq!(r.status().as_u16(), 302, "redirects are not affected");
    let t0 = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).expect("log");
        if let Some(line) = text.lines().find(|l| l.contains(" ERROR ") && l.contains("the export job table's file is gone")) {
            assert!(line.contains(&format!("error={message}")), "{line}");
            break;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(10), "no error logged: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!exports.exists(), "nothing was recreated behind the operator's back");
    p.terminate();

    // A restart creates a new, empty table; exports work again.
    let p = Proc::start(dir.path()).await;
    assert_eq!(ready(&p).await, json!({"status": "up"}));
    let r = report(&p).await.expect("report");
    assert_eq!(r.status().as_u16(), 202);
    let r = p.http.get(format!("{}/v1/jobs/{first}", p.base)).send().await.expect("job");
    assert_eq!(r.status().as_u16(), 404, "the deleted table's jobs are forgotten");
    p.terminate();
}
