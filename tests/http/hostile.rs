//! Hostile requests to the API, against both stores: a header that must be single
//! (`Content-Type`, `Authorization`, `Idempotency-Key`; `Last-Event-ID` in `tests/anomalies`) sent twice (400
//! `duplicate_header` on every `/v1/` route, never on a redirect; `If-Match` and
//! `If-None-Match` are lists whose copies all count), and 1 MB of input that an error would
//! quote (the error body stays small, valid JSON in the DESIGN.md shape).

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::admin::TOKEN;
use crate::backend_tests;
use crate::harness::{BROWSER_UA, Backend, Resp, TestApp};

/// The exact body of a `duplicate_header` answer.
fn duplicate(header: &str, count: usize) -> Value {
    json!({"error": {
        "code": "duplicate_header",
        "message": format!("the {header} header appears {count} times; send it exactly once"),
        "details": {"header": header, "count": count}
    }})
}

#[track_caller]
fn assert_duplicate(r: &Resp, header: &str, count: usize) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), duplicate(header, count));
}

async fn a_repeated_single_header_is_400_on_api_routes_and_ignored_by_redirects(b: Backend) {
    let app = TestApp::start_with(b, |c| c.admin.token = Some(sluice::config::Secret(TOKEN.into()))).await;
    let json_ct = ("content-type", "application/json");
    let body = json!({"long_url": "https://example.com/dup", "custom_alias": "dupct"}).to_string();
    // Content-Type: the first copy alone would be served as JSON.
    let r = app.request(Method::POST, "/v1/links", &[json_ct, ("content-type", "text/plain")], Some(body.clone())).await;
    assert_duplicate(&r, "Content-Type", 2);
    app.assert_no_link("dupct").await;
    // Idempotency-Key, three copies.
    let keys = [json_ct, ("idempotency-key", "k1"), ("idempotency-key", "k2"), ("idempotency-key", "k1")];
    assert_duplicate(&app.request(Method::POST, "/v1/links", &keys, Some(body.clone())).await, "Idempotency-Key", 3);
    app.assert_no_link("dupct").await;
    // Authorization on an admin route: the valid token first would admit the request.
    let good = format!("Bearer {TOKEN}");
    let auth = [("authorization", good.as_str()), ("authorization", "Bearer wrong")];
    let ok = app.request(Method::GET, "/v1/admin/blocklist", &auth[..1], None).await;
    assert_eq!(ok.status, StatusCode::OK, "one copy is served");
    assert_duplicate(&app.request(Method::GET, "/v1/admin/blocklist", &auth, None).await, "Authorization", 2);
    // ... and on the other API routes (links, stats), before their own answer.
    assert_duplicate(&app.request(Method::GET, "/v1/links", &auth, None).await, "Authorization", 2);
    assert_duplicate(&app.request(Method::GET, "/v1/stats/summary", &auth, None).await, "Authorization", 2);
    // Several single headers repeated: the first in Content-Type, Authorization,
    // Idempotency-Key order is named.
    let all = [json_ct, json_ct, auth[0], auth[1]];
    assert_duplicate(&app.request(Method::POST, "/v1/links", &all, Some(body.clone())).await, "Content-Type", 2);
    // Now created with one copy of each.
    assert_eq!(app.request(Method::POST, "/v1/links", &[json_ct, ("idempotency-key", "k1")], Some(body)).await.status, StatusCode::CREATED);

    // The redirect never fails on a header.
    let ua = ("user-agent", BROWSER_UA);
    let odd = [ua, json_ct, ("content-type", "text/plain"), auth[0], auth[1], ("idempotency-key", "a"), ("idempotency-key", "b")];
    for method in [Method::GET, Method::HEAD] {
        let r = app.request(method.clone(), "/dupct", &odd, None).await;
        assert_eq!((r.status, r.location()), (StatusCode::FOUND, Some("https://example.com/dup")), "{method}");
    }
}

/// A request with two `If-Match` lines (and a JSON body when given).
async fn with_if_match(app: &TestApp, method: Method, path: &str, lines: [&str; 2], body: Option<Value>) -> Resp {
    let mut h = vec![("if-match", lines[0]), ("if-match", lines[1])];
    if body.is_some() {
        h.push(("content-type", "application/json"));
    }
    app.request(method, path, &h, body.map(|b| b.to_string())).await
}

async fn if_match_and_if_none_match_lines_form_one_list(b: Backend) {
    let app = TestApp::start(b).await;
    let code = app.create_url("https://example.com/etag").await;
    let path = format!("/v1/links/{code}");
    let current = app.get(&path).await.header("etag").expect("etag").to_owned();
    let stale = "\"0-0\"";
    // If-None-Match: any line may hold the current tag.
    let r = app.request(Method::GET, &path, &[("if-none-match", stale), ("if-none-match", &current)], None).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    // If-Match on GET (RFC 9110 §13.2.2): a stale tag is 412; the current one, in any line, or `*` reads the link.
    with_if_match(&app, Method::GET, &path, [stale, "\"1-1\""], None).await.assert_error(412, "precondition_failed");
    for lines in [&[stale, current.as_str()][..], &["*"]] {
        let h: Vec<_> = lines.iter().map(|l| ("if-match", *l)).collect();
        let r = app.request(Method::GET, &path, &h, None).await;
        assert_eq!((r.status, r.json()["code"].as_str()), (StatusCode::OK, Some(code.as_str())), "{lines:?}");
    }
    // `*` stands alone (§13.1.1): listed with a tag, in another line, the field is refused.
    let err = with_if_match(&app, Method::GET, &path, ["*", stale], None).await.assert_error(400, "invalid_etag");
    assert_eq!(err["details"], json!({"header": "If-Match", "value": "*, \"0-0\""}));
    // If-Match: the current tag in the second line applies the PATCH (only the first line
    // was read before: 412).
    let r = with_if_match(&app, Method::PATCH, &path, [stale, &current], Some(json!({"tags": ["second-line"]}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["tags"], json!(["second-line"]));
    let newer = r.header("etag").expect("etag").to_owned();
    // Every line stale (the old current one included): 412, nothing changed.
    with_if_match(&app, Method::PATCH, &path, [stale, &current], Some(json!({"tags": ["x"]}))).await.assert_error(412, "precondition_failed");
    assert_eq!(app.get(&path).await.json()["tags"], json!(["second-line"]));
    // DELETE likewise.
    with_if_match(&app, Method::DELETE, &path, [stale, &current], None).await.assert_error(412, "precondition_failed");
    assert_eq!(with_if_match(&app, Method::DELETE, &path, [stale, &newer], None).await.status, StatusCode::NO_CONTENT);
    app.assert_no_link(&code).await;
}

/// `If-None-Match` on PATCH and DELETE (RFC 9110 §13.1.2): `*` or the current tag (weak
/// comparison) fails with 412 and changes nothing; other tags let the write through.
async fn if_none_match_guards_writes_to_an_existing_link(b: Backend) {
    let app = TestApp::start(b).await;
    let code = app.create_url("https://example.com/inm").await;
    let path = format!("/v1/links/{code}");
    let current = app.get(&path).await.header("etag").expect("etag").to_owned();
    let weak = format!("W/{current}");
    let patch = |inm: String, tag: &'static str| {
        let (app, path) = (&app, &path);
        async move {
            app.request(Method::PATCH, path, &[("if-none-match", inm.as_str()), ("content-type", "application/json")], Some(json!({"tags": [tag]}).to_string()))
                .await
        }
    };
    for inm in ["*".to_string(), current.clone(), weak.clone(), format!("\"0-0\", {current}")] {
        let err = patch(inm.clone(), "refused").await.assert_error(412, "precondition_failed");
        assert_eq!(err["message"], "If-None-Match: the link exists with a matching ETag", "{inm}");
        app.request(Method::DELETE, &path, &[("if-none-match", inm.as_str())], None).await.assert_error(412, "precondition_failed");
    }
    assert_eq!(app.get(&path).await.json()["tags"], json!([]), "nothing changed");
    let r = patch("\"0-0\"".to_string(), "applied").await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["tags"], json!(["applied"]));
    // The tag read before the PATCH is no longer current: the DELETE goes through.
    assert_eq!(app.request(Method::DELETE, &path, &[("if-none-match", current.as_str())], None).await.status, StatusCode::NO_CONTENT);
    app.assert_no_link(&code).await;
    // On a code without a link a precondition is a 404, like a write without one.
    app.request(Method::DELETE, &path, &[("if-none-match", "*")], None).await.assert_error(404, "not_found");
}

/// An `If-Match` or `If-None-Match` member that is neither `*` nor a quoted entity tag
/// (`abc` for the ETag `"abc"`) could never match: 400 `invalid_etag` naming the header and
/// the member, on `GET` (which used to answer 200 as if it had not been sent), `PATCH` and
/// `DELETE` (which used to answer 412 "modified", however often retried), before the link
/// is looked up; nothing changes. The same tag quoted keeps working.
async fn an_unquoted_etag_is_400_invalid_etag(b: Backend) {
    let app = TestApp::start(b).await;
    let code = app.create_url("https://example.com/unquoted").await;
    let path = format!("/v1/links/{code}");
    let current = app.get(&path).await.header("etag").expect("etag").to_owned();
    let unquoted = current.trim_matches('"').to_owned();
    let want = |header: &str, value: &str| json!({"header": header, "value": value});
    for (method, header) in [
        (Method::GET, "If-None-Match"),
        (Method::PATCH, "If-None-Match"),
        (Method::PATCH, "If-Match"),
        (Method::DELETE, "If-Match"),
        (Method::DELETE, "If-None-Match"),
    ] {
        for value in [unquoted.clone(), format!("W/{unquoted}"), format!("\"0-0\", {unquoted}")] {
            let mut h = vec![(header, value.as_str())];
            let body = (method == Method::PATCH).then(|| {
                h.push(("content-type", "application/json"));
                json!({"tags": ["changed"]}).to_string()
            });
            let r = app.request(method.clone(), &path, &h, body).await;
            let err = r.assert_error(400, "invalid_etag");
            let member = value.rsplit(", ").next().expect("member");
            assert_eq!(err["details"], want(header, member), "{method} {header}: {value}");
            assert!(err["message"].as_str().expect("message").starts_with(&format!("{header} must be * or a list of entity tags in double quotes")), "{err}");
        }
    }
    // Before any lookup: also for a code without a link.
    app.request(Method::GET, "/v1/links/nope", &[("if-none-match", "abc")], None).await.assert_error(400, "invalid_etag");
    assert_eq!(app.get(&path).await.json()["tags"], json!([]), "nothing changed");
    let r = app.request(Method::GET, &path, &[("if-none-match", current.as_str())], None).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED, "quoted, it matches");
    assert_eq!(app.request(Method::DELETE, &path, &[("if-match", current.as_str())], None).await.status, StatusCode::NO_CONTENT);
}

/// 1 MiB of hostile text.
fn mib(c: char) -> String {
    std::iter::repeat_n(c, 1 << 20).collect()
}

/// Asserts a small (< 2 KiB) error body of `status` and `code`; returns the error object.
#[track_caller]
fn small_error(r: &Resp, status: u16, code: &str) -> Value {
    assert!(r.body.len() < 2048, "error body of {} bytes: {}", r.body.len(), String::from_utf8_lossy(&r.body[..r.body.len().min(300)]));
    r.assert_error(status, code)
}

async fn errors_quoting_1_mib_of_input_stay_small(b: Backend) {
    // A body limit that lets 1 MiB reach the JSON parser.
    let app = TestApp::start_with(b, |c| c.server.max_body_bytes = 4 << 20).await;
    let ok_url = "https://example.com/x";
    // serde's own text quotes a string of the wrong type: the message keeps 768 bytes of its
    // start and 253 of its end around a '…'.
    let r = app.post_json("/v1/links", &json!({"long_url": ok_url, "redirect_type": mib('s')})).await;
    let err = small_error(&r, 400, "invalid_request");
    let head = "invalid request body: redirect_type: invalid type: string \"";
    let tail = "\", expected 301 or 302";
    let expected = format!("{head}{}…{}{tail}", "s".repeat(768 - head.len()), "s".repeat(253 - tail.len()));
    assert_eq!(err, json!({"code": "invalid_request", "message": expected, "details": {"field": "redirect_type"}}));
    // An unknown member named by 1 MiB: quoted up to 256 bytes, as in details.
    let mut body = serde_json::Map::new();
    body.insert("long_url".into(), json!(ok_url));
    body.insert(mib('k'), json!(1));
    let r = app.post_json("/v1/links", &Value::Object(body)).await;
    let err = small_error(&r, 400, "unknown_field");
    let k256 = "k".repeat(256);
    assert_eq!(err, json!({"code": "unknown_field", "message": format!("unknown field \"{k256}…\""), "details": {"field": k256, "truncated": true}}));
    // A 1 MiB domain (multi-byte characters: cut on a character boundary).
    let r = app.post_json("/v1/links", &json!({"long_url": ok_url, "domain": mib('é')})).await;
    let err = small_error(&r, 400, "unknown_domain");
    let e128 = "é".repeat(128);
    assert_eq!(err["message"], format!("domain \"{e128}…\" is not one of this service's short domains"));
    assert_eq!((&err["details"]["domain"], &err["details"]["truncated"]), (&json!(e128), &json!(true)));
    // The longest query a request line may carry (64 KB), quoted by the stats parameters.
    let raw = "9".repeat(60_000);
    let r = app.get(&format!("/v1/links/abc/stats?from={raw}")).await;
    let err = small_error(&r, 400, "invalid_timestamp");
    let quoted = format!("{}…", "9".repeat(256));
    assert!(err["message"].as_str().expect("message").ends_with(&format!("got \"{quoted}\": input contains invalid characters")), "{err}");
    let r = app.get(&format!("/v1/links/abc/stats?{raw}=1")).await;
    assert_eq!(small_error(&r, 400, "unknown_parameter")["message"], format!("unknown query parameter \"{quoted}\""));
}

backend_tests!(
    a_repeated_single_header_is_400_on_api_routes_and_ignored_by_redirects,
    if_match_and_if_none_match_lines_form_one_list,
    if_none_match_guards_writes_to_an_existing_link,
    an_unquoted_etag_is_400_invalid_etag,
    errors_quoting_1_mib_of_input_stay_small,
);
