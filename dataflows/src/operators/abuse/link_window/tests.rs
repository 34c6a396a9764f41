use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

const W: i64 = 60_000;

#[derive(Debug, Clone)]
struct Click {
    sec: i64,
    folded_at: i64,
    visitor: u64,
    is_bot: bool,
    country: DimStr,
    referrer: DimStr,
    browser: DimStr,
}

/// Recomputes the window sums at tick `s` from the list of clicks in the order they were
/// added: a click counts if its visitor had fewer than `cap` clicks in the window
/// `[folded_at − W, folded_at)` among those added before it.
/// (raw clicks, raw bot clicks, human clicks, bot clicks, clicks per country, clicks per
/// referrer, distinct visitors) of the window.
type Sums = (u64, u64, u64, u64, Vec<(String, u64)>, Vec<(String, u64)>, usize);

fn naive(clicks: &[Click], s: i64, cap: u32) -> Sums {
    let (mut raw, mut raw_bots, mut human, mut bots) = (0, 0, 0, 0);
    let mut countries: std::collections::BTreeMap<String, u64> = Default::default();
    let mut referrers: std::collections::BTreeMap<String, u64> = Default::default();
    let mut visitors = std::collections::BTreeSet::new();
    for (i, c) in clicks.iter().enumerate() {
        if c.sec < s - W {
            continue;
        }
        raw += 1;
        raw_bots += u64::from(c.is_bot);
        visitors.insert(c.visitor);
        let before = clicks[..i].iter().filter(|d| d.visitor == c.visitor && d.sec >= c.folded_at - W).count();
        if before < cap as usize {
            if c.is_bot {
                bots += 1;
            } else {
                human += 1;
                *countries.entry(c.country.to_string()).or_default() += 1;
                *referrers.entry(c.referrer.to_string()).or_default() += 1;
            }
        }
    }
    (raw, raw_bots, human, bots, countries.into_iter().collect(), referrers.into_iter().collect(), visitors.len())
}

fn sorted(m: &FxHashMap<DimStr, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = m.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    v.sort();
    v
}

#[test]
fn window_sums_match_a_recomputation_with_late_clicks_and_the_cap() {
    let countries = ["US", "DE", "VN"].map(DimStr::new);
    let referrers = ["(direct)", "google.com", "t.co"].map(DimStr::new);
    let browsers = ["Chrome", "Firefox"].map(DimStr::new);
    for seed in 0..4u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let cap = 1 + (seed % 3) as u32;
        let mut w = LinkWindow::new(0);
        let mut added: Vec<Click> = Vec::new();
        for tick in 1..400i64 {
            let s = tick * 1000;
            w.advance(s, W, 0.1, true);
            for _ in 0..rng.random_range(0..6) {
                // mostly the last second, sometimes late (up to 90 s back: some outside the window)
                let back = if rng.random_bool(0.15) { rng.random_range(1..90) } else { 1 };
                let sec = s - back * 1000;
                if sec < s - W {
                    continue; // the operator drops clicks older than the window
                }
                let c = Click {
                    sec,
                    folded_at: s,
                    visitor: rng.random_range(0..8),
                    is_bot: rng.random_bool(0.2),
                    country: countries[rng.random_range(0..3)].clone(),
                    referrer: referrers[rng.random_range(0..3)].clone(),
                    browser: browsers[rng.random_range(0..2)].clone(),
                };
                let lc = LinkClick { visitor: c.visitor, is_bot: c.is_bot, country: &c.country, referrer: &c.referrer, browser: &c.browser };
                w.add(&lc, c.sec, cap);
                added.push(c);
            }
            let (raw, raw_bots, human, bots, cs, rs, visitors) = naive(&added, s, cap);
            let got = &w.sums;
            assert_eq!((got.raw, got.raw_bots, got.human, got.bots), (raw, raw_bots, human, bots), "seed {seed} tick {tick}");
            assert_eq!(sorted(&got.countries), cs, "seed {seed} tick {tick}");
            assert_eq!(sorted(&got.referrers), rs, "seed {seed} tick {tick}");
            assert_eq!(got.visitors.len(), visitors, "seed {seed} tick {tick}");
            assert_eq!(got.visitors.values().map(|v| u64::from(*v)).sum::<u64>(), raw);
        }
    }
}

/// West's EWMA over per-minute values with weight `max(alpha, 1/n)`, written out.
fn ewma(xs: &[f64], alpha: f64) -> (f64, f64) {
    let (mut mean, mut var) = (0.0f64, 0.0f64);
    for (i, x) in xs.iter().enumerate() {
        let a = alpha.max(1.0 / (i + 1) as f64);
        let diff = x - mean;
        mean += a * diff;
        var = (1.0 - a) * (var + a * diff * diff);
    }
    (mean, var)
}

#[test]
fn baseline_is_the_ewma_of_completed_minutes_before_the_window() {
    let alpha = 0.2;
    let us = DimStr::new("US");
    let vn = DimStr::new("VN");
    let direct = DimStr::new("(direct)");
    let chrome = DimStr::new("Chrome");
    // human clicks per minute (minute 3 empty), spread over its seconds; bots: 1 per minute
    let per_minute = [4u64, 10, 6, 0, 12, 8];
    let mut w = LinkWindow::new(0);
    let mut visitor = 0u64;
    for (m, &n) in per_minute.iter().enumerate() {
        for i in 0..n + 1 {
            let sec = m as i64 * 60_000 + (i as i64 * 4_000) % 60_000;
            w.advance(sec + 1000, W, alpha, true);
            visitor += 1;
            let is_bot = i == n;
            let country = if i % 2 == 0 { &us } else { &vn };
            w.add(&LinkClick { visitor, is_bot, country, referrer: &direct, browser: &chrome }, sec, 3);
        }
    }
    // At 7:30 the window starts at 6:30: minutes 0..=5 are complete and out of it.
    w.advance(7 * 60_000 + 30_000, W, alpha, true);
    let xs: Vec<f64> = per_minute.iter().map(|&n| n as f64).collect();
    let (mean, var) = ewma(&xs, alpha);
    assert_eq!(w.base.minutes, 6);
    assert!((w.base.mean - mean).abs() < 1e-9, "{} vs {mean}", w.base.mean);
    assert!((w.base.var - var).abs() < 1e-9, "{} vs {var}", w.base.var);
    let (bot_mean, _) = ewma(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0], alpha);
    assert!((w.base.bot_mean - bot_mean).abs() < 1e-9);
    let us_per_minute: Vec<f64> = per_minute.iter().map(|&n| n.div_ceil(2) as f64).collect();
    let (us_mean, _) = ewma(&us_per_minute, alpha);
    assert!((w.base.country_share("US") - us_mean / mean).abs() < 1e-9);
    assert_eq!(w.base.referrer_share("(direct)"), 1.0);
    assert_eq!(w.base.country_share("FR"), 0.0);
    // Not learning: minutes pass without changing the values.
    let before = w.base.clone();
    w.advance(9 * 60_000 + 30_000, W, alpha, false);
    assert_eq!((w.base.mean, w.base.var, w.base.minutes), (before.mean, before.var, before.minutes));
}

#[test]
fn an_idle_link_decays_to_exactly_a_fresh_state() {
    let alpha = 1.0 - 0.5f64.powf(0.1);
    let mut w = LinkWindow::new(0);
    let us = DimStr::new("US");
    for i in 0..5 {
        w.add(&LinkClick { visitor: i, is_bot: false, country: &us, referrer: &us, browser: &us }, 1000 * i as i64, 3);
    }
    w.advance(10_000, W, alpha, true);
    assert!(!w.is_idle(alpha));
    w.advance(4 * 3_600_000, W, alpha, true);
    assert!(w.is_idle(alpha), "{:?}", w.base);
    let mut fresh = LinkWindow::<DimStr>::new(0);
    fresh.advance(4 * 3_600_000, W, alpha, true);
    assert_eq!((w.base.mean, w.base.var, w.base.bot_mean), (fresh.base.mean, fresh.base.var, fresh.base.bot_mean));
    assert_eq!(w.base.country_share("US"), fresh.base.country_share("US"));
}

#[test]
fn a_minute_of_shared_buckets_folds_exactly_its_counted_clicks() {
    // Several clicks per bucket, a visitor past the cap (2) and a bot: the first minute
    // folds with weight 1, so the baseline holds the minute's counted clicks exactly.
    let [us, vn, direct, tco, chrome] = ["US", "VN", "(direct)", "t.co", "Chrome"].map(DimStr::new);
    fn at<'a>(visitor: u64, is_bot: bool, country: &'a DimStr, referrer: &'a DimStr, browser: &'a DimStr) -> LinkClick<'a> {
        LinkClick { visitor, is_bot, country, referrer, browser }
    }
    let click = |visitor, is_bot, country, referrer| at(visitor, is_bot, country, referrer, &chrome);
    let mut w = LinkWindow::new(0);
    for c in
        [click(1, false, &us, &direct), click(1, false, &us, &direct), click(1, false, &vn, &tco), click(2, false, &vn, &direct), click(3, true, &us, &direct)]
    {
        w.add(&c, 1000, 2);
    }
    for c in [click(2, false, &vn, &direct), click(4, false, &us, &tco)] {
        w.add(&c, 2000, 2);
    }
    assert_eq!((w.sums.raw, w.sums.raw_bots, w.sums.human, w.sums.bots), (7, 1, 5, 1));
    assert_eq!(sorted(&w.sums.countries), vec![("US".to_owned(), 3), ("VN".to_owned(), 2)]);
    assert_eq!(sorted(&w.sums.referrers), vec![("(direct)".to_owned(), 4), ("t.co".to_owned(), 1)]);
    assert_eq!(sorted(&w.sums.browsers), vec![("Chrome".to_owned(), 7)]);
    assert_eq!((w.sums.visitors.len(), w.sums.visitors[&1]), (4, 3));
    w.advance(2 * 60_000, W, 0.2, true);
    assert_eq!((w.sums.raw, w.sums.raw_bots, w.sums.human, w.sums.bots), (0, 0, 0, 0));
    assert!(w.sums.countries.is_empty() && w.sums.referrers.is_empty() && w.sums.browsers.is_empty() && w.sums.visitors.is_empty());
    assert_eq!((w.base.minutes, w.base.mean, w.base.bot_mean), (1, 5.0, 1.0));
    assert_eq!((w.base.country_share("US"), w.base.country_share("VN")), (0.6, 0.4));
    assert_eq!((w.base.referrer_share("(direct)"), w.base.referrer_share("t.co")), (0.8, 0.2));
}
