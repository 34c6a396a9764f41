//! User-agent enrichment against uap-core's own expected results (vendored in
//! `tests/data/useragents/`, same commit as the rules), and device-class rules.

use std::collections::BTreeMap;
use std::io::Read;

use serde_yaml_ng::Value;
use sluice_dataflows::enrich::{DeviceClass, EnrichConfig, Enricher};

fn enricher() -> Enricher {
    Enricher::new(&EnrichConfig::default()).expect("bundled enrichment data compiles")
}

fn read_cases(file: &str) -> Vec<BTreeMap<String, Option<String>>> {
    let path = format!(
        "{}/tests/data/useragents/{file}",
        std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (set by cargo test and nextest at run time)")
    );
    let mut text = String::new();
    let f = std::fs::File::open(&path).expect("test corpus exists");
    if file.ends_with(".gz") {
        flate2::read::GzDecoder::new(f).read_to_string(&mut text).expect("gunzip");
    } else {
        std::io::BufReader::new(f).read_to_string(&mut text).expect("read");
    }
    let doc: Value = serde_yaml_ng::from_str(&text).expect("valid yaml");
    let cases = doc.get("test_cases").and_then(Value::as_sequence).expect("test_cases list");
    cases
        .iter()
        .map(|case| {
            let map = case.as_mapping().expect("case is a map");
            map.iter()
                .map(|(k, v)| {
                    let k = k.as_str().expect("string key").to_owned();
                    let v = match v {
                        Value::Null => None,
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        Value::Bool(b) => Some(b.to_string()),
                        other => panic!("unexpected value {other:?}"),
                    };
                    (k, v)
                })
                .collect()
        })
        .collect()
}

struct Agreement {
    field: &'static str,
    agree: usize,
    total: usize,
    misses: Vec<String>,
}

impl Agreement {
    fn new(field: &'static str) -> Agreement {
        Agreement { field, agree: 0, total: 0, misses: Vec::new() }
    }
    fn check(&mut self, ua: &str, expected: Option<&str>, got: Option<&str>) {
        self.total += 1;
        if expected == got {
            self.agree += 1;
        } else if self.misses.len() < 5 {
            self.misses.push(format!("{ua:?}: expected {expected:?}, got {got:?}"));
        }
    }
    fn rate(&self) -> f64 {
        100.0 * self.agree as f64 / self.total as f64
    }
    fn report(&self) {
        println!("{}: {}/{} agree = {:.3}%", self.field, self.agree, self.total, self.rate());
        for m in &self.misses {
            println!("  miss {m}");
        }
    }
}

fn family(case: &BTreeMap<String, Option<String>>) -> Option<&str> {
    case.get("family").and_then(|v| v.as_deref())
}

fn ua_of(case: &BTreeMap<String, Option<String>>) -> &str {
    case.get("user_agent_string").and_then(|v| v.as_deref()).expect("user_agent_string")
}

#[test]
fn browser_family_agrees_with_uap_core_tests() {
    let e = enricher();
    let mut all = Agreement::new("browser family (all 6 browser corpora)");
    for file in [
        "test_ua.yaml",
        "firefox_user_agent_strings.yaml",
        "opera_mini_user_agent_strings.yaml",
        "podcasting_user_agent_strings.yaml",
        "pgts_browser_list.yaml.gz",
    ] {
        let mut per = Agreement::new("browser family");
        for case in read_cases(file) {
            let ua = ua_of(&case);
            let got = e.ua_parts(ua).browser_family;
            per.check(ua, family(&case), Some(&got));
            all.check(ua, family(&case), Some(&got));
        }
        print!("{file}: ");
        per.report();
        assert!(per.total > 100, "{file} has test cases");
    }
    all.report();
    assert_eq!(all.total, 1601 + 244 + 203 + 144 + 12500);
    assert!(all.rate() >= 99.0, "browser family agreement {:.3}% < 99%", all.rate());
}

#[test]
fn os_family_agrees_with_uap_core_tests() {
    let e = enricher();
    let mut all = Agreement::new("os family (test_os + additional_os_tests)");
    for file in ["test_os.yaml", "additional_os_tests.yaml"] {
        for case in read_cases(file) {
            let ua = ua_of(&case);
            let got = e.ua_parts(ua).os_family;
            all.check(ua, family(&case), Some(&got));
        }
    }
    all.report();
    assert_eq!(all.total, 483 + 23);
    assert!(all.rate() >= 99.0, "os family agreement {:.3}% < 99%", all.rate());
}

#[test]
fn device_family_brand_model_agree_with_uap_core_tests() {
    let mut e = enricher();
    let mut fam = Agreement::new("device family");
    let mut brand = Agreement::new("device brand");
    let mut model = Agreement::new("device model");
    let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
    let cases = read_cases("test_device.yaml.gz");
    for case in &cases {
        let ua = ua_of(case);
        let p = e.ua_parts(ua);
        fam.check(ua, family(case), Some(&p.device_family));
        brand.check(ua, case.get("brand").and_then(|v| v.as_deref()), p.device_brand.as_deref());
        model.check(ua, case.get("model").and_then(|v| v.as_deref()), p.device_model.as_deref());
        *classes.entry(e.user_agent(ua).device.as_str()).or_default() += 1;
    }
    fam.report();
    brand.report();
    model.report();
    println!("device classes over test_device.yaml: {classes:?}");
    assert_eq!(fam.total, 16_129);
    assert!(fam.rate() >= 99.0, "device family agreement {:.3}% < 99%", fam.rate());
    assert!(brand.rate() >= 99.0, "device brand agreement {:.3}% < 99%", brand.rate());
    assert!(model.rate() >= 99.0, "device model agreement {:.3}% < 99%", model.rate());
}

#[test]
fn enrichment_browser_field_matches_uap_core_except_for_bots() {
    // The `browser` dimension equals uap-core's family except that bots which uap-core
    // calls a human browser are reported as "Bot" (case C01).
    let mut e = enricher();
    let (mut same, mut renamed_bots, mut other) = (0, 0, 0);
    for case in read_cases("test_ua.yaml") {
        let ua = ua_of(&case);
        let info = e.user_agent(ua);
        if Some(&*info.browser) == family(&case) {
            same += 1;
        } else if info.is_bot && &*info.browser == "Bot" {
            renamed_bots += 1;
        } else {
            other += 1;
            println!("unexpected browser {:?} for {ua:?}", info.browser);
        }
    }
    println!("test_ua.yaml browser field: {same} equal, {renamed_bots} bots renamed \"Bot\", {other} other");
    assert_eq!(other, 0);
}

#[test]
fn device_classes_of_known_user_agents() {
    let mut e = enricher();
    let cases: &[(&str, DeviceClass)] = &[
        // Desktop browsers.
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", DeviceClass::Desktop),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15", DeviceClass::Desktop),
        ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", DeviceClass::Desktop),
        ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", DeviceClass::Desktop),
        (
            "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; WOW64; Trident/4.0; SLCC2; .NET CLR 2.0.50727; Media Center PC 6.0; Tablet PC 2.0)",
            DeviceClass::Desktop,
        ),
        // Phones.
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            DeviceClass::Mobile,
        ),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36", DeviceClass::Mobile),
        ("Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0", DeviceClass::Mobile),
        (
            "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.15063",
            DeviceClass::Mobile,
        ),
        ("Nokia6300/2.0 (05.00) Profile/MIDP-2.0 Configuration/CLDC-1.1", DeviceClass::Mobile),
        // Tablets.
        ("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", DeviceClass::Tablet),
        ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", DeviceClass::Tablet),
        ("Mozilla/5.0 (Android 14; Tablet; rv:125.0) Gecko/125.0 Firefox/125.0", DeviceClass::Tablet),
        (
            "Mozilla/5.0 (Linux; Android 9; KFMAWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/122.3.1 like Chrome/122.0.6261.119 Safari/537.36",
            DeviceClass::Tablet,
        ),
        // TVs, consoles, empty and unknown.
        ("Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 76.0.3809.146/6.0 TV Safari/537.36", DeviceClass::Other),
        ("Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko)", DeviceClass::Other),
        ("SomethingUnheardOf", DeviceClass::Other),
        // Bots, and missing (empty or whitespace-only) user agents.
        ("", DeviceClass::Bot),
        ("   ", DeviceClass::Bot),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", DeviceClass::Bot),
        ("curl/8.5.0", DeviceClass::Bot),
    ];
    for (ua, want) in cases {
        let got = e.user_agent(ua).device;
        assert_eq!(got, *want, "{ua:?}");
    }
}

#[test]
fn cache_returns_identical_results_and_is_bounded_per_clone() {
    let cfg = EnrichConfig { ua_cache_capacity: 2, ..EnrichConfig::default() };
    let mut e = Enricher::new(&cfg).expect("compiles");
    let uas = ["Twitterbot/1.0", "curl/8.5.0", "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X)"];
    let first: Vec<_> = uas.iter().map(|u| e.user_agent(u)).collect();
    let again: Vec<_> = uas.iter().map(|u| e.user_agent(u)).collect();
    assert_eq!(first, again);
    // Capacity 2: the third distinct UA evicted the first, so every lookup of the second
    // round was a miss again (LRU order 0,1,2 → 0 evicts 1 ...).
    assert_eq!(e.stats().ua_misses, 6);
    assert_eq!(e.user_agent(uas[2]), first[2]);
    assert_eq!(e.stats().ua_hits, 1);
    let mut clone = e.clone();
    assert_eq!(clone.stats().ua_hits + clone.stats().ua_misses, 0, "clone starts empty");
    assert_eq!(clone.user_agent(uas[0]), first[0]);
    assert_eq!(clone.stats().ua_misses, 1);
}
