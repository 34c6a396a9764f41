//! Rules shared by both link store backends, so they behave identically: value checks,
//! timestamp truncation, patch application and the retention constants.

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use sluice_schemas::Link;

use super::LinkPatch;
use crate::{Error, Result};

/// How long a deleted link's code stays blocked: an insert is refused while the tombstone is
/// younger than this at the new link's `created_at` (exactly 30 days old is reusable).
pub const TOMBSTONE_PERIOD: TimeDelta = TimeDelta::days(30);

/// How long an idempotency record is honoured: a record whose age at `now` is this or more
/// counts as absent and may be overwritten.
pub const IDEMPOTENCY_TTL: TimeDelta = TimeDelta::hours(24);

/// Largest page size [`super::LinkStore::list`] accepts.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// Truncates to whole microseconds (towards the past), the resolution both backends store.
pub(crate) fn trunc_us(t: DateTime<Utc>) -> DateTime<Utc> {
    from_us(t.timestamp_micros()).unwrap_or(t)
}

/// Microseconds since the epoch → instant; `None` outside chrono's range.
pub(crate) fn from_us(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
}

/// Rejects strings the backends cannot store identically (PostgreSQL text has no NUL).
pub(crate) fn check_text(field: &'static str, s: &str) -> Result<()> {
    if s.contains('\0') {
        return Err(Error::InvalidValue { field, reason: "contains a NUL character".into() });
    }
    Ok(())
}

/// Rejects instants outside years 1..=9999 (PostgreSQL timestamptz and RFC 3339 both hold them).
pub(crate) fn check_time(field: &'static str, t: DateTime<Utc>) -> Result<()> {
    if !(1..=9999).contains(&t.year()) {
        return Err(Error::InvalidValue { field, reason: format!("year {} is outside 1..=9999", t.year()) });
    }
    Ok(())
}

/// Checks a page size against `1..=`[`MAX_LIST_LIMIT`].
pub(crate) fn check_limit(limit: u32) -> Result<()> {
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(Error::InvalidValue { field: "limit", reason: format!("{limit} is outside 1..={MAX_LIST_LIMIT}") });
    }
    Ok(())
}

/// Tags with duplicates removed, first occurrence kept (the order of [`Link::tags`]).
pub(crate) fn dedup_tags(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

fn check_tags(tags: &[String]) -> Result<()> {
    tags.iter().try_for_each(|t| check_text("tags", t))
}

/// The link as an insert stores it: checked, timestamps truncated to µs, tags de-duplicated,
/// `version` 1 and `updated_at` = `created_at`.
pub(crate) fn prepare_insert(link: &Link) -> Result<Link> {
    check_text("code", &link.code)?;
    if link.code.is_empty() {
        return Err(Error::InvalidValue { field: "code", reason: "is empty".into() });
    }
    check_text("long_url", &link.long_url)?;
    if let Some(d) = &link.domain {
        check_text("domain", d)?;
    }
    if let Some(o) = &link.org {
        check_text("org", o)?;
    }
    check_tags(&link.tags)?;
    check_time("created_at", link.created_at)?;
    if let Some(e) = link.expires_at {
        check_time("expires_at", e)?;
    }
    let created_at = trunc_us(link.created_at);
    Ok(Link {
        code: link.code.clone(),
        long_url: link.long_url.clone(),
        domain: link.domain.clone(),
        expires_at: link.expires_at.map(trunc_us),
        enabled: link.enabled,
        tags: dedup_tags(&link.tags),
        redirect_type: link.redirect_type,
        org: link.org.clone(),
        created_at,
        updated_at: created_at,
        version: 1,
    })
}

/// Checks a patch and its `now` before any database work.
pub(crate) fn check_patch(patch: &LinkPatch, now: DateTime<Utc>) -> Result<()> {
    check_time("now", now)?;
    if let Some(u) = &patch.long_url {
        check_text("long_url", u)?;
    }
    if let Some(tags) = &patch.tags {
        check_tags(tags)?;
    }
    if let Some(Some(e)) = patch.expires_at {
        check_time("expires_at", e)?;
    }
    if let Some(Some(o)) = &patch.org {
        check_text("org", o)?;
    }
    Ok(())
}

/// `current` with `patch` applied at `now`: version + 1, `updated_at` = `now` (µs).
pub(crate) fn apply_patch(current: &Link, patch: &LinkPatch, now: DateTime<Utc>) -> Link {
    let mut next = current.clone();
    if let Some(u) = &patch.long_url {
        next.long_url = u.clone();
    }
    if let Some(e) = patch.enabled {
        next.enabled = e;
    }
    if let Some(e) = patch.expires_at {
        next.expires_at = e.map(trunc_us);
    }
    if let Some(t) = &patch.tags {
        next.tags = dedup_tags(t);
    }
    if let Some(r) = patch.redirect_type {
        next.redirect_type = r;
    }
    if let Some(o) = &patch.org {
        next.org.clone_from(o);
    }
    next.updated_at = trunc_us(now);
    next.version = current.version + 1;
    next
}

/// Whether `next` shows the same link as `current`: every field but `updated_at` and
/// `version` equal. An update that changes nothing keeps the current revision (and ETag).
pub(crate) fn same_content(current: &Link, next: &Link) -> bool {
    *current == Link { updated_at: current.updated_at, version: current.version, ..next.clone() }
}

/// JSON snapshot of a link for the change feed.
pub(crate) fn link_json(link: &Link) -> Result<String> {
    serde_json::to_string(link).map_err(|e| Error::Corrupt(format!("could not serialize link: {e}")))
}

/// Parses a change-feed snapshot.
pub(crate) fn link_from_json(s: &str) -> Result<Link> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt(format!("change feed entry is not a link: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_floors_to_microseconds() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("valid");
        assert_eq!(trunc_us(t).timestamp_subsec_nanos(), 123_456_000);
        let before_epoch = DateTime::from_timestamp(-1, 999_999_999).expect("valid");
        assert_eq!(trunc_us(before_epoch).timestamp_micros(), -1);
    }

    #[test]
    fn tags_keep_first_occurrence_order() {
        let tags: Vec<String> = ["b", "a", "b", "c", "a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(dedup_tags(&tags), vec!["b", "a", "c"]);
    }

    #[test]
    fn limits_and_times_are_checked() {
        assert!(check_limit(0).is_err());
        assert!(check_limit(1).is_ok());
        assert!(check_limit(1000).is_ok());
        assert!(check_limit(1001).is_err());
        let far = DateTime::<Utc>::from_timestamp(253_402_300_800, 0).expect("valid"); // 10000-01-01
        assert!(check_time("t", far).is_err());
        assert!(check_time("t", far - TimeDelta::microseconds(1)).is_ok());
    }
}
