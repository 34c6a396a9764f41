//! `sluice serve --role redirect` and `--role api` as two processes on one data dir (the
//! embedded defaults): links and redirects work across them; the stats are served by
//! neither, and both say so (start-up warnings, the API's 503, the redirect side's 404).

use std::time::Duration;

use serde_json::{Value, json};

use crate::child::{await_ready, free_port, serve_embedded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_roles_share_links_and_say_where_the_stats_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (redirect_at, api_at) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let (redirect_log, api_log) = (dir.path().join("redirect.log"), dir.path().join("api.log"));
    let mut redirect = serve_embedded(&redirect_at, &data, &["--role", "redirect"], &redirect_log);
    let mut api = serve_embedded(&api_at, &data, &["--role", "api"], &api_log);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    await_ready(&mut redirect, &http, &redirect_at, &redirect_log, Duration::from_secs(60)).await;
    await_ready(&mut api, &http, &api_at, &api_log, Duration::from_secs(60)).await;

    // a link created through the API process redirects on the redirect process (one links.db)
    let created = http
        .post(format!("http://{api_at}/v1/links"))
        .json(&json!({"long_url": "https://example.com/split", "custom_alias": "split"}))
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), 201);
    let r = http.get(format!("http://{redirect_at}/split")).send().await.expect("follow");
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().expect("ascii")), (302, "https://example.com/split"));

    // stats: 503 on the API process, 404 naming the roles on the redirect process
    let r = http.get(format!("http://{api_at}/v1/links/split/stats")).send().await.expect("stats");
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error": {"code": "stats_unavailable", "message": "this process runs no click dataflow (role api, or [dataflow] enabled = false); the stats are served by the process with role all that holds the click log and runs the dataflow"}})
    );
    let r = http.get(format!("http://{redirect_at}/v1/links/split/stats")).send().await.expect("stats");
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error": {"code": "not_found", "message": "this process serves redirects only (role redirect): the API under /v1/, the stats included, is served by a process with role all or api", "details": {"path": "/v1/links/split/stats"}}})
    );
    drop((redirect, api));

    let log = std::fs::read_to_string(&redirect_log).expect("redirect log");
    assert!(log.contains("role redirect: this process records clicks and runs the click dataflow but serves no API"), "{log}");
    let log = std::fs::read_to_string(&api_log).expect("api log");
    assert!(log.contains("role api: this process holds no click log and runs no click dataflow"), "{log}");
}
