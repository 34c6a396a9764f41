use super::*;

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).expect("rfc3339").timestamp_millis()
}

fn code_of<T: std::fmt::Debug>(r: Result<T, ApiError>) -> &'static str {
    r.expect_err("expected an error").code
}

#[test]
fn a_plus_decoded_to_a_space_is_read_as_plus() {
    let want = ms("2024-06-01T18:30:00Z");
    assert_eq!(parse_instant("from", "2024-06-02T00:00:00+05:30").expect("plus"), want);
    assert_eq!(parse_instant("from", "2024-06-02T00:00:00 05:30").expect("space for plus"), want);
    // The whole query string, as a client that does not encode '+' sends it.
    let p = parse_stats(Some("from=2024-06-02T00:00:00+05:30&to=2024-06-03T00:00:00+05:30&tz=Asia/Kolkata"), 0).expect("parse");
    assert_eq!((p.from_ms, p.to_ms), (want, want + 86_400_000));
    let p = parse_stats(Some("from=2024-06-02T00:00:00%2B05:30&to=2024-06-03T00:00:00%2B05:30"), 0).expect("parse");
    assert_eq!((p.from_ms, p.to_ms), (want, want + 86_400_000));
    // Negative offsets, Z and the RFC 3339 space separator are untouched.
    assert_eq!(parse_instant("to", "2024-06-01T00:00:00-04:00").expect("minus"), ms("2024-06-01T04:00:00Z"));
    assert_eq!(parse_instant("to", "2024-06-01 00:00:00Z").expect("space separator"), ms("2024-06-01T00:00:00Z"));
    assert_eq!(parse_instant("to", "2024-06-01 00:00:00 05:45").expect("both"), ms("2024-05-31T18:15:00Z"));
}

#[test]
fn timestamps_must_be_valid_whole_minutes_after_1970() {
    assert_eq!(code_of(parse_instant("from", "2024-06-01")), "invalid_timestamp");
    assert_eq!(code_of(parse_instant("from", "2024-06-01T00:00:00")), "invalid_timestamp", "no offset");
    assert_eq!(code_of(parse_instant("from", "yesterday")), "invalid_timestamp");
    assert_eq!(code_of(parse_instant("from", "1969-12-31T23:59:00Z")), "invalid_timestamp");
    assert_eq!(code_of(parse_instant("from", "2024-06-01T00:00:30Z")), "unaligned_range");
    assert_eq!(code_of(parse_instant("from", "2024-06-01T00:00:00.001Z")), "unaligned_range");
    assert_eq!(parse_instant("from", "1970-01-01T00:00:00Z").expect("epoch"), 0);
    // a leap second is the start of the next minute; a fraction past it is not a whole minute
    assert_eq!(parse_instant("to", "2016-12-31T23:59:60Z").expect("leap second"), ms("2017-01-01T00:00:00Z"));
    assert_eq!(parse_instant("to", "2016-12-31T23:59:60.000Z").expect("leap second, ms"), ms("2017-01-01T00:00:00Z"));
    // ... but only at 23:59:60 UTC: chrono alone read 22:00:60 as 22:01:00
    for raw in ["2026-12-04T22:00:60Z", "2016-12-31T23:59:60+01:00"] {
        assert_eq!(parse_instant("from", raw).expect_err(raw).code, "invalid_timestamp", "{raw}");
    }
    assert_eq!(code_of(parse_instant("to", "2016-12-31T23:59:60.5Z")), "unaligned_range");
}

#[test]
fn defaults_are_the_last_seven_days_in_utc_days() {
    let now = ms("2024-06-10T12:34:56.789Z");
    let p = parse_stats(None, now).expect("defaults");
    assert_eq!(p.to_ms, ms("2024-06-10T12:35:00Z"), "end of the current minute");
    assert_eq!(p.from_ms, ms("2024-06-03T12:30:00Z"), "7 days back, down to 15 minutes (answerable beyond the minute retention)");
    assert_eq!((p.bucket, p.tz, p.include_bots, p.limit, p.order_by), (Bucket::Day, Tz::UTC, false, DEFAULT_LIMIT, OrderBy::Bucket));
    assert!(p.dimensions.is_empty());
    let p = parse_stats(Some("bucket=minute"), now).expect("minute");
    assert_eq!(p.to_ms - p.from_ms, 3_600_000, "minute buckets default to the last hour");
    let p = parse_stats(Some("from=2024-06-10T00:00:00Z&bucket=hour"), now).expect("only from");
    assert_eq!((p.from_ms, p.to_ms), (ms("2024-06-10T00:00:00Z"), ms("2024-06-10T12:35:00Z")));
    let p = parse_stats(Some("to=2024-06-01T00:00:00Z"), now).expect("only to");
    assert_eq!(p.from_ms, ms("2024-05-25T00:00:00Z"));
    let p = parse_stats(Some("bucket=minute&to=2024-06-01T00:07:00Z"), now).expect("minute, only to");
    assert_eq!(p.from_ms, ms("2024-05-31T23:07:00Z"), "a minute span is not rounded");
}

#[test]
fn every_parameter_error_has_its_code() {
    let now = ms("2024-06-10T12:00:00Z");
    let cases: &[(&str, &str)] = &[
        ("from=2024-06-02T00:00:00Z&to=2024-06-01T00:00:00Z", "invalid_range"),
        ("from=2024-06-01T00:00:00Z&to=2024-06-01T00:00:00Z", "invalid_range"),
        ("bucket=minute&from=2024-06-01T00:00:00Z&to=2024-06-03T00:01:00Z", "range_too_long"),
        ("bucket=hour&from=2024-01-01T00:00:00Z&to=2024-06-01T00:00:00Z", "range_too_long"),
        ("bucket=day&from=2020-01-01T00:00:00Z&to=2024-06-01T00:00:00Z", "range_too_long"),
        ("tz=Mars/Olympus", "unknown_timezone"),
        ("tz=%2B05:30", "unknown_timezone"),
        ("dimensions=city", "invalid_dimensions"),
        ("dimensions=country,browser", "invalid_dimensions"),
        ("dimensions=country,country", "invalid_dimensions"),
        ("dimensions=country,", "invalid_dimensions"),
        ("limit=0", "invalid_limit"),
        ("limit=100001", "invalid_limit"),
        ("limit=ten", "invalid_limit"),
        ("limit=-1", "invalid_limit"),
        ("order_by=random", "invalid_order_by"),
        ("bucket=week", "invalid_bucket"),
        ("bucket=", "invalid_bucket"),
        ("include_bots=yes", "invalid_parameter"),
        ("from=last-week", "invalid_timestamp"),
        ("to=2024-06-01T00:00:10Z", "unaligned_range"),
        ("granularity=day", "unknown_parameter"),
        ("bucket=day&bucket=hour", "duplicate_parameter"),
    ];
    for (q, want) in cases {
        let err = parse_stats(Some(q), now).expect_err(q);
        assert_eq!(err.code, *want, "{q}: {err}");
        assert_eq!(err.status.as_u16(), 400, "{q}");
    }
    let err = parse_stats(Some("dimensions=country,os"), now).expect_err("pair");
    assert!(err.message.contains("country,device"), "the message names the supported ones: {}", err.message);
}

/// `range_too_long` names the granularity whose limit the range broke and the limit, also for
/// the summary (no `bucket` parameter: the day limit; `details.bucket` was null).
#[test]
fn range_too_long_names_the_bucket_and_its_limit() {
    let now = ms("2024-06-10T12:00:00Z");
    let day = 86_400_000_i64;
    let cases = [
        (
            "bucket=minute&from=2024-06-01T00:00:00Z&to=2024-06-03T00:01:00Z",
            "the range is longer than 2 days allowed for bucket=minute; use a shorter range or a coarser bucket",
            "minute",
            2 * day,
            2 * day + 60_000,
        ),
        (
            "bucket=hour&from=2024-01-01T00:00:00Z&to=2024-06-01T00:00:00Z",
            "the range is longer than 93 days allowed for bucket=hour; use a shorter range or a coarser bucket",
            "hour",
            93 * day,
            152 * day,
        ),
        (
            "bucket=day&from=2020-01-01T00:00:00Z&to=2024-06-01T00:00:00Z",
            "the range is longer than 1100 days allowed for bucket=day; use a shorter range",
            "day",
            1_100 * day,
            1_613 * day,
        ),
    ];
    for (q, message, bucket, max, range) in cases {
        let err = parse_stats(Some(q), now).expect_err(q);
        assert_eq!(
            (err.code, err.message.as_str(), err.details),
            ("range_too_long", message, serde_json::json!({"bucket": bucket, "max_range_ms": max, "range_ms": range})),
            "{q}"
        );
    }
    let err = parse_summary(Some("from=2020-01-01T00:00:00Z&to=2024-06-01T00:00:00Z"), now).expect_err("summary");
    assert_eq!(
        (err.code, err.message.as_str(), err.details),
        (
            "range_too_long",
            "the range is longer than 1100 days; use a shorter range",
            serde_json::json!({"bucket": "day", "max_range_ms": 1_100 * day, "range_ms": 1_613 * day})
        )
    );
}

#[test]
fn valid_parameters_parse() {
    let p = parse_stats(
        Some("from=2024-06-01T00:00:00Z&to=2024-06-03T00:00:00Z&bucket=hour&tz=asia/kolkata&dimensions=device,country&include_bots=true&limit=5&order_by=uniques"),
        0,
    )
    .expect("parse");
    assert_eq!(p.tz, chrono_tz::Asia::Kolkata, "zone names ignore case");
    assert_eq!(p.dimensions, vec![Dimension::Device, Dimension::Country], "requested order kept");
    assert_eq!((p.bucket, p.include_bots, p.limit, p.order_by), (Bucket::Hour, true, 5, OrderBy::UniquesDesc));
    let p = parse_stats(Some("bucket=minute&from=2024-06-01T00:00:00Z&to=2024-06-03T00:00:00Z&dimensions=referrer_medium"), 0).expect("2 days of minutes");
    assert_eq!(p.dimensions, vec![Dimension::ReferrerMedium]);
    // Spaces around a zone name are dropped, as around dimensions (attack of session 51);
    // one inside is still the '+' that form decoding made of it.
    for (q, tz) in [("tz=%20UTC", chrono_tz::UTC), ("tz=Asia/Kolkata%20%20", chrono_tz::Asia::Kolkata), ("tz=Etc/GMT%205", chrono_tz::Etc::GMTPlus5)] {
        assert_eq!(parse_stats(Some(q), 0).expect(q).tz, tz, "{q}");
    }
}

#[test]
fn summary_parameters() {
    let now = ms("2024-06-10T12:00:30Z");
    let s = parse_summary(None, now).expect("defaults");
    assert_eq!((s.from_ms, s.to_ms), (ms("2024-06-03T12:00:00Z"), ms("2024-06-10T12:01:00Z")));
    assert_eq!((s.limit, s.include_bots, s.org, s.tag), (10, false, None, None));
    let s = parse_summary(Some("limit=3&tag=spring&include_bots=1"), now).expect("parse");
    assert_eq!((s.limit, s.tag.as_deref(), s.include_bots), (3, Some("spring"), true));
    assert_eq!(code_of(parse_summary(Some("limit=1001"), now)), "invalid_limit");
    // the same details as every endpoint's invalid_limit (ApiError::invalid_limit)
    let err = parse_summary(Some("limit=ten"), now).expect_err("not a number");
    assert_eq!(err.message, "limit must be an integer between 1 and 1000, got \"ten\"");
    assert_eq!(err.details, serde_json::json!({"parameter": "limit", "value": "ten", "min": 1, "max": 1000}));
    assert_eq!(code_of(parse_summary(Some("tag="), now)), "invalid_parameter");
    assert_eq!(code_of(parse_summary(Some("bucket=day"), now)), "unknown_parameter");
    assert_eq!(code_of(parse_summary(Some("from=2024-06-11T00:00:00Z"), now)), "invalid_range");
    // The summary has no bucket: its range error does not suggest one.
    let e = parse_summary(Some("from=2020-01-01T00:00:00Z&to=2024-06-01T00:00:00Z"), now).expect_err("too long");
    assert_eq!((e.code, e.message.as_str()), ("range_too_long", "the range is longer than 1100 days; use a shorter range"));
    // A tag filter is matched in its stored spelling: trimmed, NFC.
    let s = parse_summary(Some("tag=%20cafe%CC%81%20"), now).expect("nfd tag");
    assert_eq!(s.tag.as_deref(), Some("caf\u{e9}"));
    // An org filter follows the rules of a link's org (as GET /v1/links?org= does): a value
    // no link could carry is refused, not answered with zero clicks.
    let s = parse_summary(Some("org=Acme.Corp-1_x"), now).expect("org");
    assert_eq!(s.org.as_deref(), Some("Acme.Corp-1_x"));
    let long = "a".repeat(65);
    for (raw, value, reason) in [
        ("org=", "", "org must be 1 to 64 characters"),
        (&*format!("org={long}"), &*long, "org must be 1 to 64 characters"),
        ("org=a%20b", "a b", "org may only contain the characters A-Z, a-z, 0-9, '_', '.' and '-'"),
        ("org=caf%C3%A9", "caf\u{e9}", "org may only contain the characters A-Z, a-z, 0-9, '_', '.' and '-'"),
    ] {
        let e = parse_summary(Some(raw), now).expect_err(raw);
        assert_eq!((e.code, e.message.clone()), ("invalid_parameter", format!("invalid \"org\": {reason}")), "{raw}");
        assert_eq!(e.details, serde_json::json!({"parameter": "org", "value": value, "reason": reason}), "{raw}");
    }
}

#[test]
fn bucket_labels_carry_the_zone_offset() {
    let berlin = chrono_tz::Europe::Berlin;
    assert_eq!(rfc3339_in(berlin, ms("2024-10-27T00:00:00Z")), "2024-10-27T02:00:00+02:00");
    assert_eq!(rfc3339_in(berlin, ms("2024-10-27T01:00:00Z")), "2024-10-27T02:00:00+01:00");
    assert_eq!(rfc3339_in(Tz::UTC, ms("2024-06-01T00:00:00Z")), "2024-06-01T00:00:00Z");
    assert_eq!(rfc3339_in(chrono_tz::Asia::Kathmandu, ms("2024-06-01T18:15:00Z")), "2024-06-02T00:00:00+05:45");
    assert_eq!(rfc3339_utc(1_500), "1970-01-01T00:00:01.500Z");
}

/// Every alias of UTC labels like `UTC` (`Z`); a local zone at +00:00 keeps its offset.
#[test]
fn utc_aliases_label_with_z_and_local_zones_at_zero_keep_their_offset() {
    let at = ms("2024-01-15T12:00:00Z");
    for name in UTC_NAMES {
        let tz: Tz = name.parse().unwrap_or_else(|e| panic!("{name} is no IANA name: {e}"));
        assert_eq!(rfc3339_in(tz, at), "2024-01-15T12:00:00Z", "{name}");
    }
    for name in ["Europe/London", "Africa/Abidjan", "Atlantic/Reykjavik"] {
        let tz: Tz = name.parse().expect("zone");
        assert_eq!(rfc3339_in(tz, at), "2024-01-15T12:00:00+00:00", "{name}");
    }
    // Completeness against the bundled tzdata: every zone that is at +00:00 in January and
    // July of 1975–2029 and names no place (no `/`, or under `Etc/`) is in the list. The one
    // such name that is a place: `Iceland` (a `backward` link to Atlantic/Reykjavik).
    use chrono::{Offset, TimeZone};
    let always_zero = |tz: Tz| {
        (1975..2030).all(|y| {
            [1, 7].iter().all(|&m| {
                let t = chrono::NaiveDate::from_ymd_opt(y, m, 15).and_then(|d| d.and_hms_opt(0, 0, 0)).expect("date");
                tz.offset_from_utc_datetime(&t).fix().local_minus_utc() == 0
            })
        })
    };
    let mut found = 0;
    for tz in chrono_tz::TZ_VARIANTS {
        let name = tz.name();
        if (!name.contains('/') || name.starts_with("Etc/")) && name != "Iceland" && always_zero(tz) {
            assert!(UTC_NAMES.contains(&name), "{name} is always at +00:00 and names no place");
            found += 1;
        }
    }
    assert_eq!(found, UTC_NAMES.len(), "every listed name is in the database");
}

#[test]
fn with_clickhouse_any_combination_of_up_to_three_distinct_dimensions_parses() {
    use Dimension::*;
    let dims = |q: &str, adhoc: bool| parse_stats_with(Some(q), 0, adhoc).map(|p| p.dimensions);
    assert_eq!(dims("dimensions=browser,os", true).expect("pair"), vec![Browser, Os]);
    assert_eq!(dims("dimensions=country,device,browser", true).expect("triple"), vec![Country, Device, Browser]);
    assert_eq!(dims("dimensions=referrer_medium,country", true).expect("pair"), vec![ReferrerMedium, Country]);
    assert_eq!(dims("dimensions=device,country", true).expect("view"), vec![Device, Country]);
    for bad in ["dimensions=country,device,browser,os", "dimensions=os,os", "dimensions=os,city"] {
        assert_eq!(code_of(dims(bad, true)), "invalid_dimensions", "{bad}");
    }
    let err = dims("dimensions=browser,os", false).expect_err("no clickhouse");
    assert_eq!(err.code, "invalid_dimensions");
    assert!(err.message.contains("ClickHouse"), "the message says what ClickHouse enables: {}", err.message);
}
