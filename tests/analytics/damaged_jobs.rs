//! A damaged `exports/jobs.redb` through the real binary: exports are a side feature, so
//! `sluice serve` starts without the export jobs API (503 `jobs_store_unavailable`, an error
//! log naming the file and what to do, `/readyz` listing `export_jobs` as a failed optional
//! dependency) and redirects and stats serve as usual.

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
