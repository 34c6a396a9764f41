use serde_json::json;
use sluice_schemas::{VisitorSalt, visitor_id};

use super::*;

const NOW: i64 = 1_710_052_200_000; // 2024-03-10T06:30:00Z

fn salt() -> VisitorSalt {
    VisitorSalt::new([9; 32], Some(86_400_000))
}

fn check(v: Value) -> Result<ClickEvent, Rejection> {
    let s = salt();
    validate_value(v, &Validation { salt: &s, now_ms: NOW, max_future_skew_ms: DEFAULT_MAX_FUTURE_SKEW_MS })
}

fn reason(v: Value) -> &'static str {
    check(v).expect_err("rejected").reason
}

/// The UUIDv8 layout written out by hand (RFC 9562 §5.8: version nibble 8 in byte 6,
/// variant bits 10 in byte 8), independent of `Uuid::new_v8`.
fn v8_by_hand(s: &str) -> Uuid {
    let mut b = [0u8; 16];
    b.copy_from_slice(&blake3::derive_key(EVENT_ID_CONTEXT, s.as_bytes())[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b)
}

#[test]
fn uuid_ids_are_kept_and_other_ids_map_to_a_stable_v8() {
    let u = "0190f5a2-7c3e-7b21-8a4d-1234567890ab";
    assert_eq!(event_uuid(u).to_string(), u);
    assert_eq!(event_uuid("0190f5a27c3e7b218a4d1234567890ab").to_string(), u, "simple form");
    assert_eq!(event_uuid(&format!("urn:uuid:{u}")).to_string(), u, "urn form");
    let id = event_uuid("c19-0001");
    assert_eq!(id, v8_by_hand("c19-0001"));
    assert_eq!(id.get_version_num(), 8);
    assert_eq!(event_uuid("c19-0001"), id, "deterministic");
    assert_ne!(event_uuid("c19-0002"), id);
    assert_ne!(event_uuid("C19-0001"), id, "case-sensitive");
}

#[test]
fn a_full_event_becomes_the_click_the_redirect_would_mint() {
    let e = check(json!({
        "event_id": "c19-0001", "code": "abc_-9", "ts": "2024-03-10T01:30:00.123-05:00",
        "ip": "192.0.2.30", "ua": "Mozilla/5.0 ✓", "referrer": "https://a.example/x",
        "accept_language": "de-CH", "edge_region": "eu-1"
    }))
    .expect("valid");
    let ts = 1_710_052_200_123;
    assert_eq!(
        e,
        ClickEvent {
            event_id: v8_by_hand("c19-0001"),
            code: "abc_-9".into(),
            ts,
            ip_trunc: Some("192.0.2.0".into()),
            visitor_id: visitor_id(&salt(), ts, "192.0.2.30".parse().expect("ip"), "Mozilla/5.0 ✓"),
            user_agent: "Mozilla/5.0 ✓".into(),
            referrer: Some("https://a.example/x".into()),
            accept_language: Some("de-CH".into()),
            edge_region: Some("eu-1".into()),
        }
    );
}

#[test]
fn ip_trunc_only_keys_the_visitor_on_the_network_address() {
    let e = check(json!({"event_id": "x", "code": "c", "ts": NOW, "ip_trunc": "2001:db8:1:2::9", "user_agent": ""})).expect("valid");
    assert_eq!(e.ip_trunc.as_deref(), Some("2001:db8:1::"));
    assert_eq!(e.visitor_id, visitor_id(&salt(), NOW, "2001:db8:1::".parse().expect("ip"), ""));
    assert_eq!((e.referrer, e.accept_language, e.edge_region), (None, None, None));
    let full = check(json!({"event_id": "y", "code": "c", "ts": NOW, "ip": "2001:db8:1::", "user_agent": ""})).expect("valid");
    assert_eq!(full.visitor_id, e.visitor_id, "same network address, same visitor");
}

#[test]
fn ts_accepts_integer_ms_and_rfc3339_only() {
    let ok = |ts: Value| check(json!({"event_id": "x", "code": "c", "ts": ts, "ip": "192.0.2.1", "ua": ""})).map(|e| e.ts);
    assert_eq!(ok(json!(0)), Ok(0));
    assert_eq!(ok(json!("2024-03-10T06:30:00Z")), Ok(NOW));
    assert_eq!(ok(json!(NOW + DEFAULT_MAX_FUTURE_SKEW_MS)), Ok(NOW + DEFAULT_MAX_FUTURE_SKEW_MS), "skew bound inclusive");
    for (bad, why) in [
        (json!(NOW + DEFAULT_MAX_FUTURE_SKEW_MS + 1), "ts_in_future"),
        (json!(-1), "invalid_ts"),
        (json!(1.5), "invalid_ts"),
        (json!("1710052200000"), "invalid_ts"),
        (json!("2024-03-10 06:30"), "invalid_ts"),
        (json!(true), "invalid_ts"),
        (json!(u64::MAX), "invalid_ts"),
    ] {
        assert_eq!(ok(bad.clone()).expect_err("rejected").reason, why, "{bad}");
    }
    // Second 60 only as the leap second at the end of a UTC day (read as the next instant),
    // as every API input; chrono alone reads 06:29:60 as 06:30:00.
    assert_eq!(ok(json!("2024-03-09T23:59:60Z")), Ok(NOW - 6 * 3_600_000 - 30 * 60_000));
    let leap = ok(json!("2024-03-10T06:29:60Z")).expect_err("second 60 mid-day");
    assert_eq!(
        (leap.reason, leap.message.as_str()),
        ("invalid_ts", "\"ts\" is not an RFC 3339 timestamp (second 60 (a leap second) is only valid at 23:59:60 UTC): \"2024-03-10T06:29:60Z\"")
    );
    // Instants in the message are RFC 3339 (NOW is 2024-03-10T06:30:00Z), as in `too_late`.
    let future = ok(json!(NOW + DEFAULT_MAX_FUTURE_SKEW_MS + 1_034)).expect_err("in the future");
    assert_eq!(
        (future.reason, future.message.as_str()),
        ("ts_in_future", "\"ts\" 2024-03-10T06:35:01.034Z is more than 300000 ms ahead of the server clock (2024-03-10T06:30:00.000Z)")
    );
    // Past chrono's range the number is shown as sent.
    assert_eq!(
        ok(json!(i64::MAX)).expect_err("far future").message,
        format!("\"ts\" {} is more than 300000 ms ahead of the server clock (2024-03-10T06:30:00.000Z)", i64::MAX)
    );
}

/// A `ts` number that is no `i64` is echoed as the caller wrote it, never as a lossy float:
/// an integer that fits a `u64` as that integer, a fraction as read; an integer beyond
/// `u64` (2^64: `1.8446744073709552e19` before) or a huge exponent form is out of range
/// without an echo. The event is read from its JSON text, as `POST /v1/events` reads it.
#[test]
fn ts_numbers_that_are_no_i64_are_echoed_as_written_or_not_at_all() {
    let out_of_range = "\"ts\" is out of range (must be an integer number of ms between 0 and 9223372036854775807)";
    for (ts, message) in [
        ("18446744073709551616", out_of_range.to_owned()), // 2^64
        ("18446744073709551617", out_of_range.to_owned()),
        ("100000000000000000000000", out_of_range.to_owned()),
        ("-9223372036854775809", out_of_range.to_owned()), // i64::MIN - 1
        ("1e300", out_of_range.to_owned()),
        ("9007199254740992.5", out_of_range.to_owned()), // 2^53 + 0.5: no f64 holds it
        (
            "18446744073709551615", // u64::MAX
            "\"ts\" 18446744073709551615 is out of range (must be an integer number of ms between 0 and 9223372036854775807)".to_owned(),
        ),
        (
            "9223372036854775808", // i64::MAX + 1
            "\"ts\" 9223372036854775808 is out of range (must be an integer number of ms between 0 and 9223372036854775807)".to_owned(),
        ),
        ("1.5", "\"ts\" must be an integer number of ms since the epoch, got 1.5".to_owned()),
        ("-0.25", "\"ts\" must be an integer number of ms since the epoch, got -0.25".to_owned()),
        ("1710052200000.5", "\"ts\" must be an integer number of ms since the epoch, got 1710052200000.5".to_owned()),
        // Whole values written with an exponent or a fraction: named by their integer (the
        // text sent is not kept), not as `1000000000000.0`.
        ("1e12", whole_but_not_integer("1e12", 1_000_000_000_000)),
        ("1E12", whole_but_not_integer("1e12", 1_000_000_000_000)),
        ("1000000000000.0", whole_but_not_integer("1e12", 1_000_000_000_000)),
        ("1.7100522e12", whole_but_not_integer("1.7100522e12", 1_710_052_200_000)),
    ] {
        let text = format!(r#"{{"event_id": "x", "code": "c", "ts": {ts}, "ip": "192.0.2.1", "ua": ""}}"#);
        let v: Value = sluice_schemas::strict_json::from_str_strict(&text).expect("json");
        let e = check(v).expect_err(ts);
        assert_eq!((e.reason, e.message.as_str()), ("invalid_ts", message.as_str()), "{text}");
    }
}

/// The message of a whole `ts` sent with a fraction or an exponent (`exp`: its `{:e}` form).
fn whole_but_not_integer(exp: &str, whole: i64) -> String {
    format!(
        "\"ts\" must be an integer number of ms since the Unix epoch (UTC) without a fraction or an exponent, got a number equal to {whole} \
         written with one (such as {exp} or {whole}.0): send {whole}"
    )
}

/// Finding: `"user_agent": null` was refused as `missing_field` ("is required") though the
/// member is there: it is `invalid_field`, saying null is not a string, as for the alias.
#[test]
fn a_null_user_agent_is_a_type_error_not_a_missing_member() {
    for key in ["user_agent", "ua"] {
        let e = check(json!({"event_id": "e", "code": "c", "ts": NOW, "ip": "192.0.2.1", key: null})).expect_err(key);
        assert_eq!((e.reason, e.message), ("invalid_field", format!("\"{key}\" must be a string (it may be empty), got null")));
        let e = check(json!({"event_id": "e", "code": "c", "ts": NOW, "ip": "192.0.2.1", key: 5})).expect_err(key);
        assert_eq!((e.reason, e.message), ("invalid_field", format!("\"{key}\" must be a string (it may be empty), got a number")));
    }
    let e = check(json!({"event_id": "e", "code": "c", "ts": NOW, "ip": "192.0.2.1"})).expect_err("absent");
    assert_eq!((e.reason, e.message.as_str()), ("missing_field", "\"user_agent\" is required (it may be empty)"));
}

#[test]
fn every_rejection_reason() {
    let base = json!({"event_id": "e", "code": "c", "ts": NOW, "ip": "192.0.2.1", "user_agent": "u"});
    let with = |k: &str, v: Value| {
        let mut o = base.clone();
        o[k] = v;
        o
    };
    let without = |k: &str| {
        let mut o = base.clone();
        o.as_object_mut().expect("object").remove(k);
        o
    };
    assert!(check(base.clone()).is_ok());
    assert_eq!(reason(json!([1])), "not_an_object");
    assert_eq!(reason(json!("e")), "not_an_object");
    assert_eq!(reason(with("visitor_id", json!(1))), "unknown_field");
    assert_eq!(reason(without("event_id")), "missing_field");
    assert_eq!(reason(without("code")), "missing_field");
    assert_eq!(reason(without("ts")), "missing_field");
    // Finding (attack, session 44): a null required member read as absent (`missing_field`,
    // "is required") though it is there: a type error, as for `user_agent`.
    assert_eq!(reason(with("ts", Value::Null)), "invalid_ts");
    assert_eq!(check(with("ts", Value::Null)).expect_err("null ts").message, "\"ts\" must be an integer (ms) or an RFC 3339 string, got null");
    for key in ["event_id", "code"] {
        let e = check(with(key, Value::Null)).expect_err(key);
        assert_eq!((e.reason, e.message), ("invalid_field", format!("\"{key}\" must be a string, got null")));
    }
    assert_eq!(reason(without("user_agent")), "missing_field");
    assert_eq!(reason(without("ip")), "missing_field");
    assert_eq!(reason(with("ua", json!("also"))), "invalid_field");
    assert_eq!(reason(with("code", json!(5))), "invalid_field");
    assert_eq!(reason(with("referrer", json!({"u": 1}))), "invalid_field");
    assert_eq!(reason(with("event_id", json!(""))), "invalid_event_id");
    assert_eq!(reason(with("event_id", json!("x".repeat(MAX_EVENT_ID_BYTES + 1)))), "invalid_event_id");
    assert!(check(with("event_id", json!("x".repeat(MAX_EVENT_ID_BYTES)))).is_ok());
    // the nil UUID in every form `event_uuid` parses: the dataflow would drop it as invalid
    for nil in [
        "00000000-0000-0000-0000-000000000000",
        "00000000000000000000000000000000",
        "{00000000-0000-0000-0000-000000000000}",
        "urn:uuid:00000000-0000-0000-0000-000000000000",
    ] {
        assert_eq!(reason(with("event_id", json!(nil))), "invalid_event_id", "{nil}");
    }
    assert!(check(with("event_id", json!("00000000-0000-0000-0000-000000000001"))).is_ok());
    for bad_code in ["", "a/b", "robots.txt", "ü", &"x".repeat(65)] {
        assert_eq!(reason(with("code", json!(bad_code))), "invalid_code", "{bad_code:?}");
    }
    assert_eq!(reason(with("ip", json!("999.1.1.1"))), "invalid_ip");
    assert_eq!(reason(with("ip", json!("192.0.2.1:80"))), "invalid_ip");
    assert_eq!(reason(with("ip_trunc", json!("192.0.2.0"))), "ip_conflict");
    assert_eq!(reason(with("ip", Value::Null)), "missing_field", "null ip is absent");
    let r = check(with("referrer", Value::Null)).expect("null referrer is none");
    assert_eq!(r.referrer, None);
}

#[test]
fn long_text_is_cut_at_a_char_boundary_like_the_redirect() {
    let long = "é".repeat(MAX_FIELD_BYTES); // 2 bytes each
    let e = check(json!({"event_id": "e", "code": "c", "ts": NOW, "ip": "192.0.2.1", "user_agent": long, "referrer": format!("a{long}")})).expect("valid");
    assert_eq!(e.user_agent.len(), MAX_FIELD_BYTES);
    assert_eq!(e.referrer.as_deref().map(str::len), Some(MAX_FIELD_BYTES - 1));
    assert_eq!(cut("abc".into(), 2), "ab");
    assert_eq!(cut("aé".into(), 2), "a");
}

/// A client that cuts the text members first (`sluice import`, to keep requests within the
/// body limit) gets the very event the server makes of the whole text, visitor id included.
#[test]
fn cutting_the_text_fields_first_makes_the_same_event() {
    let long = |c: &str| c.repeat(3 * MAX_FIELD_BYTES);
    let whole = json!({"event_id": "e", "code": "c", "ts": NOW, "ip": "192.0.2.1", "user_agent": format!("x{}", long("é")),
        "referrer": long("r"), "accept_language": long("l"), "edge_region": "eu"});
    let mut input = EventInput::from_value(whole.clone()).expect("valid");
    input.cut_text_fields();
    assert_eq!(
        (input.user_agent.len(), input.referrer.as_deref().map(str::len), input.accept_language.as_deref().map(str::len), input.edge_region.as_deref()),
        (MAX_FIELD_BYTES - 1, Some(MAX_FIELD_BYTES), Some(MAX_FIELD_BYTES), Some("eu"))
    );
    let cut_first = check(serde_json::to_value(&input).expect("serialize")).expect("valid");
    assert_eq!(cut_first, check(whole).expect("valid"));
}

#[test]
fn input_serializes_to_the_wire_shape() {
    let input = EventInput {
        event_id: "e".into(),
        code: "c".into(),
        ts: 5,
        ip: Some("192.0.2.1".into()),
        ip_trunc: None,
        user_agent: "u".into(),
        referrer: None,
        accept_language: None,
        edge_region: None,
    };
    let text = serde_json::to_string(&input).expect("json");
    assert_eq!(text, r#"{"event_id":"e","code":"c","ts":5,"ip":"192.0.2.1","user_agent":"u"}"#);
    assert_eq!(EventInput::from_value(serde_json::from_str(&text).expect("parse")), Ok(input));
}
