//! Row encoders of the stats export: CSV (RFC 4180), a JSON array, NDJSON.
//!
//! All three are written incrementally into byte buffers: [`RowWriter::header`] once,
//! [`RowWriter::row`] per row, [`RowWriter::footer`] once, so an export of any size is produced
//! chunk by chunk (the HTTP body streams the buffers, a report job appends them to a file).
//!
//! Columns, in this order: `bucket` (the bucket start as RFC 3339 in the query's zone with its
//! offset, `Z` for UTC — the labels of the stats endpoint, [`rfc3339_in`]), `code`, one column per requested
//! dimension (named after it, in the requested order), `clicks`, `uniques`.
//!
//! * CSV (RFC 4180): a header row, records separated by CRLF (the last record ends with CRLF
//!   too), `,` between fields; a field containing `,`, `"`, CR or LF is enclosed in double
//!   quotes with every `"` doubled; other fields (spaces and non-ASCII included) are written
//!   verbatim as UTF-8 without a byte-order mark. Values are not altered in any other way
//!   unless formula escaping is asked for ([`RowWriter::escaping_formulas`]): then a text
//!   field (code, dimension value) starting with `=`, `+`, `-`, `@`, a tab or a CR gets a
//!   leading `'`, as OWASP's "CSV Injection" page recommends, so that a spreadsheet shows
//!   it as text instead of evaluating it (browser and OS families come from user agents
//!   any clicker chooses).
//! * JSON (`application/json`): one array of objects with the columns as keys in column
//!   order, `clicks`/`uniques` as numbers: `[` LF, objects separated by `,` LF, LF `]` LF;
//!   an empty export is `[]` LF.
//! * NDJSON (`application/x-ndjson`): the same objects, each followed by LF, nothing else.

use chrono_tz::Tz;
use sluice_dataflows::model::Dimension;
use sluice_dataflows::views::StatsRow;

use crate::stats::params::rfc3339_in;

/// Output format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// RFC 4180 CSV with a header row and CRLF line endings.
    Csv,
    /// One JSON array of row objects.
    Json,
    /// Newline-delimited JSON: one row object per line.
    Ndjson,
}

impl ExportFormat {
    /// Parses `csv`, `json` or `ndjson` (surrounding spaces ignored; absent → CSV). `None` for
    /// anything else, the empty string included.
    pub fn parse(raw: Option<&str>) -> Option<ExportFormat> {
        match raw.map(str::trim) {
            None | Some("csv") => Some(ExportFormat::Csv),
            Some("json") => Some(ExportFormat::Json),
            Some("ndjson") => Some(ExportFormat::Ndjson),
            Some(_) => None,
        }
    }

    /// The `Content-Type` of an export in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8; header=present",
            ExportFormat::Json => "application/json",
            ExportFormat::Ndjson => "application/x-ndjson",
        }
    }

    /// File extension (`csv`, `json`, `ndjson`).
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
            ExportFormat::Ndjson => "ndjson",
        }
    }
}

/// Incremental encoder of export rows (module docs).
#[derive(Debug, Clone)]
pub struct RowWriter {
    format: ExportFormat,
    dims: Vec<Dimension>,
    tz: Tz,
    rows: u64,
    escape_formulas: bool,
}

impl RowWriter {
    /// An encoder for rows broken down by `dims` with bucket labels in `tz`.
    pub fn new(format: ExportFormat, dims: &[Dimension], tz: Tz) -> RowWriter {
        RowWriter { format, dims: dims.to_vec(), tz, rows: 0, escape_formulas: false }
    }

    /// With `on`, CSV text fields that a spreadsheet would evaluate as a formula get a
    /// leading `'` (module docs); JSON and NDJSON are never altered.
    pub fn escaping_formulas(mut self, on: bool) -> RowWriter {
        self.escape_formulas = on;
        self
    }

    /// Appends text field `v` of a CSV row, formula-escaped when asked for.
    fn csv_text(&self, out: &mut Vec<u8>, v: &str) {
        if self.escape_formulas && v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            csv_field(out, &format!("'{v}"));
        } else {
            csv_field(out, v);
        }
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Appends what precedes the first row: the CSV header row, or `[` for a JSON array.
    pub fn header(&self, out: &mut Vec<u8>) {
        match self.format {
            ExportFormat::Csv => {
                out.extend_from_slice(b"bucket,code");
                for d in &self.dims {
                    out.push(b',');
                    out.extend_from_slice(d.as_str().as_bytes());
                }
                out.extend_from_slice(b",clicks,uniques\r\n");
            }
            ExportFormat::Json => out.push(b'['),
            ExportFormat::Ndjson => {}
        }
    }

    /// Appends one row of link `code`.
    pub fn row(&mut self, out: &mut Vec<u8>, code: &str, row: &StatsRow) {
        let bucket = rfc3339_in(self.tz, row.bucket_start_ms);
        match self.format {
            ExportFormat::Csv => {
                csv_field(out, &bucket);
                out.push(b',');
                self.csv_text(out, code);
                for v in &row.dims {
                    out.push(b',');
                    self.csv_text(out, v);
                }
                out.extend_from_slice(format!(",{},{}\r\n", row.clicks, row.uniques).as_bytes());
            }
            ExportFormat::Json | ExportFormat::Ndjson => {
                if self.format == ExportFormat::Json {
                    out.extend_from_slice(if self.rows == 0 { b"\n" } else { b",\n" });
                }
                out.extend_from_slice(b"{\"bucket\":");
                json_string(out, &bucket);
                out.extend_from_slice(b",\"code\":");
                json_string(out, code);
                for (d, v) in self.dims.iter().zip(&row.dims) {
                    out.push(b',');
                    json_string(out, d.as_str());
                    out.push(b':');
                    json_string(out, v);
                }
                out.extend_from_slice(format!(",\"clicks\":{},\"uniques\":{}}}", row.clicks, row.uniques).as_bytes());
                if self.format == ExportFormat::Ndjson {
                    out.push(b'\n');
                }
            }
        }
        self.rows += 1;
    }

    /// Appends what follows the last row (`]` for a JSON array).
    pub fn footer(&self, out: &mut Vec<u8>) {
        if self.format == ExportFormat::Json {
            out.extend_from_slice(if self.rows == 0 { b"]\n" } else { b"\n]\n" });
        }
    }
}

/// Appends `v` as one RFC 4180 field: quoted (quotes doubled) when it holds `,`, `"`, CR or LF.
pub fn csv_field(out: &mut Vec<u8>, v: &str) {
    if v.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
        out.push(b'"');
        for b in v.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(v.as_bytes());
    }
}

fn json_string(out: &mut Vec<u8>, v: &str) {
    // Serializing a &str cannot fail; the fallback keeps the output valid regardless.
    match serde_json::to_vec(v) {
        Ok(bytes) => out.extend_from_slice(&bytes),
        Err(_) => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn row(ms: i64, dims: &[&str], clicks: u64, uniques: u64) -> StatsRow {
        StatsRow { bucket_start_ms: ms, dims: dims.iter().map(|d| Arc::<str>::from(*d)).collect(), clicks, uniques }
    }

    fn render(format: ExportFormat, dims: &[Dimension], rows: &[StatsRow]) -> String {
        let mut w = RowWriter::new(format, dims, Tz::UTC);
        let mut out = Vec::new();
        w.header(&mut out);
        for r in rows {
            w.row(&mut out, "ab-1", r);
        }
        w.footer(&mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn csv_quotes_exactly_the_fields_rfc_4180_requires() {
        let rows = [row(0, &["plain", "a,b"], 1, 1), row(60_000, &["say \"hi\"", "cr\rlf\n"], 2, 1), row(120_000, &[" spaced ", "Ünïcødé ☃"], 3, 2)];
        let got = render(ExportFormat::Csv, &[Dimension::Browser, Dimension::ReferrerDomain], &rows);
        let want = "bucket,code,browser,referrer_domain,clicks,uniques\r\n\
                    1970-01-01T00:00:00Z,ab-1,plain,\"a,b\",1,1\r\n\
                    1970-01-01T00:01:00Z,ab-1,\"say \"\"hi\"\"\",\"cr\rlf\n\",2,1\r\n\
                    1970-01-01T00:02:00Z,ab-1, spaced ,Ünïcødé ☃,3,2\r\n";
        assert_eq!(got, want);
    }

    #[test]
    fn json_array_and_ndjson_layouts() {
        let rows = [row(0, &["x\"y"], 1, 1), row(60_000, &["é"], 2, 2)];
        assert_eq!(
            render(ExportFormat::Json, &[Dimension::Os], &rows),
            "[\n{\"bucket\":\"1970-01-01T00:00:00Z\",\"code\":\"ab-1\",\"os\":\"x\\\"y\",\"clicks\":1,\"uniques\":1},\n\
             {\"bucket\":\"1970-01-01T00:01:00Z\",\"code\":\"ab-1\",\"os\":\"é\",\"clicks\":2,\"uniques\":2}\n]\n"
        );
        assert_eq!(
            render(ExportFormat::Ndjson, &[], &[row(0, &[], 5, 4)]),
            "{\"bucket\":\"1970-01-01T00:00:00Z\",\"code\":\"ab-1\",\"clicks\":5,\"uniques\":4}\n"
        );
        assert_eq!(render(ExportFormat::Json, &[], &[]), "[]\n");
        assert_eq!(render(ExportFormat::Ndjson, &[], &[]), "");
        assert_eq!(render(ExportFormat::Csv, &[], &[]), "bucket,code,clicks,uniques\r\n");
    }

    /// Finding (newcomer, session 58): values any clicker chooses (browser families come
    /// from the user agent) reached CSV cells as spreadsheet formulas.
    #[test]
    fn formula_escaping_prefixes_the_fields_a_spreadsheet_would_evaluate() {
        let rows = [
            row(0, &["=HYPERLINK(\"http://x\")", "+1"], 1, 1),
            row(0, &["-2", "@SUM(A1)"], 1, 1),
            row(0, &["\tx", "\rx"], 1, 1),
            row(0, &["a=b", "1-2"], 1, 1),
        ];
        let dims = [Dimension::Browser, Dimension::Os];
        let mut w = RowWriter::new(ExportFormat::Csv, &dims, Tz::UTC).escaping_formulas(true);
        let mut out = Vec::new();
        for r in &rows {
            w.row(&mut out, "-code", r);
        }
        let want = "1970-01-01T00:00:00Z,'-code,\"'=HYPERLINK(\"\"http://x\"\")\",'+1,1,1\r\n\
                    1970-01-01T00:00:00Z,'-code,'-2,'@SUM(A1),1,1\r\n\
                    1970-01-01T00:00:00Z,'-code,'\tx,\"'\rx\",1,1\r\n\
                    1970-01-01T00:00:00Z,'-code,a=b,1-2,1,1\r\n";
        assert_eq!(String::from_utf8(out).expect("utf-8"), want);
        // Off (the default) the same rows are verbatim, and JSON is never altered.
        let plain = render(ExportFormat::Csv, &dims, &rows[..1]);
        assert!(plain.ends_with(",ab-1,\"=HYPERLINK(\"\"http://x\"\")\",+1,1,1\r\n"), "{plain}");
        let mut j = RowWriter::new(ExportFormat::Ndjson, &dims, Tz::UTC).escaping_formulas(true);
        let mut out = Vec::new();
        j.row(&mut out, "-code", &rows[1]);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "{\"bucket\":\"1970-01-01T00:00:00Z\",\"code\":\"-code\",\"browser\":\"-2\",\"os\":\"@SUM(A1)\",\"clicks\":1,\"uniques\":1}\n"
        );
    }

    #[test]
    fn formats_parse() {
        assert_eq!(ExportFormat::parse(None), Some(ExportFormat::Csv));
        assert_eq!(ExportFormat::parse(Some("json")), Some(ExportFormat::Json));
        assert_eq!(ExportFormat::parse(Some("ndjson")), Some(ExportFormat::Ndjson));
        assert_eq!(ExportFormat::parse(Some("xlsx")), None);
        assert_eq!(ExportFormat::parse(Some("")), None);
        assert_eq!(ExportFormat::parse(Some("  ")), None);
    }
}
