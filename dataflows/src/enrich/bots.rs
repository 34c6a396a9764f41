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
//!    preview fetchers that CrawlerDetect misses. Sluice's own additions
//!    (`data/bots/sluice-additions.json`, same format, each with its source: link-preview
//!    fetchers that neither list knows, e.g. Bluesky's Cardyb) join this alternation.
//!
//! Most patterns of both lists are plain words (`Googlebot`, `facebookexternalhit`): those
//! are matched by one Aho-Corasick automaton (`aho-corasick`, ASCII case folding for the
//! case-insensitive list), the rest (anchors, classes, alternations: ~6 % of each list)
//! by one `regex` alternation. The verdict is the one the whole alternation would give: a
//! literal pattern matches anywhere in the text iff the automaton finds it, and for a
//! case-insensitive list and a user agent with non-ASCII characters (where Unicode case
//! folding could map e.g. `K`, U+212A, to `k`) the whole list is matched as one `regex`
//! alternation, compiled on first use. Why: an unanchored alternation of ~1,500
//! case-insensitive words gives `regex` no literal prefilter, and its lazy DFA builds new
//! states for nearly every new user agent (most of enrichment's time in
//! `sluice bench dataflow`).
//!
//! The `regex` crate has no look-around. The one CrawlerDetect pattern that uses it,
//! `Yandex(?!Search)`, and any other pattern that `regex` rejects, is compiled separately
//! with `fancy-regex` and only evaluated when the fast alternation did not already match.
//! Measured rates on the labelled fixtures are in `data/README.md` and asserted by
//! `tests/enrich_bots.rs`.

use std::sync::OnceLock;

use aho_corasick::AhoCorasick;
use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::error::{Error, Result};

static CRAWLERDETECT_JSON: &str = include_str!("../../data/bots/crawlerdetect-patterns.json");
static CRAWLER_USER_AGENTS_JSON: &str = include_str!("../../data/bots/crawler-user-agents.json");
static SLUICE_ADDITIONS_JSON: &str = include_str!("../../data/bots/sluice-additions.json");

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

/// A set of patterns: the plain words in one Aho-Corasick automaton, the other `regex`
/// patterns in one alternation, plus the few that need `fancy-regex` (look-around),
/// evaluated only if neither of the others matches (module docs).
struct PatternSet {
    words: Option<AhoCorasick>,
    fast: Option<Regex>,
    /// Every `regex` pattern (words included) as one alternation, for a case-insensitive
    /// set and a text with non-ASCII characters; `None` for a case-sensitive set.
    whole: Option<WholeAlternation>,
    slow: Vec<fancy_regex::Regex>,
}

/// The whole alternation of a case-insensitive set, compiled on first use.
struct WholeAlternation {
    source: String,
    re: OnceLock<Option<Regex>>,
}

/// The text a pattern matches if it is a plain word: ASCII only, no regex syntax except
/// escaped punctuation (`\/`, `\.`, `\(`); `None` otherwise (and for an empty pattern).
fn as_word(pattern: &str) -> Option<String> {
    let mut word = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => word.push(e),
                _ => return None,
            },
            '.' | '^' | '$' | '|' | '?' | '*' | '+' | '(' | ')' | '[' | ']' | '{' | '}' | '#' => return None,
            c if c.is_ascii() && !c.is_ascii_control() => word.push(c),
            _ => return None,
        }
    }
    (!word.is_empty()).then_some(word)
}

fn build_regex(name: &str, source: &str, case_insensitive: bool) -> Result<Regex> {
    RegexBuilder::new(source)
        .case_insensitive(case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| Error::EnrichData(format!("{name} patterns do not compile: {e}")))
}

impl PatternSet {
    fn compile(name: &str, patterns: &[String], case_insensitive: bool) -> Result<PatternSet> {
        let (mut words, mut plain, mut all, mut slow) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for p in patterns {
            if regex::Regex::new(p).is_ok() {
                all.push(format!("(?:{p})"));
                match as_word(p) {
                    Some(w) => words.push(w),
                    None => plain.push(format!("(?:{p})")),
                }
            } else {
                let src = if case_insensitive { format!("(?i:{p})") } else { p.clone() };
                let re = fancy_regex::Regex::new(&src).map_err(|e| Error::EnrichData(format!("{name} pattern {p:?} does not compile: {e}")))?;
                slow.push(re);
            }
        }
        let words = if words.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(case_insensitive)
                    .build(&words)
                    .map_err(|e| Error::EnrichData(format!("{name} words do not compile: {e}")))?,
            )
        };
        let fast = if plain.is_empty() { None } else { Some(build_regex(name, &plain.join("|"), case_insensitive)?) };
        let whole = (case_insensitive && !all.is_empty()).then(|| WholeAlternation { source: all.join("|"), re: OnceLock::new() });
        Ok(PatternSet { words, fast, whole, slow })
    }

    fn is_match(&self, text: &str) -> bool {
        let regex_match = match &self.whole {
            // Unicode case folding reaches ASCII letters from a few non-ASCII ones.
            Some(whole) if !text.is_ascii() => whole
                .re
                .get_or_init(|| {
                    build_regex("whole", &whole.source, true)
                        .inspect_err(|e| tracing::error!(error = %e, "bot patterns: the whole alternation does not compile"))
                        .ok()
                })
                .as_ref()
                .is_some_and(|re| re.is_match(text)),
            _ => self.words.as_ref().is_some_and(|ac| ac.is_match(text)) || self.fast.as_ref().is_some_and(|re| re.is_match(text)),
        };
        regex_match || self.slow.iter().any(|re| re.is_match(text).unwrap_or(false))
    }

    fn len(&self) -> usize {
        self.slow.len() + usize::from(self.fast.is_some()) + usize::from(self.words.is_some())
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
    /// Flagged by crawler-user-agents (or Sluice's additions to it) only.
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
        let additions: Vec<CrawlerUserAgentsEntry> =
            serde_json::from_str(SLUICE_ADDITIONS_JSON).map_err(|e| Error::EnrichData(format!("sluice-additions.json: {e}")))?;
        let cua: Vec<String> = cua.into_iter().chain(additions).map(|e| e.pattern).collect();
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
    fn words_are_plain_ascii_patterns_only() {
        assert_eq!(as_word("Googlebot\\/2").as_deref(), Some("Googlebot/2"));
        assert_eq!(as_word("Mastodon\\.social").as_deref(), Some("Mastodon.social"));
        assert_eq!(as_word("Ask Jeeves").as_deref(), Some("Ask Jeeves"));
        for not_a_word in ["^curl", "bot$", "a|b", "[wW]get", "x.y", "a\\d", "(sistrix)", "", "ü-bot", "a{2}", "b+"] {
            assert_eq!(as_word(not_a_word), None, "{not_a_word:?}");
        }
    }

    /// The verdict the lists gave before the word automaton: each list's `regex` patterns
    /// as one alternation, the look-around ones with `fancy-regex`.
    struct WholeLists {
        exclusions: Regex,
        cd: (Regex, Vec<fancy_regex::Regex>),
        cua: (Regex, Vec<fancy_regex::Regex>),
    }

    impl WholeLists {
        fn new() -> WholeLists {
            let cd: CrawlerDetectFile = serde_json::from_str(CRAWLERDETECT_JSON).expect("json");
            let cua: Vec<CrawlerUserAgentsEntry> = serde_json::from_str(CRAWLER_USER_AGENTS_JSON).expect("json");
            let additions: Vec<CrawlerUserAgentsEntry> = serde_json::from_str(SLUICE_ADDITIONS_JSON).expect("json");
            let cua: Vec<String> = cua.into_iter().chain(additions).map(|e| e.pattern).collect();
            let split = |patterns: &[String], ci: bool| {
                let plain: Vec<String> = patterns.iter().filter(|p| regex::Regex::new(p).is_ok()).map(|p| format!("(?:{p})")).collect();
                let slow = patterns
                    .iter()
                    .filter(|p| regex::Regex::new(p).is_err())
                    .map(|p| fancy_regex::Regex::new(&if ci { format!("(?i:{p})") } else { p.clone() }).expect("fancy"))
                    .collect();
                (build_regex("t", &plain.join("|"), ci).expect("compiles"), slow)
            };
            WholeLists {
                exclusions: RegexBuilder::new(&cd.exclusions.join("|")).case_insensitive(true).size_limit(REGEX_SIZE_LIMIT).build().expect("compiles"),
                cd: split(&cd.crawlers, true),
                cua: split(&cua, false),
            }
        }

        fn verdict(&self, ua: &str) -> BotVerdict {
            let any = |(re, slow): &(Regex, Vec<fancy_regex::Regex>), t: &str| re.is_match(t) || slow.iter().any(|r| r.is_match(t).unwrap_or(false));
            let stripped = self.exclusions.replace_all(ua, "");
            let stripped = stripped.trim();
            if !stripped.is_empty() && any(&self.cd, stripped) {
                BotVerdict::CrawlerDetect
            } else if any(&self.cua, ua) {
                BotVerdict::CrawlerUserAgents
            } else {
                BotVerdict::Human
            }
        }
    }

    fn fixture_lines(path: &str) -> Vec<String> {
        use std::io::BufRead;
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (set by cargo test and nextest at run time)");
        let path = format!("{dir}/{path}");
        let f = std::fs::File::open(&path).expect("fixture exists");
        let r: Box<dyn std::io::Read> = if path.ends_with(".gz") { Box::new(flate2::read::GzDecoder::new(f)) } else { Box::new(f) };
        std::io::BufReader::new(r).lines().map(|l| l.expect("utf-8 line")).collect()
    }

    #[test]
    fn verdicts_equal_the_whole_alternations_on_every_fixture_user_agent() {
        let (new, old) = (BotClassifier::bundled().expect("bundled"), WholeLists::new());
        let instances: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(CRAWLER_USER_AGENTS_JSON)
            .expect("json")
            .iter()
            .flat_map(|e| e["instances"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let mut uas = fixture_lines("tests/data/bots/crawlerdetect-fixture-devices.txt.gz");
        uas.extend(fixture_lines("tests/data/bots/crawlerdetect-fixture-crawlers.txt"));
        uas.extend(instances);
        uas.extend(
            [
                "",
                " ",
                "\u{17F}lurp/3.0",      // long s: folds to 's' under (?i)
                "\u{212A}inza Crawler", // Kelvin sign: folds to 'k'
                "SLURP",
                "Mozilla/5.0 (Linux; Android 14; \u{5317}\u{4EAC}) Googlebot/2.1",
                "curl/8.5.0",
                "xcurl/8.5.0",
            ]
            .map(str::to_owned),
        );
        assert!(uas.len() > 170_000, "{}", uas.len());
        let mut bots = 0;
        for ua in &uas {
            let (got, want) = (new.verdict(ua), old.verdict(ua));
            assert_eq!(got, want, "{ua:?}");
            bots += usize::from(got != BotVerdict::Human);
        }
        assert!(bots > 5_000, "the fixtures' crawlers are flagged: {bots}");
        assert_eq!(new.verdict("\u{17F}lurp/3.0"), BotVerdict::CrawlerDetect);
    }

    #[test]
    fn case_sensitivity_follows_the_list() {
        let set = PatternSet::compile("t", &["Googlebot\\/".to_owned()], false).expect("compiles");
        assert!(set.is_match("Googlebot/2.1"));
        assert!(!set.is_match("googlebot/2.1"));
    }
}
