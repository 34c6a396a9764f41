//! Output buckets in an IANA time zone.
//!
//! A query's `bucket=hour|day` buckets are *local* hours and days of the requested zone. They
//! are computed from instants, never from wall-clock arithmetic, so DST days have 23 or 25
//! hours, the two 02:00 hours of a fall-back night are two distinct buckets (with different
//! offsets), and a spring-forward night has no 02:00 bucket at all (case C16).
//!
//! Every UTC offset in use since 1980 is a multiple of 15 minutes, so every local hour and day
//! boundary is an instant aligned to 15 minutes in UTC. The functions here walk in 15-minute
//! steps and report `unsupported_tz_offset` when a zone's offset inside the range is not a
//! multiple of 15 minutes (local mean time before standard time was adopted).
//! Minute buckets are UTC minutes in every zone.

use chrono::{Datelike, NaiveDate, Offset, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Error, Result};

const QUARTER_MS: i64 = 900_000;

/// Output bucket size of a stats query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Bucket {
    /// UTC minutes.
    Minute,
    /// Local hours of the query's zone.
    Hour,
    /// Local days of the query's zone.
    Day,
}

impl Bucket {
    /// Parses `minute`, `hour` or `day`.
    pub fn parse(s: &str) -> Option<Bucket> {
        match s {
            "minute" => Some(Bucket::Minute),
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            _ => None,
        }
    }

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Minute => "minute",
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }
}

/// Local identity of the bucket containing an instant: (date, hour or 0, offset or 0).
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
struct Key(NaiveDate, u32, i32);

fn offset_secs(tz: Tz, t_ms: i64) -> Result<(chrono::DateTime<Tz>, i32)> {
    let dt = tz.timestamp_millis_opt(t_ms).single().ok_or_else(|| Error::query("invalid_range", format!("instant {t_ms} ms is out of range")))?;
    let off = dt.offset().fix().local_minus_utc();
    if off % 900 != 0 {
        let (offset, at) = (utc_offset(off), rfc3339_secs(t_ms));
        return Err(Error::query_with(
            "unsupported_tz_offset",
            format!(
                "time zone \"{}\" has the UTC offset {offset} at {at}, not a multiple of 15 minutes: its local hours and days in this range cannot be counted",
                tz.name()
            ),
            json!({ "parameter": "tz", "value": tz.name(), "utc_offset": offset, "at": at }),
        ));
    }
    Ok((dt, off))
}

/// 400 `unsupported_tz_offset` for a zone whose local bucket is longer than `hours`
/// (never for a real zone: a guard against endless walks).
fn bucket_too_long(tz: Tz, hours: u32) -> Error {
    Error::query_with(
        "unsupported_tz_offset",
        format!("time zone \"{}\" has a local bucket longer than {hours} hours in this range", tz.name()),
        json!({ "parameter": "tz", "value": tz.name() }),
    )
}

/// A UTC offset in seconds as `±hh:mm`, or `±hh:mm:ss` when it has seconds (`-00:44:30`).
fn utc_offset(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let (h, m, s) = (a / 3600, a % 3600 / 60, a % 60);
    if s == 0 { format!("{sign}{h:02}:{m:02}") } else { format!("{sign}{h:02}:{m:02}:{s:02}") }
}

/// `t_ms` as RFC 3339 UTC to the second (`1970-01-01T00:00:00Z`); the number outside chrono's range.
fn rfc3339_secs(t_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(t_ms).map_or_else(|| t_ms.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn key(tz: Tz, bucket: Bucket, t_ms: i64) -> Result<Key> {
    let (dt, off) = offset_secs(tz, t_ms)?;
    let local = dt.naive_local();
    Ok(match bucket {
        Bucket::Minute => Key(local.date(), local.hour() * 60 + local.minute(), off),
        Bucket::Hour => Key(local.date(), local.hour(), off),
        Bucket::Day => Key(local.date(), 0, 0),
    })
}

/// The local-bucket spans `[start, end)` (UTC ms) that intersect `[from_ms, to_ms)`, in order.
///
/// The first span may start before `from_ms` and the last may end after `to_ms`: callers clip.
/// `from_ms` must be aligned to a minute. Errors: `range_too_long` when more than
/// `max_buckets` buckets would be produced; `unsupported_tz_offset` (see module docs).
pub fn bucket_spans(tz: Tz, bucket: Bucket, from_ms: i64, to_ms: i64, max_buckets: usize) -> Result<Vec<(i64, i64)>> {
    let mut spans = Vec::new();
    if from_ms >= to_ms {
        return Ok(spans);
    }
    if bucket == Bucket::Minute {
        let n = (to_ms - from_ms + 59_999) / 60_000;
        if n as usize > max_buckets {
            return Err(too_long(max_buckets));
        }
        let mut s = from_ms.div_euclid(60_000) * 60_000;
        while s < to_ms {
            spans.push((s, s + 60_000));
            s += 60_000;
        }
        return Ok(spans);
    }
    // Start of the bucket containing `from_ms`: boundaries are 15-minute aligned.
    let mut start = from_ms.div_euclid(QUARTER_MS) * QUARTER_MS;
    let k0 = key(tz, bucket, start)?;
    let mut guard = 0;
    while key(tz, bucket, start - QUARTER_MS)? == k0 {
        start -= QUARTER_MS;
        guard += 1;
        if guard > 4 * 30 {
            return Err(bucket_too_long(tz, 30));
        }
    }
    while start < to_ms {
        let end = next_boundary(tz, bucket, start)?;
        spans.push((start, end));
        if spans.len() > max_buckets {
            return Err(too_long(max_buckets));
        }
        start = end;
    }
    Ok(spans)
}

fn too_long(max: usize) -> Error {
    Error::query("range_too_long", format!("the range spans more than {max} buckets; use a coarser bucket"))
}

/// First boundary after the bucket starting at `start`.
fn next_boundary(tz: Tz, bucket: Bucket, start: i64) -> Result<i64> {
    let k = key(tz, bucket, start)?;
    // No real local day is shorter than 22 hours (days skipped by a date-line change vanish
    // entirely rather than shrink), so a day can jump ahead 20 hours; hours step by 15 min.
    let mut t = start + if bucket == Bucket::Day { 20 * 3_600_000 } else { QUARTER_MS };
    for _ in 0..4 * 40 {
        if key(tz, bucket, t)? != k {
            return Ok(t);
        }
        t += QUARTER_MS;
    }
    Err(bucket_too_long(tz, 40))
}

/// UTC offset in seconds of `tz` at `t_ms` (for labelling bucket starts, e.g. `+05:45`).
pub fn offset_at(tz: Tz, t_ms: i64) -> Result<i32> {
    Ok(offset_secs(tz, t_ms)?.1)
}

/// Local calendar date of `t_ms` in `tz` as `YYYY-MM-DD` (day bucket labels).
pub fn local_date(tz: Tz, t_ms: i64) -> Result<String> {
    let (dt, _) = offset_secs(tz, t_ms)?;
    Ok(format!("{:04}-{:02}-{:02}", dt.year(), dt.month(), dt.day()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).expect("rfc3339").timestamp_millis()
    }

    #[test]
    fn berlin_fall_back_day_has_25_hours_with_two_02_rows() {
        let tz: Tz = "Europe/Berlin".parse().expect("tz");
        let from = ms("2024-10-27T00:00:00+02:00");
        let to = ms("2024-10-28T00:00:00+01:00");
        let hours = bucket_spans(tz, Bucket::Hour, from, to, 1000).expect("spans");
        assert_eq!(hours.len(), 25);
        assert!(hours.iter().all(|(s, e)| e - s == 3_600_000));
        let two_am: Vec<i32> =
            hours.iter().filter(|(s, _)| tz.timestamp_millis_opt(*s).unwrap().hour() == 2).map(|(s, _)| offset_at(tz, *s).unwrap()).collect();
        assert_eq!(two_am, vec![7200, 3600]);
        let days = bucket_spans(tz, Bucket::Day, from, to, 10).expect("days");
        assert_eq!(days, vec![(from, to)]);
        assert_eq!(to - from, 25 * 3_600_000);
    }

    #[test]
    fn berlin_spring_forward_day_has_23_hours_and_no_02() {
        let tz: Tz = "Europe/Berlin".parse().expect("tz");
        let from = ms("2024-03-31T00:00:00+01:00");
        let to = ms("2024-04-01T00:00:00+02:00");
        let hours = bucket_spans(tz, Bucket::Hour, from, to, 1000).expect("spans");
        assert_eq!(hours.len(), 23);
        assert!(hours.iter().all(|(s, _)| tz.timestamp_millis_opt(*s).unwrap().hour() != 2));
        assert_eq!(bucket_spans(tz, Bucket::Day, from, to, 10).unwrap(), vec![(from, to)]);
    }

    #[test]
    fn kolkata_and_kathmandu_days_start_off_the_hour() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let d = bucket_spans(tz, Bucket::Day, ms("2024-06-01T18:29:00Z"), ms("2024-06-01T18:31:00Z"), 10).unwrap();
        assert_eq!(d, vec![(ms("2024-05-31T18:30:00Z"), ms("2024-06-01T18:30:00Z")), (ms("2024-06-01T18:30:00Z"), ms("2024-06-02T18:30:00Z"))]);
        let tz: Tz = "Asia/Kathmandu".parse().unwrap();
        let h = bucket_spans(tz, Bucket::Hour, ms("2024-06-01T00:00:00Z"), ms("2024-06-01T01:00:00Z"), 10).unwrap();
        assert_eq!(h[0], (ms("2024-05-31T23:15:00Z"), ms("2024-06-01T00:15:00Z")));
        assert_eq!(h.len(), 2);
        assert_eq!(local_date(tz, ms("2024-06-01T18:15:00Z")).unwrap(), "2024-06-02");
    }

    #[test]
    fn new_york_dst_day_and_limits() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let from = ms("2024-03-10T00:00:00-05:00");
        let to = ms("2024-03-11T00:00:00-04:00");
        assert_eq!(bucket_spans(tz, Bucket::Hour, from, to, 100).unwrap().len(), 23);
        let err = bucket_spans(tz, Bucket::Minute, from, to, 100).unwrap_err();
        assert!(matches!(err, Error::InvalidQuery { code: "range_too_long", .. }));
        // Local mean time before 1883 is not a multiple of 15 minutes.
        let err = bucket_spans(tz, Bucket::Day, ms("1850-01-01T00:00:00Z"), ms("1850-01-03T00:00:00Z"), 10).unwrap_err();
        let Error::InvalidQuery { code, message, details } = err else { panic!("an invalid query: {err}") };
        assert_eq!(code, "unsupported_tz_offset");
        assert_eq!(
            message,
            "time zone \"America/New_York\" has the UTC offset -04:56:02 at 1850-01-01T00:00:00Z, not a multiple of 15 minutes: its local hours and days in this range cannot be counted"
        );
        assert_eq!(details, Some(json!({"parameter": "tz", "value": "America/New_York", "utc_offset": "-04:56:02", "at": "1850-01-01T00:00:00Z"})));
    }

    #[test]
    fn offsets_are_shown_with_seconds_only_when_they_have_some() {
        assert_eq!(utc_offset(-2670), "-00:44:30");
        assert_eq!(utc_offset(20_700), "+05:45");
        assert_eq!(utc_offset(0), "+00:00");
        assert_eq!(utc_offset(-17_762), "-04:56:02");
    }
}
