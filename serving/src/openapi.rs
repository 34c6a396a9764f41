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
