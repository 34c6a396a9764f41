//! The parsers behind `sluice import`: lines of an NDJSON event file or of a web-server
//! access log (combined log format) become [`EventInput`]s, ready to be posted to
//! `POST /v1/events?backfill=true` or validated into click events locally.
//!
//! Why a library: the binary streams files through [`LineParser`] and only decides where the
//! events go; tests check the parsers on fixed inputs without I/O.
//!
//! Rules for access logs (see [`combined`] for the line syntax):
//! - a click is a `GET` whose status is a redirect (301, 302, 303, 307, 308) on a path
//!   `{prefix}{code}` where `code` is `[A-Za-z0-9_-]{1,64}` and nothing follows it (the query
//!   string is ignored); other lines are skipped and counted by [`SkipReason`];
//! - `event_id`: [`line_event_id`] of the line number and the line, so importing the same
//!   file twice yields the same ids and the dataflow's dedup drops the second copy, while
//!   two identical lines of one file stay two clicks;
//! - `ts` from `%t` (second precision unless the log has fractions), `ip` = `%h` (the full
//!   IP: the server derives `visitor_id` and the truncated IP from it, as for a live click),
//!   referrer and user agent from the last two quoted fields.
//!
//! NDJSON files hold one event per line in the [`crate::event_input`] shape; a line that is
//! not a valid event is counted as invalid with its reason and line number.

pub mod combined;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;
use uuid::Uuid;

use crate::event_input::{EventInput, Rejection, is_code};

/// BLAKE3 `derive_key` context of [`line_event_id`] (fixed forever).
pub const LINE_ID_CONTEXT: &str = "sluice 2025-01 import access-log line event_id v1";

/// Input formats of `sluice import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// One event object per line ([`crate::event_input`] shape).
    Ndjson,
    /// nginx/Apache combined (or common) log format.
    Combined,
}

impl ImportFormat {
    /// The format a file name suggests: `.ndjson`/`.jsonl`/`.json` → NDJSON, anything
    /// else (`access.log`, `access.log.1`) → combined.
    pub fn guess(file_name: &str) -> ImportFormat {
        let lower = file_name.to_ascii_lowercase();
        if [".ndjson", ".jsonl", ".json"].iter().any(|ext| lower.ends_with(ext)) { ImportFormat::Ndjson } else { ImportFormat::Combined }
    }
}

/// Why an access-log line is not imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Empty or whitespace-only line.
    Blank,
    /// Not in combined/common log format (see [`combined::parse_line`] for the codes).
    Malformed,
    /// A `HEAD` request (not a click).
    HeadRequest,
    /// Another method than `GET`/`HEAD`.
    NotGet,
    /// The status is not a redirect (404, 410, 200, 5xx, ...).
    NotRedirect,
    /// The path is not `{prefix}{code}` (assets, API calls, probes).
    NotCodePath,
    /// `%h` is not an IP address (a host name from `HostnameLookups On`).
    InvalidClientIp,
}

impl SkipReason {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Blank => "blank",
            SkipReason::Malformed => "malformed",
            SkipReason::HeadRequest => "head_request",
            SkipReason::NotGet => "not_get",
            SkipReason::NotRedirect => "not_redirect",
            SkipReason::NotCodePath => "not_code_path",
            SkipReason::InvalidClientIp => "invalid_client_ip",
        }
    }
}

/// What one line became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineOutcome {
    /// An event to import.
    Event(EventInput),
    /// An access-log line that is not a click.
    Skipped(SkipReason),
    /// An NDJSON line that is not a valid event (or not JSON).
    Invalid(Rejection),
}

/// Parses lines of one format.
#[derive(Debug, Clone)]
pub struct LineParser {
    format: ImportFormat,
    path_prefix: String,
}

/// The `event_id` of access-log line `line_no` (1-based) with text `line` (without its
/// terminator): the UUIDv8 whose free bits are the first 16 bytes of
/// `BLAKE3::derive_key(LINE_ID_CONTEXT, "{line_no}\n{line}")`.
pub fn line_event_id(line_no: u64, line: &str) -> Uuid {
    let key = blake3::derive_key(LINE_ID_CONTEXT, format!("{line_no}\n{line}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&key[..16]);
    Uuid::new_v8(b)
}

/// Whether `status` is a redirect a click can have produced.
pub fn is_redirect_status(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// `path_prefix` as the paths of an access log are matched against: its segments between
/// one leading and one trailing `/`, empty segments dropped (`s`, `/s`, `//s//` → `/s/`;
/// `` and `//` → `/`).
pub fn normalize_path_prefix(path_prefix: &str) -> String {
    let segments: Vec<&str> = path_prefix.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() { "/".to_owned() } else { format!("/{}/", segments.join("/")) }
}

impl LineParser {
    /// A parser for `format`; access-log paths must start with `path_prefix` (usually `/`;
    /// `/s/` when short links live under a path; [`normalize_path_prefix`]), which is
    /// followed by the code.
    pub fn new(format: ImportFormat, path_prefix: &str) -> LineParser {
        LineParser { format, path_prefix: normalize_path_prefix(path_prefix) }
    }

    /// The format parsed.
    pub fn format(&self) -> ImportFormat {
        self.format
    }

    /// Parses line `line_no` (1-based) of the file; `line` may still end in `\r`. A UTF-8
    /// byte order mark at the start of line 1 (files saved by Windows tools often begin
    /// with one) is skipped, as RFC 8259 §8.1 lets a parser do.
    pub fn parse(&self, line_no: u64, line: &str) -> LineOutcome {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = if line_no == 1 { line.strip_prefix('\u{feff}').unwrap_or(line) } else { line };
        if line.trim().is_empty() {
            return LineOutcome::Skipped(SkipReason::Blank);
        }
        match self.format {
            ImportFormat::Ndjson => match sluice_schemas::strict_json::from_str_strict(line) {
                Ok(v) => match EventInput::from_value(v) {
                    Ok(e) => LineOutcome::Event(e),
                    Err(r) => LineOutcome::Invalid(r),
                },
                // Refused like POST /v1/events refuses it: never keep one of two values.
                Err(sluice_schemas::strict_json::StrictJsonError::DuplicateKey { key, .. }) => LineOutcome::Invalid(Rejection::new(
                    "duplicate_key",
                    format!("line {line_no} repeats the key {} in one object", serde_json::Value::String(key)),
                )),
                Err(e) => LineOutcome::Invalid(Rejection::new("malformed_json", format!("line {line_no} is not valid json: {e}"))),
            },
            ImportFormat::Combined => self.access_line(line_no, line),
        }
    }

    fn access_line(&self, line_no: u64, line: &str) -> LineOutcome {
        let Ok(rec) = combined::parse_line(line) else {
            return LineOutcome::Skipped(SkipReason::Malformed);
        };
        match rec.method.as_str() {
            "GET" => {}
            "HEAD" => return LineOutcome::Skipped(SkipReason::HeadRequest),
            _ => return LineOutcome::Skipped(SkipReason::NotGet),
        }
        if !is_redirect_status(rec.status) {
            return LineOutcome::Skipped(SkipReason::NotRedirect);
        }
        let code = combined::target_path(&rec.target).and_then(|p| p.strip_prefix(self.path_prefix.as_str())).filter(|c| is_code(c));
        let Some(code) = code else {
            return LineOutcome::Skipped(SkipReason::NotCodePath);
        };
        let Ok(ip) = rec.host.parse::<IpAddr>() else {
            return LineOutcome::Skipped(SkipReason::InvalidClientIp);
        };
        LineOutcome::Event(EventInput {
            event_id: line_event_id(line_no, line).to_string(),
            code: code.to_owned(),
            ts: rec.ts_ms,
            ip: Some(ip.to_string()),
            ip_trunc: None,
            user_agent: rec.user_agent,
            referrer: rec.referrer,
            accept_language: None,
            edge_region: None,
        })
    }
}

/// Counts of an import: lines read, events produced, lines skipped or invalid by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportTally {
    /// Lines read (including blank ones).
    pub lines: u64,
    /// Events produced by the parser.
    pub events: u64,
    /// Access-log lines skipped, by [`SkipReason::as_str`] (blank lines included).
    pub skipped: BTreeMap<&'static str, u64>,
    /// NDJSON lines that are not valid events, by rejection reason.
    pub invalid: BTreeMap<&'static str, u64>,
}

impl ImportTally {
    /// Counts `outcome` and returns its event, if any.
    pub fn count(&mut self, outcome: LineOutcome) -> Option<EventInput> {
        self.lines += 1;
        match outcome {
            LineOutcome::Event(e) => {
                self.events += 1;
                Some(e)
            }
            LineOutcome::Skipped(r) => {
                *self.skipped.entry(r.as_str()).or_default() += 1;
                None
            }
            LineOutcome::Invalid(r) => {
                *self.invalid.entry(r.reason).or_default() += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
