//! `Referer` header → (`referrer_domain`, medium).
//!
//! Rules, in order (case C22 in `shared/cases/README.md` is the test bed):
//!
//! 1. Absent, or empty after trimming whitespace and control characters (a trailing `\r`
//!    included) → `"(direct)"`, medium `direct`. So is an `about:` URL (`about:blank`),
//!    which browsers send when there was no referring page.
//! 2. The value is parsed as a WHATWG URL (`url` crate). A bare host such as
//!    `www.example.com/path` is retried as `http://` + value. What still does not parse, or
//!    parses without a host (`https:/`, `data:...`, `file:///x`), with an empty label in
//!    its host (`https://a..b/`), or with a host (or app package name) that is not made of
//!    letters, digits, `-` and `_` labels not starting with `-` (`https://+1+1.example/`,
//!    `android-app://=hyperlink(…)`: no site or app has such a name, and kept verbatim it
//!    would reach CSV exports as a spreadsheet formula) → `"(invalid)"`, medium `unknown`.
//! 3. The host is lower-cased (IDNs become punycode), its port and trailing dot dropped.
//!    A host equal to one of `EnrichConfig::own_hosts` or a subdomain of one → `"(direct)"`,
//!    medium `internal`: crawlers send the short link itself as `Referer`, and a shortener's
//!    own host must never show up as a traffic source. An IP-literal own host matches only
//!    the same address (`[::1]` in brackets for IPv6); IP addresses have no subdomains. When
//!    an own host is a loopback host (the default base URL is `http://` + the listen
//!    address, e.g. `127.0.0.1`), every loopback host ([`is_loopback_host`]: `localhost`,
//!    `127.0.0.0/8`, `[::1]`, `0.0.0.0`) is own, as the link API's redirect-loop check has it.
//! 4. `referrer_domain` is the **registrable domain** from the Public Suffix List (`psl`
//!    crate, ICANN and private sections): `https://www.google.co.uk/` → `google.co.uk`,
//!    `https://user.github.io/` → `user.github.io`. The full host is kept instead when
//!    - the suffix is not in the PSL (an intranet or unknown TLD: grouping by "one label
//!      below the TLD" would be a guess), or
//!    - the host is under an IANA special-use domain name (RFC 6761 registry: `example`,
//!      `example.com`, `example.net`, `example.org`, `test`, `invalid`, `localhost`,
//!      `local`, `onion`, `alt`, `internal`, `home.arpa`). These names have no registrants
//!      to group by, and they are what tests and documentation use, so
//!      `https://WWW.Example.COM:8443/p` → `www.example.com` and `https://m.search.example/`
//!      → `m.search.example` as case C22 expects, or
//!    - the host is an IP address (`192.0.2.1`, `[2001:db8::1]`), or is itself a public
//!      suffix.
//! 5. Non-web schemes (anything but `http`/`https`) with a host keep that whole host as the
//!    domain, lower-cased, with no PSL step:
//!    `android-app://com.example.app/` → `com.example.app` (the Android package name, as
//!    Chrome sends for app referrals), `ios-app://123456/...` → `123456`. Medium comes from
//!    the same lists (Matomo lists some package names, e.g. `com.reddit.frontpage`), else
//!    `unknown`.
//! 6. The medium of everything else comes from [`MediumLists::classify`].

use std::net::IpAddr;

use url::{Host, Url};

use super::referrer_medium::{MediumLists, ReferrerMedium};

/// `referrer_domain` value for clicks without a referrer (and own-host referrers).
pub const DIRECT: &str = "(direct)";
/// `referrer_domain` value for referrers that are not a URL with a host.
pub const INVALID: &str = "(invalid)";

/// IANA special-use domain names (RFC 6761 registry) kept as full hosts; see rule 4.
const SPECIAL_USE_DOMAINS: &[&str] =
    &["example", "example.com", "example.net", "example.org", "test", "invalid", "localhost", "local", "onion", "alt", "internal", "home.arpa"];

/// The outcome of classifying one referrer, borrowing nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrerInfo {
    /// `"(direct)"`, `"(invalid)"` or the domain per the module rules.
    pub domain: String,
    /// The medium.
    pub medium: ReferrerMedium,
}

impl ReferrerInfo {
    fn direct(medium: ReferrerMedium) -> ReferrerInfo {
        ReferrerInfo { domain: DIRECT.to_owned(), medium }
    }

    fn invalid() -> ReferrerInfo {
        ReferrerInfo { domain: INVALID.to_owned(), medium: ReferrerMedium::Unknown }
    }
}

/// Normalizes a configured own host: accepts `sho.rt.example`, `SHO.RT.EXAMPLE.`,
/// `sho.rt.example:8080` or a URL such as `https://sho.rt.example/`. Returns the
/// lower-cased host without port or trailing dot, or `None` if nothing host-like is left.
pub fn normalize_own_host(configured: &str) -> Option<String> {
    let t = configured.trim();
    let url = if t.contains("://") { Url::parse(t) } else { Url::parse(&format!("http://{t}")) };
    let host = url.ok()?.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Classifies a referrer per the module rules. `own_hosts` must be normalized with
/// [`normalize_own_host`]. Never panics, for any input.
pub fn classify(lists: &MediumLists, own_hosts: &[String], referrer: Option<&str>) -> ReferrerInfo {
    let Some(raw) = referrer else {
        return ReferrerInfo::direct(ReferrerMedium::Direct);
    };
    let text = raw.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    if text.is_empty() {
        return ReferrerInfo::direct(ReferrerMedium::Direct);
    }
    let url = match Url::parse(text) {
        Ok(u) => u,
        Err(url::ParseError::RelativeUrlWithoutBase) if looks_like_bare_host(text) => match Url::parse(&format!("http://{text}")) {
            Ok(u) => u,
            Err(_) => return ReferrerInfo::invalid(),
        },
        Err(_) => return ReferrerInfo::invalid(),
    };
    if url.scheme() == "about" {
        return ReferrerInfo::direct(ReferrerMedium::Direct);
    }
    let (host, is_ip) = match url.host() {
        Some(Host::Domain(d)) => (d.trim_end_matches('.').to_ascii_lowercase(), false),
        Some(Host::Ipv4(ip)) => (ip.to_string(), true),
        Some(Host::Ipv6(ip)) => (format!("[{ip}]"), true),
        None => return ReferrerInfo::invalid(),
    };
    // An empty label (`a..b`, `.a`) is no DNS name (RFC 1035 §2.3.1); WHATWG parsing keeps it.
    if host.is_empty() || host.starts_with('.') || host.contains("..") {
        return ReferrerInfo::invalid();
    }
    if !is_ip && !host.split('.').all(is_host_label) {
        return ReferrerInfo::invalid();
    }
    let own = |own: &String| if is_ip { host == *own } else { is_same_or_subdomain(&host, own) };
    if own_hosts.iter().any(own) || (is_loopback_host(&host) && own_hosts.iter().any(|o| is_loopback_host(o))) {
        return ReferrerInfo::direct(ReferrerMedium::Internal);
    }
    let medium = if is_ip { ReferrerMedium::Unknown } else { lists.classify(&host, url.path()).medium };
    let web = matches!(url.scheme(), "http" | "https");
    let domain = if is_ip || !web { host } else { registrable_domain(&host) };
    ReferrerInfo { domain, medium }
}

/// Whether `label` (lower case) is a label of a host name or an app's package name: ASCII
/// letters, digits, `-` and `_`, not starting with `-` (RFC 952 and RFC 1123 §2.1 host
/// names; `_` as real hosts and Android package names use it; IDNs arrive as punycode
/// `xn--` labels). WHATWG URL parsing also lets `=`, `+`, `(`, `"` and more through in a
/// host, and an app referrer's "host" is any text: such a value names no site or app, and
/// kept verbatim it would reach exports as a spreadsheet formula (`android-app://=cmd(…)`).
fn is_host_label(label: &str) -> bool {
    !label.starts_with('-') && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub use sluice_schemas::client_address::is_loopback_host;

/// `host` equals `parent` or ends with `.parent`.
fn is_same_or_subdomain(host: &str, parent: &str) -> bool {
    host == parent || (host.len() > parent.len() && host.ends_with(parent) && host.as_bytes()[host.len() - parent.len() - 1] == b'.')
}

/// A scheme-less value worth retrying as `http://…`: no whitespace, a dot in the part
/// before the first `/`, and no `:` there except a port.
fn looks_like_bare_host(text: &str) -> bool {
    let head = text.split(['/', '?', '#']).next().unwrap_or("");
    !text.contains(char::is_whitespace)
        && head.contains('.')
        && !head.starts_with('.')
        && head.split(':').nth(1).is_none_or(|port| port.bytes().all(|b| b.is_ascii_digit()))
}

/// Rule 4 of the module documentation for a lower-cased, punycode, dot-trimmed host.
pub fn registrable_domain(host: &str) -> String {
    if host.parse::<IpAddr>().is_ok() {
        return host.to_owned();
    }
    if SPECIAL_USE_DOMAINS.iter().any(|s| is_same_or_subdomain(host, s)) {
        return host.to_owned();
    }
    match psl::domain(host.as_bytes()) {
        Some(d) if d.suffix().is_known() => String::from_utf8(d.as_bytes().to_vec()).unwrap_or_else(|_| host.to_owned()),
        _ => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_domains() {
        assert_eq!(registrable_domain("www.google.co.uk"), "google.co.uk");
        assert_eq!(registrable_domain("l.facebook.com"), "facebook.com");
        assert_eq!(registrable_domain("user.github.io"), "user.github.io");
        assert_eq!(registrable_domain("co.uk"), "co.uk");
        assert_eq!(registrable_domain("www.example.com"), "www.example.com");
        assert_eq!(registrable_domain("m.search.example"), "m.search.example");
        assert_eq!(registrable_domain("wiki.corp.intranet"), "wiki.corp.intranet");
        assert_eq!(registrable_domain("a.b.localhost"), "a.b.localhost");
        assert_eq!(registrable_domain("notexample.com"), "notexample.com");
        assert_eq!(registrable_domain("www.notexample.com"), "notexample.com");
        assert_eq!(registrable_domain("192.0.2.1"), "192.0.2.1");
    }

    #[test]
    fn own_host_normalization() {
        assert_eq!(normalize_own_host("https://Sho.RT.example/"), Some("sho.rt.example".into()));
        assert_eq!(normalize_own_host("sho.rt.example:8080"), Some("sho.rt.example".into()));
        assert_eq!(normalize_own_host(" SHO.RT.EXAMPLE. "), Some("sho.rt.example".into()));
        assert_eq!(normalize_own_host(""), None);
        assert_eq!(normalize_own_host("http://"), None);
    }

    /// Attack of session 52: with the default loopback base URL, `localhost`, `[::1]`,
    /// `127.0.0.2` and `0.0.0.0` referrers were traffic sources (medium unknown) while
    /// `127.0.0.1` was `(direct)`; the link API already counted them all as its own.
    #[test]
    fn every_loopback_host_is_own_when_an_own_host_is_loopback() {
        let lists = MediumLists::bundled().expect("lists");
        let internal = ReferrerInfo::direct(ReferrerMedium::Internal);
        for on_loopback in [["127.0.0.1"], ["localhost"], ["[::1]"]] {
            let own: Vec<String> = on_loopback.iter().map(|h| (*h).to_owned()).collect();
            for r in [
                "http://127.0.0.1:8080/x",
                "http://localhost:9/x",
                "http://[::1]:8080/x",
                "http://127.0.0.2/",
                "http://0.0.0.0:1/",
                "http://a.localhost/",
                "http://[::ffff:127.0.0.1]/",
            ] {
                assert_eq!(classify(&lists, &own, Some(r)), internal, "{r} with own host {own:?}");
            }
        }
        // A public short domain does not own this machine's names.
        let own = vec!["sho.rt.example".to_owned()];
        let got = classify(&lists, &own, Some("http://localhost:8080/x"));
        assert_eq!((got.domain.as_str(), got.medium), ("localhost", ReferrerMedium::Unknown));
        assert_eq!(classify(&lists, &own, Some("http://127.0.0.2/")).domain, "127.0.0.2");
        // Nor does a loopback own host make other private addresses own.
        assert_eq!(classify(&lists, &["127.0.0.1".to_owned()], Some("http://192.168.1.1/")).domain, "192.168.1.1");
    }

    /// Chrome sends `android-app://<package>/…` for clicks in Android apps: the Google app's
    /// package is a search engine in Matomo's SearchEngines.yml, Gmail's is our email list,
    /// and the package names of Matomo's Socials.yml are social.
    #[test]
    fn android_app_referrers_get_the_medium_of_their_package() {
        let lists = MediumLists::bundled().expect("bundled lists");
        let cases = [
            ("android-app://com.google.android.googlequicksearchbox/https/www.google.com", "com.google.android.googlequicksearchbox", ReferrerMedium::Search),
            ("android-app://com.google.android.googlequicksearchbox", "com.google.android.googlequicksearchbox", ReferrerMedium::Search),
            ("android-app://com.google.android.gm/", "com.google.android.gm", ReferrerMedium::Email),
            ("android-app://com.google.android.apps.plus/", "com.google.android.apps.plus", ReferrerMedium::Social),
            ("android-app://com.linkedin.android/", "com.linkedin.android", ReferrerMedium::Social),
            ("android-app://org.joinmastodon.android/", "org.joinmastodon.android", ReferrerMedium::Social),
            ("android-app://com.reddit.frontpage/", "com.reddit.frontpage", ReferrerMedium::Social),
            ("android-app://com.snapchat.android/", "com.snapchat.android", ReferrerMedium::Social),
            ("ANDROID-APP://COM.Google.Android.GM", "com.google.android.gm", ReferrerMedium::Email),
            ("android-app://com.example.app/", "com.example.app", ReferrerMedium::Unknown),
        ];
        for (referrer, domain, medium) in cases {
            let got = classify(&lists, &[], Some(referrer));
            assert_eq!((got.domain.as_str(), got.medium), (domain, medium), "{referrer}");
        }
    }

    #[test]
    fn subdomain_test_is_label_aligned() {
        assert!(is_same_or_subdomain("a.sho.rt", "sho.rt"));
        assert!(is_same_or_subdomain("sho.rt", "sho.rt"));
        assert!(!is_same_or_subdomain("xsho.rt", "sho.rt"));
        assert!(!is_same_or_subdomain("rt", "sho.rt"));
    }

    /// Attack of session 53: `https://a..b/` was the domain `a..b`.
    #[test]
    fn a_host_with_an_empty_label_is_invalid() {
        let lists = MediumLists::bundled().expect("bundled lists");
        for r in ["https://a..b/", "http://.example.com/x", "https://www..google.com/"] {
            assert_eq!(classify(&lists, &[], Some(r)).domain, INVALID, "{r}");
        }
        assert_eq!(classify(&lists, &[], Some("https://www.google.com./")).domain, "google.com");
    }

    /// Finding (newcomer, session 58): any clicker's `Referer` reached CSV exports as a
    /// formula cell: `android-app://=HYPERLINK("http://evil")` was the domain
    /// `=hyperlink("http`, `https://+1+1.example/` was `+1+1.example`.
    #[test]
    fn a_host_or_package_name_outside_host_name_characters_is_invalid() {
        let lists = MediumLists::bundled().expect("bundled lists");
        for r in [
            "android-app://=HYPERLINK(\"http://evil\")",
            "https://+1+1.example/",
            "ios-app://-2+3/",
            "android-app://@SUM(1+1)",
            "https://-lead.example.com/",
            "https://a=b.example.com/",
            "https://a\"b.example.com/",
            "https://a(b).example.com/",
            "android-app://com.example.app!/",
        ] {
            let got = classify(&lists, &[], Some(r));
            assert_eq!((got.domain.as_str(), got.medium), (INVALID, ReferrerMedium::Unknown), "{r}");
        }
        for (r, domain) in [
            ("https://under_score.example.com/", "under_score.example.com"),
            ("https://xn--bcher-kva.example/", "xn--bcher-kva.example"),
            ("https://bücher.de/", "xn--bcher-kva.de"),
            ("https://trailing-.example.com/", "trailing-.example.com"),
            ("https://123.example.com/", "123.example.com"),
            ("android-app://com.my_app.x2/", "com.my_app.x2"),
            ("ios-app://284882215/", "284882215"),
        ] {
            assert_eq!(classify(&lists, &[], Some(r)).domain, domain, "{r}");
        }
    }

    #[test]
    fn bare_host_heuristic() {
        assert!(looks_like_bare_host("www.example.com/path"));
        assert!(looks_like_bare_host("example.com:8080"));
        assert!(!looks_like_bare_host("not a url"));
        assert!(!looks_like_bare_host("/relative/path"));
        assert!(!looks_like_bare_host("nodot"));
        assert!(!looks_like_bare_host(".example.com"));
    }
}
