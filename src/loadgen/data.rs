//! The real-world inputs of the traffic generator: user agents, referrers and the country
//! mix of client addresses. Provenance and licences: `data/README.md`.
//!
//! - Human user agents: `data/human_user_agents.txt`, 2,041 real browser user agents sampled
//!   from CrawlerDetect's labelled non-bot fixture (MIT).
//! - Bot user agents: the 2,123 real `instances` of crawler-user-agents (MIT), read from the
//!   copy the enrichment stage already vendors (`dataflows/data/bots/`), split into
//!   link-preview fetchers (chat and social apps building preview cards, case C01) and other
//!   crawlers.
//! - Referrers: URLs on hosts of Matomo's search-engine, social and AI-assistant lists
//!   (CC0), plus webmail hosts, in the shapes browsers send (mostly origin-only, since
//!   `strict-origin-when-cross-origin` is the default policy).

use anyhow::Context;
use serde::Deserialize;

static HUMAN_USER_AGENTS: &str = include_str!("data/human_user_agents.txt");
static CRAWLER_USER_AGENTS_JSON: &str = include_str!("../../dataflows/data/bots/crawler-user-agents.json");

/// Case-insensitive substrings that mark a link-preview fetcher among the crawler instances.
pub const PREVIEW_MARKERS: &[&str] = &[
    "facebookexternalhit",
    "twitterbot",
    "slackbot",
    "discordbot",
    "whatsapp",
    "telegrambot",
    "linkedinbot",
    "mastodon",
    "pinterest",
    "redditbot",
    "embedly",
    "vkshare",
    "iframely",
    "skypeuripreview",
    "applebot",
    "bluesky",
    "snapchat",
    "viber",
    "kakaotalk",
];

/// User agents by kind. Every string is a valid HTTP header value as sent (trimmed, no
/// control characters), so the server records exactly this text.
#[derive(Debug, Clone)]
pub struct UserAgents {
    /// Real browsers.
    pub humans: Vec<String>,
    /// Link-preview fetchers.
    pub previews: Vec<String>,
    /// Other crawlers, monitors and tools.
    pub crawlers: Vec<String>,
}

#[derive(Deserialize)]
struct CrawlerEntry {
    #[serde(default)]
    instances: Vec<String>,
}

/// Whether `ua` survives a trip through an HTTP header unchanged: non-empty, no leading or
/// trailing whitespace (servers strip it), no control characters, valid UTF-8 text.
pub fn sendable(ua: &str) -> bool {
    !ua.is_empty() && ua.trim() == ua && !ua.chars().any(|c| c.is_control())
}

impl UserAgents {
    /// Loads the vendored lists (deduplicated, in file order).
    ///
    /// Errors if the embedded crawler list is not the expected JSON (a build defect).
    pub fn load() -> anyhow::Result<UserAgents> {
        let mut seen = std::collections::HashSet::new();
        let humans: Vec<String> = HUMAN_USER_AGENTS.lines().filter(|l| sendable(l)).filter(|l| seen.insert(*l)).map(str::to_owned).collect();
        let entries: Vec<CrawlerEntry> = serde_json::from_str(CRAWLER_USER_AGENTS_JSON).context("vendored crawler-user-agents.json is not valid")?;
        let (mut previews, mut crawlers) = (Vec::new(), Vec::new());
        let mut seen = std::collections::HashSet::new();
        for ua in entries.into_iter().flat_map(|e| e.instances) {
            if !sendable(&ua) || !seen.insert(ua.clone()) {
                continue;
            }
            let lower = ua.to_ascii_lowercase();
            if PREVIEW_MARKERS.iter().any(|m| lower.contains(m)) {
                previews.push(ua);
            } else {
                crawlers.push(ua);
            }
        }
        anyhow::ensure!(!humans.is_empty() && !previews.is_empty() && !crawlers.is_empty(), "vendored user-agent lists are empty");
        Ok(UserAgents { humans, previews, crawlers })
    }
}

/// Where a click came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Medium {
    /// No `Referer` header.
    Direct,
    /// A search engine.
    Search,
    /// A social network.
    Social,
    /// A webmail client.
    Email,
    /// An AI assistant.
    AiAssistant,
}

/// Share of human clicks per medium, in per mille (sums to 1000).
pub const HUMAN_MEDIUM_MIX: &[(Medium, u32)] =
    &[(Medium::Direct, 350), (Medium::Search, 290), (Medium::Social, 230), (Medium::Email, 90), (Medium::AiAssistant, 40)];

/// Share of bot requests per medium, in per mille (preview fetchers send no referrer).
pub const BOT_MEDIUM_MIX: &[(Medium, u32)] = &[(Medium::Direct, 920), (Medium::Social, 60), (Medium::Search, 20)];

/// Referrer URLs per medium.
pub fn referrers(medium: Medium) -> &'static [&'static str] {
    match medium {
        Medium::Direct => &[],
        Medium::Search => &[
            "https://www.google.com/",
            "https://www.google.com/",
            "https://www.google.com/search?q=url+shortener+analytics",
            "https://www.google.co.uk/",
            "https://www.google.de/",
            "https://www.google.com.br/",
            "https://www.google.co.in/",
            "https://www.bing.com/",
            "https://www.bing.com/search?q=sluice+links&form=QBLH",
            "https://duckduckgo.com/",
            "https://search.yahoo.com/",
            "https://yandex.ru/search/?text=%D1%81%D1%81%D1%8B%D0%BB%D0%BA%D0%B0",
            "https://www.baidu.com/s?wd=%E7%9F%AD%E9%93%BE%E6%8E%A5",
            "https://search.brave.com/",
            "https://www.ecosia.org/",
            "https://www.qwant.com/",
        ],
        Medium::Social => &[
            "https://t.co/",
            "https://t.co/",
            "https://www.facebook.com/",
            "https://l.facebook.com/",
            "https://m.facebook.com/",
            "https://www.linkedin.com/",
            "https://lnkd.in/",
            "https://www.reddit.com/",
            "https://out.reddit.com/",
            "https://news.ycombinator.com/",
            "https://l.instagram.com/",
            "https://www.youtube.com/",
            "https://away.vk.com/",
            "https://mastodon.social/",
            "https://www.threads.net/",
            "https://bsky.app/",
            "https://www.pinterest.com/",
            "https://web.telegram.org/",
        ],
        Medium::Email => {
            &["https://mail.google.com/", "https://outlook.live.com/", "https://outlook.office.com/", "https://mail.yahoo.com/", "https://mail.proton.me/"]
        }
        Medium::AiAssistant => &["https://chatgpt.com/", "https://www.perplexity.ai/", "https://claude.ai/", "https://gemini.google.com/"],
    }
}

/// Relative weight of client countries (ISO 3166-1 alpha-2), roughly their share of web
/// traffic; addresses are drawn from networks the bundled GeoIP database maps there.
pub const COUNTRY_WEIGHTS: &[(&str, u32)] = &[
    ("US", 280),
    ("IN", 90),
    ("DE", 60),
    ("GB", 60),
    ("BR", 50),
    ("FR", 40),
    ("JP", 40),
    ("CA", 30),
    ("ID", 30),
    ("MX", 30),
    ("ES", 20),
    ("IT", 20),
    ("NL", 20),
    ("AU", 20),
    ("PL", 20),
    ("TR", 20),
    ("KR", 20),
    ("VN", 15),
    ("CN", 15),
    ("RU", 15),
    ("NG", 10),
    ("ZA", 10),
    ("AR", 10),
    ("SE", 10),
    ("PH", 10),
    ("EG", 10),
    ("UA", 10),
    ("CH", 10),
    ("SG", 10),
    ("KE", 5),
];

/// Share of clients with an IPv6 address, per mille.
pub const IPV6_PER_MILLE: u32 = 150;
