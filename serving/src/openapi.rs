//! The OpenAPI 3 document, generated from the handlers' annotations (utoipa) and served at
//! `GET /v1/openapi.json`.

use axum::Json;
use utoipa::OpenApi;

mod outside;

use crate::dto::{CreateLinkRequest, ErrorBody, ErrorDetail, LinkPage, LinkResponse, UpdateLinkRequest};

/// The link API's OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice API", description = "URL shortener with real-time click analytics. Errors use {\"error\": {\"code\", \"message\", \"details\"}}. Codes and aliases are case-sensitive."),
    paths(
        crate::links::create::create_link,
        crate::links::read::get_link,
        crate::links::read::list_links,
        crate::links::update::update_link,
        crate::links::update::delete_link,
    ),
    components(schemas(CreateLinkRequest, UpdateLinkRequest, LinkResponse, LinkPage, ErrorBody, ErrorDetail)),
    tags((name = "links", description = "Create, read, update, delete and list short links"))
)]
pub struct ApiDoc;

/// `GET /v1/openapi.json`: [`document`].
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// The whole document: the link API, stats, reports, anomalies, webhooks and admin, the
/// redirect (`GET`/`HEAD /{code}`) and the health routes (`/healthz`, `/readyz`,
/// `/metrics`) the binary serves beside them, with every error code by HTTP status
/// ([`crate::error_codes`]) in `info.description`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::stats::StatsDoc::openapi());
    doc.merge(crate::reports::ReportsDoc::openapi());
    doc.merge(crate::anomalies::AnomaliesDoc::openapi());
    doc.merge(crate::webhooks::WebhooksDoc::openapi());
    doc.merge(crate::admin::AdminDoc::openapi());
    doc.merge(outside::OutsideDoc::openapi());
    let description = doc.info.description.take().unwrap_or_default();
    doc.info.description = Some(format!("{description} Error codes by HTTP status: {}.", crate::error_codes::summary()));
    add_security(&mut doc);
    doc
}

/// The credentials of the routes that take any ([`crate::auth`], `POST /v1/events`): a
/// bearer token, or none (`{}`) because without a configured token a direct loopback client
/// is admitted. Every other route takes no credentials (README "Who may call the API").
fn add_security(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
    let bearer = |what: &str| SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(what.to_owned())).build());
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "admin_token",
        bearer("[admin] token; without one configured, direct loopback clients addressing localhost, 127.0.0.1 or [::1] only"),
    );
    components.add_security_scheme(
        "ingest_token",
        bearer("[ingest] token; without one configured, direct loopback clients addressing localhost, 127.0.0.1 or [::1] only"),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let scheme = match path.as_str() {
            p if ["/v1/admin", "/v1/anomalies", "/v1/webhooks"].iter().any(|prefix| p.starts_with(prefix)) => "admin_token",
            "/v1/events" => "ingest_token",
            _ => continue,
        };
        let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head];
        for op in ops.into_iter().flatten() {
            op.security = Some(vec![SecurityRequirement::new(scheme, Vec::<String>::new()), SecurityRequirement::default()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    /// Finding: the document left out the routes outside `/v1/`: the redirect and the health
    /// routes. Each is listed with the statuses and content types its handler answers.
    #[test]
    fn the_redirect_and_the_health_routes_are_documented_with_their_answers() {
        let doc = serde_json::to_value(super::document()).expect("serialize");
        let responses = |path: &str, method: &str| -> Value { doc["paths"][path][method]["responses"].clone() };
        let statuses = |path: &str, method: &str| -> Vec<String> {
            responses(path, method).as_object().unwrap_or_else(|| panic!("{method} {path} documented")).keys().cloned().collect()
        };
        let content_types = |path: &str, method: &str, status: &str| -> Vec<String> {
            responses(path, method)[status]["content"].as_object().map(|c| c.keys().cloned().collect()).unwrap_or_default()
        };
        let mut methods: Vec<&str> = doc["paths"]["/{code}"].as_object().expect("/{code}").keys().map(String::as_str).collect();
        methods.sort_unstable();
        assert_eq!(methods, ["get", "head"]);
        for method in ["get", "head"] {
            assert_eq!(statuses("/{code}", method), ["301", "302", "400", "404", "410", "503"], "{method}");
            for redirect in ["301", "302"] {
                let headers: Vec<&str> =
                    doc["paths"]["/{code}"][method]["responses"][redirect]["headers"].as_object().expect("headers").keys().map(String::as_str).collect();
                assert_eq!(headers, ["Cache-Control", "Location"], "{method} {redirect}");
                assert_eq!(content_types("/{code}", method, redirect), Vec::<String>::new(), "no body");
            }
        }
        for error in ["400", "404", "410", "503"] {
            assert_eq!(content_types("/{code}", "get", error), ["application/json"], "GET {error}");
            assert_eq!(content_types("/{code}", "head", error), Vec::<String>::new(), "HEAD {error}: no body");
        }
        assert_eq!(statuses("/healthz", "get"), ["200"]);
        assert_eq!(content_types("/healthz", "get", "200"), ["application/json"]);
        assert_eq!(responses("/healthz", "get")["200"]["content"]["application/json"]["example"], json!({"status": "ok"}));
        assert_eq!(statuses("/readyz", "get"), ["200", "503"]);
        assert_eq!(
            (content_types("/readyz", "get", "200"), content_types("/readyz", "get", "503")),
            (vec!["application/json".to_owned()], vec!["application/json".to_owned()])
        );
        assert_eq!(statuses("/metrics", "get"), ["200"]);
        assert_eq!(content_types("/metrics", "get", "200"), ["text/plain; version=0.0.4; charset=utf-8"]);
        for path in ["/{code}", "/healthz", "/readyz", "/metrics"] {
            assert_eq!(doc["paths"][path].as_object().map(|m| m.len() <= 2), Some(true), "{path}");
        }
    }

    /// Finding: the document listed only `application/json` for the body of `PATCH
    /// /v1/links/{code}`, which takes `application/merge-patch+json` too. It lists both, each
    /// with the same schema: exactly the types of `Accept-Patch` ([`crate::media_types::MERGE_PATCH_TYPES`]).
    #[test]
    fn the_patch_body_is_documented_in_every_media_type_it_is_taken_in() {
        let doc = serde_json::to_value(super::document()).expect("serialize");
        let body = &doc["paths"]["/v1/links/{code}"]["patch"]["requestBody"];
        let schema = json!({"schema": {"$ref": "#/components/schemas/UpdateLinkRequest"}});
        assert_eq!(
            body,
            &json!({
                "description": "A JSON merge patch (RFC 7396), sent as application/merge-patch+json or application/json: members left out are kept, `null` removes `expires_at` or `org` (and is refused for the other members)",
                "content": {"application/merge-patch+json": schema, "application/json": schema},
                "required": true,
            })
        );
        let mut documented: Vec<&str> = body["content"].as_object().expect("content").keys().map(String::as_str).collect();
        let mut accepted: Vec<&str> = crate::media_types::MERGE_PATCH_TYPES.split(", ").collect();
        documented.sort_unstable();
        accepted.sort_unstable();
        assert_eq!(documented, accepted);
        // POST /v1/events: a JSON array or NDJSON (attack of session 44: only application/json
        // was listed).
        let events = &doc["paths"]["/v1/events"]["post"]["requestBody"]["content"];
        assert_eq!(
            events,
            &json!({
                "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/EventInputDoc"}}},
                "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/EventInputDoc"}},
            })
        );
        // Finding (newcomer, session 58): no security schemes were documented, and the
        // enable body was marked required although none is needed.
        assert_eq!(doc["components"]["securitySchemes"]["admin_token"]["scheme"], "bearer");
        let either = json!([{"admin_token": []}, {}]);
        for (path, method) in [("/v1/admin/blocklist", "post"), ("/v1/admin/links/{code}/enable", "post"), ("/v1/anomalies", "get"), ("/v1/webhooks", "post")] {
            assert_eq!(doc["paths"][path][method]["security"], either, "{method} {path}");
        }
        assert_eq!(doc["paths"]["/v1/events"]["post"]["security"], json!([{"ingest_token": []}, {}]));
        assert_eq!(doc["paths"]["/v1/links"]["post"]["security"], Value::Null, "the link API takes no credentials");
        assert_ne!(doc["paths"]["/v1/admin/links/{code}/enable"]["post"]["requestBody"]["required"], json!(true));
        // POST /v1/links still takes any JSON type and documents application/json.
        assert_eq!(
            doc["paths"]["/v1/links"]["post"]["requestBody"]["content"],
            json!({"application/json": {"schema": {"$ref": "#/components/schemas/CreateLinkRequest"}}})
        );
    }
}
