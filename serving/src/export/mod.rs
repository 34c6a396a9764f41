//! `GET /v1/stats/export`: a link's stats rows streamed as CSV, a JSON array or NDJSON.
//!
//! Parameters are those of the stats endpoint ([`crate::stats::params`], parsed by the same
//! code) plus `code` (required), `format` (`csv` default, `json`, `ndjson`) and
//! `escape_formulas` (CSV only, default false; [`RowWriter::escaping_formulas`]); `limit` and
//! `order_by` are not accepted (an export holds every row, buckets ascending, then clicks descending, then
//! dimension values ascending). Every error that can be known before the first byte —
//! parameters (400), an unknown link (404), a range the views cannot answer (400
//! `range_too_long`, `range_not_retained`, …) — is answered in the JSON error shape. The body
//! is then produced chunk by chunk ([`plan`]) by a task that stops as soon as the client goes
//! away; a failure after the first byte aborts the response (the chunked body is not
//! terminated, so clients see a truncated transfer rather than a short file).
//!
//! With a long-term store (ClickHouse) configured, ranges the views no longer hold and
//! dimension combinations they do not maintain are read from it ([`RowSource`]), as
//! `GET /v1/links/{code}/stats` reads them: the same rows, clicks and uniques. The first and
//! last bucket are read before the first byte, so an unreachable store is a JSON 503
//! `stats_history_unavailable`, not a cut stream (unless it fails in the middle).
//!
//! | file | what |
//! |---|---|
//! | `writer.rs` | CSV / JSON / NDJSON encoders |
//! | `plan.rs` | chunking and rendering |
//! | `source.rs` | where rows come from: the views or the long-term store |

pub mod plan;
pub mod source;
pub mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::mpsc;

pub use plan::ExportPlan;
pub use source::RowSource;
pub use writer::{ExportFormat, RowWriter};

use crate::dto::ErrorBody;
use crate::error::{ApiError, echo};
use crate::reports::ReportsState;
use crate::stats::params::{StatsParams, parse_stats_with};

/// Chunks buffered between the producing task and the response body.
const BODY_CHANNEL_CHUNKS: usize = 2;
/// A chunk's bytes are sent once they pass this size (bounds memory per export).
const FLUSH_BYTES: usize = 64 * 1024;

/// Export-only query parameters; everything else goes to [`parse_stats`].
const OWN_PARAMETERS: [&str; 3] = ["code", "format", "escape_formulas"];
/// Stats parameters an export does not take (it holds every row, in bucket order).
const REFUSED_PARAMETERS: [&str; 2] = ["limit", "order_by"];

/// A parsed export query: the link, the format and the stats parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportQuery {
    /// Short code.
    pub code: String,
    /// Output format.
    pub format: ExportFormat,
    /// Range, bucketing and breakdown (`limit`/`order_by` unused).
    pub params: StatsParams,
    /// `escape_formulas=true`: CSV text fields a spreadsheet would evaluate get a leading `'`
    /// ([`RowWriter::escaping_formulas`]); default false.
    pub escape_formulas: bool,
}

/// Parses the query string of `GET /v1/stats/export` at `now_ms`: `code` (required) and
/// `format` here, the rest by the stats endpoint's [`parse_stats_with`] (same defaults, limits
/// and error codes; with `adhoc`, a long-term store answering them, any combination of up to
/// 3 distinct dimensions). Errors: 400 `missing_code`, `invalid_format`, `invalid_parameter`
/// (`escape_formulas` not a boolean, or true with JSON/NDJSON), `unknown_parameter`
/// (also for `limit`/`order_by`), `duplicate_parameter`, and those of [`parse_stats_with`].
pub fn parse_export_query(raw: Option<&str>, now_ms: i64, adhoc: bool) -> Result<ExportQuery, ApiError> {
    let (mut code, mut format, mut escape) = (None, None, None);
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in crate::query::decode(raw)? {
        if REFUSED_PARAMETERS.contains(&k.as_str()) {
            return Err(ApiError::bad_request(
                "unknown_parameter",
                format!("an export does not take \"{}\" (it holds every row, buckets ascending)", echo(&k)),
            )
            .with_details(json!({ "parameter": k, "supported": supported_parameters() })));
        }
        let slot = match k.as_str() {
            "code" => &mut code,
            "format" => &mut format,
            "escape_formulas" => &mut escape,
            _ => {
                rest.append_pair(&k, &v);
                continue;
            }
        };
        if slot.replace(v).is_some() {
            return Err(crate::query::duplicate(&k));
        }
    }
    // Not trimmed: a code is matched as sent, as on every other route (` ab ` is no code).
    let code = code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing_code", "the code parameter is required").with_details(json!({ "parameter": "code" })))?;
    let format = parse_format(format.as_deref())?;
    let escape_formulas = escape.as_deref().map_or(Ok(false), |v| crate::stats::params::bool_param("escape_formulas", v))?;
    check_escape_formulas(escape_formulas, format, json!(escape.unwrap_or_default()), json!(["false", "0"]))?;
    let params = parse_stats_with(Some(&rest.finish()), now_ms, adhoc).map_err(|mut e| {
        if e.code == "unknown_parameter" {
            e.details["supported"] = json!(supported_parameters());
        }
        e
    })?;
    Ok(ExportQuery { code, format, params, escape_formulas })
}

/// `escape_formulas` on with a format other than CSV: 400 `invalid_parameter` (`details`:
/// the parameter, the `value` as sent and the `allowed` values), shared by
/// `GET /v1/stats/export` and `POST /v1/reports/export`.
pub(crate) fn check_escape_formulas(on: bool, format: ExportFormat, value: serde_json::Value, allowed: serde_json::Value) -> Result<(), ApiError> {
    if on && format != ExportFormat::Csv {
        return Err(ApiError::bad_request("invalid_parameter", "escape_formulas applies to format=csv only (JSON values are never read as formulas)")
            .with_details(json!({ "parameter": "escape_formulas", "value": value, "allowed": allowed })));
    }
    Ok(())
}

/// Every query parameter an export takes (`details.supported` of its `unknown_parameter`).
fn supported_parameters() -> Vec<&'static str> {
    let mut supported: Vec<&str> = OWN_PARAMETERS.to_vec();
    supported.extend(["from", "to", "bucket", "tz", "dimensions", "include_bots"]);
    supported
}

/// Parses `format`. Error: 400 `invalid_format`.
pub fn parse_format(raw: Option<&str>) -> Result<ExportFormat, ApiError> {
    ExportFormat::parse(raw).ok_or_else(|| {
        let value = raw.unwrap_or_default();
        ApiError::bad_request("invalid_format", format!("format must be csv, json or ndjson, not \"{}\"", echo(value)))
            .with_details(json!({ "parameter": "format", "value": value, "allowed": ["csv", "json", "ndjson"] }))
    })
}

/// File name of an export: `sluice-<what>-<bucket>-<from>-<to>.<ext>`, instants as
/// `YYYYMMDDTHHMMZ` (UTC).
pub fn file_name(what: &str, range: &StatsParams, format: ExportFormat) -> String {
    let t = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |d| d.format("%Y%m%dT%H%MZ").to_string());
    format!("sluice-{what}-{}-{}-{}.{}", range.bucket.as_str(), t(range.from_ms), t(range.to_ms), format.extension())
}

/// Headers of an export response or download.
pub fn export_headers(resp: &mut Response, format: ExportFormat, file: &str) {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
}

/// Streams a link's stats rows.
#[utoipa::path(
    get, path = "/v1/stats/export", tag = "stats",
    params(
        ("code" = String, Query, description = "Short code of the link (required)"),
        ("format" = Option<String>, Query, description = "csv (default; RFC 4180, CRLF, header row), json (one array) or ndjson"),
        ("escape_formulas" = Option<bool>, Query, description = "csv only: a code or dimension value starting with =, +, -, @, a tab or a CR gets a leading ' so that spreadsheets show it as text (OWASP CSV injection; browser and OS families come from user agents any clicker chooses). Default false: values verbatim"),
        ("from" = Option<String>, Query, description = "Range start, RFC 3339 with offset, whole minute (inclusive); as for GET /v1/links/{code}/stats, default too (`to` minus 7 days rounded down to a UTC quarter hour; `to` minus 60 minutes for bucket=minute). The file name holds the range used"),
        ("to" = Option<String>, Query, description = "Range end, RFC 3339, whole minute (exclusive). Default: the end of the current UTC minute (the next whole minute after the request)"),
        ("bucket" = Option<String>, Query, description = "minute (at most 2 days), hour (at most 93 days) or day (default; at most 1,100 days)"),
        ("tz" = Option<String>, Query, description = "IANA time zone of hour/day buckets and bucket labels (default UTC when absent; an empty tz= is 400 unknown_timezone); '+' as for GET /v1/links/{code}/stats (send %2B; a form-decoded space is read as '+')"),
        ("dimensions" = Option<String>, Query, description = "Empty, one of country, device, browser, os, referrer_domain, referrer_medium, or country,device; with ClickHouse configured, any combination of up to 3 distinct names (answered from events_enriched, exact uniques, as GET /v1/links/{code}/stats). One column each"),
        ("include_bots" = Option<bool>, Query, description = "Count bot and link-preview clicks too (default false)"),
    ),
    responses(
        (status = 200, description = "The rows, streamed, buckets ascending (then clicks descending, then dimension values). Columns: bucket (RFC 3339 with the zone's offset), code, one per dimension, clicks, uniques. Content-Disposition: attachment. Sluice-As-Of (RFC 3339 UTC, absent while unknown) and Sluice-Backlog-Events: the freshness of the views the export starts from (as the stats freshness)", content_type = "text/csv", body = String),
        (status = 400, description = "missing_code, invalid_format, invalid_timestamp, unaligned_range, invalid_range, range_too_long, range_not_retained (only without ClickHouse: with it, ranges older than the in-memory views hold are read from it, as GET /v1/links/{code}/stats reads them), invalid_bucket, unknown_timezone, unsupported_tz_offset, invalid_dimensions, invalid_parameter, unknown_parameter, duplicate_parameter", body = ErrorBody),
        (status = 404, description = "not_found: no link with this code", body = ErrorBody),
        (status = 503, description = "stats_unavailable, stats_not_local, or stats_history_unavailable (ClickHouse, which answers the range, does not answer)", body = ErrorBody),
    )
)]
pub async fn export_stats(State(state): State<ReportsState>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let adhoc = state.answers_any_dimensions();
    let ExportQuery { code, format, params, escape_formulas } = parse_export_query(query.as_deref(), state.now_ms(), adhoc)?;
    let plan = ExportPlan::new(&params, format)?.escaping_formulas(escape_formulas);
    let source = state.source()?;
    state.require_link(&code).await?;
    let plan = Arc::new(plan);
    {
        let (source, plan, code) = (source.clone(), Arc::clone(&plan), code.clone());
        tokio::task::spawn_blocking(move || plan.preflight(&source, &code)).await.map_err(|e| ApiError::internal(&e))??;
    }
    let file = file_name(&code, plan.range(), format);
    // Taken before the first row is read: every click the header says is in, is.
    let fresh = state.views().ok().map(|views| state.stats.freshness(views.as_of(), chrono::Utc::now().timestamp_millis()));
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(BODY_CHANNEL_CHUNKS);
    tokio::spawn(produce(source, plan, code, tx));
    let body = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut resp = (StatusCode::OK, Body::from_stream(body)).into_response();
    export_headers(&mut resp, format, &file);
    if let Some(fresh) = &fresh {
        freshness_headers(&mut resp, fresh);
    }
    Ok(resp)
}

/// `Sluice-As-Of` (RFC 3339 UTC: every click logged before it is in the export; absent while
/// unknown, e.g. during the replay of the click log at start-up) and `Sluice-Backlog-Events`
/// (logged events not yet read by the dataflow): the stats' `freshness` of the views the
/// export starts from, so a client can tell an export taken during a start-up replay.
fn freshness_headers(resp: &mut Response, f: &crate::stats::FreshnessInfo) {
    let h = resp.headers_mut();
    if let Some(v) = f.as_of_ms.map(crate::stats::params::rfc3339_utc).and_then(|t| HeaderValue::from_str(&t).ok()) {
        h.insert("sluice-as-of", v);
    }
    h.insert("sluice-backlog-events", HeaderValue::from(f.backlog_events));
}

/// Renders every chunk of `code` into `tx` (header first, footer last); stops when the
/// receiver is gone (client disconnected).
async fn produce(source: RowSource, plan: Arc<ExportPlan>, code: String, tx: mpsc::Sender<Result<Bytes, std::io::Error>>) {
    let mut writer = plan.writer();
    let mut buf = Vec::with_capacity(FLUSH_BYTES);
    writer.header(&mut buf);
    for index in 0..plan.chunk_count() {
        let (src, p, c, mut w, mut b) = (source.clone(), Arc::clone(&plan), code.clone(), writer, buf);
        let joined = tokio::task::spawn_blocking(move || {
            let r = p.render_chunk(&src, &c, index, &mut w, &mut b);
            (r, w, b)
        })
        .await;
        let (result, w, b) = match joined {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "export chunk task failed");
                let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
                return;
            }
        };
        (writer, buf) = (w, b);
        if let Err(e) = result {
            tracing::warn!(error = %e, code = %code, chunk = index, "export aborted after the response started");
            let _ = tx.send(Err(std::io::Error::other(e.message))).await;
            return;
        }
        if buf.len() >= FLUSH_BYTES && tx.send(Ok(Bytes::from(std::mem::replace(&mut buf, Vec::with_capacity(FLUSH_BYTES))))).await.is_err() {
            tracing::debug!(code = %code, "export client went away");
            return;
        }
    }
    writer.footer(&mut buf);
    metrics::counter!("sluice_export_rows_total", "route" => "/v1/stats/export").increment(writer.rows());
    if !buf.is_empty() {
        let _ = tx.send(Ok(Bytes::from(buf))).await;
    }
}
