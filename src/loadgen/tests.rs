use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sluice_dataflows::enrich::{EnrichConfig, Enricher, GeoIp};
use sluice_schemas::truncate_ip;
use uuid::Uuid;

use super::data::UserAgents;
use super::ips::IpPools;
use super::plan::{Mix, TrafficModel, UaTable, zipf_cdf};
use super::runner::boundary_wait;
use super::test_server::TestServer;
use super::truth::TruthBuilder;
use super::*;

const DAY: i64 = 86_400_000;
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const SLACK: &str = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";

fn pools() -> (Arc<UaTable>, Arc<IpPools>) {
    let uas = Arc::new(UaTable::new(UserAgents::load().expect("user agents")));
    let ips = Arc::new(IpPools::build(&mut ChaCha8Rng::seed_from_u64(3)).expect("ip pools"));
    (uas, ips)
}

#[test]
fn vendored_user_agents_load_with_known_counts() {
    let u = UserAgents::load().expect("load");
    assert_eq!((u.humans.len(), u.previews.len(), u.crawlers.len()), (2041, 61, 2061));
    assert!(u.previews.iter().any(|p| p == SLACK));
    assert!(u.humans.iter().chain(&u.previews).chain(&u.crawlers).all(|s| data::sendable(s)));
}

#[test]
fn zipf_cdf_is_exact() {
    let cdf = zipf_cdf(3, 1.0);
    let expected = [6.0 / 11.0, 9.0 / 11.0, 1.0];
    for (a, b) in cdf.iter().zip(expected) {
        assert!((a - b).abs() < 1e-12, "{cdf:?}");
    }
    assert_eq!(zipf_cdf(4, 0.0), vec![0.25, 0.5, 0.75, 1.0]);
}

#[test]
fn boundary_guard_waits_out_the_period_edges() {
    let g = 2_000;
    let ms = |n: u64| Some(std::time::Duration::from_millis(n));
    assert_eq!(boundary_wait(Some(DAY), 10 * DAY, g), ms(2_000));
    assert_eq!(boundary_wait(Some(DAY), 10 * DAY + 1_999, g), ms(1));
    assert_eq!(boundary_wait(Some(DAY), 10 * DAY + 2_000, g), None);
    assert_eq!(boundary_wait(Some(DAY), 11 * DAY - 2_001, g), None);
    assert_eq!(boundary_wait(Some(DAY), 11 * DAY - 2_000, g), ms(4_000));
    assert_eq!(boundary_wait(Some(DAY), 11 * DAY - 1, g), ms(2_001));
    assert_eq!(boundary_wait(None, 10 * DAY, g), None, "never rotates");
}

#[test]
fn the_model_is_deterministic_and_has_the_configured_mix() {
    let (uas, ips) = pools();
    let mix = Mix::default();
    let draw = |seed| {
        let mut m = TrafficModel::new(seed, 20, mix, Arc::clone(&uas), Arc::clone(&ips));
        (0..20_000).map(|_| m.request()).collect::<Vec<_>>()
    };
    let a = draw(11);
    assert_eq!(a, draw(11), "same seed, same requests");
    assert_ne!(a[..50], draw(12)[..50], "another seed, other requests");
    let share = |f: &dyn Fn(&plan::Request) -> bool| a.iter().filter(|r| f(r)).count() as f64 / a.len() as f64;
    let top = zipf_cdf(20, mix.zipf_exponent)[0];
    assert!((share(&|r| r.link == 0) - top).abs() < 0.015, "rank 1 share {} vs {top}", share(&|r| r.link == 0));
    assert!((share(&|r| r.head) - mix.head_share).abs() < 0.006);
    let bots = share(&|r| !uas.humans.contains(&r.visitor.ua));
    assert!((0.055..=0.085).contains(&bots), "bot share {bots}");
    let distinct: HashSet<_> = a.iter().map(|r| r.visitor).collect();
    let repeat = 1.0 - distinct.len() as f64 / a.len() as f64;
    assert!((repeat - mix.repeat_share).abs() < 0.02, "returning share {repeat}");
    let direct = share(&|r| r.referrer.is_none());
    assert!((0.33..=0.45).contains(&direct), "direct share {direct}");
}

#[test]
fn drawn_addresses_geolocate_to_known_countries() {
    let (_, ips) = pools();
    let countries: BTreeMap<&str, usize> = ips.countries().into_iter().collect();
    for c in ["US", "DE", "IN", "BR", "JP", "GB"] {
        assert!(countries.get(c).is_some_and(|n| *n > 10), "{c}: {countries:?}");
    }
    assert!(ips.v6_networks() > 10);
    let geo = GeoIp::bundled().expect("geoip");
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (mut v6, mut us) = (0, 0);
    for _ in 0..5_000 {
        let ip = ips.draw(&mut rng);
        let trunc: IpAddr = truncate_ip(ip).parse().expect("ip");
        let cc = geo.lookup(trunc);
        assert!(cc.is_known(), "{ip} → {trunc} has no country");
        v6 += usize::from(ip.is_ipv6());
        us += usize::from(ip.is_ipv4() && cc.as_str() == "US");
    }
    assert!((600..=900).contains(&v6), "ipv6 share {v6}/5000");
    assert!((1_000..=1_500).contains(&us), "US share {us}/5000");
}

#[test]
fn truth_counts_bots_duplicates_and_visitors_per_period() {
    let codes = vec!["a".to_owned(), "b".to_owned(), "z".to_owned()];
    let mut t = TruthBuilder::new(&codes, Some(DAY)).expect("truth");
    let ip: IpAddr = "203.0.113.9".parse().expect("ip");
    let mapped: IpAddr = "::ffff:203.0.113.9".parse().expect("ip");
    let id = Uuid::from_u128(1);
    assert!(t.click("a", 20 * DAY - 1, ip, CHROME, None));
    assert!(t.click("a", 20 * DAY + 1, ip, CHROME, None), "same visitor, next period");
    assert!(t.click("a", 20 * DAY + 2, mapped, CHROME, None), "mapped address is the same visitor");
    assert!(t.click("a", 20 * DAY + 3, ip, SLACK, Some(id)));
    assert!(!t.click("a", 20 * DAY + 3, ip, SLACK, Some(id)), "duplicate id");
    assert!(t.click("b", 5, "2001:db8::1".parse().expect("ip"), "", None));
    let truth = t.snapshot();
    assert_eq!(truth.links["a"], LinkTruth { clicks: 3, bot_clicks: 1, visitors: 2 });
    assert_eq!(truth.links["b"], LinkTruth { clicks: 0, bot_clicks: 1, visitors: 0 }, "a click without a user agent is a bot");
    assert_eq!(truth.links["z"], LinkTruth::default(), "links without clicks are listed");
    let json = serde_json::to_value(&truth).expect("json");
    assert_eq!(json["links"]["a"], serde_json::json!({"clicks": 3, "bot_clicks": 1, "visitors": 2}));
    let never = TruthBuilder::new(&codes, None).expect("truth");
    assert_eq!(never.period_ms(), None);
}

#[test]
fn truth_flags_a_visitors_clicks_past_the_flood_cap_per_minute() {
    let codes = vec!["a".to_owned(), "b".to_owned()];
    let mut t = TruthBuilder::new(&codes, Some(DAY)).expect("truth");
    let ip: IpAddr = "203.0.113.9".parse().expect("ip");
    // 35 clicks in minute 0 and 3 in minute 1 on "a", 31 on "b" in minute 0, all one visitor.
    for i in 0..35 {
        t.click("a", i * 1000, ip, CHROME, None);
    }
    for i in 0..3 {
        t.click("a", 60_000 + i, ip, CHROME, None);
    }
    for i in 0..31 {
        t.click("b", i, ip, CHROME, None);
    }
    let truth = t.snapshot();
    assert_eq!(truth.links["a"], LinkTruth { clicks: 33, bot_clicks: 5, visitors: 1 });
    assert_eq!(truth.links["b"], LinkTruth { clicks: 30, bot_clicks: 1, visitors: 1 });
    let mut off = TruthBuilder::new(&codes, Some(DAY)).expect("truth").with_flood_cap(None);
    for i in 0..35 {
        off.click("a", i, ip, CHROME, None);
    }
    assert_eq!(off.snapshot().links["a"].clicks, 35);
}

#[test]
fn arguments_are_validated_and_proxy_trust_is_read_from_the_server_config() {
    let mut args = LoadgenArgs::new(Url::parse("http://127.0.0.1:9").expect("url"));
    assert!(resolve(&args).is_ok());
    assert_eq!(resolve(&args).expect("ok").proxy_trusted, None, "cannot tell without the server config");
    args.bot_share = 1.5;
    assert!(resolve(&args).is_err());
    args.bot_share = 0.1;
    args.rate = 0.0;
    assert!(resolve(&args).is_err());
    args.rate = 10.0;
    args.codes = vec!["ok".into(), "not/ok".into()];
    assert!(resolve(&args).is_err());
    args.codes.clear();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("server.toml");
    std::fs::write(&file, "[server]\ntrusted-proxies = []\n[visitor]\nsalt-period = \"7d\"\n[ingest]\ntoken = \"tok\"\n").expect("write");
    args.server_config = Some(file.clone());
    let s = resolve(&args).expect("ok");
    assert_eq!((s.proxy_trusted, s.period_ms, s.token.as_deref()), (Some(false), Some(7 * DAY), Some("tok")));
    std::fs::write(&file, "[server]\ntrusted-proxies = [\"127.0.0.0/8\"]\n").expect("write");
    assert_eq!(resolve(&args).expect("ok").proxy_trusted, Some(true));
    // trusted, but told to read another header than the X-Forwarded-For loadgen sends
    std::fs::write(&file, "[server]\ntrusted-proxies = [\"127.0.0.0/8\"]\nforwarded-header = \"x-real-ip\"\n").expect("write");
    assert_eq!(resolve(&args).expect("ok").proxy_trusted, Some(false));
    std::fs::write(&file, "[server]\ntrusted-proxies = [\"127.0.0.0/8\"]\nforwarded-header = \"X-Forwarded-For\"\n").expect("write");
    assert_eq!(resolve(&args).expect("ok").proxy_trusted, Some(true));
    args.target = Url::parse("http://192.0.2.1:8080").expect("url");
    assert_eq!(resolve(&args).expect("ok").proxy_trusted, None, "remote target: source address unknown");
    args.salt_period = Some("never".into());
    assert_eq!(resolve(&args).expect("ok").period_ms, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_targets_are_reported_not_counted() {
    // a port nothing listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut args = LoadgenArgs::new(Url::parse(&format!("http://127.0.0.1:{port}")).expect("url"));
    args.codes = vec!["abc".into(), "def".into()];
    args.rate = 40.0;
    args.duration = std::time::Duration::from_secs(1);
    args.late_share = 0.0;
    args.duplicate_share = 0.0;
    args.quiet = true;
    let r = run(&args).await.expect("run");
    assert_eq!(r.requests.sent, 40);
    assert_eq!(r.requests.failures.get("connect"), Some(&40));
    assert_eq!(r.truth.totals(), LinkTruth::default());
    assert!(r.exact, "connection failures are certain non-clicks");
    assert_eq!(
        r.outcome(&args.target, 1.0).expect_err("no redirect").to_string(),
        format!(
            "none of the 40 redirect requests got a redirect (3xx) from http://127.0.0.1:{port}/ (connect: 40): is the server running \
             there, is --target its redirect origin, and do the links exist (--codes)?"
        )
    );
}

/// `sluice loadgen`'s exit status: no redirect at all fails whatever the threshold; more
/// requests without a redirect than `--max-error-share` fail; at or below it, success.
#[test]
fn the_outcome_fails_without_redirects_or_past_the_error_share() {
    let target = Url::parse("http://127.0.0.1:8080").expect("url");
    let report = |statuses: &[(u16, u64)], failures: &[(&'static str, u64)]| {
        let requests = RequestStats {
            sent: statuses.iter().map(|(_, n)| n).sum::<u64>() + failures.iter().map(|(_, n)| n).sum::<u64>(),
            statuses: statuses.iter().copied().collect(),
            failures: failures.iter().copied().collect(),
            ..RequestStats::default()
        };
        LoadgenReport {
            codes: vec![],
            truth: GroundTruth::default(),
            requests,
            injected: InjectStats::default(),
            elapsed: std::time::Duration::from_secs(1),
            achieved_rate: 0.0,
            target_rate: 1.0,
            exact: true,
            proxy_trusted: None,
            attack: None,
            notes: vec![],
        }
    };
    let all_404 = report(&[(404, 200)], &[]);
    assert_eq!(
        all_404.outcome(&target, 1.0).expect_err("all 404").to_string(),
        "none of the 200 redirect requests got a redirect (3xx) from http://127.0.0.1:8080/ (404: 200): is the server running there, \
         is --target its redirect origin, and do the links exist (--codes)?"
    );
    let some = report(&[(302, 90), (404, 6), (503, 1)], &[("timeout", 3)]);
    assert_eq!((some.requests.redirected(), some.requests.not_redirected()), (90, 10));
    assert_eq!(
        some.outcome(&target, DEFAULT_MAX_ERROR_SHARE).expect_err("10 % > 5 %").to_string(),
        "10 of 100 redirect requests (10.0 %) got no redirect (3xx) from http://127.0.0.1:8080/ (404: 6, 503: 1, timeout: 3), more \
         than --max-error-share 0.05 allows"
    );
    assert!(some.outcome(&target, 0.1).is_ok(), "exactly at the threshold");
    assert!(report(&[(301, 50), (302, 50)], &[]).outcome(&target, 0.0).is_ok());
    assert_eq!(report(&[], &[]).outcome(&target, 1.0).expect_err("nothing sent").to_string(), "no redirect request was sent to http://127.0.0.1:8080/");
}

/// The generator's truth against an independent count over the click log of a real server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ground_truth_matches_the_click_log_of_a_real_server() {
    let server = TestServer::start(|_| {}).await;
    let mut args = LoadgenArgs::new(server.url.clone());
    args.links = 12;
    args.rate = 150.0;
    args.duration = std::time::Duration::from_secs(3);
    args.seed = 7;
    args.bot_share = 0.1;
    args.head_share = 0.05;
    args.late_share = 0.05;
    args.duplicate_share = 0.05;
    args.quiet = true;
    args.proxy_trusted = Some(true);
    let truth_file = tempfile::NamedTempFile::new().expect("tmp");
    args.truth = Some(truth_file.path().to_path_buf());
    let report = run(&args).await.expect("loadgen run");
    let (_dir, log) = server.stop().await;

    assert!(report.exact, "{:?}", report.notes);
    assert_eq!(report.requests.sent, 450);
    assert_eq!(report.requests.failures, BTreeMap::new());
    let statuses: Vec<u16> = report.requests.statuses.keys().copied().collect();
    assert_eq!(statuses, vec![302]);
    assert!(report.requests.heads > 5, "some HEAD requests: {}", report.requests.heads);
    assert!(report.injected.duplicates > 5 && report.injected.late_events > 5, "{:?}", report.injected);
    assert_eq!(report.injected.rejected, BTreeMap::new());

    let (entries, distinct) = check_against_log(&report, &log);
    let written: GroundTruth = serde_json::from_str(&std::fs::read_to_string(truth_file.path()).expect("read truth")).expect("truth json");
    assert_eq!(written, report.truth);

    // the mix is really there
    let t = report.truth.totals();
    assert!(t.bot_clicks > 10 && t.clicks > 300, "{t:?}");
    assert!(report.truth.links.values().any(|l| l.visitors < l.clicks), "returning visitors");
    let top = &report.truth.links[&report.codes[0]];
    let last = &report.truth.links[&report.codes[11]];
    assert!(top.clicks > 2 * last.clicks, "Zipf: {top:?} vs {last:?}");
    assert!(distinct < entries.len(), "duplicates reached the log");
}

/// Independent count over the click log: every logged event, dedup by event_id, bots by
/// the classifier, visitors = distinct visitor_id (the server's own (period, IP, UA) hash)
/// among humans; must equal the generator's truth. Returns the entries and the number of
/// distinct event ids.
fn check_against_log(report: &LoadgenReport, log: &sluice_connectors::click_log::ClickLog) -> (Vec<sluice_connectors::click_log::LogEntry>, usize) {
    let entries = log.read_entries(0, 1_000_000).expect("read log");
    let gets_3xx = report.requests.statuses[&302] - report.requests.heads;
    assert_eq!(entries.len() as u64, gets_3xx + report.injected.accepted, "HEAD requests are not logged, duplicates are");
    let mut classifier = Enricher::new(&EnrichConfig::default()).expect("classifier");
    let mut seen = HashSet::new();
    let mut counted: BTreeMap<String, (u64, u64, HashSet<u64>)> = report.codes.iter().map(|c| (c.clone(), (0, 0, HashSet::new()))).collect();
    // The flood cap: a visitor's human clicks on a link past 30 in one UTC minute are flagged.
    let mut per_minute: HashMap<(String, u64, i64), u64> = HashMap::new();
    for e in entries.iter().map(|e| &e.event) {
        if !seen.insert(e.event_id) {
            continue;
        }
        let row = counted.get_mut(&e.code).expect("a code of the run");
        let bot = classifier.user_agent(&e.user_agent).is_bot;
        let flagged = !bot && {
            let n = per_minute.entry((e.code.clone(), e.visitor_id, e.ts.div_euclid(60_000))).or_default();
            *n += 1;
            *n > 30
        };
        if bot || flagged {
            row.1 += 1;
        } else {
            row.0 += 1;
            row.2.insert(e.visitor_id);
        }
    }
    let independent: BTreeMap<String, LinkTruth> =
        counted.into_iter().map(|(c, (clicks, bot_clicks, v))| (c, LinkTruth { clicks, bot_clicks, visitors: v.len() as u64 })).collect();
    assert_eq!(report.truth.links, independent);
    (entries, seen.len())
}

#[test]
fn attack_shapes_draw_the_documented_requests() {
    let (uas, ips) = pools();
    let geo = GeoIp::bundled().expect("geoip");
    let model = || TrafficModel::new(5, 10, Mix::default(), Arc::clone(&uas), Arc::clone(&ips));
    let draw = |kind| {
        let mut a = attack::Attack::new(kind, 4, model());
        (0..500).map(|_| a.request()).collect::<Vec<_>>()
    };
    for kind in [AttackKind::Burst, AttackKind::Flood, AttackKind::Bots, AttackKind::ReferrerSpam, AttackKind::GeoShift] {
        let reqs = draw(kind);
        assert!(reqs.iter().all(|r| r.link == 4 && !r.head), "{kind:?}: one link, GETs only");
        let visitors: HashSet<_> = reqs.iter().map(|r| r.visitor).collect();
        let human = |r: &plan::Request| uas.humans.contains(&r.visitor.ua);
        match kind {
            AttackKind::Burst => assert!(visitors.len() > 250, "ordinary, mostly new visitors"),
            AttackKind::Flood => {
                assert_eq!(visitors.len(), 1);
                assert!(human(&reqs[0]));
            }
            AttackKind::Bots => assert!(reqs.iter().all(|r| !human(r)) && visitors.len() > 450),
            AttackKind::ReferrerSpam => assert!(reqs.iter().all(|r| human(r) && r.referrer == Some(attack::SPAM_REFERRER))),
            AttackKind::GeoShift => {
                for r in &reqs {
                    let net: IpAddr = truncate_ip(r.visitor.ip).parse().expect("ip");
                    assert_eq!(geo.lookup(net).as_str(), attack::GEO_SHIFT_COUNTRY, "{}", r.visitor.ip);
                }
                assert!(reqs.iter().all(human));
            }
        }
    }
    assert_eq!(AttackKind::ReferrerSpam.anomaly_kind(), "referrer_spam");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attack_is_reported_with_its_window_and_counted_exactly() {
    let server = TestServer::start(|_| {}).await;
    let mut args = LoadgenArgs::new(server.url.clone());
    args.links = 6;
    args.rate = 60.0;
    args.duration = std::time::Duration::from_secs(3);
    args.quiet = true;
    args.proxy_trusted = Some(true);
    args.attack = Some(AttackKind::Flood);
    args.attack_start = Some(std::time::Duration::from_secs(1));
    args.attack_duration = Some(std::time::Duration::from_secs(1));
    args.attack_rate = Some(100.0);
    let report = run(&args).await.expect("run");
    let (_dir, log) = server.stop().await;
    assert!(report.exact, "{:?}", report.notes);
    let a = report.attack.clone().expect("attack report");
    assert_eq!((a.kind, a.code.as_str(), a.requests), (AttackKind::Flood, report.codes[3].as_str(), 100));
    let (first, last) = (a.started_at_ms.expect("started"), a.ended_at_ms.expect("ended"));
    assert!((800..=1_300).contains(&(last - first)), "attack lasted {} ms", last - first);
    assert_eq!((report.requests.planned, report.requests.sent), (180 + 100, 180 + 100));
    let (entries, _) = check_against_log(&report, &log);
    // the flooder: one visitor id with (at least) all 100 attack clicks on the attacked link
    let mut per_visitor: BTreeMap<u64, u64> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.event.code == a.code && (first..=last + 1_000).contains(&e.event.ts)) {
        *per_visitor.entry(e.event.visitor_id).or_default() += 1;
    }
    assert!(per_visitor.values().any(|n| *n >= 100), "{per_visitor:?}");
}

/// Library callers (demo, bench freshness) set the rates without clap's parser: a rate out
/// of range is refused as a usage error (exit code 2) before the interval arithmetic of the
/// run could panic, and so is a run that plans no request.
#[test]
fn rates_set_by_library_callers_are_checked_too() {
    let usage = |args: &LoadgenArgs| match resolve(args) {
        Err(e) => (crate::bench::exit_code(&e), e.to_string()),
        Ok(_) => panic!("accepted"),
    };
    let mut args = LoadgenArgs::new(Url::parse("http://127.0.0.1:9").expect("url"));
    args.rate = 1e-300;
    assert_eq!(usage(&args), (2, "--rate must be from 0.01 to 1000000 requests per second, got 1e-300".into()));
    args.rate = 10.0;
    args.attack_rate = Some(1e300);
    assert_eq!(usage(&args), (2, "--attack-rate must be from 0.01 to 1000000 requests per second, got 1e300".into()));
    args.attack_rate = None;
    args.rate = 0.01;
    args.duration = std::time::Duration::from_secs(99);
    assert_eq!(usage(&args), (2, "--rate 0.01 × --duration 1m 39s plans no request; give a higher --rate or a longer --duration".into()));
    args.duration = std::time::Duration::from_secs(100);
    assert!(resolve(&args).is_ok(), "0.01/s for 100 s plans one request");
}

/// Finding: an attack window with no time in it (`--attack-start` at or past `--duration`,
/// or `--attack-duration 0s`) was accepted and sent no attack request; it is a usage error.
#[test]
fn an_empty_attack_window_is_a_usage_error() {
    let secs = std::time::Duration::from_secs;
    let usage = |args: &LoadgenArgs| match resolve(args) {
        Err(e) => (crate::bench::exit_code(&e), e.to_string()),
        Ok(_) => panic!("accepted"),
    };
    let mut args = LoadgenArgs::new(Url::parse("http://127.0.0.1:9").expect("url"));
    args.duration = secs(10);
    args.attack = Some(AttackKind::Flood);
    for start in [10, 11] {
        args.attack_start = Some(secs(start));
        assert_eq!(usage(&args), (2, format!("--attack-start {start}s is not before the end of the run (--duration 10s): no attack request would be sent")));
    }
    args.attack_start = Some(secs(9));
    assert!(resolve(&args).is_ok(), "one second of attack");
    args.attack_duration = Some(secs(0));
    assert_eq!(usage(&args), (2, "--attack-duration must be positive, e.g. 10s".into()));
    args.attack = None;
    args.attack_start = Some(secs(20));
    assert!(resolve(&args).is_ok(), "no attack, no window to check");
}

/// Finding: the planned count was `rate × duration` rounded while the run sends every request
/// due strictly before the end, the one at 0 s included (`--rate 0.7 --duration 2s` planned 1
/// and sent 2). Expected values worked out by hand from the due times.
#[test]
fn the_planned_count_is_the_number_of_requests_due_before_the_end() {
    let ms = std::time::Duration::from_millis;
    for (rate, window, want) in [
        (0.7, ms(2_000), 2),    // due at 0 and 1.43 s
        (10.0, ms(3_000), 30),  // 0, 0.1, ..., 2.9 s; 3.0 s is the end
        (0.01, ms(100_000), 1), // 0 s; 100 s is the end
        (3.0, ms(1_500), 5),    // 0, 0.33, 0.67, 1.0, 1.33 s
        (1_000.0, ms(1_000), 1_000),
        (60.0, ms(3_000), 180),
        (100.0, ms(1_000), 100),
        (2.0, ms(1), 1), // only the request at 0 s
        (5.0, ms(0), 0),
    ] {
        assert_eq!(super::runner::due_count(1.0 / rate, window), want, "{rate}/s for {window:?}");
    }
}
