//! Crawler and link-preview detection from the user agent alone.
//!
//! Two vendored pattern lists are combined (provenance in `data/README.md`):
//!
//! 1. **CrawlerDetect** (MIT; PyPI `crawlerdetect` 0.4.2 = JayBizzle/Crawler-Detect 1.4.1):
//!    delete every match of the 52 exclusion regexes from the user agent, trim, and flag it
//!    if any of the 1,462 crawler regexes matches what is left. Both lists match
//!    case-insensitively and are each compiled into **one** alternation, exactly as
//!    upstream's `preg_replace('/a|b|.../i')` / `preg_match('/x|y|.../i')` do.
//! 2. **crawler-user-agents** (MIT, 1,504 case-sensitive patterns), matched against the
//!    raw user agent, again as one alternation. It adds many newer AI, monitoring and
//!    preview fetchers that CrawlerDetect misses.
//!
//! The `regex` crate has no look-around. The one CrawlerDetect pattern that uses it,
//! `Yandex(?!Search)`, and any other pattern that `regex` rejects, is compiled separately
//! with `fancy-regex` and only evaluated when the fast alternation did not already match.
//! Measured rates on the labelled fixtures are in `data/README.md` and asserted by
//! `tests/enrich_bots.rs`.

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::error::{Error, Result};

static CRAWLERDETECT_JSON: &str = include_str!("../../data/bots/crawlerdetect-patterns.json");
static CRAWLER_USER_AGENTS_JSON: &str = include_str!("../../data/bots/crawler-user-agents.json");

/// Compiled-program size limit for the big alternations (the default 10 MB is too small
/// for 1,500 case-insensitive alternatives).
const REGEX_SIZE_LIMIT: usize = 256 << 20;
/// Lazy-DFA cache per regex; large so uncached user agents rarely fall back to the NFA.
const DFA_SIZE_LIMIT: usize = 32 << 20;

#[derive(Deserialize)]
struct CrawlerDetectFile {
    crawlers: Vec<String>,
    exclusions: Vec<String>,
}

#[derive(Deserialize)]
struct CrawlerUserAgentsEntry {
    pattern: String,
}

/// A set of patterns compiled as one fast alternation plus the few that need
/// `fancy-regex` (look-around), evaluated only if the fast one does not match.
struct PatternSet {
    fast: Option<Regex>,
    slow: Vec<fancy_regex::Regex>,
}

impl PatternSet {
    fn compile(name: &str, patterns: &[String], case_insensitive: bool) -> Result<PatternSet> {
        let (mut plain, mut slow) = (Vec::new(), Vec::new());
        for p in patterns {
            if regex::Regex::new(p).is_ok() {
                plain.push(format!("(?:{p})"));
            } else {
                let src = if case_insensitive { format!("(?i:{p})") } else { p.clone() };
                let re = fancy_regex::Regex::new(&src).map_err(|e| Error::EnrichData(format!("{name} pattern {p:?} does not compile: {e}")))?;
                slow.push(re);
            }
        }
        let fast = if plain.is_empty() {
            None
        } else {
            Some(
                RegexBuilder::new(&plain.join("|"))
                    .case_insensitive(case_insensitive)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(DFA_SIZE_LIMIT)
                    .build()
                    .map_err(|e| Error::EnrichData(format!("{name} patterns do not compile: {e}")))?,
            )
        };
        Ok(PatternSet { fast, slow })
    }

    fn is_match(&self, text: &str) -> bool {
        self.fast.as_ref().is_some_and(|re| re.is_match(text)) || self.slow.iter().any(|re| re.is_match(text).unwrap_or(false))
    }

    fn len(&self) -> usize {
        self.slow.len() + usize::from(self.fast.is_some())
    }
}

/// The compiled bot lists. Immutable; shared between enricher clones behind an `Arc`.
pub struct BotClassifier {
    cd_exclusions: Regex,
    cd_crawlers: PatternSet,
    cua: PatternSet,
}

/// Which list flagged a user agent (for measurements and debugging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotVerdict {
    /// Not a known bot.
    Human,
    /// Flagged by CrawlerDetect (after exclusions).
    CrawlerDetect,
    /// Flagged by crawler-user-agents only.
    CrawlerUserAgents,
}

impl BotClassifier {
    /// Compiles the vendored lists (about 3,000 patterns; a few hundred milliseconds in an
    /// optimized build).
    ///
    /// # Errors
    /// [`Error::EnrichData`] if the vendored JSON does not parse or a pattern compiles
    /// with neither `regex` nor `fancy-regex` (a build defect).
    pub fn bundled() -> Result<BotClassifier> {
        let cd: CrawlerDetectFile = serde_json::from_str(CRAWLERDETECT_JSON).map_err(|e| Error::EnrichData(format!("crawlerdetect-patterns.json: {e}")))?;
        let cua: Vec<CrawlerUserAgentsEntry> =
            serde_json::from_str(CRAWLER_USER_AGENTS_JSON).map_err(|e| Error::EnrichData(format!("crawler-user-agents.json: {e}")))?;
        let cua: Vec<String> = cua.into_iter().map(|e| e.pattern).collect();
        let cd_exclusions = RegexBuilder::new(&cd.exclusions.join("|"))
            .case_insensitive(true)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| Error::EnrichData(format!("CrawlerDetect exclusions: {e}")))?;
        Ok(BotClassifier {
            cd_exclusions,
            cd_crawlers: PatternSet::compile("CrawlerDetect", &cd.crawlers, true)?,
            cua: PatternSet::compile("crawler-user-agents", &cua, false)?,
        })
    }

    /// True if either list flags the user agent. An empty user agent is not flagged here;
    /// the enrichment flags it (a missing user agent is a bot, see `user_agent::classify`).
    pub fn is_bot(&self, ua: &str) -> bool {
        self.verdict(ua) != BotVerdict::Human
    }

    /// Like [`BotClassifier::is_bot`], but says which list matched first.
    pub fn verdict(&self, ua: &str) -> BotVerdict {
        if self.crawler_detect(ua) {
            BotVerdict::CrawlerDetect
        } else if self.cua.is_match(ua) {
            BotVerdict::CrawlerUserAgents
        } else {
            BotVerdict::Human
        }
    }

    /// CrawlerDetect's algorithm alone: strip exclusions, trim, match crawlers.
    pub fn crawler_detect(&self, ua: &str) -> bool {
        let stripped = self.cd_exclusions.replace_all(ua, "");
        let stripped = stripped.trim();
        !stripped.is_empty() && self.cd_crawlers.is_match(stripped)
    }

    /// Number of compiled matchers (fast alternations + look-around fallbacks), for logs.
    pub fn matcher_count(&self) -> usize {
        1 + self.cd_crawlers.len() + self.cua.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookaround_pattern_is_honoured() {
        let set = PatternSet::compile("t", &["Yandex(?!Search)".to_owned(), "^b0t$".to_owned()], true).expect("compiles");
        assert_eq!(set.slow.len(), 1, "look-around goes to fancy-regex");
        assert!(set.is_match("Mozilla/5.0 (compatible; YandexBot/3.0)"));
        assert!(set.is_match("yandex"));
        assert!(!set.is_match("Mozilla/5.0 YandexSearch/7.0"));
        assert!(!set.is_match("yandexsearch"));
        assert!(set.is_match("B0T"));
        assert!(!set.is_match("b0ts"));
    }

    #[test]
    fn case_sensitivity_follows_the_list() {
        let set = PatternSet::compile("t", &["Googlebot\\/".to_owned()], false).expect("compiles");
        assert!(set.is_match("Googlebot/2.1"));
        assert!(!set.is_match("googlebot/2.1"));
    }
}
