//! The link management API: every status and error code of `/v1/links`, on both stores.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{BASE, Backend, TestApp};

backend_tests!(
    create_returns_the_link,
    the_base_urls_host_as_domain_is_echoed_with_the_base_urls_port_in_short_url,
    create_rejects_invalid_input_without_creating,
    aliases_are_validated_reserved_and_unique,
    redirect_type_and_expiry_rules,
    idempotency_key_replays_and_detects_reuse,
    idempotency_key_given_twice_is_refused,
    get_patch_delete_lifecycle,
    patch_validates_like_create,
    list_paginates_and_filters,
    list_parameter_errors,
);

fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

async fn create_returns_the_link(b: Backend) {
    let app = TestApp::start(b).await;
    let r = app.post_json("/v1/links", &json!({"long_url": "https://example.com/a", "tags": ["x", "y", "x"]})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v = r.json();
    let code = v["code"].as_str().expect("code");
    assert_eq!(code.len(), 7);
    assert!(is_base62(code), "{code}");
    assert_eq!(v["short_url"], format!("{BASE}/{code}"));
    assert_eq!(v["long_url"], "https://example.com/a");
    assert_eq!(v["domain"], Value::Null);
    assert_eq!(v["expires_at"], Value::Null);
    assert_eq!(v["enabled"], true);
    assert_eq!(v["tags"], json!(["x", "y"]));
    assert_eq!(v["redirect_type"], 302);
    let created = v["created_at"].as_str().expect("created_at");
    assert!(created.ends_with('Z'), "{created}");
    chrono::DateTime::parse_from_rfc3339(created).expect("rfc 3339");
    assert_eq!(r.location(), Some(format!("/v1/links/{code}").as_str()));
    let etag = r.header("etag").expect("etag").to_owned();
    let g = app.get(&format!("/v1/links/{code}")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json(), v, "GET returns what POST returned");
    assert_eq!(g.header("etag"), Some(etag.as_str()));
    // two creates of the same URL are two links
    let other = app.create_url("https://example.com/a").await;
    assert_ne!(other, code);
    // a custom domain of ours
    let d = app.create(json!({"long_url": "https://example.com/d", "domain": "xn--krz-hoa.example", "custom_alias": "dom"})).await;
    assert_eq!(d["domain"], "xn--krz-hoa.example");
    assert_eq!(d["short_url"], "https://xn--krz-hoa.example/dom");
    let d2 = app.create(json!({"long_url": "https://example.com/d", "domain": "kürz.example", "custom_alias": "dom2"})).await;
    assert_eq!(d2["short_url"], "https://xn--krz-hoa.example/dom2", "unicode and punycode are one domain");
    // The base URL's host is one of ours too: echoed as given (normalized), not `null`.
    let base = app.create(json!({"long_url": "https://example.com/d", "domain": "Sho.RT.example.", "custom_alias": "dom3"})).await;
    assert_eq!(base["domain"], "sho.rt.example");
    assert_eq!(base["short_url"], format!("{BASE}/dom3"));
    assert_eq!(app.get("/v1/links/dom3").await.json(), base, "stored as answered");
    // One trailing dot is a fully qualified name; two leave an empty label (attack of
    // session 52: `sho.rt.example..` was taken as the base URL's host).
    for other in ["other.example", "Sho.RT.example..", "sho.rt.example..."] {
        app.post_json("/v1/links", &json!({"long_url": "https://example.com/d", "domain": other, "custom_alias": "dom4"}))
            .await
            .assert_error(400, "unknown_domain");
    }
    app.assert_no_link("dom4").await;
}

/// A base URL with a port (the default `http://127.0.0.1:8080`): its host given as `domain`
/// is echoed, and the short URL keeps the base URL's port; a domain is a host, so the
/// host with a port is 400 `unknown_domain`, naming the domains taken.
async fn the_base_urls_host_as_domain_is_echoed_with_the_base_urls_port_in_short_url(b: Backend) {
    let app = TestApp::start_with(b, |c| c.server.base_url = Some("http://127.0.0.1:8080".into())).await;
    let v = app.create(json!({"long_url": "https://example.com/port", "domain": "127.0.0.1", "custom_alias": "port"})).await;
    assert_eq!((v["domain"].as_str(), v["short_url"].as_str()), (Some("127.0.0.1"), Some("http://127.0.0.1:8080/port")));
    let v = app.create(json!({"long_url": "https://example.com/port", "custom_alias": "noport"})).await;
    assert_eq!((&v["domain"], v["short_url"].as_str()), (&Value::Null, Some("http://127.0.0.1:8080/noport")), "no domain given: null");
    let err =
        app.post_json("/v1/links", &json!({"long_url": "https://example.com/port", "domain": "127.0.0.1:8080"})).await.assert_error(400, "unknown_domain");
    assert_eq!(err["details"]["allowed"], json!(["127.0.0.1", "xn--krz-hoa.example"]), "{err}");
}

async fn create_rejects_invalid_input_without_creating(b: Backend) {
    let app = TestApp::start(b).await;
    let cases: &[(&str, u16, &str)] = &[
        ("", 400, "invalid_url"),
        ("not a url", 400, "invalid_url"),
        ("example.com/no-scheme", 400, "invalid_url"),
        ("javascript:alert(1)", 400, "unsupported_scheme"),
        ("ftp://example.com/f", 400, "unsupported_scheme"),
        ("http://", 400, "missing_host"),
        ("https://user:pass@example.com/", 400, "credentials_in_url"),
        ("https://example.com/\u{7}bell", 400, "control_characters"),
        ("https://sho.rt.example/abc", 400, "redirect_loop"),
        ("https://KÜRZ.example/abc", 400, "redirect_loop"),
        ("https://blocked.example/x", 422, "policy_violation"),
        ("https://deep.sub.blocked.example/x", 422, "policy_violation"),
        ("https://a..com/", 400, "invalid_host"),
        ("https://-a.com/", 400, "invalid_host"),
        ("https://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com/", 400, "invalid_host"),
        ("https://example.com:0/", 400, "invalid_port"),
    ];
    for (i, (url, status, code)) in cases.iter().enumerate() {
        let alias = format!("inv{i}");
        let r = app.post_json("/v1/links", &json!({"long_url": url, "custom_alias": alias})).await;
        r.assert_error(*status, code);
        app.assert_no_link(&alias).await;
    }
    let long = format!("https://example.com/p?x={}", "a".repeat(9000));
    let err = app.post_json("/v1/links", &json!({"long_url": long, "custom_alias": "toolong"})).await.assert_error(400, "url_too_long");
    assert_eq!(err["details"]["max_bytes"], 8192);
    assert!(err["message"].as_str().expect("msg").contains("8192"));
    app.assert_no_link("toolong").await;
    let tags = app.post_json("/v1/links", &json!({"long_url": "https://example.com/", "tags": [""], "custom_alias": "badtag"})).await;
    tags.assert_error(400, "invalid_tags");
    app.assert_no_link("badtag").await;
    let list = app.get("/v1/links").await.json();
    assert_eq!(list["items"], json!([]), "nothing was created");
}

async fn aliases_are_validated_reserved_and_unique(b: Backend) {
    let app = TestApp::start(b).await;
    let v = app.create(json!({"long_url": "https://example.com/c10", "custom_alias": "MyPromo"})).await;
    assert_eq!(v["code"], "MyPromo");
    assert_eq!(v["short_url"], format!("{BASE}/MyPromo"));
    app.post_json("/v1/links", &json!({"long_url": "https://example.com/x", "custom_alias": "MyPromo"})).await.assert_error(409, "alias_conflict");
    // 64 characters is fine, 65 is not
    let max = "a".repeat(64);
    app.create(json!({"long_url": "https://example.com/max", "custom_alias": max})).await;
    for bad in ["", "a b", "ab/c", "ü", "a.b", &"b".repeat(65)] {
        app.post_json("/v1/links", &json!({"long_url": "https://example.com/x", "custom_alias": bad})).await.assert_error(400, "invalid_alias");
    }
    // echoed input is bounded: a 100 KB alias comes back as its first 256 bytes, marked
    let err =
        app.post_json("/v1/links", &json!({"long_url": "https://example.com/x", "custom_alias": "c".repeat(100_000)})).await.assert_error(400, "invalid_alias");
    assert_eq!(err["details"], json!({"alias": "c".repeat(256), "max_length": 64, "truncated": true}));
    for reserved in ["v1", "V1", "api", "admin", "healthz", "readyz", "metrics", "openapi.json", "favicon.ico", "robots.txt", "static", ".well-known", "health"]
    {
        let err =
            app.post_json("/v1/links", &json!({"long_url": "https://example.com/c11", "custom_alias": reserved})).await.assert_error(400, "alias_reserved");
        assert_eq!(err["details"]["alias"], reserved);
    }
}

async fn redirect_type_and_expiry_rules(b: Backend) {
    let app = TestApp::start(b).await;
    let p = app.create(json!({"long_url": "https://example.com/p", "redirect_type": 301})).await;
    assert_eq!(p["redirect_type"], 301);
    for bad in [300, 303, 307, 308, 200] {
        app.post_json("/v1/links", &json!({"long_url": "https://example.com/p", "redirect_type": bad})).await.assert_error(400, "invalid_redirect_type");
    }
    // Any number that is not 301 or 302, also one no integer type holds, gets the same
    // answer on create and update (not serde's "floating point `1e20`, expected u16").
    let j = [("content-type", "application/json")];
    for (raw, shown) in
        [("100000000000000000000", "1e+20"), ("1e20", "1e+20"), ("-302", "-302"), ("65838", "65838"), ("301.5", "301.5"), ("99999999999999999999999", "1e+23")]
    {
        let create = format!(r#"{{"long_url": "https://example.com/p", "redirect_type": {raw}}}"#);
        let patch = format!(r#"{{"redirect_type": {raw}}}"#);
        for r in [
            app.request(Method::POST, "/v1/links", &j, Some(create)).await,
            app.request(Method::PATCH, &format!("/v1/links/{}", p["code"].as_str().expect("code")), &j, Some(patch)).await,
        ] {
            let err = r.assert_error(400, "invalid_redirect_type");
            assert_eq!(
                (&err["message"], &err["details"]),
                (&json!(format!("redirect_type must be 301 or 302, got {shown}")), &json!({"allowed": [301, 302]})),
                "{raw}"
            );
        }
    }
    assert_eq!(app.get(&format!("/v1/links/{}", p["code"].as_str().expect("code"))).await.json(), p, "unchanged");
    // A value of another type is a body of the wrong type, the field named in details.
    let err = app.post_json("/v1/links", &json!({"long_url": "https://example.com/p", "redirect_type": "301"})).await.assert_error(400, "invalid_request");
    assert_eq!(err["details"], json!({"field": "redirect_type"}));
    assert_eq!(err["message"], "invalid request body: redirect_type: invalid type: string \"301\", expected 301 or 302");
    app.post_json("/v1/links", &json!({"long_url": "https://example.com/p", "expires_at": "2001-01-01T00:00:00Z", "custom_alias": "past"}))
        .await
        .assert_error(400, "expires_in_past");
    app.assert_no_link("past").await;
    app.post_json("/v1/links", &json!({"long_url": "https://example.com/p", "expires_at": "next tuesday"})).await.assert_error(400, "invalid_expires_at");
    let e = app.create(json!({"long_url": "https://example.com/e", "expires_at": "2030-01-01T00:00:00+02:00"})).await;
    assert_eq!(e["expires_at"], "2029-12-31T22:00:00Z");
    let g = app.get(&format!("/v1/links/{}", e["code"].as_str().expect("code"))).await.json();
    assert_eq!(g["expires_at"], "2029-12-31T22:00:00Z");
}

async fn idempotency_key_replays_and_detects_reuse(b: Backend) {
    let app = TestApp::start(b).await;
    let body = json!({"long_url": "https://example.com/idem", "tags": ["a"]});
    let post = |key: &'static str, body: Value| {
        let app = &app;
        async move { app.request(Method::POST, "/v1/links", &[("content-type", "application/json"), ("idempotency-key", key)], Some(body.to_string())).await }
    };
    let first = post("key-1", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    // same key, same body (keys in another order): the original response
    let reordered = r#"{"tags":["a"],"long_url":"https://example.com/idem"}"#;
    let again = app.request(Method::POST, "/v1/links", &[("content-type", "application/json"), ("idempotency-key", "key-1")], Some(reordered.into())).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.json(), first.json());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // ... with the headers that matter: the original's ETag ("<created_at ms hex>-1"),
    // Location, content type and no-store.
    let created_ms = chrono::DateTime::parse_from_rfc3339(first.json()["created_at"].as_str().expect("created_at")).expect("rfc3339").timestamp_millis();
    let code = first.json()["code"].as_str().expect("code").to_owned();
    assert_eq!(first.header("etag"), Some(format!("\"{created_ms:x}-1\"").as_str()));
    assert_eq!(first.header("location"), Some(format!("/v1/links/{code}").as_str()));
    for h in ["etag", "location", "content-type", "cache-control"] {
        assert_eq!(again.header(h), first.header(h), "replayed {h}");
    }
    // A replay after the link changed still answers the original response (its ETag too).
    let patched =
        app.request(Method::PATCH, &format!("/v1/links/{code}"), &[("content-type", "application/json")], Some(json!({"tags": ["b"]}).to_string())).await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_ne!(patched.header("etag"), first.header("etag"));
    let third = post("key-1", body.clone()).await;
    assert_eq!((third.status, third.json()), (StatusCode::CREATED, first.json()));
    assert_eq!(third.header("etag"), first.header("etag"));
    // same key, different body
    post("key-1", json!({"long_url": "https://example.com/other"})).await.assert_error(422, "idempotency_key_reused");
    // other key: a new link
    let other = post("key-2", body.clone()).await;
    assert_ne!(other.json()["code"], first.json()["code"]);
    // malformed keys
    app.request(Method::POST, "/v1/links", &[("content-type", "application/json"), ("idempotency-key", "")], Some(body.to_string()))
        .await
        .assert_error(400, "invalid_idempotency_key");
    let long_key = "k".repeat(256);
    app.request(Method::POST, "/v1/links", &[("content-type", "application/json"), ("idempotency-key", &long_key)], Some(body.to_string()))
        .await
        .assert_error(400, "invalid_idempotency_key");
    // concurrent requests with one key create one link
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let r = app
                    .request(
                        Method::POST,
                        "/v1/links",
                        &[("content-type", "application/json"), ("idempotency-key", "key-concurrent")],
                        Some(json!({"long_url": "https://example.com/conc"}).to_string()),
                    )
                    .await;
                assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
                r.json()["code"].as_str().expect("code").to_owned()
            })
        })
        .collect();
    let mut codes = std::collections::BTreeSet::new();
    for t in tasks {
        codes.insert(t.await.expect("join"));
    }
    assert_eq!(codes.len(), 1, "one link for one key: {codes:?}");
    let list = app.get("/v1/links?limit=1000").await.json();
    let conc = list["items"].as_array().expect("items").iter().filter(|l| l["long_url"] == "https://example.com/conc").count();
    assert_eq!(conc, 1);
}

/// Two `Idempotency-Key` headers on one request: 400 `duplicate_header`, and no link is
/// created (the first key used to be taken silently).
async fn idempotency_key_given_twice_is_refused(b: Backend) {
    let app = TestApp::start(b).await;
    let body = json!({"long_url": "https://example.com/twice", "custom_alias": "twice"}).to_string();
    for keys in [["key-a", "key-b"], ["key-a", "key-a"]] {
        let headers = [("content-type", "application/json"), ("idempotency-key", keys[0]), ("idempotency-key", keys[1])];
        let r = app.request(Method::POST, "/v1/links", &headers, Some(body.clone())).await;
        assert_eq!(
            r.assert_error(400, "duplicate_header"),
            json!({"code": "duplicate_header", "message": "the Idempotency-Key header appears 2 times; send it exactly once", "details": {"header": "Idempotency-Key", "count": 2}}),
            "{keys:?}"
        );
    }
    app.assert_no_link("twice").await;
    // One key still works, and is not taken by the refused requests.
    let r = app.request(Method::POST, "/v1/links", &[("content-type", "application/json"), ("idempotency-key", "key-a")], Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("idempotent-replayed"), None);
}

async fn get_patch_delete_lifecycle(b: Backend) {
    let app = TestApp::start(b).await;
    app.get("/v1/links/nope").await.assert_error(404, "not_found");
    app.get("/v1/links/has%20space").await.assert_error(404, "not_found");
    let v = app.create(json!({"long_url": "https://example.com/one", "custom_alias": "life"})).await;
    let g = app.get("/v1/links/life").await;
    let etag1 = g.header("etag").expect("etag").to_owned();
    // PATCH with the current ETag
    let p = app.patch_json("/v1/links/life", &json!({"long_url": "https://example.com/two", "tags": ["t"]}), Some(&etag1)).await;
    assert_eq!(p.status, StatusCode::OK, "{}", String::from_utf8_lossy(&p.body));
    let etag2 = p.header("etag").expect("etag").to_owned();
    assert_ne!(etag1, etag2);
    let pv = p.json();
    assert_eq!(pv["long_url"], "https://example.com/two");
    assert_eq!(pv["tags"], json!(["t"]));
    assert_eq!(pv["created_at"], v["created_at"]);
    // stale ETag
    app.patch_json("/v1/links/life", &json!({"enabled": false}), Some(&etag1)).await.assert_error(412, "precondition_failed");
    app.patch_json("/v1/links/life", &json!({"enabled": false}), Some("W/\"whatever\"")).await.assert_error(412, "precondition_failed");
    assert_eq!(app.get("/v1/links/life").await.json()["enabled"], true, "412 changed nothing");
    // list form and "*"
    let p = app.patch_json("/v1/links/life", &json!({"enabled": false}), Some(&format!("\"zz\", {etag2}"))).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.json()["enabled"], false);
    let p = app.patch_json("/v1/links/life", &json!({"enabled": true, "expires_at": "2031-01-01T00:00:00Z"}), Some("*")).await;
    assert_eq!(p.json()["expires_at"], "2031-01-01T00:00:00Z");
    let p = app.patch_json("/v1/links/life", &json!({"expires_at": null}), None).await;
    assert_eq!(p.json()["expires_at"], Value::Null);
    // empty patch: no new revision
    let before = app.get("/v1/links/life").await;
    let p = app.patch_json("/v1/links/life", &json!({}), None).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.header("etag"), before.header("etag"));
    // a patch that sets every field it names to its current value: no new revision either,
    // and the ETag it answers still satisfies If-Match
    let cur = before.json();
    let same = json!({"expires_at": null, "enabled": cur["enabled"], "tags": cur["tags"], "long_url": cur["long_url"], "redirect_type": cur["redirect_type"]});
    let p = app.patch_json("/v1/links/life", &same, before.header("etag")).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.header("etag"), before.header("etag"));
    assert_eq!(p.json(), cur);
    // renaming is refused
    app.patch_json("/v1/links/life", &json!({"custom_alias": "admin"}), None).await.assert_error(400, "alias_rename_unsupported");
    app.patch_json("/v1/links/life", &json!({"custom_alias": "other"}), None).await.assert_error(400, "alias_rename_unsupported");
    app.patch_json("/v1/links/nope", &json!({"enabled": false}), None).await.assert_error(404, "not_found");
    app.patch_json("/v1/links/nope", &json!({"enabled": false}), Some("*")).await.assert_error(404, "not_found");
    // GET revalidates with If-None-Match (weak comparison): 304 without a body while the
    // revision is current, 200 with the link otherwise
    let current = app.get("/v1/links/life").await.header("etag").expect("etag").to_owned();
    let weak = format!("W/{current}");
    for fresh in [current.as_str(), weak.as_str(), "*", &format!("\"zz\", {current}")] {
        let r = app.request(Method::GET, "/v1/links/life", &[("if-none-match", fresh)], None).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{fresh}");
        assert!(r.body.is_empty(), "{fresh}");
        assert_eq!(r.header("etag"), Some(current.as_str()));
    }
    for stale in [etag1.as_str(), "\"zz\""] {
        let r = app.request(Method::GET, "/v1/links/life", &[("if-none-match", stale)], None).await;
        assert_eq!(r.status, StatusCode::OK, "{stale}");
        assert_eq!(r.json()["code"], "life");
    }
    app.request(Method::GET, "/v1/links/nope", &[("if-none-match", "*")], None).await.assert_error(404, "not_found");
    // DELETE honours If-Match like PATCH: a stale or weak tag is 412 and deletes nothing
    let current = app.get("/v1/links/life").await.header("etag").expect("etag").to_owned();
    for stale in [etag1.as_str(), "W/\"whatever\"", "\"zz\""] {
        app.request(Method::DELETE, "/v1/links/life", &[("if-match", stale)], None).await.assert_error(412, "precondition_failed");
    }
    assert_eq!(app.get("/v1/links/life").await.status, StatusCode::OK, "412 deleted nothing");
    app.request(Method::DELETE, "/v1/links/nope", &[("if-match", "*")], None).await.assert_error(404, "not_found");
    let d = app.request(Method::DELETE, "/v1/links/life", &[("if-match", current.as_str())], None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    // DELETE without If-Match (on a fresh link)
    app.create(json!({"long_url": "https://example.com/one", "custom_alias": "life2"})).await;
    let d = app.delete("/v1/links/life2").await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    assert!(d.body.is_empty());
    app.get("/v1/links/life2").await.assert_error(404, "not_found");
    app.delete("/v1/links/life2").await.assert_error(404, "not_found");
    app.get("/v1/links/life").await.assert_error(404, "not_found");
    // the code cannot be reused (30 days), and the answer says why
    let err = app.post_json("/v1/links", &json!({"long_url": "https://example.com/three", "custom_alias": "life"})).await.assert_error(409, "alias_conflict");
    assert_eq!(
        err,
        json!({"code": "alias_conflict", "message": "alias \"life\" belonged to a deleted link: a deleted link's code is not reused for 30 days", "details": {"alias": "life", "deleted": true, "retired": false}})
    );
}

async fn patch_validates_like_create(b: Backend) {
    let app = TestApp::start(b).await;
    app.create(json!({"long_url": "https://example.com/c07", "custom_alias": "pv"})).await;
    let cases: &[(Value, u16, &str)] = &[
        (json!({"long_url": "javascript:alert(1)"}), 400, "unsupported_scheme"),
        (json!({"long_url": "java\tscript:alert(1)"}), 400, "control_characters"),
        (json!({"long_url": "https:///nohost"}), 400, "missing_host"),
        (json!({"long_url": "https://u:p@example.com/"}), 400, "credentials_in_url"),
        (json!({"long_url": format!("https://example.com/p?x={}", "a".repeat(8200))}), 400, "url_too_long"),
        (json!({"long_url": "https://sho.rt.example/pv"}), 400, "redirect_loop"),
        (json!({"long_url": "https://blocked.example/"}), 422, "policy_violation"),
        (json!({"redirect_type": 307}), 400, "invalid_redirect_type"),
        (json!({"expires_at": "2000-01-01T00:00:00Z"}), 400, "expires_in_past"),
        (json!({"tags": ["ok", ""]}), 400, "invalid_tags"),
        (json!({"enabled": "yes"}), 400, "invalid_request"),
        (json!({"colour": "red"}), 400, "unknown_field"),
    ];
    for (body, status, code) in cases {
        app.patch_json("/v1/links/pv", body, None).await.assert_error(*status, code);
    }
    let g = app.get("/v1/links/pv").await.json();
    assert_eq!(g["long_url"], "https://example.com/c07");
    assert_eq!(g["redirect_type"], 302);
    let r = app.get("/pv").await;
    assert_eq!(r.location(), Some("https://example.com/c07"));
}

async fn list_paginates_and_filters(b: Backend) {
    let app = TestApp::start(b).await;
    let mut codes = Vec::new();
    for i in 0..7 {
        let tags = if i % 2 == 0 { json!(["even"]) } else { json!(["odd"]) };
        codes.push(app.create(json!({"long_url": format!("https://example.com/{i}"), "tags": tags})).await["code"].as_str().expect("code").to_owned());
    }
    let first = app.get("/v1/links?limit=3").await.json();
    let page_codes = |v: &Value| v["items"].as_array().expect("items").iter().map(|l| l["code"].as_str().expect("code").to_owned()).collect::<Vec<_>>();
    assert_eq!(page_codes(&first), codes[..3]);
    let c1 = first["next_cursor"].as_str().expect("cursor").to_owned();
    // links created while paging appear at the end, never shift pages
    let late = app.create_url("https://example.com/late").await;
    let second = app.get(&format!("/v1/links?limit=3&cursor={c1}")).await.json();
    assert_eq!(page_codes(&second), codes[3..6]);
    let c2 = second["next_cursor"].as_str().expect("cursor").to_owned();
    let third = app.get(&format!("/v1/links?limit=3&cursor={c2}")).await.json();
    assert_eq!(page_codes(&third), vec![codes[6].clone(), late.clone()]);
    assert_eq!(third["next_cursor"], Value::Null);
    // filters
    let even = app.get("/v1/links?tag=even&limit=1000").await.json();
    assert_eq!(page_codes(&even), vec![codes[0].clone(), codes[2].clone(), codes[4].clone(), codes[6].clone()]);
    let p = app.patch_json(&format!("/v1/links/{}", codes[1]), &json!({"enabled": false}), None).await;
    assert_eq!(p.status, StatusCode::OK);
    let disabled = app.get("/v1/links?enabled=false").await.json();
    assert_eq!(page_codes(&disabled), vec![codes[1].clone()]);
    let enabled_odd = app.get("/v1/links?enabled=true&tag=odd").await.json();
    assert_eq!(page_codes(&enabled_odd), vec![codes[3].clone(), codes[5].clone()]);
    // 1 / 0 are booleans here as in the stats and live routes
    assert_eq!(page_codes(&app.get("/v1/links?enabled=0").await.json()), vec![codes[1].clone()]);
    assert_eq!(page_codes(&app.get("/v1/links?enabled=1&tag=odd").await.json()), vec![codes[3].clone(), codes[5].clone()]);
    // a tag is stored NFC: created as e + U+0301, found by either spelling, returned precomposed
    let cafe = app.create(json!({"long_url": "https://example.com/cafe", "tags": ["cafe\u{301}"]})).await;
    assert_eq!(cafe["tags"], json!(["caf\u{e9}"]));
    let cafe_code = cafe["code"].as_str().expect("code").to_owned();
    assert_eq!(page_codes(&app.get("/v1/links?tag=caf%C3%A9").await.json()), vec![cafe_code.clone()]);
    assert_eq!(page_codes(&app.get("/v1/links?tag=cafe%CC%81").await.json()), vec![cafe_code]);
    // deleted links are not listed
    assert_eq!(app.delete(&format!("/v1/links/{}", codes[0])).await.status, StatusCode::NO_CONTENT);
    let all = app.get("/v1/links?limit=1000").await.json();
    assert_eq!(page_codes(&all).len(), 8);
    assert!(!page_codes(&all).contains(&codes[0]));
    // default limit 100, max 1000
    assert_eq!(app.get("/v1/links?limit=1000").await.status, StatusCode::OK);
    assert_eq!(app.get("/v1/links?limit=1").await.json()["items"].as_array().expect("items").len(), 1);
}

async fn list_parameter_errors(b: Backend) {
    let app = TestApp::start(b).await;
    app.get("/v1/links?limit=0").await.assert_error(400, "invalid_limit");
    let r = app.get("/v1/links?limit=1001").await;
    r.assert_error(400, "invalid_limit");
    assert_eq!(
        r.json()["error"],
        json!({"code": "invalid_limit", "message": "limit must be an integer between 1 and 1000, got \"1001\"", "details": {"parameter": "limit", "value": "1001", "min": 1, "max": 1000}})
    );
    app.get("/v1/links?limit=abc").await.assert_error(400, "invalid_limit");
    app.get("/v1/links?limit=-1").await.assert_error(400, "invalid_limit");
    // Rust's integer parser (serde's) takes a sign; a limit is plain digits.
    let r = app.get("/v1/links?limit=%2B5").await;
    let err = r.assert_error(400, "invalid_limit");
    assert_eq!(err["details"], serde_json::json!({"parameter": "limit", "value": "+5", "min": 1, "max": 1000}));
    app.get("/v1/links?limit=%205").await.assert_error(400, "invalid_limit");
    // Out of range: the value as sent, not the number read from it.
    assert_eq!(app.get("/v1/links?limit=0000").await.assert_error(400, "invalid_limit")["details"]["value"], "0000");
    // A value that is not UTF-8 once decoded is refused (it was read as U+FFFD before).
    for path in ["/v1/links?tag=%FF", "/v1/links?tag=a%C3&limit=5", "/v1/stats/summary?tag=%FF"] {
        let r = app.get(path).await;
        let err = r.assert_error(400, "invalid_parameter");
        assert_eq!(err["details"]["reason"], "not UTF-8 once percent-decoded", "{path}");
        assert_eq!(err["details"]["parameter"], "tag", "{path}");
    }
    let r = app.get("/v1/links?enabled=maybe").await;
    r.assert_error(400, "invalid_parameter");
    assert_eq!(r.json()["error"]["details"], serde_json::json!({"parameter": "enabled", "value": "maybe", "allowed": ["true", "false", "1", "0"]}));
    assert_eq!(r.json()["error"]["message"], "\"enabled\" must be true or false (or 1 / 0), got \"maybe\"");
    let r = app.get("/v1/links?sort=desc").await;
    r.assert_error(400, "unknown_parameter");
    assert_eq!(r.json()["error"]["message"], "unknown query parameter \"sort\"");
    assert_eq!(r.json()["error"]["details"], serde_json::json!({"parameter": "sort", "supported": ["limit", "cursor", "tag", "enabled", "org"]}));
    let r = app.get("/v1/links?limit=1&limit=2").await;
    r.assert_error(400, "duplicate_parameter");
    assert_eq!(r.json()["error"]["details"], serde_json::json!({"parameter": "limit"}));
    app.get("/v1/links?cursor=not-a-cursor").await.assert_error(400, "invalid_cursor");
    app.get("/v1/links?cursor=").await.assert_error(400, "invalid_cursor");
    // A tag no link could carry (a NUL, which no store could hold either; empty; a joiner at
    // an edge): 400 invalid_parameter, as for the summary's tag filter, not 500, not [].
    for (query, value, reason) in [
        ("%00", "\u{0}", "tags must not contain control or format characters (found U+0000)"),
        ("", "", "each tag must be 1 to 64 characters (after trimming white space)"),
        ("%20", " ", "each tag must be 1 to 64 characters (after trimming white space)"),
        ("%E2%80%8Dab", "\u{200d}ab", "a zero-width joiner or non-joiner may only stand between characters of a tag (found U+200D at an edge)"),
    ] {
        for path in ["/v1/links", "/v1/stats/summary"] {
            let r = app.get(&format!("{path}?tag={query}")).await;
            let err = r.assert_error(400, "invalid_parameter");
            assert_eq!(err["details"], serde_json::json!({"parameter": "tag", "value": value, "reason": reason}), "{path}?tag={query}");
        }
    }
}
