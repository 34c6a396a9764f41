//! Referrer enrichment: every example of case C22, C17's referrers, the domain rule and
//! the medium lists.

use sluice_dataflows::enrich::{EnrichConfig, Enricher, ReferrerMedium};

const BASE: &str = "https://sho.rt.example";

fn enricher() -> Enricher {
    let cfg = EnrichConfig { own_hosts: vec![BASE.to_owned()], ..EnrichConfig::default() };
    Enricher::new(&cfg).expect("bundled enrichment data compiles")
}

fn check(e: &Enricher, referrer: Option<&str>, domain: &str, medium: ReferrerMedium) {
    let (d, m) = e.referrer(referrer);
    assert_eq!((&*d, m), (domain, medium), "referrer {referrer:?}");
}

#[test]
fn c22_every_example() {
    use ReferrerMedium::*;
    let e = enricher();
    let long = format!("https://m.search.example/s?q={}", "x".repeat(3000));
    // (a) no Referer, (b) empty.
    check(&e, None, "(direct)", Direct);
    check(&e, Some(""), "(direct)", Direct);
    // (c) truncated scheme: the documented "invalid" bucket.
    check(&e, Some("https:/"), "(invalid)", Unknown);
    // (d) 3,000+ characters.
    check(&e, Some(&long), "m.search.example", Unknown);
    // (e) upper case and a port.
    check(&e, Some("https://WWW.Example.COM:8443/path?x=1"), "www.example.com", Unknown);
    // (f) Android app referrer: the package name.
    check(&e, Some("android-app://com.example.app/"), "com.example.app", Unknown);
    // (g) the short link itself: never a referrer domain.
    check(&e, Some(&format!("{BASE}/AbC123")), "(direct)", Internal);
    check(&e, Some("http://SHO.RT.EXAMPLE:443/x"), "(direct)", Internal);
    check(&e, Some("https://www.sho.rt.example/x"), "(direct)", Internal);
    // Step 4: trailing CR and surrounding spaces.
    check(&e, Some("https://m.social.example\r"), "m.social.example", Unknown);
    check(&e, Some(" https://m.social.example/ "), "m.social.example", Unknown);
}

#[test]
fn c22_an_ip_literal_own_host_is_direct() {
    use ReferrerMedium::*;
    // The default base URL is `http://` + the listen address: its host is an IP literal.
    let cfg = EnrichConfig { own_hosts: vec!["http://127.0.0.1:8080".to_owned(), "[::1]:8080".to_owned()], ..EnrichConfig::default() };
    let e = Enricher::new(&cfg).expect("bundled enrichment data compiles");
    check(&e, Some("http://127.0.0.1:8080/x"), "(direct)", Internal);
    check(&e, Some("https://127.0.0.1/"), "(direct)", Internal);
    check(&e, Some("http://[::1]:8080/AbC"), "(direct)", Internal);
    check(&e, Some("http://[0:0:0:0:0:0:0:1]/"), "(direct)", Internal);
    // Every loopback host is the service's own when it is on loopback (attack of session 52:
    // the link API counted them as its own, the referrers did not).
    check(&e, Some("http://127.0.0.10/"), "(direct)", Internal);
    check(&e, Some("http://localhost:8080/x"), "(direct)", Internal);
    // Other addresses stay referrer domains of their own.
    check(&e, Some("http://192.0.2.1/"), "192.0.2.1", Unknown);
    check(&e, Some("http://[::2]/"), "[::2]", Unknown);
    check(&e, Some("http://0.127.0.0.1.example/"), "0.127.0.0.1.example", Unknown);
}

#[test]
fn c22_domains_counted_through_enrich() {
    // The C22 expectation as rows: direct 3 + invalid 1, m.search.example 1,
    // www.example.com 1, com.example.app 1; the short host never appears.
    let mut e = enricher();
    let long = format!("https://m.search.example/s?q={}", "é".repeat(3000));
    let refs: [Option<&str>; 7] = [
        None,
        Some(""),
        Some("https:/"),
        Some(&long),
        Some("https://WWW.Example.COM:8443/path?x=1"),
        Some("android-app://com.example.app/"),
        Some("https://sho.rt.example/L"),
    ];
    let mut rows = std::collections::BTreeMap::new();
    for r in refs {
        let ev = event(r);
        *rows.entry(e.enrich(&ev).referrer_domain.to_string()).or_insert(0) += 1;
    }
    let want: std::collections::BTreeMap<String, i32> =
        [("(direct)", 3), ("(invalid)", 1), ("m.search.example", 1), ("www.example.com", 1), ("com.example.app", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
    assert_eq!(rows, want);
    assert!(!rows.keys().any(|k| k.contains("sho.rt")));
}

fn event(referrer: Option<&str>) -> sluice_schemas::ClickEvent {
    sluice_schemas::ClickEvent {
        event_id: uuid::Uuid::from_u128(1),
        code: "L".to_owned(),
        ts: 1_720_000_000_000,
        ip_trunc: Some("192.0.2.0".to_owned()),
        visitor_id: 7,
        user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36".to_owned(),
        referrer: referrer.map(str::to_owned),
        accept_language: None,
        edge_region: None,
    }
}

#[test]
fn c17_documentation_hosts_keep_their_full_name() {
    use ReferrerMedium::*;
    let e = enricher();
    check(&e, Some("https://a.example/"), "a.example", Unknown);
    check(&e, Some("https://b.example/"), "b.example", Unknown);
    check(&e, Some("https://deep.sub.example.org/x"), "deep.sub.example.org", Unknown);
}

#[test]
fn registrable_domain_via_public_suffix_list() {
    use ReferrerMedium::*;
    let e = enricher();
    check(&e, Some("https://www.google.co.uk/search?q=x"), "google.co.uk", Search);
    check(&e, Some("https://news.bbc.co.uk/story"), "bbc.co.uk", Unknown);
    check(&e, Some("https://l.facebook.com/l.php?u=x"), "facebook.com", Social);
    check(&e, Some("https://someone.github.io/blog"), "someone.github.io", Unknown);
    check(&e, Some("https://intranet.corp.lan/page"), "intranet.corp.lan", Unknown);
    check(&e, Some("http://192.0.2.1:8080/x"), "192.0.2.1", Unknown);
    check(&e, Some("http://[2001:db8::1]/x"), "[2001:db8::1]", Unknown);
    check(&e, Some("https://BÜCHER.de/x"), "xn--bcher-kva.de", Unknown);
    check(&e, Some("https://www.example.com./x"), "www.example.com", Unknown);
    // Scheme-less values that are clearly a host.
    check(&e, Some("www.bing.com/search?q=x"), "bing.com", Search);
    // Hostless or unparseable values.
    for bad in ["https:/", "http://", "not a url", "data:text/plain,hi", "file:///etc/passwd", "javascript:alert(1)", "//", "?q=1", "http://exa mple.com/"] {
        check(&e, Some(bad), "(invalid)", Unknown);
    }
    check(&e, Some("about:blank"), "(direct)", Direct);
    check(&e, Some(" \t\r\n"), "(direct)", Direct);
}

#[test]
fn medium_from_matomo_lists_and_webmail() {
    use ReferrerMedium::*;
    let e = enricher();
    let cases: &[(&str, &str, ReferrerMedium)] = &[
        ("https://www.google.com/", "google.com", Search),
        ("https://www.google.de/url?q=x", "google.de", Search),
        ("https://www.google.com.br/", "google.com.br", Search),
        ("https://de.search.yahoo.com/search?p=x", "yahoo.com", Search),
        ("https://www.bing.com/search?q=x", "bing.com", Search),
        ("https://cn.bing.com/search?q=x", "bing.com", Search),
        ("https://duckduckgo.com/", "duckduckgo.com", Search),
        ("https://yandex.ru/search/?text=x", "yandex.ru", Search),
        ("https://docs.google.com/document/d/1", "google.com", Unknown),
        ("https://t.co/abc", "t.co", Social),
        ("https://x.com/someone/status/1", "x.com", Social),
        ("https://x.com/i/grok?conversation=1", "x.com", AiAssistant),
        ("https://m.facebook.com/", "facebook.com", Social),
        ("https://www.linkedin.com/feed/", "linkedin.com", Social),
        ("https://old.reddit.com/r/rust", "reddit.com", Social),
        ("https://chatgpt.com/", "chatgpt.com", AiAssistant),
        ("https://chat.openai.com/c/1", "openai.com", AiAssistant),
        ("https://claude.ai/chat/1", "claude.ai", AiAssistant),
        ("https://www.perplexity.ai/search", "perplexity.ai", AiAssistant),
        ("https://gemini.google.com/app", "google.com", AiAssistant),
        ("https://mail.google.com/mail/u/0/", "google.com", Email),
        ("https://outlook.live.com/mail/0/", "live.com", Email),
        ("https://us-mg5.mail.yahoo.com/d/folders/1", "yahoo.com", Email),
        ("https://webmail.some-isp.net/?_task=mail", "some-isp.net", Email),
        ("android-app://com.google.android.gm/", "com.google.android.gm", Email),
        ("android-app://com.reddit.frontpage/", "com.reddit.frontpage", Social),
        ("android-app://com.linkedin.android/", "com.linkedin.android", Social),
        ("android-app://com.google.android.googlequicksearchbox/https/www.google.com", "com.google.android.googlequicksearchbox", Search),
        ("https://blog.rust-lang.org/", "rust-lang.org", Unknown),
    ];
    for (url, domain, medium) in cases {
        check(&e, Some(url), domain, *medium);
    }
    assert_eq!(e.medium_of_host("www.google.co.uk", "/").source, "Google");
    assert_eq!(e.medium_of_host("chatgpt.com", "/").source, "ChatGPT");
}

#[test]
fn enrich_cache_never_changes_a_result() {
    let cfg = EnrichConfig { own_hosts: vec![BASE.to_owned()], referrer_cache_capacity: 2, ..EnrichConfig::default() };
    let mut e = Enricher::new(&cfg).expect("compiles");
    let long = format!("https://www.google.com/search?q={}", "y".repeat(600));
    let refs = [
        Some("https://www.google.com/"),
        Some("https://t.co/x"),
        None,
        Some(long.as_str()),
        Some("https://www.google.com/"),
        Some("https:/"),
        Some("https://t.co/x"),
    ];
    for _ in 0..3 {
        for r in refs {
            let got = e.enrich(&event(r));
            let (d, m) = e.referrer(r);
            assert_eq!((got.referrer_domain, got.referrer_medium), (d, m), "{r:?}");
        }
    }
    let s = e.stats();
    assert!(s.referrer_hits > 0 && s.referrer_misses > 0, "{s:?}");
}
