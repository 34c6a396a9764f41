//! Referrer host → medium (`search|social|ai_assistant|email|internal|unknown|direct`).
//!
//! Lists: Matomo's searchengine-and-social-list (CC0-1.0, commit `3b3a82dc`, vendored in
//! `data/referrers/matomo/`): `SearchEngines.yml`, `Socials.yml`, `AIAssistants.yml`, plus
//! our own webmail list ([`EMAIL_HOSTS`]; Matomo has none). Hosts are matched as follows:
//!
//! - **AI assistants, email, social**: the host or any parent domain of it with at least
//!   two labels is listed (`l.facebook.com` → `facebook.com`), as Matomo matches socials.
//!   Entries with a path (`x.com/i/grok`) only match when the URL path starts with it.
//! - **search**: the host itself, or its "lossy" form, is listed. The lossy form follows
//!   Matomo's documented `{}` convention (a `{}` in a host stands for a country code or TLD,
//!   including combined ones such as `co.uk`): a leading `www`/`ww2`/`www2`/`search.` label
//!   and any `m.` label are dropped, a public suffix ending in a country-code TLD is replaced by `{}`
//!   (`www.google.co.uk` → `google.{}`), and a two-letter country label is replaced by `{}`
//!   (`de.search.yahoo.com` → `{}.search.yahoo.com`). Search is deliberately not matched by
//!   parent domain: `docs.google.com` is not a search engine.
//!
//! Precedence when several lists match: ai_assistant, email, search, social.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::error::{Error, Result};

static SEARCH_ENGINES_YML: &str = include_str!("../../data/referrers/matomo/SearchEngines.yml");
static SOCIALS_YML: &str = include_str!("../../data/referrers/matomo/Socials.yml");
static AI_ASSISTANTS_YML: &str = include_str!("../../data/referrers/matomo/AIAssistants.yml");

/// Webmail hosts (ours; Matomo's lists have no email category). A referrer whose host is one
/// of these or a subdomain of one is `email`, and so is any host whose first label is
/// `webmail` (cPanel, Roundcube and ISP webmails). Android package names are included for
/// `android-app://` referrers from mail apps.
pub const EMAIL_HOSTS: &[&str] = &[
    "mail.google.com",
    "inbox.google.com",
    "com.google.android.gm",
    "outlook.live.com",
    "outlook.office.com",
    "outlook.office365.com",
    "mail.live.com",
    "outlook.com",
    "com.microsoft.office.outlook",
    "mail.yahoo.com",
    "mail.yahoo.co.jp",
    "com.yahoo.mobile.client.android.mail",
    "mail.aol.com",
    "mail.proton.me",
    "mail.protonmail.com",
    "mail.yandex.ru",
    "mail.yandex.com",
    "e.mail.ru",
    "mail.zoho.com",
    "mail.zoho.eu",
    "app.fastmail.com",
    "www.fastmail.com",
    "mail.gmx.net",
    "mail.gmx.com",
    "navigator.gmx.net",
    "mail.web.de",
    "app.tuta.com",
    "mail.tutanota.com",
    "mail.qq.com",
    "mail.163.com",
    "mail.126.com",
    "mail.naver.com",
    "mail.daum.net",
    "email.seznam.cz",
    "app.hey.com",
    "mail.mail.com",
    "www.icloud.com/mail",
    "mail.comcast.net",
    "webmail.orange.fr",
    "mail.libero.it",
];

/// Where a click came from, by kind of referrer. Dimension value via [`ReferrerMedium::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReferrerMedium {
    /// A search engine (Matomo `SearchEngines.yml`).
    Search,
    /// A social network (Matomo `Socials.yml`).
    Social,
    /// An AI assistant (Matomo `AIAssistants.yml`).
    AiAssistant,
    /// A webmail client ([`EMAIL_HOSTS`]).
    Email,
    /// The service's own short-link hosts (`EnrichConfig::own_hosts`).
    Internal,
    /// Any other or unparseable referrer.
    Unknown,
    /// No referrer at all (absent or empty header).
    Direct,
}

impl ReferrerMedium {
    /// Dimension value: `search|social|ai_assistant|email|internal|unknown|direct`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReferrerMedium::Search => "search",
            ReferrerMedium::Social => "social",
            ReferrerMedium::AiAssistant => "ai_assistant",
            ReferrerMedium::Email => "email",
            ReferrerMedium::Internal => "internal",
            ReferrerMedium::Unknown => "unknown",
            ReferrerMedium::Direct => "direct",
        }
    }

    /// Inverse of [`ReferrerMedium::as_str`].
    pub fn from_str_opt(s: &str) -> Option<ReferrerMedium> {
        Some(match s {
            "search" => ReferrerMedium::Search,
            "social" => ReferrerMedium::Social,
            "ai_assistant" => ReferrerMedium::AiAssistant,
            "email" => ReferrerMedium::Email,
            "internal" => ReferrerMedium::Internal,
            "unknown" => ReferrerMedium::Unknown,
            "direct" => ReferrerMedium::Direct,
            _ => return None,
        })
    }
}

/// host → list of (optional path prefix, source name).
#[derive(Default)]
struct HostTable(HashMap<String, Vec<(Option<String>, String)>>);

impl HostTable {
    fn insert(&mut self, entry: &str, name: &str) {
        let entry = entry.trim().to_ascii_lowercase();
        let (host, path) = match entry.find('/') {
            Some(i) => (entry[..i].to_owned(), Some(entry[i..].to_owned())),
            None => (entry, None),
        };
        if !host.is_empty() {
            self.0.entry(host).or_default().push((path, name.to_owned()));
        }
    }

    fn get(&self, host: &str, path: &str) -> Option<&str> {
        let entries = self.0.get(host)?;
        // Path-scoped entries are more specific: try them first.
        entries
            .iter()
            .filter(|(p, _)| p.as_deref().is_some_and(|p| path.starts_with(p)))
            .chain(entries.iter().filter(|(p, _)| p.is_none()))
            .map(|(_, name)| name.as_str())
            .next()
    }

    /// Looks up `host` and each parent domain with at least two labels.
    fn get_with_parents(&self, host: &str, path: &str) -> Option<&str> {
        let mut h = host;
        loop {
            if let Some(name) = self.get(h, path) {
                return Some(name);
            }
            let (_, rest) = h.split_once('.')?;
            if !rest.contains('.') {
                return None;
            }
            h = rest;
        }
    }

    fn len(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }
}

#[derive(Deserialize)]
struct SearchEngineConfig {
    urls: Vec<String>,
}

/// The compiled referrer lists. Immutable; shared between enricher clones.
pub struct MediumLists {
    search: HostTable,
    social: HostTable,
    ai: HostTable,
    email: HostTable,
}

/// A medium match and the list entry's name (e.g. `("search", "Google")`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediumMatch<'a> {
    /// The medium.
    pub medium: ReferrerMedium,
    /// Source name from the list (`"Google"`, `"Facebook"`, `"ChatGPT"`, `"email"`), or
    /// `""` for [`ReferrerMedium::Unknown`].
    pub source: &'a str,
}

impl MediumLists {
    /// Loads the vendored Matomo lists and [`EMAIL_HOSTS`].
    ///
    /// # Errors
    /// [`Error::EnrichData`] if a vendored YAML file does not parse (a build defect).
    pub fn bundled() -> Result<MediumLists> {
        let se: BTreeMap<String, Vec<SearchEngineConfig>> =
            serde_yaml_ng::from_str(SEARCH_ENGINES_YML).map_err(|e| Error::EnrichData(format!("Matomo SearchEngines.yml: {e}")))?;
        let socials: BTreeMap<String, Vec<String>> = serde_yaml_ng::from_str(SOCIALS_YML).map_err(|e| Error::EnrichData(format!("Matomo Socials.yml: {e}")))?;
        let ais: BTreeMap<String, Vec<String>> =
            serde_yaml_ng::from_str(AI_ASSISTANTS_YML).map_err(|e| Error::EnrichData(format!("Matomo AIAssistants.yml: {e}")))?;

        let mut search = HostTable::default();
        for (name, configs) in &se {
            for url in configs.iter().flat_map(|c| &c.urls) {
                search.insert(url, name);
            }
        }
        let mut social = HostTable::default();
        for (name, hosts) in &socials {
            hosts.iter().for_each(|h| social.insert(h, name));
        }
        let mut ai = HostTable::default();
        for (name, hosts) in &ais {
            hosts.iter().for_each(|h| ai.insert(h, name));
        }
        let mut email = HostTable::default();
        EMAIL_HOSTS.iter().for_each(|h| email.insert(h, "email"));
        Ok(MediumLists { search, social, ai, email })
    }

    /// Number of (host, path) entries per list: (search, social, ai, email).
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        (self.search.len(), self.social.len(), self.ai.len(), self.email.len())
    }

    /// Medium of a lower-case ASCII `host` (no port, no trailing dot) with URL `path`.
    /// Own hosts are handled by the caller; this never returns `Internal` or `Direct`.
    pub fn classify<'a>(&'a self, host: &str, path: &str) -> MediumMatch<'a> {
        let hit = |medium, source| Some(MediumMatch { medium, source });
        self.ai
            .get_with_parents(host, path)
            .and_then(|s| hit(ReferrerMedium::AiAssistant, s))
            .or_else(|| {
                if host.starts_with("webmail.") {
                    return hit(ReferrerMedium::Email, "email");
                }
                self.email.get_with_parents(host, path).and_then(|s| hit(ReferrerMedium::Email, s))
            })
            .or_else(|| self.search_engine(host, path).and_then(|s| hit(ReferrerMedium::Search, s)))
            .or_else(|| self.social.get_with_parents(host, path).and_then(|s| hit(ReferrerMedium::Social, s)))
            .unwrap_or(MediumMatch { medium: ReferrerMedium::Unknown, source: "" })
    }

    fn search_engine(&self, host: &str, path: &str) -> Option<&str> {
        if let Some(name) = self.search.get(host, path) {
            return Some(name);
        }
        let lossy = lossy_host(host);
        if lossy != host
            && let Some(name) = self.search.get(&lossy, path)
        {
            return Some(name);
        }
        // Also try with only the prefix stripped (`www.bing.com` → `bing.com`).
        let stripped = strip_lossy_prefixes(host);
        if stripped != host && stripped != lossy {
            return self.search.get(&stripped, path);
        }
        None
    }
}

/// Drops a leading `www`, `ww2`, `www2`, ... or `search.` label and every `m.` label.
fn strip_lossy_prefixes(host: &str) -> String {
    let mut labels: Vec<&str> = host.split('.').collect();
    if labels.len() > 2 {
        let first = labels[0];
        let www = first.starts_with('w') && first.trim_start_matches('w').bytes().all(|b| b.is_ascii_digit());
        if www || first == "search" {
            labels.remove(0);
        }
    }
    if labels.len() > 2 {
        let last = labels.len() - 1;
        let mut i = 0;
        labels.retain(|l| {
            let keep = !(*l == "m" && i < last);
            i += 1;
            keep
        });
    }
    labels.join(".")
}

/// True if a public suffix ends in a two-letter (country-code) TLD: `de`, `co.uk`, `com.br`.
/// Generic TLDs (`com`, `org`) are not replaced by `{}`, as in Matomo.
fn is_cc_suffix(suffix: &[u8]) -> bool {
    let last = suffix.rsplit(|&b| b == b'.').next().unwrap_or(suffix);
    last.len() == 2 && last.iter().all(u8::is_ascii_lowercase)
}

/// Matomo-style lossy host: see the module documentation.
fn lossy_host(host: &str) -> String {
    let stripped = strip_lossy_prefixes(host);
    let suffix_len = psl::suffix(stripped.as_bytes())
        .filter(|s| s.is_known() && s.as_bytes().len() < stripped.len() && is_cc_suffix(s.as_bytes()))
        .map_or(0, |s| s.as_bytes().len());
    let (head, has_suffix) = if suffix_len > 0 { (&stripped[..stripped.len() - suffix_len - 1], true) } else { (stripped.as_str(), false) };
    let mut out: Vec<&str> = head.split('.').map(|l| if l.len() == 2 && l.bytes().all(|b| b.is_ascii_lowercase()) { "{}" } else { l }).collect();
    if has_suffix {
        out.push("{}");
    }
    // A host made only of placeholders matches nothing useful.
    if out.iter().all(|l| *l == "{}") {
        return stripped;
    }
    out.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_forms() {
        assert_eq!(lossy_host("www.google.co.uk"), "google.{}");
        assert_eq!(lossy_host("google.de"), "google.{}");
        assert_eq!(lossy_host("de.search.yahoo.com"), "{}.search.yahoo.com");
        assert_eq!(lossy_host("www.google.com"), "google.com");
        assert_eq!(lossy_host("images.google.com.br"), "images.google.{}");
        assert_eq!(lossy_host("m.yandex.ru"), "yandex.{}");
        assert_eq!(strip_lossy_prefixes("www2.bing.com"), "bing.com");
        assert_eq!(strip_lossy_prefixes("search.example.com"), "example.com");
        assert_eq!(strip_lossy_prefixes("m.example.com"), "example.com");
        assert_eq!(strip_lossy_prefixes("example.com"), "example.com");
    }

    #[test]
    fn as_str_round_trips() {
        for m in [
            ReferrerMedium::Search,
            ReferrerMedium::Social,
            ReferrerMedium::AiAssistant,
            ReferrerMedium::Email,
            ReferrerMedium::Internal,
            ReferrerMedium::Unknown,
            ReferrerMedium::Direct,
        ] {
            assert_eq!(ReferrerMedium::from_str_opt(m.as_str()), Some(m));
        }
    }
}
