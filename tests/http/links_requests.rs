//! The link management API's request handling on both stores: malformed and non-object
//! JSON bodies, the OpenAPI document, and the `Cache-Control` and query rules of every
//! `/v1/` answer (split from `links_api.rs`).

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::harness::{Backend, TestApp};

backend_tests!(
    malformed_requests_get_json_errors,
    bodies_that_are_not_json_objects_are_refused,
    openapi_document_is_served,
    api_answers_are_not_cached_and_parameterless_routes_refuse_a_query,
);

async fn malformed_requests_get_json_errors(b: Backend) {
    let app = TestApp::start(b).await;
    let j = [("content-type", "application/json")];
    app.request(Method::POST, "/v1/links", &j, Some("{\"long_url\":".into())).await.assert_error(400, "malformed_json");
    app.request(Method::POST, "/v1/links", &j, Some("".into())).await.assert_error(400, "malformed_json");
    app.request(Method::POST, "/v1/links", &j, Some("[1,2]".into())).await.assert_error(400, "invalid_request");
    // A required member missing is named (details.field), as a member of the wrong type is.
    let err = app.request(Method::POST, "/v1/links", &j, Some("{}".into())).await.assert_error(400, "invalid_request");
    assert_eq!((&err["message"], &err["details"]), (&json!("invalid request body: missing field \"long_url\""), &json!({"field": "long_url"})));
    // Of several members of the wrong type, the first the body writes is named.
    let err = app.request(Method::POST, "/v1/links", &j, Some(r#"{"tags":1,"domain":2}"#.into())).await.assert_error(400, "invalid_request");
    assert_eq!(
        (&err["message"], &err["details"]),
        (&json!("invalid request body: tags: invalid type: integer `1`, expected a sequence"), &json!({"field": "tags"}))
    );
    // A member of the wrong JSON type is invalid_request whatever the member (was invalid_url
    // for long_url, invalid_request for enabled); a malformed URL string stays invalid_url.
    let err = app.request(Method::POST, "/v1/links", &j, Some("{\"long_url\":5}".into())).await.assert_error(400, "invalid_request");
    assert_eq!(
        (&err["message"], &err["details"]),
        (&json!("invalid request body: long_url: invalid type: integer `5`, expected a string"), &json!({"field": "long_url"}))
    );
    app.request(Method::POST, "/v1/links", &j, Some("{\"long_url\":\"not a url\"}".into())).await.assert_error(400, "invalid_url");
    let err =
        app.request(Method::POST, "/v1/links", &j, Some("{\"long_url\":\"https://e.example/\",\"colour\":1}".into())).await.assert_error(400, "unknown_field");
    assert_eq!(err["details"]["field"], "colour");
    // A repeated member is refused, never "last one wins" (create and update alike); no link is made.
    let err = app
        .request(Method::POST, "/v1/links", &j, Some(r#"{"long_url":"https://a.example/","long_url":"https://b.example/","custom_alias":"dupkey"}"#.into()))
        .await
        .assert_error(400, "duplicate_key");
    assert_eq!((&err["details"]["key"], &err["details"]["line"]), (&json!("long_url"), &json!(1)));
    app.assert_no_link("dupkey").await;
    let code = app.create_url("https://e.example/dup").await;
    let err = app
        .request(Method::PATCH, &format!("/v1/links/{code}"), &j, Some(r#"{"enabled":true,"tags":{"a":1,"a":2}}"#.into()))
        .await
        .assert_error(400, "duplicate_key");
    assert_eq!(err["details"]["key"], "a");
    // `null` for a field PATCH cannot clear is refused, never read as "unchanged".
    for field in ["long_url", "enabled", "tags", "redirect_type"] {
        let err =
            app.request(Method::PATCH, &format!("/v1/links/{code}"), &j, Some(format!(r#"{{"{field}":null}}"#))).await.assert_error(400, "invalid_request");
        assert_eq!(
            (&err["message"], &err["details"]),
            (&json!(format!("invalid request body: {field}: null is not allowed here; omit the field to keep its value")), &json!({"field": field}))
        );
    }
    let err = app.request(Method::PATCH, &format!("/v1/links/{code}"), &j, Some(r#"{"enabled":"yes"}"#.into())).await.assert_error(400, "invalid_request");
    assert_eq!(
        (&err["message"], &err["details"]),
        (&json!("invalid request body: enabled: invalid type: string \"yes\", expected a boolean"), &json!({"field": "enabled"}))
    );
    // Every field names itself.
    let err =
        app.request(Method::POST, "/v1/links", &j, Some(r#"{"long_url":"https://e.example/","domain":1}"#.into())).await.assert_error(400, "invalid_request");
    assert_eq!(
        (&err["message"], &err["details"]),
        (&json!("invalid request body: domain: invalid type: integer `1`, expected a string"), &json!({"field": "domain"}))
    );
    let err = app.request(Method::PATCH, &format!("/v1/links/{code}"), &j, Some(r#"{"enabled":[]}"#.into())).await.assert_error(400, "invalid_request");
    assert_eq!(
        (&err["message"], &err["details"]),
        (&json!("invalid request body: enabled: invalid type: sequence, expected a boolean"), &json!({"field": "enabled"}))
    );
    let shape = app.request(Method::POST, "/v1/links", &j, Some("[]".into())).await.assert_error(400, "invalid_request");
    assert_eq!(shape["message"], "request body must be a JSON object, got an array");
    app.request(Method::POST, "/v1/links", &[("content-type", "text/plain")], Some("{}".into())).await.assert_error(415, "unsupported_media_type");
    app.request(Method::POST, "/v1/links", &[], Some("{}".into())).await.assert_error(415, "unsupported_media_type");
    let ok = app
        .request(Method::POST, "/v1/links", &[("content-type", "application/json; charset=utf-8")], Some(json!({"long_url": "https://e.example/"}).to_string()))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    // JSON is UTF-8 (RFC 8259 §8.1): another charset is refused, not decoded as UTF-8 anyway;
    // also when another charset parameter names UTF-8. A `+json` suffix type, an upper-case
    // `UTF-8`, a quoted charset, whitespace before a `;` and empty parameters (RFC 9110
    // §8.3.1: `*( OWS ";" OWS [ parameter ] )`) are fine.
    for ct in ["application/json; charset=latin1", "application/json; charset=utf-16", "application/json; charset=utf-8; charset=latin1", "application/"] {
        let err = app
            .request(Method::POST, "/v1/links", &[("content-type", ct)], Some(json!({"long_url": "https://e.example/cs"}).to_string()))
            .await
            .assert_error(415, "unsupported_media_type");
        assert_eq!(err["details"]["content_type"], ct);
    }
    // A quoted charset's quoted-pairs are unescaped (RFC 9110 §5.6.4): "utf\-8" is utf-8; any
    // quoted-string is a parameter value (§5.6.6): an escaped quote, an empty one.
    for ct in [
        "application/merge-patch+json",
        "Application/JSON; Charset=\"UTF-8\"",
        "application/json;;;",
        "application/json ;charset=utf-8",
        "application/json; charset=\"utf\\-8\"",
        r#"application/json; foo="a\"b""#,
        "application/json; foo=\"\"",
    ] {
        let ok = app.request(Method::POST, "/v1/links", &[("content-type", ct)], Some(json!({"long_url": "https://e.example/ok"}).to_string())).await;
        assert_eq!(ok.status, StatusCode::CREATED, "{ct}");
    }
    // PATCH takes a JSON merge patch only: a JSON Patch (RFC 6902) is 415 in the same shape,
    // naming the types it takes (also in Accept-Patch), and changes nothing.
    let json_patch = r#"[{"op":"replace","path":"/enabled","value":false}]"#;
    for ct in ["application/json-patch+json", "application/vnd.example+json"] {
        let r = app.request(Method::PATCH, &format!("/v1/links/{code}"), &[("content-type", ct)], Some(json_patch.into())).await;
        assert_eq!(r.header("accept-patch"), Some("application/merge-patch+json, application/json"), "{ct}");
        let err = r.assert_error(415, "unsupported_media_type");
        assert_eq!(
            err,
            json!({"code": "unsupported_media_type", "message": "expected content-type application/merge-patch+json or application/json (a JSON merge patch, RFC 7396)", "details": {"content_type": ct}}),
            "{ct}"
        );
    }
    assert_eq!(app.get(&format!("/v1/links/{code}")).await.json()["enabled"], true, "nothing changed");
    let ok =
        app.request(Method::PATCH, &format!("/v1/links/{code}"), &[("content-type", "application/merge-patch+json")], Some(r#"{"tags":["mp"]}"#.into())).await;
    assert_eq!((ok.status, ok.json()["tags"].clone()), (StatusCode::OK, json!(["mp"])));
    let huge = json!({"long_url": format!("https://example.com/{}", "a".repeat(300_000))}).to_string();
    app.request(Method::POST, "/v1/links", &j, Some(huge)).await.assert_error(413, "payload_too_large");
    app.get("/v1/nothing-here").await.assert_error(404, "not_found");
    app.get("/v1/links/a/b").await.assert_error(404, "not_found");
    app.get("/").await.assert_error(404, "not_found");
    app.request(Method::PUT, "/v1/links", &j, Some("{}".into())).await.assert_error(405, "method_not_allowed");
    app.request(Method::POST, "/v1/links/abc", &j, Some("{}".into())).await.assert_error(405, "method_not_allowed");
    app.request(Method::DELETE, "/healthz", &[], None).await.assert_error(405, "method_not_allowed");
    app.request(Method::POST, "/somecode", &[], None).await.assert_error(405, "method_not_allowed");
}

/// Top-level JSON values other than an object, each with the type the message names.
pub const NOT_OBJECTS: [(&str, &str); 7] = [
    (r#"["https://evil.example/"]"#, "an array"),
    (r#"[["hello"]]"#, "an array"),
    ("[]", "an array"),
    (r#""https://evil.example/""#, "a string"),
    ("42", "a number"),
    ("true", "a boolean"),
    ("null", "null"),
];

/// Asserts the 400 `invalid_request` a body that is not a JSON object gets (`body` from
/// [`NOT_OBJECTS`], `got` its type).
#[track_caller]
pub fn assert_not_an_object(r: &crate::harness::Resp, body: &str, got: &str) {
    let err = r.assert_error(400, "invalid_request");
    assert_eq!(err["message"], format!("request body must be a JSON object, got {got}"), "{body}");
}

/// A struct is never read from a JSON array by position (`["https://evil.example/"]` as
/// `{"long_url": ...}`), nor from any other value that is not an object: create and update
/// answer 400 `invalid_request`, and create nothing, change nothing.
async fn bodies_that_are_not_json_objects_are_refused(b: Backend) {
    let app = TestApp::start(b).await;
    let j = [("content-type", "application/json")];
    let code = app.create_url("https://example.com/kept").await;
    let before = app.get(&format!("/v1/links/{code}")).await;
    assert_eq!(before.status, StatusCode::OK);
    for (body, got) in NOT_OBJECTS {
        let r = app.request(Method::POST, "/v1/links", &j, Some(body.into())).await;
        assert_not_an_object(&r, body, got);
        // With an idempotency key too (the body is refused before the key is looked at).
        let r = app.request(Method::POST, "/v1/links", &[j[0], ("idempotency-key", "not-an-object")], Some(body.into())).await;
        assert_not_an_object(&r, body, got);
        let r = app.request(Method::PATCH, &format!("/v1/links/{code}"), &j, Some(body.into())).await;
        assert_not_an_object(&r, body, got);
        let etag = before.header("etag").expect("etag");
        let r = app.request(Method::PATCH, &format!("/v1/links/{code}"), &[j[0], ("if-match", etag)], Some(body.into())).await;
        assert_not_an_object(&r, body, got);
    }
    let after = app.get(&format!("/v1/links/{code}")).await;
    assert_eq!((after.json(), after.header("etag")), (before.json(), before.header("etag")), "the link is unchanged");
    let list = app.get("/v1/links").await.json();
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "no link was created: {list}");
    assert_eq!(app.get(&format!("/{code}")).await.location(), Some("https://example.com/kept"));
}

async fn openapi_document_is_served(b: Backend) {
    let app = TestApp::start(b).await;
    let r = app.get("/v1/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    let methods = |p: &str| -> Vec<String> {
        let mut m: Vec<String> = paths[p].as_object().expect("path item").keys().cloned().collect();
        m.sort();
        m
    };
    assert_eq!(methods("/v1/links"), vec!["get", "post"]);
    assert_eq!(methods("/v1/links/{code}"), vec!["delete", "get", "patch"]);
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for s in ["CreateLinkRequest", "UpdateLinkRequest", "LinkResponse", "LinkPage", "ErrorBody"] {
        assert!(schemas.contains_key(s), "schema {s}");
    }
    // The documented bounds are the enforced ones (1..=1000, see list_parameter_errors).
    let params = paths["/v1/links"]["get"]["parameters"].as_array().expect("parameters");
    let limit = params.iter().find(|p| p["name"] == "limit").expect("limit parameter");
    assert_eq!((&limit["schema"]["minimum"], &limit["schema"]["maximum"]), (&json!(1), &json!(1000)), "{limit}");
    // DELETE documents If-Match and its 412.
    let delete = &paths["/v1/links/{code}"]["delete"];
    assert!(delete["parameters"].as_array().expect("parameters").iter().any(|p| p["name"] == "If-Match"), "{delete}");
    assert!(delete["responses"].get("412").is_some(), "{delete}");
    // PATCH documents its body in both media types it takes (those of Accept-Patch), with one schema.
    let schema = json!({"schema": {"$ref": "#/components/schemas/UpdateLinkRequest"}});
    assert_eq!(
        paths["/v1/links/{code}"]["patch"]["requestBody"]["content"],
        json!({"application/merge-patch+json": schema, "application/json": schema}),
        "{}",
        paths["/v1/links/{code}"]["patch"]
    );
}

/// Every `/v1/` answer is `no-store` unless the route says otherwise (the list had no
/// `Cache-Control` at all); the routes that take no query parameter refuse one as the others
/// refuse an unknown one, and do nothing.
async fn api_answers_are_not_cached_and_parameterless_routes_refuse_a_query(b: Backend) {
    let app = TestApp::start(b).await;
    let code = app.create_url("https://example.com/nc").await;
    let single = format!("/v1/links/{code}");
    for path in ["/v1/links", "/v1/links?limit=1", single.as_str(), "/v1/openapi.json", "/v1/links?limit=0", "/v1/links/nope"] {
        let r = app.get(path).await;
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}: {}", r.status);
    }
    // The redirect keeps its own.
    assert_eq!(app.get(&format!("/{code}")).await.header("cache-control"), Some("private, max-age=0"));
    let json = [("content-type", "application/json")];
    let cases: [(Method, String, Option<String>); 5] = [
        (Method::GET, format!("/v1/links/{code}?x=1"), None),
        (Method::PATCH, format!("/v1/links/{code}?x=1"), Some(json!({"enabled": false}).to_string())),
        (Method::DELETE, format!("/v1/links/{code}?x=1"), None),
        (Method::POST, "/v1/links?x=1".to_owned(), Some(json!({"long_url": "https://example.com/q"}).to_string())),
        (Method::GET, "/v1/openapi.json?x=1".to_owned(), None),
    ];
    for (method, path, body) in cases {
        let r = app.request(method.clone(), &path, &json, body).await;
        let err = r.assert_error(400, "unknown_parameter");
        assert_eq!(err["details"], json!({"parameter": "x", "supported": []}), "{method} {path}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    let r = app.request(Method::GET, &format!("/v1/links/{code}?x=1&x=2"), &[], None).await;
    r.assert_error(400, "unknown_parameter");
    let r = app.request(Method::GET, &format!("/v1/links/{code}?%FF=1"), &[], None).await;
    r.assert_error(400, "invalid_parameter");
    // Nothing was changed, deleted or created.
    let g = app.get(&format!("/v1/links/{code}?")).await;
    assert_eq!(g.status, StatusCode::OK, "an empty query passes");
    assert_eq!(g.json()["enabled"], true);
    let list = app.get("/v1/links").await.json();
    assert_eq!(list["items"].as_array().expect("items").len(), 1, "{list}");
}
