//! Report export jobs: `POST /v1/reports/export` → 202 and a job id; the export runs in the
//! background ([`runner`]) into a file in `<data dir>/exports/`; `GET /v1/jobs/{job_id}`
//! reports its state; `GET /v1/jobs/{job_id}/download` streams the file once it succeeded.
//! Jobs are persisted ([`store`]) and survive restarts.
//!
//! The request takes the parameters of `GET /v1/stats/export` as JSON, for one or more
//! `codes` or `all_links`. The range is resolved when the job is created (a missing `to` is
//! "now" at creation), so a job re-run after a restart exports the same range. The file is
//! byte for byte what `GET /v1/stats/export` streams for the same code and parameters; with
//! several codes it holds one header (or one JSON array) and the codes' rows one code after
//! another, codes sorted.
//!
//! `Idempotency-Key` works like on `POST /v1/links`: the same key with the same body within
//! 24 h answers the original job (with its current state, header `idempotent-replayed:
//! true`) instead of creating another; with another body, 422 `idempotency_key_reused`; the
//! header given more than once, 400 `invalid_idempotency_key`. The key is stored in the job
//! table together with the job it created, in one transaction ([`store`]), so a failure or a
//! crash while creating the job never lets a retry with the same key create a second one.

pub mod runner;
pub mod store;

#[cfg(test)]
mod file_check_tests;
#[cfg(test)]
mod formula_tests;
#[cfg(test)]
mod idempotency_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_connectors::IdempotencyRecord;
use utoipa::ToSchema;

pub use runner::{Jobs, JobsConfig, Keyed};
pub use store::{JobFailure, JobRecord, JobSpec, KeyRecord};

use crate::dto::ErrorBody;
use crate::error::{ApiError, echo};
use crate::export::{ExportFormat, export_headers, file_name, parse_format};
use crate::extract::{ApiJson, ApiPath, ApiQuery, NoParams};
use crate::links::create::idempotency_key;
use crate::links::now_ms;
use crate::reports::ReportsState;
use crate::stats::params::parse_stats_with;

/// Most codes one report may name.
pub const MAX_REPORT_CODES: usize = 1000;
/// Idempotency records of this endpoint are scoped by this prefix (the in-process key lock,
/// and the link store's records written by sluice before the job table kept the keys).
const IDEMPOTENCY_SCOPE: &str = "reports:";

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for the runner.
    Queued,
    /// Being exported.
    Running,
    /// The file is ready for download.
    Succeeded,
    /// Failed; see `error`.
    Failed,
}

/// Body of `POST /v1/reports/export`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// Codes to export (1 to 1000, each an existing link); or use `all_links`.
    #[serde(default)]
    pub codes: Option<Vec<String>>,
    /// `true`: every link in the store when the job runs (instead of `codes`).
    #[serde(default)]
    pub all_links: Option<bool>,
    /// RFC 3339 range start (default: `to` − 7 days).
    #[serde(default)]
    pub from: Option<String>,
    /// RFC 3339 range end, exclusive (default: now, when the job is created).
    #[serde(default)]
    pub to: Option<String>,
    /// `minute`, `hour` or `day` (default).
    #[serde(default)]
    pub bucket: Option<String>,
    /// IANA zone (default `UTC` when absent; an empty string is 400 `unknown_timezone`).
    #[serde(default)]
    pub tz: Option<String>,
    /// Breakdown: empty, one dimension, or `country,device`; with ClickHouse configured, any
    /// combination of up to 3 distinct dimensions (as `GET /v1/stats/export`). A JSON array
    /// of names (`["country", "device"]`) is the same as the comma-separated string.
    #[serde(default, deserialize_with = "names_or_list")]
    #[schema(value_type = Option<String>)]
    pub dimensions: Option<String>,
    /// Include bot clicks (default false).
    #[serde(default)]
    pub include_bots: Option<bool>,
    /// `csv` (default), `json` or `ndjson`.
    #[serde(default)]
    pub format: Option<String>,
    /// CSV only: a code or dimension value starting with `=`, `+`, `-`, `@`, a tab or a CR
    /// gets a leading `'` so that spreadsheets show it as text (as `escape_formulas` of
    /// `GET /v1/stats/export`; OWASP CSV injection). Default false: values verbatim; true with
    /// `json`/`ndjson` is 400 `invalid_parameter`.
    #[serde(default)]
    pub escape_formulas: Option<bool>,
}

/// `dimensions` of a [`ReportRequest`]: a comma-separated string, or an array of strings
/// (joined with `,`); `null` is absent. Errors: any other JSON type.
fn names_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde_json::Value;
    let wrong = || serde::de::Error::custom("dimensions must be a string such as \"country,device\" or an array of dimension names");
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Array(items)) => {
            let names = items.into_iter().map(|v| if let Value::String(s) = v { Ok(s) } else { Err(wrong()) }).collect::<Result<Vec<_>, _>>()?;
            // One name per element: "" or "country,device" in an array is a mistake, not
            // "no dimension" or two of them as in the string form.
            if let Some(bad) = names.iter().find(|n| n.trim().is_empty() || n.contains(',')) {
                return Err(serde::de::Error::custom(format!(
                    "each element of dimensions is one dimension name such as \"country\", got {:?}",
                    crate::error::echo(bad)
                )));
            }
            Ok(Some(names.join(",")))
        }
        Some(_) => Err(wrong()),
    }
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobErrorBody {
    /// Stable snake_case code (`range_not_retained`, `job_interrupted`, `export_write_failed`, …).
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// A job as returned by the API. Timestamps are RFC 3339 UTC, milliseconds, the fraction left
/// out when zero, as everywhere in the API ([`crate::dto::instant_ms`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobStatusBody {
    /// Job id (UUIDv7).
    pub job_id: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: JobState,
    /// Creation instant.
    pub created_at: String,
    /// Start of the latest attempt, `null` while queued.
    pub started_at: Option<String>,
    /// End instant, `null` until succeeded or failed.
    pub finished_at: Option<String>,
    /// Rows in the file (0 until succeeded).
    pub rows: u64,
    /// Size of the file in bytes, `null` until succeeded.
    pub bytes: Option<u64>,
    /// Set when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobErrorBody>,
    /// `/v1/jobs/{job_id}/download` once succeeded, else `null`.
    pub download: Option<String>,
    /// Output format.
    pub format: ExportFormat,
    /// Exported codes (sorted), `null` for all links.
    pub codes: Option<Vec<String>>,
    /// Resolved range start (RFC 3339 UTC).
    pub from: String,
    /// Resolved range end, exclusive (RFC 3339 UTC).
    pub to: String,
    /// Bucket size.
    pub bucket: String,
    /// IANA zone.
    pub tz: String,
    /// Breakdown (`""` for none).
    pub dimensions: String,
    /// Whether bot clicks are included.
    pub include_bots: bool,
    /// Whether CSV values that start like a formula got a leading `'`.
    pub escape_formulas: bool,
}

/// An instant as every timestamp of the API is written ([`crate::dto::instant_ms`]).
fn ts(ms: i64) -> String {
    crate::stats::params::rfc3339_utc(ms)
}

impl JobStatusBody {
    /// The API view of a stored job.
    pub fn of(rec: &JobRecord) -> JobStatusBody {
        let s = &rec.spec;
        JobStatusBody {
            job_id: rec.job_id.clone(),
            status: rec.status,
            created_at: ts(rec.created_at_ms),
            started_at: rec.started_at_ms.map(ts),
            finished_at: rec.finished_at_ms.map(ts),
            rows: rec.rows,
            bytes: (rec.status == JobState::Succeeded).then_some(rec.bytes),
            error: rec.error.as_ref().map(|e| JobErrorBody { code: e.code.clone(), message: e.message.clone() }),
            download: (rec.status == JobState::Succeeded).then(|| format!("/v1/jobs/{}/download", rec.job_id)),
            format: s.format,
            codes: s.codes.clone(),
            from: ts(s.from_ms),
            to: ts(s.to_ms),
            bucket: s.bucket.clone(),
            tz: s.tz.clone(),
            dimensions: s.dimensions.clone(),
            include_bots: s.include_bots,
            escape_formulas: s.escape_formulas,
        }
    }
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no export job with id \"{}\"", echo(id))).with_details(json!({ "job_id": id }))
}

/// The request's range parameters as the stats endpoints' query string.
fn stats_query(req: &ReportRequest) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in [("from", &req.from), ("to", &req.to), ("bucket", &req.bucket), ("tz", &req.tz), ("dimensions", &req.dimensions)] {
        if let Some(v) = value {
            query.append_pair(name, v);
        }
    }
    if let Some(b) = req.include_bots {
        query.append_pair("include_bots", if b { "true" } else { "false" });
    }
    query.finish()
}

/// Validates a request into a job spec: the range parameters by the stats endpoints' own
/// parser (resolved against the state's clock; any combination of dimensions when a
/// long-term store answers them), every named code must exist, and — without a long-term
/// store — the views must still hold the range, checked as `GET /v1/stats/export` checks it
/// (same code and message), so a job that could only fail is never created. Errors: 400
/// `invalid_codes` (neither or both of `codes` and `all_links`, or not 1 to
/// [`MAX_REPORT_CODES`] distinct codes), `invalid_format`, `range_not_retained` and the codes of
/// [`crate::stats::params`]; 404 `not_found` for unknown codes (`details.codes` lists the first 20 of them, sorted;
/// `details.unknown_count` counts all);
/// 503 `stats_unavailable`, `stats_not_local`.
pub async fn build_spec(state: &ReportsState, req: &ReportRequest) -> Result<JobSpec, ApiError> {
    let format = parse_format(req.format.as_deref())?;
    let escape_formulas = req.escape_formulas.unwrap_or(false);
    crate::export::check_escape_formulas(escape_formulas, format, json!(escape_formulas), json!([false]))?;
    // The stats parser reads a space in `tz` as the `+` that form decoding of a query string
    // turned into one; a JSON string was never form-decoded, so a space is just wrong.
    if let Some(tz) = req.tz.as_deref().filter(|tz| tz.contains(' ')) {
        return Err(ApiError::bad_request(
            "unknown_timezone",
            format!("\"{}\" is not an IANA time zone name (no zone name has a space; e.g. UTC, Asia/Kolkata, Etc/GMT+5)", echo(tz)),
        )
        .with_details(json!({ "tz": tz })));
    }
    let params = parse_stats_with(Some(&stats_query(req)), state.now_ms(), state.answers_any_dimensions())?;
    let plan = crate::export::ExportPlan::new(&params, format)?;
    // The distinct codes are counted: a code named twice is one code of the report.
    let distinct = req.codes.as_ref().map(|c| {
        let mut c: Vec<String> = c.iter().map(|s| s.trim().to_owned()).collect();
        c.sort();
        c.dedup();
        c
    });
    let codes = match (distinct, req.all_links.unwrap_or(false)) {
        (Some(c), false) if !c.is_empty() && c.len() <= MAX_REPORT_CODES => {
            let mut unknown = Vec::new();
            for code in &c {
                match state.require_link(code).await {
                    Ok(_) => {}
                    Err(e) if e.status == StatusCode::NOT_FOUND => unknown.push(code.clone()),
                    Err(e) => return Err(e),
                }
            }
            if !unknown.is_empty() {
                return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no link with code \"{}\"", echo(&unknown[0])))
                    .with_details(json!({ "codes": unknown, "unknown_count": unknown.len() })));
            }
            Some(c)
        }
        (None, true) => None,
        (Some(c), false) if c.len() > MAX_REPORT_CODES => {
            return Err(ApiError::bad_request(
                "invalid_codes",
                format!("{} distinct link codes: a report takes at most {MAX_REPORT_CODES} (or \"all_links\": true)", c.len()),
            )
            .with_details(json!({ "codes": c.len(), "max_codes": MAX_REPORT_CODES })));
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_codes",
                format!("give either codes (1 to {MAX_REPORT_CODES} distinct link codes) or \"all_links\": true"),
            ));
        }
    };
    let source = state.source()?;
    if !source.has_history() {
        // What `GET /v1/stats/export` refuses before its first byte: the range (any code),
        // then each named code's first and last bucket (in-memory reads only).
        plan.retained(source.views())?;
        if let Some(codes) = codes.clone() {
            let plan = std::sync::Arc::new(plan);
            tokio::task::spawn_blocking(move || codes.iter().try_for_each(|c| plan.preflight(&source, c))).await.map_err(|e| ApiError::internal(&e))??;
        }
    }
    Ok(JobSpec {
        codes,
        from_ms: params.from_ms,
        to_ms: params.to_ms,
        bucket: params.bucket.as_str().to_owned(),
        tz: params.tz.name().to_owned(),
        dimensions: params.dimensions.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(","),
        include_bots: params.include_bots,
        format,
        escape_formulas,
    })
}

fn accepted(rec: &JobRecord, replayed: bool) -> Response {
    let mut resp = (StatusCode::ACCEPTED, axum::Json(JobStatusBody::of(rec))).into_response();
    let h = resp.headers_mut();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/jobs/{}", rec.job_id)) {
        h.insert(header::LOCATION, loc);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// Answers the job `job_id` that an earlier request with the same key created (its current
/// state), when that request's body hash `stored_hash` is this one's.
async fn replay(state: &ReportsState, stored_hash: &str, job_id: &str, request_hash: &str) -> Result<Response, ApiError> {
    if stored_hash != request_hash {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "Idempotency-Key was already used with a different request body",
        ));
    }
    let job = state.runner()?.get(job_id).await?.ok_or_else(|| job_not_found(job_id))?;
    Ok(accepted(&job, true))
}

/// [`replay`] of a key the link store recorded (sluice before the job table kept the keys
/// wrote them there; they count for 24 h).
async fn replay_recorded(state: &ReportsState, rec: &IdempotencyRecord, request_hash: &str) -> Result<Response, ApiError> {
    let id = serde_json::from_str::<serde_json::Value>(&rec.body)
        .ok()
        .and_then(|v| v["job_id"].as_str().map(str::to_owned))
        .ok_or_else(|| ApiError::internal(&"idempotency record of a report has no job_id"))?;
    replay(state, &rec.request_hash, &id, request_hash).await
}

/// Starts a report export job.
#[utoipa::path(
    post, path = "/v1/reports/export", tag = "reports",
    request_body = ReportRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the original job for the same key and body within 24 h; 422 idempotency_key_reused for another body; 400 invalid_idempotency_key when malformed, 400 duplicate_header when sent more than once")),
    responses(
        (status = 202, description = "Job created (queued)", body = JobStatusBody, headers(("Location" = String))),
        (status = 400, description = "invalid_codes, invalid_format, invalid_parameter (escape_formulas with json or ndjson), invalid_timestamp, unaligned_range, invalid_range, invalid_bucket, unknown_timezone, invalid_dimensions, unsupported_dimensions, range_too_long, range_not_retained (without ClickHouse: the in-memory views no longer hold the range; the code and message GET /v1/stats/export gives), unsupported_tz_offset, malformed_json, duplicate_key, unknown_field, invalid_request, invalid_idempotency_key, duplicate_header", body = ErrorBody),
        (status = 404, description = "not_found: a named code is not a link (details.codes: the first 20, sorted; details.unknown_count: all)", body = ErrorBody),
        (status = 415, description = "unsupported_media_type, or unsupported_content_encoding for a body with a Content-Encoding (send it uncompressed)", body = ErrorBody),
        (status = 422, description = "idempotency_key_reused", body = ErrorBody),
        (status = 503, description = "jobs_store_unavailable: the export job table could not be opened when the server started, was deleted or replaced since (e.g. exports/ removed), or hit an I/O error such as a full disk (the server log and /readyz name the file); stats_unavailable: this process runs no dataflow", body = ErrorBody),
    )
)]
pub async fn create_report(
    State(state): State<ReportsState>,
    _query: ApiQuery<NoParams>,
    headers: HeaderMap,
    body: ApiJson<ReportRequest>,
) -> Result<Response, ApiError> {
    state.runner()?;
    let Some(key) = idempotency_key(&headers)? else {
        let spec = build_spec(&state, &body.value).await?;
        let rec = state.runner()?.create(spec).await?;
        state.runner()?.enqueue(&rec.job_id);
        return Ok(accepted(&rec, false));
    };
    let scoped = format!("{IDEMPOTENCY_SCOPE}{key}");
    let request_hash = blake3::hash(body.canonical.as_bytes()).to_hex().to_string();
    let lock = state.key_locks.lock_for(&scoped);
    let _guard = lock.lock().await;
    if let Some(rec) = state.runner()?.key(&key).await? {
        return replay(&state, &rec.request_hash, &rec.job_id, &request_hash).await;
    }
    if let Some(rec) = state.stats.store().idempotency_get(&scoped, now_ms()).await? {
        return replay_recorded(&state, &rec, &request_hash).await;
    }
    let spec = build_spec(&state, &body.value).await?;
    // The job and its key in one transaction: a retry finds both, or neither.
    match state.runner()?.create_keyed(spec, &key, &request_hash).await? {
        Keyed::Created(job) => {
            state.runner()?.enqueue(&job.job_id);
            Ok(accepted(&job, false))
        }
        Keyed::Existing(rec) => replay(&state, &rec.request_hash, &rec.job_id, &request_hash).await,
    }
}

async fn load(state: &ReportsState, job_id: &str) -> Result<JobRecord, ApiError> {
    let Some(key) = crate::extract::canonical_uuid(job_id) else {
        return Err(job_not_found(job_id));
    };
    state.runner()?.get(&key).await?.ok_or_else(|| job_not_found(job_id))
}

/// The state of a report export job.
#[utoipa::path(
    get, path = "/v1/jobs/{job_id}", tag = "reports",
    params(("job_id" = String, Path, description = "Job id from POST /v1/reports/export")),
    responses(
        (status = 200, description = "The job", body = JobStatusBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 503, description = "jobs_store_unavailable: the export job table could not be opened when the server started, was deleted or replaced since (e.g. exports/ removed), or hit an I/O error such as a full disk (the server log and /readyz name the file); stats_unavailable: this process runs no dataflow", body = ErrorBody),
    )
)]
pub async fn get_job(State(state): State<ReportsState>, ApiPath(job_id): ApiPath<String>, _query: ApiQuery<NoParams>) -> Result<Response, ApiError> {
    let rec = load(&state, &job_id).await?;
    let mut resp = axum::Json(JobStatusBody::of(&rec)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Downloads the file of a succeeded job (streamed from disk).
#[utoipa::path(
    get, path = "/v1/jobs/{job_id}/download", tag = "reports",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The export file (same bytes as GET /v1/stats/export)", content_type = "text/csv", body = String),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "job_not_ready: the job has not succeeded (details.status)", body = ErrorBody),
        (status = 410, description = "export_gone: the file was removed, or changed on disk since the job wrote it (its size differs)", body = ErrorBody),
        (status = 503, description = "jobs_store_unavailable: the export job table could not be opened when the server started, was deleted or replaced since (e.g. exports/ removed), or hit an I/O error such as a full disk (the server log and /readyz name the file); stats_unavailable: this process runs no dataflow", body = ErrorBody),
    )
)]
pub async fn download_job(State(state): State<ReportsState>, ApiPath(job_id): ApiPath<String>, _query: ApiQuery<NoParams>) -> Result<Response, ApiError> {
    let rec = load(&state, &job_id).await?;
    if rec.status != JobState::Succeeded {
        return Err(ApiError::new(StatusCode::CONFLICT, "job_not_ready", "the job has not succeeded")
            .with_details(json!({ "job_id": rec.job_id, "status": rec.status })));
    }
    let file = tokio::fs::File::open(state.runner()?.file_path(&rec)).await.map_err(|e| {
        tracing::warn!(error = %e, job_id = %rec.job_id, "export file of a succeeded job is missing");
        ApiError::new(StatusCode::GONE, "export_gone", "the export file no longer exists")
    })?;
    // The stored size is the Content-Length: a file changed on disk since (truncated,
    // overwritten) would be a 200 cut short, or silently cut.
    let on_disk = file.metadata().await.map(|m| m.len()).map_err(|e| ApiError::internal(&e))?;
    if on_disk != rec.bytes {
        tracing::warn!(job_id = %rec.job_id, on_disk, written = rec.bytes, "export file of a succeeded job changed on disk");
        return Err(ApiError::new(
            StatusCode::GONE,
            "export_gone",
            format!("the export file changed on disk since the job wrote it ({on_disk} bytes, the job wrote {}): run the export again", rec.bytes),
        ));
    }
    let what = match rec.spec.codes.as_deref() {
        Some([one]) => one.clone(),
        _ => "report".to_owned(),
    };
    let plan = runner::plan_of(&rec.spec)?;
    let name = file_name(&what, plan.range(), rec.spec.format);
    let mut resp = (StatusCode::OK, Body::from_stream(tokio_util::io::ReaderStream::new(file))).into_response();
    export_headers(&mut resp, rec.spec.format, &name);
    if let Ok(v) = HeaderValue::from_str(&rec.bytes.to_string()) {
        resp.headers_mut().insert(header::CONTENT_LENGTH, v);
    }
    Ok(resp)
}
