//! Links: the stored [`Link`] record and the [`LinkMeta`] the dataflow joins clicks with.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// HTTP status a link redirects with. 302 is the default: browsers cache 301s, after
/// which clicks never reach the service again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "u16", into = "u16")]
pub enum RedirectType {
    /// `301 Moved Permanently`.
    Permanent,
    /// `302 Found` (default).
    #[default]
    Found,
}

impl RedirectType {
    /// The HTTP status code (301 or 302).
    pub fn status(self) -> u16 {
        match self {
            RedirectType::Permanent => 301,
            RedirectType::Found => 302,
        }
    }
}

impl From<RedirectType> for u16 {
    fn from(r: RedirectType) -> u16 {
        r.status()
    }
}

impl TryFrom<u16> for RedirectType {
    type Error = String;
    fn try_from(v: u16) -> Result<Self, String> {
        match v {
            301 => Ok(RedirectType::Permanent),
            302 => Ok(RedirectType::Found),
            other => Err(format!("redirect_type must be 301 or 302, got {other}")),
        }
    }
}

/// A short link as stored by the link store and returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Short code (case-sensitive), `[A-Za-z0-9_-]{1,64}`.
    pub code: String,
    /// Validated, normalized absolute http(s) target URL (ASCII only, IDN hosts in punycode).
    pub long_url: String,
    /// The short domain given at creation (normalized host), `None` when none was given
    /// (the short URL then uses the base URL).
    pub domain: Option<String>,
    /// Instant from which the link answers 410 instead of redirecting.
    pub expires_at: Option<DateTime<Utc>>,
    /// Disabled links answer 404 (admin action or owner PATCH).
    pub enabled: bool,
    /// Free-form tags, order preserved, duplicates removed.
    pub tags: Vec<String>,
    /// Redirect status.
    pub redirect_type: RedirectType,
    /// Owning organisation (reserved for API keys; `None` until then).
    pub org: Option<String>,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Last modification instant.
    pub updated_at: DateTime<Utc>,
    /// Monotonic revision, incremented on every update; the basis of the `ETag`.
    pub version: i64,
}

impl Link {
    /// The metadata of this link that the dataflow joins clicks with.
    pub fn meta(&self) -> LinkMeta {
        LinkMeta {
            code: self.code.clone(),
            org: self.org.clone(),
            tags: self.tags.clone(),
            domain: self.domain.clone(),
            target_host: target_host(&self.long_url),
            valid_from_ms: self.updated_at.timestamp_millis(),
        }
    }
}

/// The form in which a host is compared with blocklist entries: an IPv6 address that reaches
/// an IPv4 host — IPv4-mapped `::ffff:1.2.3.4`, IPv4-compatible `::1.2.3.4` (RFC 4291
/// §2.5.5; `::` and `::1` excepted), NAT64 `64:ff9b::1.2.3.4` or 6to4 `2002:0102:0304::/48`
/// ([`embedded_ipv4`]) — is that IPv4 address (`1.2.3.4`), so no such spelling gets past an
/// entry for the IPv4 address;
/// any other IPv6 address is its compressed form (RFC 5952, `2001:0db8::0001` →
/// `2001:db8::1`); anything else is returned unchanged.
pub fn canonical_host(host: &str) -> String {
    match host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => match embedded_ipv4(v6) {
            Some(v4) => v4.to_string(),
            None => match v6.to_ipv4() {
                Some(v4) if v4.octets()[0] != 0 => v4.to_string(),
                _ => v6.to_string(),
            },
        },
        Err(_) => host.to_string(),
    }
}

/// The IPv4 host an IPv6 address reaches through a standard translation: IPv4-mapped
/// `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2), NAT64 `64:ff9b::a.b.c.d` ([`nat64_ipv4`]) or 6to4
/// `2002:AABB:CCDD::/48` (RFC 3056 §2: the site's IPv4 address in bits 16..48, the relay
/// its packets are routed through). `None` for any other address. The link blocklist
/// ([`canonical_host`]) and the webhook SSRF guard judge such addresses as that IPv4 host.
pub fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped().or_else(|| nat64_ipv4(v6)) {
        return Some(v4);
    }
    if v6.segments()[0] == 0x2002 {
        let o = v6.octets();
        return Some(std::net::Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// The IPv4 address a NAT64 address of the well-known prefix `64:ff9b::/96` (RFC 6052 §2.1)
/// embeds in its last 32 bits (`64:ff9b::203.0.113.9` → `203.0.113.9`): a client behind a
/// NAT64 gateway reaches exactly that IPv4 host through it. `None` for any other address
/// (the local-use prefix `64:ff9b:1::/48` included: its mapping is the network's own).
pub fn nat64_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0) {
        let o = v6.octets();
        return Some(std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    None
}

/// The host of an absolute URL as the abuse blocklist matches it: the authority without
/// user info and port, lowercase, without a trailing dot (`https://User@Evil.EXAMPLE.:8443/x`
/// → `evil.example`; IPv6 literals without brackets, in [`canonical_host`] form, so
/// `http://[::ffff:1.2.3.4]/` → `1.2.3.4`). Link targets are stored normalized (IDN hosts
/// in punycode), so no further mapping is needed. `None` when there is no `scheme://` or
/// the host is empty.
pub fn target_host(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        &v6[..v6.find(']')?]
    } else {
        match host_port.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host_port,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() { None } else { Some(canonical_host(&host)) }
}

/// Link metadata as seen by the dataflow (a differential collection keyed by `code`).
///
/// A link's metadata is **versioned by event time**: each value carries the instant from
/// which it applies (`valid_from_ms`), and the dataflow joins a click with the version valid
/// at the click's `ts`. The binary feeds every version a link ever had (the link store's
/// change feed keeps them), so replaying the click log attributes each click to the same
/// organisation and tags as the live run did.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LinkMeta {
    /// Short code.
    pub code: String,
    /// Owning organisation.
    pub org: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Custom domain.
    pub domain: Option<String>,
    /// Host of the target URL ([`target_host`]), joined with the abuse blocklist
    /// (`blocklisted_target` anomalies). `None` when unknown.
    #[serde(default)]
    pub target_host: Option<String>,
    /// First instant (ms since epoch, UTC) at which this version applies: the link's
    /// `updated_at` when the store wrote it. `0` (the serde default, e.g. in checkpoints
    /// written before versions existed) applies from the beginning of time.
    #[serde(default)]
    pub valid_from_ms: i64,
}

impl LinkMeta {
    /// Whether `self` and `other` describe the same metadata (every field but
    /// `valid_from_ms`): a link update that leaves them equal starts no new version.
    pub fn same_content(&self, other: &LinkMeta) -> bool {
        self.code == other.code && self.org == other.org && self.tags == other.tags && self.domain == other.domain && self.target_host == other.target_host
    }
}

#[cfg(test)]
mod tests {
    use super::target_host;

    #[test]
    fn target_host_is_the_normalized_authority_host() {
        for (url, want) in [
            ("https://example.com/a?b#c", Some("example.com")),
            ("https://User:pw@Evil.EXAMPLE.:8443/x", Some("evil.example")),
            ("http://xn--bcher-kva.example?q=1", Some("xn--bcher-kva.example")),
            ("http://[2001:db8::1]:8080/", Some("2001:db8::1")),
            ("http://[2001:0DB8:0:0::0001]/", Some("2001:db8::1")),
            ("http://[::ffff:102:304]/", Some("1.2.3.4")),
            ("http://[::ffff:1.2.3.4]/", Some("1.2.3.4")),
            ("http://[0:0:0:0:0:ffff:0102:0304]/", Some("1.2.3.4")),
            ("http://[::1.2.3.4]/", Some("1.2.3.4")),
            // NAT64, well-known prefix (RFC 6052): the IPv4 host it reaches.
            ("http://[64:ff9b::203.0.113.9]/", Some("203.0.113.9")),
            ("http://[64:ff9b::cb00:7109]:8080/", Some("203.0.113.9")),
            ("http://[0064:FF9B:0000:0000:0000:0000:CB00:7109]/", Some("203.0.113.9")),
            // ... not the local-use prefix, nor an address merely near the prefix.
            ("http://[64:ff9b:1::cb00:7109]/", Some("64:ff9b:1::cb00:7109")),
            ("http://[64:ff9b::1:cb00:7109]/", Some("64:ff9b::1:cb00:7109")),
            // 6to4 (RFC 3056): the site's IPv4 address in bits 16..48, whatever follows.
            ("http://[2002:cb00:7109::1]/", Some("203.0.113.9")),
            ("http://[2002:CB00:7109:1:2:3:4:5]/", Some("203.0.113.9")),
            ("http://[2003:cb00:7109::1]/", Some("2003:cb00:7109::1")),
            ("http://[::1]/", Some("::1")),
            ("http://[::]/", Some("::")),
            ("https://203.0.113.7#frag", Some("203.0.113.7")),
            ("https:///path", None),
            ("not a url", None),
        ] {
            assert_eq!(target_host(url).as_deref(), want, "{url}");
        }
    }
}
