//! The OpenAPI 3 document, generated from the handlers' annotations (utoipa) and served at
//! `GET /v1/openapi.json`.

use axum::Json;
use utoipa::OpenApi;

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

/// The whole document: the link API, stats, reports, anomalies, webhooks and admin, with
/// every error code by HTTP status ([`crate::error_codes`]) in `info.description`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::stats::StatsDoc::openapi());
    doc.merge(crate::reports::ReportsDoc::openapi());
    doc.merge(crate::anomalies::AnomaliesDoc::openapi());
    doc.merge(crate::webhooks::WebhooksDoc::openapi());
    doc.merge(crate::admin::AdminDoc::openapi());
    let description = doc.info.description.take().unwrap_or_default();
    doc.info.description = Some(format!("{description} Error codes by HTTP status: {}.", crate::error_codes::summary()));
    doc
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        // POST /v1/links still takes any JSON type and documents application/json.
        assert_eq!(
            doc["paths"]["/v1/links"]["post"]["requestBody"]["content"],
            json!({"application/json": {"schema": {"$ref": "#/components/schemas/CreateLinkRequest"}}})
        );
    }
}
