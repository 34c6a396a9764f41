//! A link's organisation (`org`): set by `POST /v1/links`, changed or removed by
//! `PATCH /v1/links/{code}`, returned by every link answer, a filter of `GET /v1/links`
//! bound into its cursors, part of the `Idempotency-Key` body comparison; values no
//! organisation can have are 400 `invalid_org` with an exact body.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp};

backend_tests!(
    org_is_set_returned_changed_and_removed,
    links_are_listed_by_org_with_cursors_bound_to_it,
    org_values_no_organisation_can_have_are_400_invalid_org,
    idempotency_keys_compare_the_org_too,
);

fn codes(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|l| l["code"].as_str().expect("code").to_owned()).collect()
}

async fn org_is_set_returned_changed_and_removed(b: Backend) {
    let app = TestApp::start(b).await;
    let created = app.create(json!({"long_url": "https://example.com/o1", "custom_alias": "o1", "org": "Team_a.eu-1"})).await;
    assert_eq!(created["org"], "Team_a.eu-1", "{created}");
    let none = app.create(json!({"long_url": "https://example.com/o2", "custom_alias": "o2"})).await;
    assert_eq!(none["org"], Value::Null, "{none}");
    let null = app.create(json!({"long_url": "https://example.com/o3", "custom_alias": "o3", "org": null})).await;
    assert_eq!(null["org"], Value::Null, "{null}");
    // Every answer carries it: GET, the list, the key order of the documented example.
    let got = app.get("/v1/links/o1").await;
    assert_eq!(got.json(), created, "GET returns what POST returned");
    let text = String::from_utf8_lossy(&got.body);
    let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("{key} in {text}"));
    let keys = ["code", "short_url", "long_url", "domain", "expires_at", "enabled", "tags", "org", "redirect_type", "created_at", "updated_at"];
    assert!(keys.windows(2).all(|w| at(w[0]) < at(w[1])), "members in the documented order: {text}");
    assert_eq!(app.get("/v1/links").await.json()["items"][0], created);

    // PATCH changes it (a new revision), keeps it when other fields change, `null` removes it.
    let etag = got.header("etag").expect("etag").to_owned();
    let r = app.patch_json("/v1/links/o1", &json!({"org": "acme"}), Some(&etag)).await;
    assert_eq!((r.status, &r.json()["org"]), (StatusCode::OK, &json!("acme")), "{:?}", r.body);
    let etag2 = r.header("etag").expect("etag").to_owned();
    assert_ne!(etag2, etag);
    let r = app.patch_json("/v1/links/o1", &json!({"org": "acme"}), None).await;
    assert_eq!(r.header("etag"), Some(etag2.as_str()), "the same org: no new revision");
    let r = app.patch_json("/v1/links/o1", &json!({"tags": ["t"]}), None).await;
    assert_eq!((&r.json()["org"], &r.json()["tags"]), (&json!("acme"), &json!(["t"])));
    let r = app.patch_json("/v1/links/o1", &json!({"org": null}), None).await;
    assert_eq!((r.status, &r.json()["org"]), (StatusCode::OK, &Value::Null));
    assert_eq!(app.get("/v1/links/o1").await.json()["org"], Value::Null);
    let r = app.patch_json("/v1/links/o2", &json!({"org": "beta"}), None).await;
    assert_eq!(r.json()["org"], "beta");
    assert_eq!(app.get("/v1/links/o2").await.json()["org"], "beta");

    // The OpenAPI document describes it.
    let doc = app.get("/v1/openapi.json").await.json();
    for schema in ["CreateLinkRequest", "UpdateLinkRequest", "LinkResponse"] {
        assert!(doc["components"]["schemas"][schema]["properties"].get("org").is_some(), "{schema}");
    }
    let params = doc["paths"]["/v1/links"]["get"]["parameters"].as_array().expect("parameters");
    assert!(params.iter().any(|p| p["name"] == "org" && p["in"] == "query"), "{params:?}");
}

async fn links_are_listed_by_org_with_cursors_bound_to_it(b: Backend) {
    let app = TestApp::start(b).await;
    // l0..l5: even ones of acme, odd ones of beta; l4 disabled.
    for i in 0..6 {
        let org = if i % 2 == 0 { "acme" } else { "beta" };
        app.create(json!({"long_url": format!("https://example.com/{i}"), "custom_alias": format!("l{i}"), "org": org, "tags": ["t"]})).await;
    }
    app.create(json!({"long_url": "https://example.com/none", "custom_alias": "lnone"})).await;
    assert_eq!(app.patch_json("/v1/links/l4", &json!({"enabled": false}), None).await.status, StatusCode::OK);
    assert_eq!(codes(&app.get("/v1/links?org=acme").await.json()), ["l0", "l2", "l4"]);
    assert_eq!(codes(&app.get("/v1/links?org=beta&tag=t").await.json()), ["l1", "l3", "l5"]);
    assert_eq!(codes(&app.get("/v1/links?org=acme&enabled=true").await.json()), ["l0", "l2"]);
    assert_eq!(codes(&app.get("/v1/links?org=ACME").await.json()), Vec::<String>::new(), "exact, case-sensitive");
    assert_eq!(codes(&app.get("/v1/links").await.json()).len(), 7);

    // Paging by org: the cursor goes on with the same org, any limit.
    let first = app.get("/v1/links?org=acme&limit=1").await.json();
    let cursor = first["next_cursor"].as_str().expect("next_cursor").to_owned();
    assert_eq!(codes(&app.get(&format!("/v1/links?org=acme&limit=5&cursor={cursor}")).await.json()), ["l2", "l4"]);
    // With another org, or none, or from a listing without org: 400 invalid_cursor.
    let other_filters = |c: &str| json!({"code": "invalid_cursor", "message": "cursor is not valid here: it was made with different filters (or altered); use the next_cursor of a previous page with the same filters", "details": {"cursor": c}});
    for q in ["org=beta", "", "org=acme&tag=t", "org=acme&enabled=true"] {
        let r = app.get(&format!("/v1/links?limit=5&{q}&cursor={cursor}")).await;
        assert_eq!(r.assert_error(400, "invalid_cursor"), other_filters(&cursor), "{q}");
    }
    let all = app.get("/v1/links?limit=1").await.json();
    let all_cursor = all["next_cursor"].as_str().expect("next_cursor").to_owned();
    let r = app.get(&format!("/v1/links?limit=1&org=acme&cursor={all_cursor}")).await;
    assert_eq!(r.assert_error(400, "invalid_cursor"), other_filters(&all_cursor));
    assert_eq!(codes(&app.get(&format!("/v1/links?limit=1&cursor={all_cursor}")).await.json()), ["l1"]);

    // A filter no link could match: 400 invalid_parameter, exact.
    for (q, value, reason) in
        [("org=", "", "org must be 1 to 64 characters"), ("org=a%20b", "a b", "org may only contain the characters A-Z, a-z, 0-9, '_', '.' and '-'")]
    {
        let r = app.get(&format!("/v1/links?{q}")).await;
        assert_eq!(
            r.assert_error(400, "invalid_parameter"),
            json!({"code": "invalid_parameter", "message": format!("invalid \"org\": {reason}"), "details": {"parameter": "org", "value": value, "reason": reason}}),
            "{q}"
        );
    }
}

async fn org_values_no_organisation_can_have_are_400_invalid_org(b: Backend) {
    let app = TestApp::start(b).await;
    app.create(json!({"long_url": "https://example.com/p", "custom_alias": "p", "org": "keep"})).await;
    let long = "x".repeat(65);
    let length = "org must be 1 to 64 characters";
    let chars = "org may only contain the characters A-Z, a-z, 0-9, '_', '.' and '-'";
    for (org, message) in
        [("", length), (long.as_str(), length), (" acme", chars), ("acme ", chars), ("a/b", chars), ("café", chars), ("a\u{200b}b", chars), ("tab\t", chars)]
    {
        let want = json!({"error": {"code": "invalid_org", "message": message, "details": {"org": org}}});
        let r = app.post_json("/v1/links", &json!({"long_url": "https://example.com/bad", "custom_alias": "bad", "org": org})).await;
        r.assert_error(400, "invalid_org");
        assert_eq!(r.json(), want, "create {org:?}");
        let r = app.patch_json("/v1/links/p", &json!({"org": org}), None).await;
        r.assert_error(400, "invalid_org");
        assert_eq!(r.json(), want, "patch {org:?}");
    }
    app.assert_no_link("bad").await;
    assert_eq!(app.get("/v1/links/p").await.json()["org"], "keep", "refused patches change nothing");
    // Not a string: a body of the wrong type (invalid_request, as for every field), the field
    // named in details; invalid_org is for strings that are no valid org.
    for org in [json!(7), json!(["acme"]), json!({"name": "acme"})] {
        let err = app
            .post_json("/v1/links", &json!({"long_url": "https://example.com/bad", "custom_alias": "bad", "org": org}))
            .await
            .assert_error(400, "invalid_request");
        assert_eq!(err["details"], json!({"field": "org"}), "create {org}");
        let err = app.patch_json("/v1/links/p", &json!({"org": org}), None).await.assert_error(400, "invalid_request");
        assert_eq!(err["details"], json!({"field": "org"}), "patch {org}");
    }
    app.assert_no_link("bad").await;
}

async fn idempotency_keys_compare_the_org_too(b: Backend) {
    let app = TestApp::start(b).await;
    let post = |key: &'static str, body: Value| {
        let app = &app;
        async move { app.request(Method::POST, "/v1/links", &[("content-type", "application/json"), ("idempotency-key", key)], Some(body.to_string())).await }
    };
    let body = json!({"long_url": "https://example.com/idem-org", "org": "acme"});
    let first = post("org-key", body.clone()).await;
    assert_eq!((first.status, &first.json()["org"]), (StatusCode::CREATED, &json!("acme")));
    let again = post("org-key", body).await;
    assert_eq!((again.status, again.json()), (StatusCode::CREATED, first.json()));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // Another org, or none, is another request.
    for other in [json!({"long_url": "https://example.com/idem-org", "org": "beta"}), json!({"long_url": "https://example.com/idem-org"})] {
        let r = post("org-key", other.clone()).await;
        assert_eq!(
            r.assert_error(422, "idempotency_key_reused"),
            json!({"code": "idempotency_key_reused", "message": "Idempotency-Key was already used with a different request body"}),
            "{other}"
        );
    }
    assert_eq!(codes(&app.get("/v1/links?org=acme").await.json()).len(), 1);
}
