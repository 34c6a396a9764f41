//! Server-side request forgery guard for webhook URLs.
//!
//! A webhook URL may not reach an address in a non-public range (below) unless the
//! configuration allows it (`[webhooks] allow-private = true`, e.g. for a receiver on the
//! same host). It is checked twice:
//! - when the webhook is created ([`validate_url`]): IP literals in any spelling the URL
//!   standard accepts (`2130706433`, `0177.0.0.1`, `0x7f.1`, `[::ffff:127.0.0.1]` all parse to
//!   the address they mean), `localhost` names (RFC 6761), and every address a host name
//!   resolves to;
//! - at every delivery, by the HTTP client's resolver ([`GuardedResolver`]), which resolves
//!   the host and refuses the connection if any address is blocked — so a name that
//!   resolved to a public address at creation and to `127.0.0.1` later (DNS rebinding) is
//!   still refused, and the address checked is the address connected to.
//!
//! Blocked ranges ([`blocked_range`]; IANA special-purpose address registries, RFC 6890):
//! IPv4 `0.0.0.0/8`, `10.0.0.0/8`, `100.64.0.0/10` (CGNAT), `127.0.0.0/8`, `169.254.0.0/16`,
//! `172.16.0.0/12`, `192.0.0.0/24`, `192.0.2.0/24`, `192.168.0.0/16`, `198.18.0.0/15`,
//! `198.51.100.0/24`, `203.0.113.0/24`, `224.0.0.0/4` (multicast), `240.0.0.0/4` (reserved,
//! broadcast); IPv6 `::/96` (unspecified, loopback, IPv4-compatible), `::ffff:0:0/96` and
//! `64:ff9b::/96` (by the IPv4 address they embed), `64:ff9b:1::/48`, `100::/64`,
//! `2001::/32` (Teredo), `2001:db8::/32`, `2002::/16` (6to4, by the embedded IPv4 address),
//! `fc00::/7` (ULA), `fe80::/10`, `fec0::/10`, `ff00::/8`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::json;

use crate::error::ApiError;

const V4_BLOCKED: [(&str, &str); 15] = [
    ("0.0.0.0/8", "unspecified (this network)"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("255.255.255.255/32", "broadcast"),
];

const V6_BLOCKED: [(&str, &str); 10] = [
    ("::/96", "unspecified, loopback or IPv4-compatible"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"),
    ("100::/64", "discard-only"),
    ("2001::/32", "Teredo"),
    ("2001:db8::/32", "documentation"),
    ("fc00::/7", "unique local (ULA)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
    ("::1/128", "loopback"),
];

/// The name of the non-public range `ip` is in, or `None` for a public address. IPv6
/// addresses embedding an IPv4 address (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`,
/// 6to4 `2002:AABB:CCDD::`) are judged by that address, as the link blocklist reads them
/// ([`sluice_schemas::link::embedded_ipv4`]).
pub fn blocked_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = sluice_schemas::link::embedded_ipv4(v6) {
                return blocked_v4(v4).map(|_| "non-public IPv4-embedding IPv6");
            }
            // `::1` first so it is named loopback rather than by the wider `::/96`.
            if v6 == Ipv6Addr::LOCALHOST {
                return Some("loopback");
            }
            V6_BLOCKED.iter().find(|(net, _)| net.parse::<Ipv6Net>().is_ok_and(|n| n.contains(&v6))).map(|(_, name)| *name)
        }
    }
}

fn blocked_v4(v4: Ipv4Addr) -> Option<&'static str> {
    V4_BLOCKED.iter().find(|(net, _)| net.parse::<Ipv4Net>().is_ok_and(|n| n.contains(&v4))).map(|(_, name)| *name)
}

/// `range` ([`blocked_range`]) with its indefinite article: "a loopback address", "an
/// unspecified (this network) address".
fn an_address_in(range: &str) -> String {
    let article = if ["unspecified", "IETF"].iter().any(|p| range.starts_with(p)) { "an" } else { "a" };
    format!("{article} {range} address")
}

/// 400 `webhook_url_forbidden` for `host` reaching `ip` in `range`.
fn forbidden(host: &str, ip: IpAddr, range: &str) -> ApiError {
    ApiError::bad_request(
        "webhook_url_forbidden",
        format!("webhook host \"{host}\" is or resolves to {ip}, {}; set [webhooks] allow-private = true to allow non-public receivers", an_address_in(range)),
    )
    .with_details(json!({ "host": host, "address": ip.to_string(), "range": range }))
}

fn invalid(url: &str, why: &str) -> ApiError {
    ApiError::bad_request("invalid_webhook_url", format!("webhook url \"{url}\" is not valid: {why}")).with_details(json!({ "url": url }))
}

/// Whether `host` is a `localhost` name (RFC 6761: `localhost` and `*.localhost`).
fn is_localhost_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

/// Parses and checks a webhook URL for creation; returns it normalized (WHATWG
/// serialization: IP literals in canonical form).
///
/// Errors (400), in this order, the host resolved (DNS) last: `control_characters` (as for a
/// link's `long_url`: a TAB, CR or LF inside the URL is refused, never silently removed),
/// `invalid_webhook_url` (unparseable, not absolute, credentials in it, no host, a host not
/// written after `//` (`http:///x`), a fragment), `unsupported_url_scheme` (anything but `https` and `http`), `invalid_port`
/// (port 0, as for a link), `webhook_url_forbidden` (a non-public address, unless
/// `allow_private`), `webhook_host_unresolvable` (the name has no address).
pub async fn validate_url(raw: &str, allow_private: bool) -> Result<url::Url, ApiError> {
    let input = raw.trim();
    crate::url_policy::check_control_characters("the webhook url", input)?;
    let url = url::Url::parse(input).map_err(|e| invalid(raw, &e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(ApiError::bad_request("unsupported_url_scheme", format!("webhook urls must be https:// or http://, got \"{other}:\""))
                .with_details(json!({ "url": raw, "scheme": other })));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Error bodies end up in client logs: never echo the credentials.
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        return Err(invalid(shown.as_str(), "credentials (user:password@) in the url are not allowed (sign with the secret instead)"));
    }
    if !has_written_authority(input) {
        return Err(invalid(raw, AUTHORITY_NOT_WRITTEN));
    }
    if url.fragment().is_some() {
        return Err(invalid(raw, "a fragment is not allowed"));
    }
    crate::url_policy::check_port("the webhook url", &url)?;
    let port = url.port_or_known_default().unwrap_or(80);
    match url.host() {
        None => Err(invalid(raw, "no host")),
        Some(url::Host::Ipv4(v4)) => check_ip(&v4.to_string(), IpAddr::V4(v4), allow_private).map(|()| url.clone()),
        Some(url::Host::Ipv6(v6)) => check_ip(&v6.to_string(), IpAddr::V6(v6), allow_private).map(|()| url.clone()),
        Some(url::Host::Domain(d)) => {
            if allow_private {
                return Ok(url.clone());
            }
            // Resolve first (so the address actually reached is what is judged), then the
            // RFC 6761 rule for a localhost name that did not resolve to loopback.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((d, port)).await.map(Iterator::collect).unwrap_or_default();
            for a in &addrs {
                check_ip(d, a.ip(), false)?;
            }
            if is_localhost_name(d) {
                return Err(forbidden(d, IpAddr::V4(Ipv4Addr::LOCALHOST), "loopback"));
            }
            if addrs.is_empty() {
                return Err(ApiError::bad_request("webhook_host_unresolvable", format!("webhook host \"{d}\" could not be resolved"))
                    .with_details(json!({ "host": d })));
            }
            Ok(url.clone())
        }
    }
}

/// Why a URL without a written authority ([`has_written_authority`]) is refused.
const AUTHORITY_NOT_WRITTEN: &str = "the host must be written right after \"//\" (the authority is empty or missing)";

/// Whether `input` (an `http:` or `https:` URL as written) spells its authority: `//` right
/// after the scheme's `:`, then at least one character before the path, query or fragment.
/// The URL standard reads `http:///x`, `http:/x`, `http:x` and `http:\\x` as host `x`; a
/// webhook URL must name its host where RFC 3986 puts it, or be refused in every mode.
fn has_written_authority(input: &str) -> bool {
    let Some((_, rest)) = input.split_once(':') else { return false };
    rest.strip_prefix("//").and_then(|a| a.chars().next()).is_some_and(|c| !matches!(c, '/' | '\\' | '?' | '#'))
}

fn check_ip(host: &str, ip: IpAddr, allow_private: bool) -> Result<(), ApiError> {
    match blocked_range(ip) {
        Some(range) if !allow_private => Err(forbidden(host, ip, range)),
        _ => Ok(()),
    }
}

/// The delivery-time check of an IP-literal host (names go through [`GuardedResolver`]):
/// `Err(reason)` when blocked.
pub fn check_literal_at_delivery(url: &url::Url, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(d)) if is_localhost_name(d) => return Err(format!("\"{d}\" is a loopback name")),
        _ => return Ok(()),
    };
    match blocked_range(ip) {
        Some(range) => Err(format!("{ip} is {}", an_address_in(range))),
        None => Ok(()),
    }
}

/// The webhook client's DNS resolver: the system resolver, then the SSRF check of every
/// address (unless private receivers are allowed). A name with any blocked address fails
/// to resolve, so the connection is never attempted.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// Skip the check (`[webhooks] allow-private`).
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private {
                if is_localhost_name(&host) {
                    return Err(format!("blocked: \"{host}\" is a loopback name").into());
                }
                for a in &addrs {
                    if let Some(range) = blocked_range(a.ip()) {
                        return Err(format!("blocked: \"{host}\" resolves to {}, {}", a.ip(), an_address_in(range)).into());
                    }
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_classified() {
        for blocked in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::127.0.0.1",
        ] {
            let ip: IpAddr = blocked.parse().expect(blocked);
            assert!(blocked_range(ip).is_some(), "{blocked} must be blocked");
        }
        for public in
            ["8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"]
        {
            let ip: IpAddr = public.parse().expect(public);
            assert_eq!(blocked_range(ip), None, "{public} is public");
        }
        assert_eq!(blocked_range("127.0.0.1".parse().expect("ip")), Some("loopback"));
        assert_eq!(blocked_range("::1".parse().expect("ip")), Some("loopback"));
        assert_eq!(blocked_range("169.254.169.254".parse().expect("ip")), Some("link-local"));
    }

    #[test]
    fn messages_name_the_address_and_its_range() {
        let msg = |ip: &str| {
            let ip: IpAddr = ip.parse().expect("ip");
            forbidden("h", ip, blocked_range(ip).expect("blocked")).message
        };
        let tail = "; set [webhooks] allow-private = true to allow non-public receivers";
        for (ip, what) in [
            ("64:ff9b::7f00:1", "a non-public IPv4-embedding IPv6 address"),
            ("::ffff:10.0.0.1", "a non-public IPv4-embedding IPv6 address"),
            ("0.0.0.0", "an unspecified (this network) address"),
            ("192.0.0.8", "an IETF protocol assignments address"),
            ("::", "an unspecified, loopback or IPv4-compatible address"),
            ("127.0.0.1", "a loopback address"),
            ("fd00::1", "a unique local (ULA) address"),
        ] {
            assert_eq!(msg(ip), format!("webhook host \"h\" is or resolves to {ip}, {what}{tail}"), "{ip}");
        }
        let url = url::Url::parse("http://[64:ff9b::a9fe:a9fe]/x").expect("url");
        assert_eq!(check_literal_at_delivery(&url, false), Err("64:ff9b::a9fe:a9fe is a non-public IPv4-embedding IPv6 address".to_string()));
        assert_eq!(check_literal_at_delivery(&url, true), Ok(()));
    }

    #[test]
    fn localhost_names() {
        assert!(is_localhost_name("localhost"));
        assert!(is_localhost_name("LocalHost."));
        assert!(is_localhost_name("api.localhost"));
        assert!(!is_localhost_name("localhost.example"));
    }
}
