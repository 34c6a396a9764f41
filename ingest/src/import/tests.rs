//! The import parsers on fixed inputs (`ingest/tests/data/import/`): access-log lines built
//! from the labelled UA fixtures with documentation IPs (192.0.2.0/24, 2001:db8::/32).

use super::combined::{parse_clf_time, parse_line, target_path};
use super::*;

const ACCESS_LOG: &[u8] = include_bytes!("../../tests/data/import/access.log");
const ACCESS_EXPECTED: &str = include_str!("../../tests/data/import/access.expected.ndjson");
const EVENTS_NDJSON: &str = include_str!("../../tests/data/import/events.ndjson");

/// The line id written out by hand (UUIDv8 layout of RFC 9562 §5.8), independent of
/// `Uuid::new_v8`.
fn id_by_hand(line_no: u64, line: &str) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&blake3::derive_key(LINE_ID_CONTEXT, format!("{line_no}\n{line}").as_bytes())[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b).to_string()
}

fn run(parser: &LineParser, text: &str) -> (String, ImportTally) {
    let mut tally = ImportTally::default();
    let mut out = String::new();
    for (i, line) in text.split_terminator('\n').enumerate() {
        if let Some(e) = tally.count(parser.parse(i as u64 + 1, line)) {
            out.push_str(&serde_json::to_string(&e).expect("json"));
            out.push('\n');
        }
    }
    (out, tally)
}

#[test]
fn access_log_becomes_the_expected_ndjson_byte_for_byte() {
    let text = std::str::from_utf8(ACCESS_LOG).expect("fixture is utf-8");
    let lines: Vec<&str> = text.split_terminator('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut expected = ACCESS_EXPECTED.to_owned();
    for n in [1u64, 3, 10, 11, 12, 15, 17, 18] {
        expected = expected.replace(&format!("{{{{id:{n}}}}}"), &id_by_hand(n, lines[n as usize - 1]));
    }
    assert!(!expected.contains("{{"), "every placeholder replaced");
    let (out, tally) = run(&LineParser::new(ImportFormat::Combined, "/"), text);
    assert_eq!(out, expected);
    let skipped: Vec<(&str, u64)> = tally.skipped.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(
        skipped,
        vec![("blank", 1), ("head_request", 1), ("invalid_client_ip", 1), ("malformed", 3), ("not_code_path", 2), ("not_get", 1), ("not_redirect", 3)]
    );
    assert_eq!((tally.lines, tally.events), (20, 8));
    assert!(tally.invalid.is_empty());
}

#[test]
fn reimporting_gives_the_same_ids_and_identical_lines_stay_distinct() {
    let text = std::str::from_utf8(ACCESS_LOG).expect("utf-8");
    let p = LineParser::new(ImportFormat::Combined, "/");
    let (a, _) = run(&p, text);
    let (b, _) = run(&p, text);
    assert_eq!(a, b);
    let ids: Vec<String> =
        a.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["event_id"].as_str().expect("id").to_owned()).collect();
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "lines 1 and 11 are equal but are two clicks");
}

#[test]
fn path_prefix_selects_where_codes_live() {
    let line = r#"192.0.2.1 - - [10/Oct/2024:13:55:36 +0000] "GET /s/abc?x=1 HTTP/1.1" 302 0 "-" "ua""#;
    let under_s = LineParser::new(ImportFormat::Combined, "s");
    match under_s.parse(1, line) {
        LineOutcome::Event(e) => assert_eq!(e.code, "abc"),
        other => panic!("expected an event, got {other:?}"),
    }
    assert_eq!(LineParser::new(ImportFormat::Combined, "/").parse(1, line), LineOutcome::Skipped(SkipReason::NotCodePath));
    let root = r#"192.0.2.1 - - [10/Oct/2024:13:55:36 +0000] "GET /abc HTTP/1.1" 302 0 "-" "ua""#;
    assert_eq!(under_s.parse(1, root), LineOutcome::Skipped(SkipReason::NotCodePath));
}

#[test]
fn a_byte_order_mark_opening_the_file_is_skipped_and_named_anywhere_else() {
    let p = LineParser::new(ImportFormat::Ndjson, "/");
    let first = EVENTS_NDJSON.lines().next().expect("line 1");
    let (plain, with_bom) = (p.parse(1, first), p.parse(1, &format!("\u{feff}{first}\r")));
    let (LineOutcome::Event(a), LineOutcome::Event(b)) = (&plain, &with_bom) else { panic!("{plain:?} / {with_bom:?}") };
    assert_eq!(a, b);
    let LineOutcome::Invalid(r) = p.parse(2, &format!("\u{feff}{first}")) else { panic!("line 2") };
    assert_eq!(
        (r.reason, r.message.as_str()),
        (
            "malformed_json",
            "line 2 is not valid json: it starts with a UTF-8 byte order mark (bytes EF BB BF), which JSON must not carry (RFC 8259 §8.1): remove it"
        )
    );
}

#[test]
fn ndjson_lines_are_events_or_counted_rejections() {
    let p = LineParser::new(ImportFormat::Ndjson, "/");
    let outcomes: Vec<LineOutcome> = EVENTS_NDJSON.split_terminator('\n').enumerate().map(|(i, l)| p.parse(i as u64 + 1, l)).collect();
    let shape: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            LineOutcome::Event(e) => format!("event {} {}", e.event_id, e.ts),
            LineOutcome::Skipped(r) => format!("skip {}", r.as_str()),
            LineOutcome::Invalid(r) => format!("invalid {}", r.reason),
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            "event c19-0001 1710052200000",
            "skip blank",
            "event c19-0002 1710052200000",
            "invalid invalid_ts",
            "invalid malformed_json",
            "invalid not_an_object",
            "invalid unknown_field",
            "skip blank",
            "invalid missing_field",
            "event c19-0001 1710052200000",
        ]
    );
    let LineOutcome::Event(first) = &outcomes[0] else { panic!("event") };
    assert_eq!(first.user_agent, "Mozilla/5.0", "the ua alias");
    assert_eq!((first.ip.as_deref(), first.referrer.as_deref()), (Some("192.0.2.30"), None));
}

#[test]
fn quoted_fields_unescape_like_nginx_and_apache() {
    let r = parse_line(r#"192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "GET /a HTTP/1.1" 302 0 "https://r.example/?q=\x22x\x22" "A \"B\" C\\D \xC3\xBC\xFF \t""#)
        .expect("parses");
    assert_eq!(r.referrer.as_deref(), Some("https://r.example/?q=\"x\""));
    assert_eq!(r.user_agent, "A \"B\" C\\D ü\u{FFFD} \t");
    assert_eq!((r.method.as_str(), r.target.as_str(), r.status, r.ts_ms), ("GET", "/a", 302, 1_735_689_600_000));
    assert_eq!(parse_line(r#"192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "GET /a HTTP/1.1" 302 0 "-" "unterminated"#), Err("malformed_line"));
    assert_eq!(parse_line(r#"192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "GET /a HTTP/1.1" 302"#), Err("malformed_line"));
    assert_eq!(parse_line(r#"192.0.2.1 - - [01/Jan/2025:00:00:00] "GET /a HTTP/1.1" 302 0"#), Err("invalid_time"));
    assert_eq!(parse_line(r#"192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "GET /a HTTP/1.1" 99 0"#), Err("invalid_status"));
    assert_eq!(parse_line(r#"192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "GET /a b HTTP/1.1" 302 0"#), Err("malformed_request"));
    assert_eq!(parse_line(r#"192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "get /a HTTP/1.1" 302 0"#), Err("malformed_request"));
    assert_eq!(parse_line(r#"192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "-" 408 0"#), Err("malformed_request"));
    assert!(parse_line(r#"192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "GET /a" 302 0"#).is_ok(), "HTTP/0.9 request line");
    assert_eq!(parse_line(""), Err("malformed_line"));
}

#[test]
fn times_and_targets() {
    assert_eq!(parse_clf_time("10/Oct/2024:13:55:36 +0000"), Some(1_728_568_536_000));
    assert_eq!(parse_clf_time("10/Oct/2024:06:55:36 -0700"), Some(1_728_568_536_000));
    assert_eq!(parse_clf_time("10/Oct/2024:13:55:36.042 +0000"), Some(1_728_568_536_042));
    assert_eq!(parse_clf_time("10/Foo/2024:13:55:36 +0000"), None);
    assert_eq!(target_path("/abc?x=/y"), Some("/abc"));
    assert_eq!(target_path("/abc#f"), Some("/abc"));
    assert_eq!(target_path("https://h.example:8443/abc?q"), Some("/abc"));
    assert_eq!(target_path("https://h.example"), None);
    assert_eq!(target_path("*"), None);
    assert!(is_redirect_status(301) && is_redirect_status(308) && !is_redirect_status(304) && !is_redirect_status(200));
    assert_eq!(ImportFormat::guess("x.NDJSON"), ImportFormat::Ndjson);
    assert_eq!(ImportFormat::guess("access.log.1"), ImportFormat::Combined);
}

#[test]
fn path_prefixes_are_normalized_once_for_matching_and_messages() {
    for (given, want) in [("", "/"), ("/", "/"), ("//", "/"), ("s", "/s/"), ("/s", "/s/"), ("/s//", "/s/"), ("//s", "/s/"), ("/a//b/", "/a/b/")] {
        assert_eq!(normalize_path_prefix(given), want, "{given:?}");
    }
    // `//s` matches the same paths as `/s/`.
    let line = r#"127.0.0.1 - - [10/Oct/2026:13:55:36 +0000] "GET /s/imp HTTP/1.1" 302 0 "-" "curl/8""#;
    let a = LineParser::new(ImportFormat::Combined, "//s").parse(1, line);
    let b = LineParser::new(ImportFormat::Combined, "/s/").parse(1, line);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    assert!(matches!(&a, LineOutcome::Event(e) if e.code == "imp"), "{a:?}");
}
