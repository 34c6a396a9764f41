//! Validation and normalization of link targets (`long_url`).
//!
//! Targets are stored in the WHATWG-serialized form of the `url` crate: ASCII only, IDN
//! hosts in punycode (UTS #46), non-ASCII path/query bytes percent-encoded once as UTF-8,
//! existing `%XX` escapes and `+` kept as they are. That string is emitted verbatim as the
//! redirect's `Location`, so it must never carry a raw space, CR or LF.

use serde_json::json;
use sluice_dataflows::enrich::is_loopback_host;

use crate::error::{ApiError, echo};
use axum::http::StatusCode;

/// What a valid target looks like for this deployment.
#[derive(Debug, Clone)]
pub struct UrlPolicy {
    /// Maximum length of the normalized target in bytes (default 8192).
    pub max_url_bytes: usize,
    /// Hosts of the service's own short domains (ASCII/punycode, lowercase, no port):
    /// targets on them are redirect loops.
    pub own_hosts: Vec<String>,
    /// Blocked domains (ASCII/punycode, lowercase) and IP addresses (IPv6 compressed, without
    /// brackets): a target whose host equals one of these or is a subdomain of a domain is
    /// refused with 422 `policy_violation`.
    pub blocklist: Vec<String>,
    /// The port the service listens on at an unspecified (`0.0.0.0` / `::`) or a loopback
    /// address, if it does: a loopback or unspecified host on that port reaches the service
    /// itself, so a target there is a redirect loop whatever the short domains are.
    pub loopback_port: Option<u16>,
}

impl UrlPolicy {
    /// A policy with the given limit and normalized copies of `own_hosts` (IDNA to ASCII,
    /// lowercased, trailing dot removed; names that are not valid domain names are kept
    /// lowercased as given) and `blocklist` (each entry normalized like a run-time blocklist
    /// entry, [`sluice_dataflows::anomaly::normalize_pattern`]: a port, scheme or path is
    /// dropped, an IPv6 address may be bare or bracketed; an entry it cannot read, which the
    /// configuration check refuses first, is kept as `own_hosts` are). Entries equal once
    /// normalized (`EVIL.EXAMPLE.` and `evil.example`) are kept once, the first in place.
    pub fn new(max_url_bytes: usize, own_hosts: &[String], blocklist: &[String]) -> Self {
        let mut seen = std::collections::HashSet::new();
        let blocklist = blocklist
            .iter()
            .map(|h| sluice_dataflows::anomaly::normalize_pattern(h).unwrap_or_else(|_| normalize_host(h)))
            .filter(|p| seen.insert(p.clone()))
            .collect();
        Self { max_url_bytes, own_hosts: own_hosts.iter().map(|h| normalize_host(h)).collect(), blocklist, loopback_port: None }
    }

    /// This policy for a service listening on `port` at an unspecified or a loopback
    /// address: targets on any loopback or unspecified host at that port are redirect loops
    /// too.
    pub fn with_loopback_port(mut self, port: Option<u16>) -> Self {
        self.loopback_port = port;
        self
    }

    /// Validates `raw` and returns the normalized target.
    ///
    /// Errors (all 400 unless noted): `invalid_url` (empty, relative, backslashes,
    /// unparsable), `control_characters` (any C0/C1 control or DEL, including TAB/CR/LF
    /// inside the URL: a WHATWG parser would silently strip them, turning
    /// `java\tscript:` into `javascript:`), `unsupported_scheme` (anything but http/https),
    /// `missing_host`, `credentials_in_url`, `url_too_long` (details name `max_bytes`),
    /// `redirect_loop` (target on an own short domain), 422 `policy_violation` (blocklist).
    pub fn normalize(&self, raw: &str) -> Result<String, ApiError> {
        let input = raw.trim();
        if input.is_empty() {
            return Err(ApiError::bad_request("invalid_url", "long_url is empty"));
        }
        // The limit applies to the normalized URL, which may be shorter (a default port, `..`
        // segments, a long IPv6 form dropped); far longer input is refused before parsing.
        if input.len() > self.max_url_bytes.saturating_mul(RAW_SLACK) {
            return Err(self.too_long(input.len()));
        }
        check_control_characters("long_url", input)?;
        let Some(colon) = scheme_end(input) else {
            return Err(ApiError::bad_request("invalid_url", "long_url must be an absolute http or https url"));
        };
        let scheme = input[..colon].to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(ApiError::bad_request("unsupported_scheme", format!("scheme \"{}\" is not allowed, use http or https", echo(&scheme)))
                .with_details(json!({ "scheme": scheme })));
        }
        let rest = &input[colon + 1..];
        if input.contains('\\') {
            return Err(ApiError::bad_request("invalid_url", "long_url must not contain backslashes"));
        }
        // Require a literal authority: WHATWG parsing would accept `https:///host` and
        // `https:host` by guessing, which no other parser agrees with.
        let authority_start = rest.strip_prefix("//").unwrap_or("");
        if !rest.starts_with("//")
            || authority_start.is_empty()
            || authority_start.starts_with('/')
            || authority_start.starts_with('?')
            || authority_start.starts_with('#')
        {
            return Err(ApiError::bad_request("missing_host", "long_url has no host"));
        }
        // A space in the host is what the URL parser calls an invalid international domain
        // name; say what it is.
        let authority = &authority_start[..authority_start.find(['/', '?', '#']).unwrap_or(authority_start.len())];
        let url = url::Url::parse(input).map_err(|e| match e {
            url::ParseError::EmptyHost => ApiError::bad_request("missing_host", "long_url has no host"),
            url::ParseError::IdnaError if authority.contains(char::is_whitespace) => {
                ApiError::bad_request("invalid_url", "long_url is not a valid url: its host contains whitespace")
            }
            other => ApiError::bad_request("invalid_url", format!("long_url is not a valid url: {other}")),
        })?;
        if !url.username().is_empty() || url.password().is_some() || authority_has_userinfo(authority_start) {
            return Err(ApiError::bad_request("credentials_in_url", "long_url must not contain user:password@ credentials"));
        }
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.trim_end_matches('.').to_ascii_lowercase(),
            _ => return Err(ApiError::bad_request("missing_host", "long_url has no host")),
        };
        if let Some(url::Host::Domain(name)) = url.host()
            && let Err(reason) = check_dns_name(name.strip_suffix('.').unwrap_or(name))
        {
            return Err(ApiError::bad_request("invalid_host", format!("the host of long_url is not a valid DNS name: {reason}"))
                .with_details(json!({ "host": host, "reason": reason })));
        }
        check_port("long_url", &url)?;
        let own_port = self.loopback_port.is_some_and(|p| url.port_or_known_default() == Some(p) && is_loopback_host(&host));
        if own_port || self.own_hosts.contains(&host) || (self.own_hosts.iter().any(|h| is_loopback_host(h)) && is_loopback_host(&host)) {
            return Err(ApiError::bad_request("redirect_loop", format!("long_url points at this service's own short domain \"{host}\""))
                .with_details(json!({ "host": host })));
        }
        // Blocklist entries hold IPv6 addresses without brackets (`2001:db8::1`) and an IPv6
        // address embedding an IPv4 one as that IPv4 address: compare in the same form.
        let unbracketed = sluice_schemas::link::canonical_host(host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(&host));
        if let Some(blocked) = self.blocklist.iter().find(|b| unbracketed == b.as_str() || host.ends_with(&format!(".{b}"))) {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "policy_violation", format!("destination domain \"{blocked}\" is blocked"))
                .with_details(json!({ "domain": blocked })));
        }
        let out: String = url.into();
        if out.len() > self.max_url_bytes {
            return Err(self.too_long(out.len()));
        }
        debug_assert!(out.is_ascii());
        Ok(out)
    }

    fn too_long(&self, actual: usize) -> ApiError {
        ApiError::bad_request(
            "url_too_long",
            format!(
                "long_url is longer than the limit of {} bytes once normalized (IDN host in punycode, other non-ASCII characters percent-encoded)",
                self.max_url_bytes
            ),
        )
        .with_details(json!({ "max_bytes": self.max_url_bytes, "actual_bytes": actual }))
    }
}

/// 400 `control_characters` (details `{byte_offset, char}`) when `input` holds a C0/C1
/// control character or DEL, TAB/CR/LF included: a WHATWG parser would silently strip them
/// (`java\tscript:` read as `javascript:`). `what` names the URL in the message (`long_url`,
/// `the webhook url`). Shared by the link API and the webhook API.
pub fn check_control_characters(what: &str, input: &str) -> Result<(), ApiError> {
    match input.char_indices().find(|(_, c)| c.is_control()) {
        Some((i, c)) => Err(ApiError::bad_request("control_characters", format!("{what} contains a control character"))
            .with_details(json!({ "byte_offset": i, "char": format!("U+{:04X}", c as u32) }))),
        None => Ok(()),
    }
}

/// 400 `invalid_port` (details `{port: 0}`) when `url` names port 0, which no server listens
/// on. `what` names the URL in the message. Shared by the link API and the webhook API.
pub fn check_port(what: &str, url: &url::Url) -> Result<(), ApiError> {
    if url.port() == Some(0) {
        return Err(ApiError::bad_request("invalid_port", format!("the port of {what} must be 1 to 65535")).with_details(json!({ "port": 0 })));
    }
    Ok(())
}

/// How many times `max-url-bytes` a `long_url` may be before normalization (beyond it,
/// refused unparsed: normalization never shrinks a URL that much).
const RAW_SLACK: usize = 4;

/// Longest DNS name in bytes (RFC 1035 §2.3.4, without the trailing dot).
const MAX_DNS_NAME: usize = 253;
/// Longest DNS label in bytes (RFC 1035 §2.3.4).
const MAX_DNS_LABEL: usize = 63;

/// Whether `name` (ASCII, punycode, lowercase, no trailing dot) can be a host name in DNS:
/// at most 253 bytes, labels of 1 to 63 bytes that neither start nor end with `-`
/// (RFC 1035, RFC 1123 §2.1). `Err` says why not.
fn check_dns_name(name: &str) -> Result<(), &'static str> {
    if name.len() > MAX_DNS_NAME {
        return Err("longer than 253 bytes");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > MAX_DNS_LABEL {
            return Err("a label is longer than 63 bytes");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with a hyphen");
        }
    }
    Ok(())
}

/// Byte index of the `:` ending an RFC 3986 scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`).
fn scheme_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if !b.first()?.is_ascii_alphabetic() {
        return None;
    }
    for (i, &c) in b.iter().enumerate().skip(1) {
        match c {
            b':' => return Some(i),
            c if c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.' => {}
            _ => return None,
        }
    }
    None
}

/// Whether the raw authority (text after `//` up to the first `/`, `?` or `#`) holds an `@`,
/// i.e. userinfo, even an empty one (`https://@host/`).
fn authority_has_userinfo(after_slashes: &str) -> bool {
    let end = after_slashes.find(['/', '?', '#']).unwrap_or(after_slashes.len());
    after_slashes[..end].contains('@')
}

/// IDNA-to-ASCII, lowercase, without the one trailing dot of a fully qualified name (a
/// second one is an empty label and stays: `s.example..` is not `s.example`); falls back to
/// lowercase on invalid names.
pub fn normalize_host(h: &str) -> String {
    let h = h.trim();
    let h = h.strip_suffix('.').unwrap_or(h);
    match idna::domain_to_ascii(h) {
        Ok(a) if !a.is_empty() => a,
        _ => h.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> UrlPolicy {
        UrlPolicy::new(8192, &["sho.rt".into(), "127.0.0.1".into()], &["blocked.example".into(), "bäd.example".into()])
    }

    fn code_of(raw: &str) -> &'static str {
        policy().normalize(raw).expect_err(raw).code
    }

    #[test]
    fn keeps_encodings_and_plus() {
        let p = policy();
        assert_eq!(p.normalize("https://example.com/search?q=hello%20world&r=a+b").expect("ok"), "https://example.com/search?q=hello%20world&r=a+b");
        assert_eq!(p.normalize("https://example.com/café/ü?q=ñ").expect("ok"), "https://example.com/caf%C3%A9/%C3%BC?q=%C3%B1");
        assert_eq!(p.normalize("https://example.com/caf%C3%A9").expect("ok"), "https://example.com/caf%C3%A9");
        assert_eq!(p.normalize("  https://example.com/c05  ").expect("ok"), "https://example.com/c05");
        assert_eq!(p.normalize("https://example.com/a b").expect("ok"), "https://example.com/a%20b");
    }

    #[test]
    fn idn_hosts_become_punycode() {
        let p = policy();
        assert_eq!(p.normalize("https://zürich.example/pfad").expect("ok"), "https://xn--zrich-kva.example/pfad");
        assert_eq!(p.normalize("https://xn--zrich-kva.example/pfad").expect("ok"), "https://xn--zrich-kva.example/pfad");
        assert_eq!(p.normalize("https://xn----8sbnliotidln.example/").expect("ok"), "https://xn----8sbnliotidln.example/");
    }

    #[test]
    fn rejects_hostile_targets_with_specific_codes() {
        assert_eq!(code_of("javascript:alert(1)"), "unsupported_scheme");
        assert_eq!(code_of("JaVaScRiPt:alert(1)"), "unsupported_scheme");
        assert_eq!(code_of("  javascript:alert(1)"), "unsupported_scheme");
        assert_eq!(code_of("java\tscript:alert(1)"), "control_characters");
        assert_eq!(code_of("java\nscript:alert(1)"), "control_characters");
        assert_eq!(code_of("data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="), "unsupported_scheme");
        assert_eq!(code_of("vbscript:msgbox(1)"), "unsupported_scheme");
        assert_eq!(code_of("file:///etc/passwd"), "unsupported_scheme");
        assert_eq!(code_of("ftp://example.com/x"), "unsupported_scheme");
        assert_eq!(code_of("http://"), "missing_host");
        assert_eq!(code_of("https:///nohost"), "missing_host");
        assert_eq!(code_of("https:nohost"), "missing_host");
        assert_eq!(code_of("//example.com/scheme-relative"), "invalid_url");
        assert_eq!(code_of("example.com/no-scheme"), "invalid_url");
        assert_eq!(code_of("https://user:pw@example.com/"), "credentials_in_url");
        assert_eq!(code_of("https://user@example.com/"), "credentials_in_url");
        assert_eq!(code_of("https://example.com/x\r\nSet-Cookie: a=b"), "control_characters");
        assert_eq!(code_of("https://example.com\\@evil.example/"), "invalid_url");
        assert_eq!(code_of(""), "invalid_url");
        assert_eq!(code_of("   "), "invalid_url");
        for spaced in ["https://exa mple.com/", "https://example.com\u{a0}x/p", "https://a\u{3000}b.example/"] {
            let e = policy().normalize(spaced).expect_err(spaced);
            assert_eq!((e.code, e.message.as_str()), ("invalid_url", "long_url is not a valid url: its host contains whitespace"), "{spaced}");
        }
    }

    #[test]
    fn own_domains_and_blocklist() {
        assert_eq!(code_of("https://sho.rt/abc"), "redirect_loop");
        assert_eq!(code_of("https://SHO.RT./abc"), "redirect_loop");
        assert_eq!(code_of("http://127.0.0.1:9999/abc"), "redirect_loop");
        let e = policy().normalize("https://a.b.blocked.example/x").expect_err("blocked");
        assert_eq!((e.code, e.status.as_u16()), ("policy_violation", 422));
        assert_eq!(code_of("https://blocked.example/"), "policy_violation");
        assert_eq!(code_of("https://xn--bd-via.example/"), "policy_violation");
        assert!(policy().normalize("https://notblocked.example/").is_ok());
        assert!(policy().normalize("https://sub.sho.rt.example/").is_ok());
    }

    #[test]
    fn blocklist_entries_are_read_like_run_time_ones_ipv6_bare_or_bracketed() {
        let p = UrlPolicy::new(8192, &[], &["2001:db8::1".into(), "[2001:db8::2]:443".into(), "2001:DB8:0:0:0:0:0:3".into(), "Evil.Example:8443".into()]);
        assert_eq!(p.blocklist, vec!["2001:db8::1", "2001:db8::2", "2001:db8::3", "evil.example"]);
        for url in ["http://[2001:db8::1]/x", "https://[2001:0db8:0000::1]:8443/", "http://[2001:db8::2]/", "http://[2001:db8::3]/", "https://a.evil.example/"]
        {
            let e = p.normalize(url).expect_err(url);
            assert_eq!((e.code, e.status.as_u16()), ("policy_violation", 422), "{url}");
        }
        assert!(p.normalize("http://[2001:db8::4]/x").is_ok());
        // QA finding: one entry in two spellings was listed twice (GET /v1/admin/blocklist).
        let p = UrlPolicy::new(8192, &[], &["EVIL.EXAMPLE.".into(), "b.example".into(), "evil.example".into(), "[2001:db8::1]".into(), "2001:DB8::1".into()]);
        assert_eq!(p.blocklist, vec!["evil.example", "b.example", "2001:db8::1"]);
    }

    #[test]
    fn an_ipv6_spelling_of_a_blocked_ipv4_address_is_blocked() {
        // Entry given as IPv4, and as the IPv4-mapped IPv6 form of another address.
        // ... and as the NAT64 form (RFC 6052 well-known prefix) of a third.
        let p = UrlPolicy::new(8192, &[], &["1.2.3.4".into(), "[::ffff:5.6.7.8]".into(), "64:ff9b::9.9.9.9".into()]);
        assert_eq!(p.blocklist, vec!["1.2.3.4", "5.6.7.8", "9.9.9.9"]);
        for (url, entry) in [
            ("http://1.2.3.4/", "1.2.3.4"),
            ("http://[::ffff:1.2.3.4]/", "1.2.3.4"),
            ("http://[0:0:0:0:0:ffff:0102:0304]/", "1.2.3.4"),
            ("http://[::1.2.3.4]/", "1.2.3.4"),
            ("http://[64:ff9b::1.2.3.4]/", "1.2.3.4"),
            ("http://[64:ff9b::102:304]:8080/x", "1.2.3.4"),
            ("http://5.6.7.8/", "5.6.7.8"),
            ("http://[::ffff:506:708]:8080/", "5.6.7.8"),
            ("http://[64:ff9b::5.6.7.8]/", "5.6.7.8"),
            ("http://9.9.9.9/", "9.9.9.9"),
            ("http://[::ffff:9.9.9.9]/", "9.9.9.9"),
        ] {
            let e = p.normalize(url).expect_err(url);
            assert_eq!(
                (e.status.as_u16(), e.body()),
                (
                    422,
                    json!({"error": {"code": "policy_violation", "message": format!("destination domain \"{entry}\" is blocked"), "details": {"domain": entry}}})
                ),
                "{url}"
            );
        }
        for url in ["http://1.2.3.5/", "http://[::ffff:1.2.3.5]/", "http://[2001:db8::102:304]/", "http://[64:ff9b::1.2.3.5]/", "http://[64:ff9b:1::102:304]/"]
        {
            assert!(p.normalize(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn every_loopback_spelling_is_own_when_the_service_is_on_loopback() {
        let local = UrlPolicy::new(8192, &["127.0.0.1".to_string()], &[]);
        for url in [
            "http://localhost:18781/selfy",
            "http://LOCALHOST./x",
            "http://app.localhost/x",
            "http://127.0.0.2/x",
            "http://[::1]:8080/x",
            "http://[::ffff:127.0.0.1]:8080/x",
            "http://127.1/x",
        ] {
            assert_eq!(local.normalize(url).expect_err(url).code, "redirect_loop", "{url}");
        }
        assert!(local.normalize("http://example.com/").is_ok());
        // a public deployment may still shorten links to loopback-looking hosts it does not own
        let public = UrlPolicy::new(8192, &["sho.rt".to_string()], &[]);
        assert!(public.normalize("http://localhost:3000/").is_ok());
        assert!(public.normalize("http://0.0.0.0:3000/").is_ok());
    }

    #[test]
    fn hosts_must_be_dns_names_and_ports_nonzero() {
        let p = policy();
        let label64 = "a".repeat(64);
        let long_host = format!("{}.{}.{}.{}.com", "a".repeat(60), "b".repeat(60), "c".repeat(60), "d".repeat(60));
        assert_eq!(format!("{long_host}.example").len(), 255);
        for (url, host, reason) in [
            ("https://a..com/", "a..com", "empty label"),
            ("https://-a.com/", "-a.com", "a label starts or ends with a hyphen"),
            ("https://a-.com/x", "a-.com", "a label starts or ends with a hyphen"),
            (&*format!("https://{label64}.com/"), &*format!("{label64}.com"), "a label is longer than 63 bytes"),
            (&*format!("https://{long_host}.example/"), &*format!("{long_host}.example"), "longer than 253 bytes"),
        ] {
            let e = p.normalize(url).expect_err(url);
            assert_eq!((e.status.as_u16(), e.code), (400, "invalid_host"), "{url}");
            assert_eq!(e.message, format!("the host of long_url is not a valid DNS name: {reason}"), "{url}");
            assert_eq!(e.details, json!({"host": host, "reason": reason}), "{url}");
        }
        let e = p.normalize("https://example.com:0/").expect_err("port 0");
        assert_eq!((e.status.as_u16(), e.code, e.details), (400, "invalid_port", json!({"port": 0})));
        let label63 = "a".repeat(63);
        let host253 = format!("{label63}.{label63}.{label63}.{}", "d".repeat(61));
        assert_eq!(host253.len(), 253);
        for url in [
            format!("https://{label63}.com/"),
            format!("https://{host253}/"),
            format!("https://{host253}./"),
            "https://a-b.example.com:1/".into(),
            "https://example.com:65535/".into(),
            "https://xn--krz-hoa.example/".into(),
            "https://my_host.example/".into(),
            "http://192.0.2.1:8080/".into(),
            "http://[2001:db8::1]/".into(),
        ] {
            assert!(p.normalize(&url).is_ok(), "{url}");
        }
    }

    #[test]
    fn a_service_on_an_unspecified_address_owns_every_loopback_host_on_its_port() {
        let p = UrlPolicy::new(8192, &["sho.rt".to_string()], &[]).with_loopback_port(Some(18098));
        for url in [
            "http://127.0.0.1:18098/loop",
            "http://127.9.9.9:18098/x",
            "http://localhost:18098/x",
            "https://[::1]:18098/x",
            "http://0.0.0.0:18098/x",
            "http://[::]:18098/x",
            "http://[::ffff:127.0.0.1]:18098/x",
        ] {
            let e = p.normalize(url).expect_err(url);
            assert_eq!((e.code, e.status.as_u16()), ("redirect_loop", 400), "{url}");
        }
        for url in ["http://127.0.0.1:18099/x", "http://localhost/x", "http://10.0.0.1:18098/x"] {
            assert!(p.normalize(url).is_ok(), "{url}");
        }
        let on_80 = UrlPolicy::new(8192, &["sho.rt".to_string()], &[]).with_loopback_port(Some(80));
        assert_eq!(on_80.normalize("http://localhost/x").expect_err("default port").code, "redirect_loop");
        assert!(on_80.normalize("https://localhost/x").is_ok(), "https defaults to 443");
    }

    #[test]
    fn length_limit_is_exact_and_named() {
        let p = policy();
        let at = format!("https://example.com/p?x={}", "a".repeat(8192 - 24));
        assert_eq!(at.len(), 8192);
        assert_eq!(p.normalize(&at).expect("at limit"), at);
        let over = format!("{at}a");
        let e = p.normalize(&over).expect_err("over");
        assert_eq!(e.code, "url_too_long");
        assert_eq!(e.details["max_bytes"], 8192);
        assert!(e.message.contains("8192"));
        // The normalized length counts (attack of session 50: these were refused by their
        // length as sent): a default port, `..` segments and a long IPv6 form drop out.
        for (raw, stored) in [
            (format!("https://example.com:443/{}", "a".repeat(8172)), format!("https://example.com/{}", "a".repeat(8172))),
            (format!("https://example.com/x/../{}", "a".repeat(8172)), format!("https://example.com/{}", "a".repeat(8172))),
            (format!("http://[2001:0db8:0000:0000:0000:0000:0000:0001]/{}", "a".repeat(8144)), format!("http://[2001:db8::1]/{}", "a".repeat(8144))),
        ] {
            assert!(raw.len() > 8192 && stored.len() <= 8192, "{} {}", raw.len(), stored.len());
            assert_eq!(p.normalize(&raw).expect("fits once normalized"), stored);
        }
        let e = p.normalize(&format!("https://example.com:443/{}", "a".repeat(8173))).expect_err("over once normalized");
        assert_eq!((e.code, e.details["actual_bytes"].as_u64()), ("url_too_long", Some(8193)));
        let e = p.normalize(&format!("https://example.com/{}", "a".repeat(4 * 8192))).expect_err("far over");
        assert_eq!(e.code, "url_too_long");
        // expansion by percent-encoding counts too: 3000 'é' = 6000 bytes in, 18000 out
        let e = p.normalize(&format!("https://example.com/{}", "é".repeat(3000))).expect_err("expanded");
        assert_eq!(e.code, "url_too_long");
    }
}
