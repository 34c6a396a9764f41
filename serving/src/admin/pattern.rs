//! Validation of a new blocklist entry (`POST /v1/admin/blocklist`): what an entry may be
//! before [`super::policy::normalize`] stores it.
//!
//! An entry is **one registrable domain or a host below one** (it also covers the host's
//! subdomains), or **one IP address** (covers exactly that address). Refused with 400:
//!
//! | code | what |
//! |---|---|
//! | `invalid_pattern` | empty, over 1,000 characters, control characters, no host, a label that is not letters/digits/hyphens/underscores or longer than 63 bytes, a host over 253 bytes, a path/query/`@` or a CIDR range in the bare form (`10.0.0.0/8` would otherwise silently become `10.0.0.0`), Unicode that IDNA (UTS #46) refuses (bidi overrides, unassigned or disallowed code points) |
//! | `pattern_wildcard` | `*` anywhere: entries already cover every subdomain, so `*.evil.example` is written `evil.example` |
//! | `pattern_public_suffix` | a public suffix or a single label (`com`, `co.uk`, `github.io`, `localhost`): blocking it would block every site under it. Source: the Public Suffix List (ICANN and private sections) as compiled into the `psl` crate |
//!
//! Spellings are normalized first (case, trailing dot, port, a pasted `scheme://` URL,
//! Unicode → punycode per UTS #46, so full-width dots and other compatibility forms map to
//! their ASCII equivalents), then checked. IP addresses are accepted as exact entries:
//! links may target a bare IP (phishing kits often do), and blocking one address is narrow.
//! An IPv6 address may be written bare (`2001:db8::1`) or in URL brackets (`[2001:db8::1]`,
//! `[2001:db8::1]:443`); it is stored compressed without brackets.

use serde_json::json;

use super::policy::normalize;
use crate::error::ApiError;

/// Longest host name in bytes (RFC 1035 §2.3.4 without the final dot).
const MAX_HOST: usize = 253;
/// Longest label in bytes (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;

fn invalid(pattern: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_pattern", message).with_details(json!({ "pattern": pattern }))
}

/// Refuses a bare pattern (no `scheme://`) with a path, query, fragment, user or CIDR range
/// (`invalid_pattern`): normalizing it would keep only its host (`10.0.0.0/8` would become
/// `10.0.0.0`). Shared by adding and removing an entry, so that a removal names the entry
/// exactly as an addition must.
pub fn refuse_url_parts(raw: &str) -> Result<(), ApiError> {
    let trimmed = raw.trim();
    if !trimmed.contains("://") && trimmed.contains(['/', '?', '#', '@', '\\']) {
        return Err(invalid(
            raw,
            "pattern must be a domain name or an IP address (no path, query, user or CIDR range; paste a full URL with its scheme to block its host)",
        ));
    }
    Ok(())
}

/// Validates and normalizes a new blocklist entry (module docs); returns the stored form.
pub fn validate_new_pattern(raw: &str) -> Result<String, ApiError> {
    let trimmed = raw.trim();
    if trimmed.contains('*') {
        return Err(ApiError::bad_request(
            "pattern_wildcard",
            "wildcards are not supported: an entry already covers every subdomain (write \"evil.example\" for \"*.evil.example\")",
        )
        .with_details(json!({ "pattern": raw })));
    }
    refuse_url_parts(raw)?;
    let host = normalize(raw)?;
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(host);
    }
    if host.len() > MAX_HOST {
        return Err(invalid(raw, format!("host name longer than {MAX_HOST} bytes")));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= MAX_LABEL
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(invalid(
                raw,
                format!(
                    "\"{label}\" is not a valid host label (letters, digits, hyphens, underscores; not starting or ending with a hyphen; 1 to {MAX_LABEL} bytes)"
                ),
            ));
        }
    }
    let suffix = psl::suffix(host.as_bytes()).map(|s| s.as_bytes());
    if !host.contains('.') || suffix == Some(host.as_bytes()) {
        return Err(ApiError::bad_request(
            "pattern_public_suffix",
            format!("\"{host}\" is a public suffix (or a single label): blocking it would block every site under it; block the registrable domain instead"),
        )
        .with_details(json!({ "pattern": raw, "normalized": host })));
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_hosts_and_ips_are_accepted_normalized() {
        for (raw, want) in [
            ("evil.example", "evil.example"),
            ("Sub.Evil.Example.", "sub.evil.example"),
            ("evil.example:8443", "evil.example"),
            ("https://user@evil.example/path?q=1", "evil.example"),
            ("Bücher.Example", "xn--bcher-kva.example"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("evil\u{3002}example", "evil.example"),
            ("ＥＶＩＬ.example", "evil.example"),
            ("example.co.uk", "example.co.uk"),
            ("pages.github.io", "pages.github.io"),
            ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
            ("203.0.113.9", "203.0.113.9"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("_dmarc.evil.example", "_dmarc.evil.example"),
        ] {
            assert_eq!(validate_new_pattern(raw).unwrap_or_else(|e| panic!("{raw}: {e:?}")), want, "{raw}");
        }
    }

    #[test]
    fn refusals_have_specific_codes() {
        let long_label = format!("{}.example", "a".repeat(64));
        let long_host = format!("{}example", "abcdefghi.".repeat(26));
        let oversized = "a".repeat(1001);
        for (raw, code) in [
            ("*.evil.example", "pattern_wildcard"),
            ("evil.*", "pattern_wildcard"),
            ("https://*.evil.example/", "pattern_wildcard"),
            ("com", "pattern_public_suffix"),
            ("COM.", "pattern_public_suffix"),
            ("co.uk", "pattern_public_suffix"),
            ("github.io", "pattern_public_suffix"),
            ("рф", "pattern_public_suffix"),
            ("localhost", "pattern_public_suffix"),
            ("https://co.uk/x", "pattern_public_suffix"),
            ("", "invalid_pattern"),
            ("   ", "invalid_pattern"),
            (oversized.as_str(), "invalid_pattern"),
            (long_label.as_str(), "invalid_pattern"),
            (long_host.as_str(), "invalid_pattern"),
            ("10.0.0.0/8", "invalid_pattern"),
            ("evil.example/path", "invalid_pattern"),
            ("user@evil.example", "invalid_pattern"),
            ("evil\u{202e}.example", "invalid_pattern"),
            ("evil\u{0}.example", "invalid_pattern"),
            ("-evil.example", "invalid_pattern"),
            ("a b.example", "invalid_pattern"),
            ("http://", "invalid_pattern"),
        ] {
            let err = validate_new_pattern(raw).expect_err(raw);
            assert_eq!(err.code, code, "{raw:?}: {}", err.message);
            assert_eq!(err.status, 400);
        }
    }
}
