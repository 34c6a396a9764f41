//! RFC 3339 date-times as every API input reads them (`expires_at`, `from`/`to`, `since`,
//! tick timestamps, an event's `ts` in `POST /v1/events` and `sluice import`).
//!
//! chrono's [`DateTime::parse_from_rfc3339`] accepts second `60` at the end of **any**
//! minute and reads it as the next minute, so `22:00:60Z` was taken as `22:01:00Z`. A leap
//! second is only ever inserted as the last second of a UTC day, `23:59:60Z` (ITU-R
//! TF.460-6 §2.2; RFC 3339 §5.7 and its Appendix D), written with any offset
//! (`18:59:60-05:00`); anywhere else `:60` is refused.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, TimeDelta, Timelike};

/// Parses `s` as an RFC 3339 date-time with offset. A leap second is accepted at 23:59:60
/// UTC only (module docs) and, as chrono reads it, is the instant after `23:59:59.999…`.
///
/// A fraction finer than a nanosecond rounds **up** to the next nanosecond when any digit
/// past the ninth is not 0 (chrono drops them: `00:00:00.0000000000001Z` was read as
/// `00:00:00Z`, a whole minute for the stats and an earlier expiry for a link).
///
/// Error: chrono's parse error as text, or `"second 60 (a leap second) is only valid at
/// 23:59:60 UTC"`.
pub fn parse(s: &str) -> Result<DateTime<FixedOffset>, String> {
    let dt = DateTime::parse_from_rfc3339(s).map_err(|e| e.to_string())?;
    let utc = dt.naive_utc().time();
    if dt.nanosecond() >= 1_000_000_000 && (utc.hour(), utc.minute()) != (23, 59) {
        return Err("second 60 (a leap second) is only valid at 23:59:60 UTC".to_owned());
    }
    if !finer_than_nanos(s) {
        return Ok(dt);
    }
    // chrono keeps second 60 as a fraction of 1 s or more, which its arithmetic does not
    // step over: add to the same instant as the next day's first second.
    let base = if dt.nanosecond() >= 1_000_000_000 { dt.with_nanosecond(dt.nanosecond() - 1_000_000_000).unwrap_or(dt) + TimeDelta::seconds(1) } else { dt };
    base.checked_add_signed(TimeDelta::nanoseconds(1)).ok_or_else(|| "date-time out of range".to_owned())
}

/// Whether the (already parsed) date-time `s` has a non-zero fraction digit past the ninth.
fn finer_than_nanos(s: &str) -> bool {
    let Some(dot) = s.find('.') else { return false };
    s[dot + 1..].bytes().take_while(u8::is_ascii_digit).skip(9).any(|d| d != b'0')
}

/// `raw` as it was sent when a query string's `+` of a trailing `±HH:MM` offset was
/// form-decoded to a space (`2024-06-01T00:00:00 05:30` → `2024-06-01T00:00:00+05:30`;
/// a client that does not encode `+` as `%2B` sends that). Anything else is returned as is:
/// a space is never valid in an RFC 3339 date-time, so nothing valid is changed.
pub fn restore_offset_plus(raw: &str) -> Cow<'_, str> {
    let b = raw.as_bytes();
    let n = b.len();
    let offset_digits = n > 6 && b[n - 3] == b':' && b[n - 5..n - 3].iter().chain(&b[n - 2..]).all(u8::is_ascii_digit);
    if offset_digits && b[n - 6] == b' ' { Cow::Owned(format!("{}+{}", &raw[..n - 6], &raw[n - 5..])) } else { Cow::Borrowed(raw) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_decoded_offset_plus_is_restored_and_nothing_else_changes() {
        assert_eq!(restore_offset_plus("2024-06-01T00:00:00 05:30"), "2024-06-01T00:00:00+05:30");
        assert_eq!(restore_offset_plus("2024-06-01T00:00:00.5 00:00"), "2024-06-01T00:00:00.5+00:00");
        for kept in [
            "2024-06-01T00:00:00+05:30",
            "2024-06-01T00:00:00Z",
            "2024-06-01T00:00:00 ab:cd",
            "2024-06-01T00:00:00 5:30",
            " 05:30",
            "",
            "é 05:3",
            "2024-06-01T00:00:00 05 30",
        ] {
            assert!(matches!(restore_offset_plus(kept), Cow::Borrowed(k) if k == kept), "{kept:?}");
        }
        // A multi-byte character just before the offset stays whole.
        assert_eq!(restore_offset_plus("é 05:30"), "é+05:30");
    }

    #[test]
    fn a_leap_second_is_accepted_at_the_end_of_a_utc_day_only() {
        let ms = |s: &str| parse(s).map(|t| t.timestamp_millis());
        let midnight = DateTime::parse_from_rfc3339("2017-01-01T00:00:00Z").expect("midnight").timestamp_millis();
        assert_eq!(ms("2016-12-31T23:59:60Z"), Ok(midnight));
        assert_eq!(ms("2016-12-31T23:59:60.5Z"), Ok(midnight + 500));
        assert_eq!(ms("2016-12-31T18:59:60-05:00"), Ok(midnight));
        assert_eq!(ms("2017-01-01T05:29:60+05:30"), Ok(midnight));
        let refused = Err("second 60 (a leap second) is only valid at 23:59:60 UTC".to_owned());
        for s in ["2026-12-04T22:00:60Z", "2016-12-31T23:58:60Z", "2016-12-31T23:59:60+01:00", "2017-01-01T00:00:60Z", "2016-12-31T22:59:60Z"] {
            assert_eq!(ms(s), refused, "{s}");
        }
        assert_eq!(ms("2026-12-04T22:00:59Z"), Ok(DateTime::parse_from_rfc3339("2026-12-04T22:00:59Z").expect("t").timestamp_millis()));
        assert!(ms("2026-12-04T22:00:61Z").is_err());
        assert!(ms("not a time").is_err());
    }

    #[test]
    fn digits_past_the_nanosecond_round_up_never_down() {
        let t = |s: &str| parse(s).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
        let ok = |s: &str| Ok::<_, String>(s.to_owned());
        assert_eq!(t("2026-12-05T01:00:00.0000000000001Z"), ok("2026-12-05T01:00:00.000000001Z"));
        assert_eq!(t("2026-12-05T01:00:00.0000000001Z"), ok("2026-12-05T01:00:00.000000001Z"));
        assert_eq!(t("2030-01-01T00:00:00.1234567891+05:30"), ok("2030-01-01T00:00:00.123456790+05:30"));
        assert_eq!(t("2026-12-05T01:00:59.9999999999Z"), ok("2026-12-05T01:01:00.000000000Z"));
        // Second 60 is read as the second after midnight (`60.5` is `00:00:00.5`), so its
        // last nanosecond rounds up to the end of that second.
        assert_eq!(t("2016-12-31T23:59:60.9999999999Z"), ok("2017-01-01T00:00:01.000000000Z"));
        assert_eq!(t("2016-12-31T23:59:60.0000000001Z"), ok("2017-01-01T00:00:00.000000001Z"));
        // Zeros past the ninth digit change nothing.
        assert_eq!(t("2026-12-05T01:00:00.0000000000000Z"), ok("2026-12-05T01:00:00.000000000Z"));
        assert_eq!(t("2026-12-05T01:00:00.1230000000Z"), ok("2026-12-05T01:00:00.123000000Z"));
        assert_eq!(t("2026-12-05T01:00:00.000000001Z"), ok("2026-12-05T01:00:00.000000001Z"));
        assert_eq!(t("2026-12-05T01:00:00Z"), ok("2026-12-05T01:00:00.000000000Z"));
    }
}
