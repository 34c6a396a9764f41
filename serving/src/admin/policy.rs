//! Blocklist matching: pattern normalization (shared with the dataflow) and the run-time
//! check that refuses new targets on blocked domains.

use axum::http::StatusCode;
use serde_json::json;

use crate::error::ApiError;
use crate::state::ApiState;

/// Normalizes a blocklist pattern with the dataflow's rules
/// ([`sluice_dataflows::anomaly::normalize_pattern`]: case, trailing dot, port, scheme and
/// path, IDN → punycode). 400 `invalid_pattern` when no host can be read.
pub fn normalize(pattern: &str) -> Result<String, ApiError> {
    if pattern.trim().is_empty() || pattern.len() > 1000 || pattern.chars().any(char::is_control) {
        return Err(ApiError::bad_request("invalid_pattern", "pattern must be a domain name (1 to 1000 characters)"));
    }
    let p = sluice_dataflows::anomaly::normalize_pattern(pattern)
        .map_err(|e| ApiError::bad_request("invalid_pattern", e.to_string()).with_details(json!({ "pattern": pattern })))?;
    Ok(p)
}

/// The lowercase ASCII host of a stored (normalized) target, without a trailing dot; an IPv6
/// address in [`sluice_schemas::link::canonical_host`] form (one embedding an IPv4 address is
/// that IPv4 address, so neither `[::ffff:1.2.3.4]`, the NAT64 `[64:ff9b::1.2.3.4]` nor the
/// 6to4 `[2002:102:304::1]` gets past an entry for `1.2.3.4`).
pub fn target_host(long_url: &str) -> Option<String> {
    let url = url::Url::parse(long_url).ok()?;
    let host = match url.host()? {
        url::Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => sluice_schemas::link::canonical_host(&ip.to_string()),
    };
    (!host.is_empty()).then_some(host)
}

/// A stored run-time blocklist pattern in the form matching compares
/// ([`sluice_schemas::link::canonical_host`]): an entry stored by an earlier version as an
/// IPv6 spelling of an IPv4 address (`::ffff:10.0.0.1`) is that IPv4 address (`10.0.0.1`),
/// as new entries and link targets are; any other pattern is returned unchanged.
pub fn canonical_pattern(stored: &str) -> String {
    sluice_schemas::link::canonical_host(stored)
}

/// The run-time blocklist as it is matched and listed: every stored pattern in
/// [`canonical_pattern`] form, sorted by pattern, one entry per pattern (the one stored
/// first when an old spelling and its canonical form are both stored).
///
/// Errors: the store's.
pub async fn blocklist_entries(admin: &dyn sluice_connectors::AdminStore) -> sluice_connectors::Result<Vec<sluice_connectors::BlocklistEntry>> {
    let mut entries: Vec<_> =
        admin.blocklist_list().await?.into_iter().map(|e| sluice_connectors::BlocklistEntry { pattern: canonical_pattern(&e.pattern), ..e }).collect();
    entries.sort_by(|a, b| a.pattern.cmp(&b.pattern).then(a.created_at.cmp(&b.created_at)));
    entries.dedup_by(|later, first| later.pattern == first.pattern);
    Ok(entries)
}

/// Whether normalized `pattern` covers `host`: equal, or `host` is a subdomain of it
/// (`a.evil.example` is covered by `evil.example`, `notevil.example` is not).
pub fn covers(pattern: &str, host: &str) -> bool {
    host == pattern || (host.len() > pattern.len() && host.ends_with(pattern) && host.as_bytes()[host.len() - pattern.len() - 1] == b'.')
}

/// Refuses a (normalized) target covered by a run-time blocklist entry: 422
/// `policy_violation` with `details.domain`, like the static blocklist. Reads the entries
/// from the store on every call, so entries added by any process apply at once.
pub(crate) async fn check_target(state: &ApiState, long_url: &str) -> Result<(), ApiError> {
    let Some(admin) = state.inner.store.admin() else { return Ok(()) };
    let Some(host) = target_host(long_url) else { return Ok(()) };
    let entries = blocklist_entries(admin).await?;
    match entries.iter().find(|e| covers(&e.pattern, &host)) {
        Some(e) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "policy_violation", format!("destination domain \"{}\" is blocked", e.pattern))
            .with_details(json!({ "domain": e.pattern }))),
        None => Ok(()),
    }
}

/// Refuses an owner's `PATCH {"enabled": true}` on a link an admin hold keeps disabled: 409
/// `link_held` with `details.holds` (the store also keeps such a link disabled if a hold
/// lands between this check and the update).
pub(crate) async fn check_owner_enable(state: &ApiState, code: &str, enabled: Option<bool>) -> Result<(), ApiError> {
    if enabled != Some(true) {
        return Ok(());
    }
    let Some(admin) = state.inner.store.admin() else { return Ok(()) };
    match admin.link_holds(code).await {
        Ok(holds) if !holds.is_empty() => {
            let sources: Vec<String> = holds.into_iter().map(|h| h.source).collect();
            Err(ApiError::new(StatusCode::CONFLICT, "link_held", "the link was disabled by an administrator and cannot be re-enabled by its owner")
                .with_details(json!({ "code": code, "holds": sources })))
        }
        Ok(_) | Err(sluice_connectors::Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_is_by_whole_labels() {
        assert!(covers("evil.example", "evil.example"));
        assert!(covers("evil.example", "a.b.evil.example"));
        assert!(!covers("evil.example", "notevil.example"));
        assert!(!covers("evil.example", "evil.example.com"));
        assert!(!covers("a.evil.example", "evil.example"));
        assert!(covers("203.0.113.9", "203.0.113.9"));
    }

    #[test]
    fn hosts_of_stored_targets() {
        assert_eq!(target_host("https://Sub.Evil.Example:8443/x?y#z").as_deref(), Some("sub.evil.example"));
        assert_eq!(target_host("https://xn--bcher-kva.example/").as_deref(), Some("xn--bcher-kva.example"));
        assert_eq!(target_host("http://[2001:db8::1]/").as_deref(), Some("2001:db8::1"));
        for mapped in [
            "http://[::ffff:1.2.3.4]/",
            "http://[0:0:0:0:0:ffff:0102:0304]/",
            "http://[::1.2.3.4]/",
            "http://[64:ff9b::1.2.3.4]/",
            "http://[64:ff9b::102:304]/",
        ] {
            assert_eq!(target_host(mapped).as_deref(), Some("1.2.3.4"), "{mapped}");
        }
        assert_eq!(target_host("not a url"), None);
    }

    #[test]
    fn patterns_normalize_or_fail_with_invalid_pattern() {
        for (raw, want) in [
            ("EVIL.example", "evil.example"),
            ("evil.example.", "evil.example"),
            ("evil.example:443", "evil.example"),
            ("https://evil.example/path", "evil.example"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ] {
            assert_eq!(normalize(raw).expect(raw), want, "{raw}");
        }
        for bad in ["", "  ", "a b", "http://", "x\ny"] {
            assert_eq!(normalize(bad).expect_err(bad).code, "invalid_pattern", "{bad:?}");
        }
    }
}
