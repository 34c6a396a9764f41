//! Admin controls (`/v1/admin/...`, admin role; see [`crate::auth`]):
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/admin/blocklist` | block a destination domain and its subdomains; existing links to it stop redirecting at once |
//! | `GET /v1/admin/blocklist` | the run-time entries (and the static ones of the configuration) |
//! | `DELETE /v1/admin/blocklist/{pattern}` | unblock; the links it held redirect again |
//! | `POST /v1/admin/links/{code}/disable` | the very next redirect of `code`, in every process, is a 404 |
//! | `POST /v1/admin/links/{code}/enable` | lifts the admin disable |
//! | `GET /v1/admin/audit` | the append-only audit log, newest first |
//!
//! Automatic actions on critical anomalies (off by default): [`auto`].
//!
//! The configuration's `[links] blocklist` holds existing links too: a process serving the
//! API stores its static entries (actor `config`) at start-up, before it serves any redirect
//! or API request, and
//! removes those the configuration dropped ([`configured`]).
//!
//! State lives in the link store ([`sluice_connectors::AdminStore`]). Disabling works through
//! a *hold* that sets the link's `enabled` to false as an ordinary committed link change, so
//! the API's [`crate::LinkChangeHook`]s run: the redirect's L1 cache is invalidated in this
//! process and, with Redis, the change is published to every other process (L2 pub/sub).
//! Without Redis another process sees it when its L1 entry expires (`[redirect] cache-ttl`).
//!
//! Blocklist entries are also sent to the dataflow ([`BlocklistSender`]), whose
//! `blocklisted_target` detector flags blocked links that were receiving clicks; entries
//! added by another process reach it through [`feed::sync_blocklist`].

pub mod audit;
pub mod auto;
pub mod blocklist;
pub mod configured;
pub mod dto;
pub mod feed;
pub mod links;
pub mod pattern;
pub mod policy;

use axum::Router;
use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use sluice_connectors::{AdminStore, AuditRecord, LinkChange};
use sluice_dataflows::anomaly::BlocklistSender;
use utoipa::OpenApi;

use crate::auth::{AdminAuth, AdminPrincipal};
use crate::error::ApiError;
use crate::state::ApiState;

/// Longest accepted `reason`, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// State of the admin routes: the link API's state (store, hooks), the admin credentials and
/// the dataflow's blocklist input (when this process runs the dataflow).
#[derive(Clone)]
pub struct AdminState {
    pub(crate) api: ApiState,
    pub(crate) auth: AdminAuth,
    pub(crate) feed: Option<BlocklistSender>,
    pub(crate) static_blocklist: Vec<String>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState").field("auth", &self.auth).field("feed", &self.feed.is_some()).finish_non_exhaustive()
    }
}

impl FromRef<AdminState> for AdminAuth {
    fn from_ref(s: &AdminState) -> AdminAuth {
        s.auth.clone()
    }
}

impl AdminState {
    /// Admin state over `api` with `auth`; blocklist changes go to `feed` when given.
    pub fn new(api: ApiState, auth: AdminAuth, feed: Option<BlocklistSender>) -> Self {
        let static_blocklist = api.inner.policy.blocklist.clone();
        Self { api, auth, feed, static_blocklist }
    }

    /// The store's admin storage; 503 `admin_unavailable` for stores without one.
    pub(crate) fn store(&self) -> Result<&dyn AdminStore, ApiError> {
        self.api.inner.store.admin().ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "admin_unavailable", "this link store keeps no admin state"))
    }

    /// Runs the link-change hooks for every changed link (cache invalidation everywhere).
    pub(crate) fn notify(&self, links: impl IntoIterator<Item = sluice_schemas::Link>) {
        for link in links {
            self.api.notify(LinkChange::Upserted(link));
        }
    }
}

/// An audit record for an action by `who` at now (whole milliseconds, as the API writes it).
pub(crate) fn audit_record(who: &AdminPrincipal, action: &str, target: &str, reason: Option<&str>) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at: crate::links::now_ms(),
        actor: who.actor.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        reason: reason.map(str::to_owned),
        origin_ip: who.peer.map(|ip| ip.to_string()),
        details: serde_json::Value::Null,
    }
}

/// Checks an optional reason: trimmed, at most [`MAX_REASON_CHARS`], no control characters
/// but tab/newline. 400 `invalid_reason`.
pub(crate) fn check_reason(reason: Option<&str>, required: bool) -> Result<Option<String>, ApiError> {
    let r = reason.map(str::trim).filter(|r| !r.is_empty());
    match r {
        None if required => Err(ApiError::bad_request("invalid_reason", "a non-empty \"reason\" is required")),
        None => Ok(None),
        Some(r) if r.chars().count() > MAX_REASON_CHARS => {
            Err(ApiError::bad_request("invalid_reason", format!("reason is longer than {MAX_REASON_CHARS} characters")))
        }
        Some(r) if r.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            Err(ApiError::bad_request("invalid_reason", "reason contains control characters"))
        }
        Some(r) => Ok(Some(r.to_owned())),
    }
}

/// Counts one admin action (`sluice_admin_actions_total{action}`).
pub(crate) fn count(action: &'static str) {
    metrics::counter!("sluice_admin_actions_total", "action" => action).increment(1);
}

/// The admin routes (module docs), without fallbacks.
pub fn routes(state: AdminState) -> Router {
    Router::new()
        .route("/v1/admin/blocklist", get(blocklist::list_blocklist).post(blocklist::add_to_blocklist))
        .route("/v1/admin/blocklist/{pattern}", delete(blocklist::remove_from_blocklist))
        .route("/v1/admin/links/{code}/disable", post(links::disable_link))
        .route("/v1/admin/links/{code}/enable", post(links::enable_link))
        .route("/v1/admin/audit", get(audit::list_audit))
        .with_state(state)
}

/// OpenAPI description of the admin routes.
#[derive(OpenApi)]
#[openapi(
    paths(
        blocklist::add_to_blocklist,
        blocklist::list_blocklist,
        blocklist::remove_from_blocklist,
        links::disable_link,
        links::enable_link,
        audit::list_audit,
    ),
    components(schemas(
        dto::BlocklistRequest,
        dto::BlocklistEntryResponse,
        dto::BlocklistAddResponse,
        dto::BlocklistList,
        dto::BlocklistRemoveResponse,
        dto::ActionRequest,
        dto::HoldResponse,
        dto::AdminLinkResponse,
        dto::AuditEntry,
        dto::AuditPage,
    )),
    tags((name = "admin", description = "Abuse controls: blocklist, disable/enable, audit log. Requires `Authorization: Bearer <[admin] token>`, or a direct loopback client when no token is configured."))
)]
pub struct AdminDoc;
