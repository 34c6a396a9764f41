//! The documented error codes are exactly the ones the code emits: every `code` literal of
//! an error built in the API, intake, redirect and HTTP server sources is in
//! `sluice_serving::error_codes`, every listed code is emitted somewhere, and the README's
//! "Error codes" table and `/v1/openapi.json` list each with its status.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sluice_serving::error_codes::{ERROR_CODES, JOB_FAILURE_CODES};

/// Source trees whose non-test code builds error responses.
const ROOTS: &[&str] = &["serving/src", "ingest/src", "redirect/src", "src", "dataflows/src/views"];

fn repo() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (set by cargo test and nextest at run time)"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if path.is_dir() {
            if name != "tests" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") && !name.contains("test") {
            out.push(path);
        }
    }
}

fn is_code(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase()) && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The string literal at the start of `s` (`"abc",...` → `abc`) if it looks like a code.
fn literal(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('"')?;
    let lit = &rest[..rest.find('"')?];
    is_code(lit).then_some(lit)
}

/// Error codes in one file's non-test code, whitespace removed: the literal after
/// `bad_request(`, `::new([path::]StatusCode::X,`, `error_response(StatusCode::X,`, `"code":`,
/// `code:`, `(431,` (status tuples), `Error::query(`, `Error::query_with(` and `invalid(`.
fn codes_in(text: &str) -> BTreeSet<String> {
    let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or_default();
    let s: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut found = BTreeSet::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '"';
    for i in (0..s.len()).filter(|i| s.is_char_boundary(*i)) {
        let (before, at) = s.split_at(i);
        let prev_ok = !before.ends_with(ident);
        let lit = if let Some(r) = at.strip_prefix("bad_request(") {
            literal(r)
        } else if let Some(r) = at.strip_prefix("::new(").or_else(|| at.strip_prefix("error_response(")) {
            // `StatusCode::X` or `axum::http::StatusCode::X`
            let r = r.trim_start_matches(|c: char| c.is_ascii_lowercase() || c == '_' || c == ':').strip_prefix("StatusCode::");
            r.and_then(|r| r.trim_start_matches(|c: char| c.is_ascii_uppercase() || c == '_').strip_prefix(',')).and_then(literal)
        } else if let Some(r) = at.strip_prefix("\"code\":") {
            literal(r)
        } else if let Some(r) = at.strip_prefix("code:").filter(|_| prev_ok) {
            literal(r)
        } else if let Some(r) = at.strip_prefix("Error::query(").or_else(|| at.strip_prefix("Error::query_with(")) {
            literal(r)
        } else if let Some(r) = at.strip_prefix("invalid(").filter(|_| prev_ok) {
            literal(r)
        } else if let Some(r) = at.strip_prefix('(').filter(|r| r.len() > 4 && r.as_bytes()[..3].iter().all(u8::is_ascii_digit) && &r[3..4] == ",") {
            literal(&r[4..])
        } else {
            None
        };
        found.extend(lit.map(str::to_owned));
    }
    // Whitespace removal glues words of messages together: keep literals that are literals.
    found.retain(|c| text.contains(&format!("\"{c}\"")));
    found
}

fn emitted_codes() -> BTreeMap<String, Vec<String>> {
    let mut files = Vec::new();
    for root in ROOTS {
        rust_files(&repo().join(root), &mut files);
    }
    let mut codes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read source");
        for c in codes_in(&text) {
            codes.entry(c).or_default().push(f.strip_prefix(repo()).expect("in repo").display().to_string());
        }
    }
    codes
}

/// `code → status` as listed (`None` for failed-job-only codes).
fn listed() -> BTreeMap<String, Option<u16>> {
    let by_status = ERROR_CODES.iter().flat_map(|(s, codes)| codes.iter().map(move |c| (c.to_string(), Some(*s))));
    by_status.chain(JOB_FAILURE_CODES.iter().map(|c| (c.to_string(), None))).collect()
}

#[test]
fn the_code_list_is_exactly_what_the_sources_emit() {
    let emitted = emitted_codes();
    let listed = listed();
    let missing: Vec<_> = emitted.iter().filter(|(c, _)| !listed.contains_key(*c)).collect();
    assert!(missing.is_empty(), "emitted but not in sluice_serving::error_codes: {missing:?}");
    let never: Vec<_> = listed.keys().filter(|c| !emitted.contains_key(*c)).collect();
    assert!(never.is_empty(), "listed but emitted nowhere: {never:?}");
    // the scanner itself finds what it must (one per pattern)
    for c in [
        "invalid_request",
        "duplicate_key",
        "internal",
        "not_found",
        "uri_too_long",
        "request_timeout",
        "unsupported_tz_offset",
        "job_interrupted",
        "not_ready",
    ] {
        assert!(emitted.contains_key(c), "{c}");
    }
}

#[test]
fn the_readme_error_code_table_lists_every_code_with_its_status() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let start = readme.find("\n## Error codes\n").expect("README has a \"## Error codes\" section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut documented = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| status")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let status = cells[1].parse::<u16>().ok();
        for code in cells[2].split('`').skip(1).step_by(2) {
            assert!(documented.insert(code.to_owned(), status).is_none(), "{code} listed twice in the README");
        }
    }
    assert_eq!(documented, listed());
}

#[test]
fn the_openapi_document_lists_every_code_with_its_status() {
    let doc = serde_json::to_value(sluice_serving::openapi::document()).expect("json");
    let description = doc["info"]["description"].as_str().expect("description");
    let list = description.split("Error codes by HTTP status: ").nth(1).expect("the error code list");
    let mut documented = BTreeMap::new();
    for group in list.trim_end_matches('.').split("; ") {
        let (status, codes) = group.split_once(": ").expect("status: codes");
        for code in codes.split(", ") {
            assert!(documented.insert(code.to_owned(), status.parse::<u16>().ok()).is_none(), "{code} twice");
        }
    }
    assert_eq!(documented, listed());
}

#[test]
fn statuses_ascend_codes_are_sorted_and_each_is_listed_once() {
    assert!(ERROR_CODES.windows(2).all(|w| w[0].0 < w[1].0));
    for (status, codes) in ERROR_CODES {
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "{status}: {codes:?}");
    }
    let n = ERROR_CODES.iter().map(|(_, c)| c.len()).sum::<usize>() + JOB_FAILURE_CODES.len();
    assert_eq!(listed().len(), n, "a code listed under two statuses");
    let summary = sluice_serving::error_codes::summary();
    assert!(summary.starts_with("400: alias_rename_unsupported, alias_reserved, "), "{summary}");
    assert!(summary.ends_with("; 431: headers_too_large, too_many_headers; 500: export_write_failed, internal, jobs_store_damaged, jobs_store_failed; 501: unsupported_transfer_encoding; 503: admin_unavailable, anomalies_not_local, anomaly_store_unavailable, jobs_store_unavailable, log_unavailable, not_ready, prefetch_refused, starting, stats_history_unavailable, stats_not_local, stats_unavailable, store_unavailable; failed report job only: job_interrupted"), "{summary}");
}
