//! `GET /v1/stats/summary?org=` over organisations set through the link API: `org` of
//! `POST /v1/links`, changed and removed by `PATCH /v1/links/{code}`; each click counts
//! under the organisation its link had when it was made. On both link stores.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{BROWSER_UA, Server};

async fn create(s: &Server, alias: &str, org: Option<&str>) {
    let r = s
        .http
        .post(s.path("/v1/links"))
        .json(&json!({"long_url": format!("https://example.com/{alias}"), "custom_alias": alias, "org": org}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap_or_default());
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["org"], json!(org));
}

async fn set_org(s: &Server, code: &str, org: Option<&str>) {
    let r = s.http.patch(s.path(&format!("/v1/links/{code}"))).json(&json!({ "org": org })).send().await.expect("patch");
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["org"], json!(org));
}

async fn clicks(s: &Server, code: &str, n: usize) {
    for _ in 0..n {
        assert_eq!(s.click(Method::GET, code, BROWSER_UA, &[]).await, StatusCode::FOUND);
    }
    // The next change is stamped after every click so far (`updated_at` has µs precision,
    // click times ms).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
}

/// (totals.clicks, top_links as (code, clicks)) of `/v1/stats/summary{query}`.
async fn summary(s: &Server, query: &str) -> (u64, Vec<(String, u64)>) {
    let (status, _, body) = s.get(&format!("/v1/stats/summary{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let top = body["top_links"]
        .as_array()
        .expect("top_links")
        .iter()
        .map(|l: &Value| (l["code"].as_str().expect("code").to_string(), l["clicks"].as_u64().expect("clicks")))
        .collect();
    (body["totals"]["clicks"].as_u64().expect("clicks"), top)
}

async fn org_filtered_summaries_count_the_clicks_of_each_organisation(store_url: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = store_url.unwrap_or_default().to_owned();
    let s = Server::start_in(dir.path(), move |c| c.store.url = url).await;
    create(&s, "og-a", Some("acme")).await;
    create(&s, "og-b", Some("acme")).await;
    create(&s, "og-c", Some("beta")).await;
    create(&s, "og-d", None).await;
    clicks(&s, "og-a", 3).await;
    clicks(&s, "og-b", 2).await;
    clicks(&s, "og-c", 4).await;
    clicks(&s, "og-d", 1).await;
    // og-b moves to beta, og-a leaves acme, og-d joins acme: later clicks count there.
    set_org(&s, "og-b", Some("beta")).await;
    set_org(&s, "og-a", None).await;
    set_org(&s, "og-d", Some("acme")).await;
    clicks(&s, "og-b", 5).await;
    clicks(&s, "og-a", 1).await;
    clicks(&s, "og-d", 1).await;
    s.sync().await;

    let acme = (3 + 2 + 1, vec![("og-a".to_string(), 3), ("og-b".to_string(), 2), ("og-d".to_string(), 1)]);
    let beta = (4 + 5, vec![("og-b".to_string(), 5), ("og-c".to_string(), 4)]);
    assert_eq!(summary(&s, "?org=acme").await, acme);
    assert_eq!(summary(&s, "?org=beta").await, beta);
    assert_eq!(summary(&s, "?org=ACME").await, (0, vec![]), "organisations are case-sensitive");
    assert_eq!(summary(&s, "?org=gamma").await, (0, vec![]));
    assert_eq!(summary(&s, "").await.0, 3 + 2 + 4 + 1 + 5 + 1 + 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_filtered_summaries_count_the_clicks_of_each_organisation_sqlite() {
    org_filtered_summaries_count_the_clicks_of_each_organisation(None).await;
}

#[cfg(feature = "integration-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_filtered_summaries_count_the_clicks_of_each_organisation_postgres() {
    let db = crate::pg::FreshDb::create("orgsum").await;
    org_filtered_summaries_count_the_clicks_of_each_organisation(Some(&db.url)).await;
    db.drop_now().await;
}
