//! Hostile input: enrichment never panics and always yields well-formed dimension values,
//! whatever the user agent, referrer and IP text (empty, 64 KiB, odd Unicode, control
//! characters), and caching never changes a result.

use std::sync::OnceLock;

use proptest::prelude::*;
use sluice_dataflows::enrich::{DeviceClass, EnrichConfig, Enricher, Enrichment, MAX_UA_BYTES, ReferrerMedium};
use sluice_dataflows::model::Dimension;
use sluice_schemas::ClickEvent;

const OWN: &str = "sho.rt.example";

fn base() -> &'static Enricher {
    static E: OnceLock<Enricher> = OnceLock::new();
    E.get_or_init(|| Enricher::new(&EnrichConfig { own_hosts: vec![OWN.to_owned()], ..EnrichConfig::default() }).expect("bundled enrichment data compiles"))
}

fn event(ua: &str, referrer: Option<&str>, ip: Option<&str>) -> ClickEvent {
    ClickEvent {
        event_id: uuid::Uuid::from_u128(42),
        code: "c".to_owned(),
        ts: 0,
        ip_trunc: ip.map(str::to_owned),
        visitor_id: 1,
        user_agent: ua.to_owned(),
        referrer: referrer.map(str::to_owned),
        accept_language: None,
        edge_region: None,
    }
}

/// Shape checks every enrichment must pass.
fn assert_well_formed(en: &Enrichment) {
    let c = en.country.as_str();
    assert!(c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()), "country {c:?}");
    assert!(["desktop", "mobile", "tablet", "bot", "other"].contains(&en.device.as_str()), "device");
    assert_eq!(en.is_bot, en.device == DeviceClass::Bot, "bot flag and class agree");
    assert!(!en.browser.is_empty() && !en.os.is_empty());
    let d = &*en.referrer_domain;
    assert!(!d.is_empty(), "domain is never empty");
    assert!(d.is_ascii(), "domain {d:?} is ASCII");
    assert!(!d.contains(|c: char| c.is_whitespace() || c.is_control()), "domain {d:?}");
    assert_eq!(d, d.to_ascii_lowercase(), "domain is lower case");
    assert!(d != OWN && !d.ends_with(&format!(".{OWN}")), "own host never appears as a referrer domain: {d:?}");
    match d {
        "(direct)" => assert!(matches!(en.referrer_medium, ReferrerMedium::Direct | ReferrerMedium::Internal)),
        "(invalid)" => assert_eq!(en.referrer_medium, ReferrerMedium::Unknown),
        _ => assert!(!matches!(en.referrer_medium, ReferrerMedium::Direct | ReferrerMedium::Internal)),
    }
}

fn weird_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,200}",
        "[\\x00-\\x1f\\x7f ]{0,50}",
        "(https?|android-app|ftp|about|data|javascript|mailto)?:?/{0,3}[a-zA-Z0-9.\\-\\[\\]:%@_éüß\u{202e}\u{200b}\u{fffd}]{0,60}(/[^\\s]{0,40})?",
        "Mozilla/5\\.0 \\([^)]{0,80}\\) [A-Za-z]{1,12}/[0-9.]{1,8}( [A-Za-z]{1,12}/[0-9.]{1,8}){0,4}",
        "[0-9a-fA-F:.\\[\\]%]{0,45}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn enrich_never_panics_and_is_well_formed(
        ua in weird_text(),
        referrer in proptest::option::of(weird_text()),
        ip in proptest::option::of(weird_text()),
    ) {
        let mut e = base().clone();
        let ev = event(&ua, referrer.as_deref(), ip.as_deref());
        let first = e.enrich(&ev);
        assert_well_formed(&first);
        // Cached results are identical to the first (uncached) ones.
        let second = e.enrich(&ev);
        prop_assert_eq!(&first, &second);
        prop_assert!(e.stats().ua_hits >= 1);
        let (d, m) = e.referrer(referrer.as_deref());
        prop_assert_eq!((&*first.referrer_domain, first.referrer_medium), (&*d, m));
    }
}

#[test]
fn huge_and_degenerate_inputs() {
    let mut e = base().clone();
    let big_ascii = "A".repeat(64 * 1024);
    let big_unicode = "\u{1F600}\u{202E}\u{0301}é".repeat(64 * 1024 / 11);
    let big_ctrl: String = (0..64 * 1024).map(|i| char::from((i % 32) as u8)).collect();
    let big_referrer = format!("https://www.google.com/search?q={}", "%F0%9F%98%80".repeat(5_000));
    let nested = format!("{}{}", "(".repeat(20_000), ")".repeat(20_000));
    for ua in ["", " ", "\0", "\r\n", big_ascii.as_str(), big_unicode.as_str(), big_ctrl.as_str(), nested.as_str()] {
        for r in [None, Some(""), Some(big_ascii.as_str()), Some(big_referrer.as_str()), Some(big_ctrl.as_str()), Some(nested.as_str())] {
            for ip in [None, Some(""), Some(big_ascii.as_str()), Some("::ffff:"), Some("[]:"), Some("1.2.3.4:99999")] {
                let en = e.enrich(&event(ua, r, ip));
                assert_well_formed(&en);
            }
        }
    }
    // Specific expectations for the degenerate values.
    // A missing user agent is a bot (real browsers always send one).
    let en = e.enrich(&event("", None, None));
    assert_eq!((en.device, en.is_bot), (DeviceClass::Bot, true));
    assert_eq!((&*en.browser, &*en.os), ("Bot", "Other"));
    assert_eq!(&*en.referrer_domain, "(direct)");
    let en = e.enrich(&event("x", Some(&big_referrer), None));
    assert_eq!((&*en.referrer_domain, en.referrer_medium), ("google.com", ReferrerMedium::Search));
    let en = e.enrich(&event("x", Some(big_ascii.as_str()), None));
    assert_eq!(&*en.referrer_domain, "(invalid)");
    // Long user agents are cut to MAX_UA_BYTES, so two that share that prefix are one entry.
    let a = format!("{}tail-a", "B".repeat(MAX_UA_BYTES));
    let b = format!("{}tail-b", "B".repeat(MAX_UA_BYTES));
    let before = e.stats().ua_misses;
    assert_eq!(e.user_agent(&a), e.user_agent(&b));
    assert_eq!(e.stats().ua_misses - before, 1);
}

/// No `User-Agent`, or an empty or whitespace-only one: a bot click (device `bot`, browser
/// `Bot`, OS `Other`), every other field as for any click; an unknown user agent that is
/// present is not a bot.
#[test]
fn missing_user_agent_is_a_bot() {
    let mut e = base().clone();
    for ua in ["", " ", "   ", "\t", " \t \r\n", "\u{a0}"] {
        let expected = Enrichment {
            country: e.country(Some("8.8.8.0")),
            device: DeviceClass::Bot,
            browser: "Bot".into(),
            os: "Other".into(),
            referrer_domain: "t.co".into(),
            referrer_medium: ReferrerMedium::Social,
            is_bot: true,
        };
        assert_eq!(expected.country.as_str(), "US");
        let ev = event(ua, Some("https://t.co/abc"), Some("8.8.8.0"));
        assert_eq!(e.enrich(&ev), expected, "{ua:?}");
        // cached, through the rollups' path too
        assert_eq!(e.enrich(&ev), expected, "{ua:?} cached");
        let dims = e.enrich_dims(&ev);
        let got: Vec<&str> = Dimension::ALL.iter().map(|d| dims.get(*d)).collect();
        assert_eq!((got, dims.is_bot), (vec!["US", "bot", "Bot", "Other", "t.co", "social"], true), "{ua:?} dims");
    }
    let x = e.enrich(&event("SomethingUnheardOf", None, None));
    assert_eq!((x.device, x.is_bot), (DeviceClass::Other, false), "an unknown but present user agent");
}
