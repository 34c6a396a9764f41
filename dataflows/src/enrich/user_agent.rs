//! User agent → browser family, OS family and device family with the uap-core rules.
//!
//! The rules are uap-core's `regexes.yaml` (Apache-2.0), vendored under
//! `dataflows/data/useragents/` from a newer uap-core commit than the copy inside the
//! `ua-parser` crate (provenance in `data/README.md`), compiled into the binary with
//! `include_str!` and evaluated by the `ua-parser` crate (first matching rule wins, `$n`
//! substitution, case-insensitive device rules, per uap-core `docs/specification.md`).
//! Results that nothing matches are `"Other"`, as the specification says.

use std::sync::Arc;

use ua_parser::Regexes;

use super::bots::BotClassifier;
use super::device_class::{DeviceClass, classify_device};
use crate::error::{Error, Result};

/// uap-core `regexes.yaml` (commit `e3c5e634`, 2026-08-11).
static REGEXES_YAML: &str = include_str!("../../data/useragents/regexes.yaml");

/// Longest user agent we evaluate, in bytes. Longer ones are cut at the last character
/// boundary before this limit: real user agents are far shorter (the longest of the 165,640
/// real ones in the CrawlerDetect fixture is about 1.9 KB), and the cap bounds both regex
/// time and the memory a cache entry can pin.
pub const MAX_UA_BYTES: usize = 2048;

/// The uap-core families of one user agent (all `"Other"` when no rule matched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaParts {
    /// Browser (user agent) family, e.g. `"Chrome"`, `"Mobile Safari"`, `"Googlebot"`.
    pub browser_family: String,
    /// OS family, e.g. `"Windows"`, `"Mac OS X"`, `"iOS"`, `"Android"`.
    pub os_family: String,
    /// Device family, e.g. `"iPhone"`, `"Samsung SM-G950F"`, `"Spider"`, `"Other"`.
    pub device_family: String,
    /// Device brand (`None` when the rule gives none), e.g. `"Apple"`, `"Samsung"`.
    pub device_brand: Option<String>,
    /// Device model (`None` when the rule gives none).
    pub device_model: Option<String>,
}

/// The compiled uap-core rules. Immutable; shared between enricher clones behind an `Arc`.
pub struct UaParser {
    extractor: ua_parser::Extractor<'static>,
}

impl UaParser {
    /// Compiles the vendored uap-core rules (about 1,300 regexes; tens of milliseconds).
    ///
    /// # Errors
    /// [`Error::EnrichData`] if the embedded YAML does not parse or a rule does not compile
    /// (a build defect).
    pub fn bundled() -> Result<UaParser> {
        UaParser::from_yaml(REGEXES_YAML)
    }

    /// Compiles rules in uap-core's `regexes.yaml` format.
    ///
    /// # Errors
    /// [`Error::EnrichData`] if the YAML does not parse or a rule does not compile.
    pub fn from_yaml(yaml: &str) -> Result<UaParser> {
        let regexes: Regexes<'static> = serde_yaml_ng::from_str(yaml).map_err(|e| Error::EnrichData(format!("uap-core regexes.yaml does not parse: {e}")))?;
        let extractor = ua_parser::Extractor::try_from(regexes).map_err(|e| Error::EnrichData(format!("uap-core rules do not compile: {e}")))?;
        Ok(UaParser { extractor })
    }

    /// Parses a user agent (cut to [`MAX_UA_BYTES`]) into its uap-core families.
    pub fn parse(&self, ua: &str) -> UaParts {
        let ua = truncate(ua);
        let browser = self.extractor.ua.extract(ua);
        let os = self.extractor.os.extract(ua);
        let dev = self.extractor.dev.extract(ua);
        UaParts {
            browser_family: browser.map_or_else(|| "Other".to_owned(), |b| b.family.into_owned()),
            os_family: os.map_or_else(|| "Other".to_owned(), |o| o.os.into_owned()),
            device_family: dev.as_ref().map_or_else(|| "Other".to_owned(), |d| d.device.to_string()),
            device_brand: dev.as_ref().and_then(|d| d.brand.as_ref().map(|b| b.to_string())),
            device_model: dev.as_ref().and_then(|d| d.model.as_ref().map(|m| m.to_string())),
        }
    }
}

/// Cuts `ua` to at most [`MAX_UA_BYTES`] bytes on a character boundary.
pub fn truncate(ua: &str) -> &str {
    if ua.len() <= MAX_UA_BYTES {
        return ua;
    }
    let mut end = MAX_UA_BYTES;
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    &ua[..end]
}

/// What enrichment derives from one user agent. Cheap to clone (two `Arc`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaInfo {
    /// Browser family for the `browser` dimension. For bots that uap-core does not know
    /// as a crawler, this is [`BOT_BROWSER`] rather than the browser the bot imitates, so
    /// a preview fetcher never shows up under "Chrome" (case C01).
    pub browser: Arc<str>,
    /// OS family for the `os` dimension (uap-core, `"Other"` when unknown).
    pub os: Arc<str>,
    /// Device class.
    pub device: DeviceClass,
    /// Known crawler, link-preview fetcher or automation client, or no user agent (empty
    /// or whitespace only).
    pub is_bot: bool,
}

/// Browser family reported for bots whose uap-core family is a human browser or unknown.
pub const BOT_BROWSER: &str = "Bot";

/// Whether a click carried no user agent: none at all (stored as `""`), or one that is
/// empty or only whitespace. Real browsers always send one, so such a click is a bot.
pub fn is_missing(ua: &str) -> bool {
    ua.trim().is_empty()
}

/// Classifies one user agent: uap-core families, bot flag (a missing user agent, see
/// [`is_missing`], uap-core's `Spider` device **or** the [`BotClassifier`]) and device
/// class. Uncached; see `Enricher::user_agent`.
pub fn classify(uap: &UaParser, bots: &BotClassifier, ua: &str) -> UaInfo {
    let ua = truncate(ua);
    let parts = uap.parse(ua);
    let spider = parts.device_family == "Spider";
    let is_bot = is_missing(ua) || spider || bots.is_bot(ua);
    let device = classify_device(&parts, ua, is_bot);
    // uap-core names crawlers it knows (device "Spider" or a crawler browser family such as
    // "Googlebot", "FacebookBot"); keep those names. A bot flagged only by our lists keeps
    // the uap-core family only if that family is not a browser people use.
    let browser = if is_bot && !spider && is_human_browser_family(&parts.browser_family) { BOT_BROWSER.to_owned() } else { parts.browser_family };
    UaInfo { browser: Arc::from(browser), os: Arc::from(parts.os_family), device, is_bot }
}

/// True for uap-core browser families that real people browse with (so a bot must not be
/// counted under them). Heuristic: never a family naming a bot, spider or crawler
/// (`FacebookBot`); otherwise the generic families uap-core assigns to engines and web views,
/// plus every family whose name contains a major browser's name (`Chrome Mobile WebView`,
/// `Mobile Safari`, `Firefox (Namoroka)`). Families of HTTP libraries and tools (`curl`,
/// `Python Requests`) and of crawlers uap-core knows (`Googlebot`) are kept as they are.
fn is_human_browser_family(family: &str) -> bool {
    const GENERIC: &[&str] = &["Other", "Mozilla", "WebKit Nightly", "Apple Mail", "IE", "Edge"];
    const NAMES: &[&str] = &[
        "Chrome",
        "Chromium",
        "Firefox",
        "Safari",
        "Opera",
        "Edge",
        "IE",
        "Samsung Internet",
        "UC Browser",
        "Yandex Browser",
        "Vivaldi",
        "Brave",
        "Silk",
        "WebView",
        "Android",
        "Facebook",
        "Instagram",
        "Whale",
        "Miui",
        "QQ",
        "Maxthon",
        "Konqueror",
        "Epiphany",
        "BlackBerry",
        "Iceweasel",
        "SeaMonkey",
        "Pale Moon",
        "Puffin",
        "NetFront",
        "Nokia",
        "Bon Echo",
        "Minefield",
        "Namoroka",
        "Shiretoko",
        "GranParadiso",
    ];
    let lower = family.to_ascii_lowercase();
    if ["bot", "spider", "crawler"].iter().any(|w| lower.contains(w)) {
        return false;
    }
    GENERIC.contains(&family) || NAMES.iter().any(|n| family.contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        let s = "é".repeat(MAX_UA_BYTES); // 2 bytes per char
        let t = truncate(&s);
        assert_eq!(t.len(), MAX_UA_BYTES);
        let s = format!("a{}", "é".repeat(MAX_UA_BYTES));
        let t = truncate(&s);
        assert_eq!(t.len(), MAX_UA_BYTES - 1);
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn human_browser_families() {
        for f in ["Chrome", "Chrome Mobile WebView", "Mobile Safari", "Firefox", "Other", "Edge"] {
            assert!(is_human_browser_family(f), "{f}");
        }
        for f in ["Googlebot", "FacebookBot", "Twitterbot", "WhatsApp", "Python Requests", "curl", "HuaweiSymantecSpider"] {
            assert!(!is_human_browser_family(f), "{f}");
        }
    }
}
