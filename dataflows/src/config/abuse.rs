//! `[abuse]`: the abuse detectors (issue 7) — windows, baselines, thresholds, lifecycle.
//!
//! Every value can be changed in configuration without code changes; the defaults are tuned
//! so that ten minutes of realistic traffic over 1,000 links (Zipf popularity, ~7 % bots,
//! real referrers and countries) raise no warning or critical anomaly while each attack
//! shape of `sluice loadgen --attack` is detected within 5 s (`tests/abuse_scenarios.rs`
//! measures both). Counts are clicks in the detector's sliding window; shares are 0..=1.
//!
//! Severity levels: each detector has a *shape* condition (ratio and z-score above the
//! baseline, or a share) and three volume levels; an anomaly is `info` from
//! `info-min-clicks`, `warning` from `warning-min-clicks` and `critical` from
//! `critical-min-clicks` when the (stricter) critical shape also holds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `[abuse]` (module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AbuseConfig {
    /// Attach the detectors to the graph at all (default true; false costs nothing).
    pub enabled: bool,
    /// Evaluation step in event time: detectors evaluate every key with new clicks (and every
    /// open anomaly) each time the watermark passes a multiple of this (default 1 s; divides
    /// one minute).
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// Sliding window of the per-link detectors (burst, bot share, referrer spam, geo shift,
    /// blocklisted target), a multiple of `tick` up to 1 h (default 60 s). They share its per-second
    /// state, hence one window for all of them.
    #[serde(with = "humantime_serde")]
    pub link_window: Duration,
    /// Half-life of the per-minute EWMA baselines of each link (default 10 min; at least 1 min;
    /// `sluice` refuses more than 1 day).
    #[serde(with = "humantime_serde")]
    pub baseline_half_life: Duration,
    /// Baseline-relative detectors (burst, referrer spam, geo shift) stay silent until the
    /// detectors have watched this much event time (default 3 min; `sluice` refuses more
    /// than 1 day): before that, a link's
    /// missing history would read as "no clicks" and every busy link would look like a burst.
    /// A link first clicked after that has its own warm-up from the minute of its first click.
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,
    /// Per link, only a visitor's first this-many clicks in the window count for the link
    /// detectors (default 3): one client hammering a link is a `visitor_flood`, not a burst,
    /// a geo shift or referrer spam of that link.
    pub per_visitor_cap: u32,
    /// An open anomaly closes once its condition has been absent for this many windows
    /// (default 1).
    pub quiet_windows: u32,
    /// Least event time between two `updated` events of one anomaly, unless its severity
    /// changes (default 10 s; `sluice` refuses more than 1 h).
    #[serde(with = "humantime_serde")]
    pub update_interval: Duration,
    /// Relative change of `observed` that warrants an `updated` event (default 0.25).
    pub update_min_change: f64,
    /// Entries per evidence list (default 5).
    pub top_n: usize,
    /// `click_burst`.
    pub click_burst: ClickBurstConfig,
    /// `visitor_flood`.
    pub visitor_flood: VisitorFloodConfig,
    /// `bot_share`.
    pub bot_share: BotShareConfig,
    /// `referrer_spam`.
    pub referrer_spam: ShareShiftConfig,
    /// `geo_shift`.
    pub geo_shift: ShareShiftConfig,
    /// `blocklisted_target`.
    pub blocklisted_target: BlocklistedTargetConfig,
    /// `[abuse.flood-cap]`: the human-click cap per visitor, link and minute (case C25 step 4).
    pub flood_cap: FloodCapConfig,
}

/// Config holds only finite numbers once validated ([`AbuseConfig::validate`] rejects NaN),
/// so equality is an equivalence relation.
impl Eq for AbuseConfig {}

impl Default for AbuseConfig {
    fn default() -> Self {
        AbuseConfig {
            enabled: true,
            tick: Duration::from_secs(1),
            link_window: Duration::from_secs(60),
            baseline_half_life: Duration::from_secs(600),
            warmup: Duration::from_secs(180),
            per_visitor_cap: 3,
            quiet_windows: 1,
            update_interval: Duration::from_secs(10),
            update_min_change: 0.25,
            top_n: 5,
            click_burst: ClickBurstConfig::default(),
            visitor_flood: VisitorFloodConfig::default(),
            bot_share: BotShareConfig::default(),
            referrer_spam: ShareShiftConfig::referrer_default(),
            geo_shift: ShareShiftConfig::geo_default(),
            blocklisted_target: BlocklistedTargetConfig::default(),
            flood_cap: FloodCapConfig::default(),
        }
    }
}

/// `[abuse.flood-cap]`: of the non-bot clicks of one visitor on one link within one UTC
/// minute, only the first `clicks-per-minute` count as human clicks; the excess is
/// *flagged*: counted with the bot clicks (stats' `bot_clicks`, `include_bots=true`), never
/// in the default `clicks` (case C25 step 4, "must not silently report 300 human clicks").
///
/// A counting rule, not a detector: it applies whenever `enabled`, also with the detectors
/// off (`abuse.enabled = false`), and the detectors see the clicks before it. The flagged
/// count of a (visitor, link, minute) is exactly `max(0, n − clicks-per-minute)` for `n`
/// non-bot clicks, whatever their arrival order (see `operators::flood_cap`).
///
/// Default 30 per minute, one click every 2 s sustained for a whole minute: no person
/// re-opens one short link that often (double clicks, reloads and back/forward make a
/// handful), while a visitor is a hash of (IP, user agent), so a few dozen people behind one
/// NAT with the same browser build can share one; and it equals the default
/// `visitor-flood.info-min-clicks`, so clicks start being flagged where the `visitor_flood`
/// anomaly starts (C25: 300 clicks of one client in one minute → 30 human, 270 flagged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct FloodCapConfig {
    /// Apply the cap (default true).
    pub enabled: bool,
    /// Human clicks counted per (visitor, link, UTC minute) (default 30; at least 1).
    pub clicks_per_minute: u32,
}

impl Default for FloodCapConfig {
    fn default() -> Self {
        FloodCapConfig { enabled: true, clicks_per_minute: 30 }
    }
}

impl FloodCapConfig {
    /// The cap in force: `Some(clicks_per_minute)` when enabled.
    pub fn cap(&self) -> Option<u32> {
        self.enabled.then_some(self.clicks_per_minute)
    }
}

/// Volume levels of a detector: clicks in the window needed for each severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    /// Least clicks for `info`.
    pub info_min_clicks: u64,
    /// Least clicks for `warning`.
    pub warning_min_clicks: u64,
    /// Least clicks for `critical`.
    pub critical_min_clicks: u64,
}

impl Levels {
    /// Levels from the three thresholds.
    pub const fn new(info: u64, warning: u64, critical: u64) -> Levels {
        Levels { info_min_clicks: info, warning_min_clicks: warning, critical_min_clicks: critical }
    }

    fn validate(&self, name: &str) -> Result<()> {
        if self.info_min_clicks == 0 || self.info_min_clicks > self.warning_min_clicks || self.warning_min_clicks > self.critical_min_clicks {
            return Err(Error::Config(format!(
                "\"abuse.{name}\": need 0 < info-min-clicks <= warning-min-clicks <= critical-min-clicks, got {} / {} / {}",
                self.info_min_clicks, self.warning_min_clicks, self.critical_min_clicks
            )));
        }
        Ok(())
    }
}

/// `[abuse.click-burst]`: the window's human clicks (after the per-visitor cap) against the
/// link's EWMA baseline of human clicks per minute (scaled to the window). Shape: `observed
/// ≥ min-ratio × expected` and `z = (observed − expected) / sqrt(max(variance, expected, 1))
/// ≥ min-z`. A burst explained by one new referrer or one country is reported as
/// `referrer_spam` / `geo_shift` instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ClickBurstConfig {
    /// Evaluate this detector (default true).
    pub enabled: bool,
    /// Least `observed / expected` (default 3).
    pub min_ratio: f64,
    /// Least z-score (default 6).
    pub min_z: f64,
    /// Least ratio for `critical` (default 10).
    pub critical_min_ratio: f64,
    /// Least z-score for `critical` (default 12).
    pub critical_min_z: f64,
    /// Least clicks for `info` (default 15 human clicks).
    pub info_min_clicks: u64,
    /// Least clicks for `warning` (default 30).
    pub warning_min_clicks: u64,
    /// Least clicks for `critical` (default 200).
    pub critical_min_clicks: u64,
}

impl ClickBurstConfig {
    /// The volume levels.
    pub fn levels(&self) -> Levels {
        Levels::new(self.info_min_clicks, self.warning_min_clicks, self.critical_min_clicks)
    }
}

impl Default for ClickBurstConfig {
    fn default() -> Self {
        ClickBurstConfig {
            enabled: true,
            min_ratio: 3.0,
            min_z: 6.0,
            critical_min_ratio: 10.0,
            critical_min_z: 12.0,
            info_min_clicks: 15,
            warning_min_clicks: 30,
            critical_min_clicks: 200,
        }
    }
}

/// `[abuse.visitor-flood]`: clicks of one visitor (`visitor_id`: salted hash of IP and user
/// agent) in the window, and of one client network (`ip_trunc`: /24 or /48) counting each
/// of its visitors at most `network-per-visitor-cap` times (so one flooding visitor is not
/// also reported as its network).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct VisitorFloodConfig {
    /// Evaluate this detector (default true).
    pub enabled: bool,
    /// Sliding window, a multiple of `tick` up to 1 h (default 60 s).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Least clicks for `info` (default 30 clicks of one visitor).
    pub info_min_clicks: u64,
    /// Least clicks for `warning` (default 60).
    pub warning_min_clicks: u64,
    /// Least clicks for `critical` (default 120: case C25's 300 clicks in 10 s from one client is critical after 4 s).
    pub critical_min_clicks: u64,
    /// Volume levels of one network (defaults 60 / 120 / 300 capped clicks).
    pub network_info_min_clicks: u64,
    /// See `network-info-min-clicks`.
    pub network_warning_min_clicks: u64,
    /// See `network-info-min-clicks`.
    pub network_critical_min_clicks: u64,
    /// Clicks per visitor counted towards its network (default 10).
    pub network_per_visitor_cap: u32,
}

impl Default for VisitorFloodConfig {
    fn default() -> Self {
        VisitorFloodConfig {
            enabled: true,
            window: Duration::from_secs(60),
            info_min_clicks: 30,
            warning_min_clicks: 60,
            critical_min_clicks: 120,
            network_info_min_clicks: 60,
            network_warning_min_clicks: 120,
            network_critical_min_clicks: 300,
            network_per_visitor_cap: 10,
        }
    }
}

impl VisitorFloodConfig {
    /// Volume levels of one visitor.
    pub fn levels(&self) -> Levels {
        Levels::new(self.info_min_clicks, self.warning_min_clicks, self.critical_min_clicks)
    }

    /// Volume levels of networks.
    pub fn network_levels(&self) -> Levels {
        Levels::new(self.network_info_min_clicks, self.network_warning_min_clicks, self.network_critical_min_clicks)
    }
}

/// `[abuse.bot-share]`: bot clicks over all clicks of a link in the window. Shape: `share ≥
/// min-share` and `share ≥ baseline bot share + min-increase`; volume counts all clicks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct BotShareConfig {
    /// Evaluate this detector (default true).
    pub enabled: bool,
    /// Least bot share (default 0.5).
    pub min_share: f64,
    /// Least bot share for `critical` (default 0.8).
    pub critical_min_share: f64,
    /// Least increase over the link's baseline bot share (default 0.25).
    pub min_increase: f64,
    /// Least clicks for `info` (default 15 clicks).
    pub info_min_clicks: u64,
    /// Least clicks for `warning` (default 30).
    pub warning_min_clicks: u64,
    /// Least clicks for `critical` (default 200).
    pub critical_min_clicks: u64,
}

impl BotShareConfig {
    /// The volume levels.
    pub fn levels(&self) -> Levels {
        Levels::new(self.info_min_clicks, self.warning_min_clicks, self.critical_min_clicks)
    }
}

impl Default for BotShareConfig {
    fn default() -> Self {
        BotShareConfig {
            enabled: true,
            min_share: 0.5,
            critical_min_share: 0.8,
            min_increase: 0.25,
            info_min_clicks: 15,
            warning_min_clicks: 30,
            critical_min_clicks: 200,
        }
    }
}

/// `[abuse.referrer-spam]` and `[abuse.geo-shift]`: one value (a referrer domain other than
/// `(direct)`/`(invalid)`, or a country other than `ZZ`) holding at least `min-share` of a
/// link's human clicks in the window while its share of the link's baseline is at most
/// `max-baseline-share`; only for links whose baseline has at least `min-baseline-rate`
/// human clicks per minute (a link without history has no composition to compare with).
/// Volume counts the value's clicks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ShareShiftConfig {
    /// Evaluate this detector (default true).
    pub enabled: bool,
    /// Least share of the window's human clicks (defaults: referrer 0.5, country 0.6).
    pub min_share: f64,
    /// Least share for `critical` (default 0.8).
    pub critical_min_share: f64,
    /// Most share of the value in the link's baseline (defaults: referrer 0.05, country 0.25).
    pub max_baseline_share: f64,
    /// Least baseline human clicks per minute (default 0.1).
    pub min_baseline_rate: f64,
    /// Least clicks for `info` (default 15 clicks of the value).
    pub info_min_clicks: u64,
    /// Least clicks for `warning` (default 30).
    pub warning_min_clicks: u64,
    /// Least clicks for `critical` (default 200).
    pub critical_min_clicks: u64,
}

impl ShareShiftConfig {
    /// Defaults of `[abuse.referrer-spam]`.
    pub fn referrer_default() -> ShareShiftConfig {
        ShareShiftConfig {
            enabled: true,
            min_share: 0.5,
            critical_min_share: 0.8,
            max_baseline_share: 0.05,
            min_baseline_rate: 0.1,
            info_min_clicks: 15,
            warning_min_clicks: 30,
            critical_min_clicks: 200,
        }
    }

    /// Defaults of `[abuse.geo-shift]`.
    pub fn geo_default() -> ShareShiftConfig {
        ShareShiftConfig {
            enabled: true,
            min_share: 0.6,
            critical_min_share: 0.8,
            max_baseline_share: 0.25,
            min_baseline_rate: 0.1,
            info_min_clicks: 15,
            warning_min_clicks: 30,
            critical_min_clicks: 200,
        }
    }
}

impl ShareShiftConfig {
    /// The volume levels.
    pub fn levels(&self) -> Levels {
        Levels::new(self.info_min_clicks, self.warning_min_clicks, self.critical_min_clicks)
    }
}

impl Default for ShareShiftConfig {
    fn default() -> Self {
        ShareShiftConfig::referrer_default()
    }
}

/// `[abuse.blocklisted-target]`: clicks (all, uncapped) in the window on a link whose target
/// host matches an entry of the blocklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct BlocklistedTargetConfig {
    /// Evaluate this detector (default true).
    pub enabled: bool,
    /// Least clicks for `info` (default 1 click).
    pub info_min_clicks: u64,
    /// Least clicks for `warning` (default 1: any click is a warning).
    pub warning_min_clicks: u64,
    /// Least clicks for `critical` (default 10).
    pub critical_min_clicks: u64,
}

impl BlocklistedTargetConfig {
    /// The volume levels.
    pub fn levels(&self) -> Levels {
        Levels::new(self.info_min_clicks, self.warning_min_clicks, self.critical_min_clicks)
    }
}

impl Default for BlocklistedTargetConfig {
    fn default() -> Self {
        BlocklistedTargetConfig { enabled: true, info_min_clicks: 1, warning_min_clicks: 1, critical_min_clicks: 10 }
    }
}

fn share(name: &str, key: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 && v <= 1.0 { Ok(()) } else { Err(Error::Config(format!("\"abuse.{name}.{key}\" must be a share in (0, 1], got {v}"))) }
}

fn at_least(name: &str, key: &str, v: f64, min: f64) -> Result<()> {
    if v.is_finite() && v >= min { Ok(()) } else { Err(Error::Config(format!("\"abuse.{name}.{key}\" must be a number >= {min}, got {v}"))) }
}

impl AbuseConfig {
    /// Tick in ms.
    pub fn tick_ms(&self) -> i64 {
        ms(self.tick)
    }
    /// Link window in ms.
    pub fn link_window_ms(&self) -> i64 {
        ms(self.link_window)
    }
    /// Warm-up in ms.
    pub fn warmup_ms(&self) -> i64 {
        ms(self.warmup)
    }
    /// Update interval in ms.
    pub fn update_interval_ms(&self) -> i64 {
        ms(self.update_interval)
    }
    /// EWMA weight of one new minute: `1 − 2^(−1 min / half-life)`.
    pub fn baseline_alpha(&self) -> f64 {
        1.0 - 0.5f64.powf(60.0 / self.baseline_half_life.as_secs_f64())
    }

    /// Checks every value; errors with [`Error::Config`] naming the key.
    pub fn validate(&self) -> Result<()> {
        let tick = self.tick_ms();
        if tick < 1 || 60_000 % tick != 0 {
            return Err(Error::Config(format!("\"abuse.tick\" must divide one minute, got {} ms", tick)));
        }
        for (key, d) in [("link-window", self.link_window), ("visitor-flood.window", self.visitor_flood.window)] {
            let w = ms(d);
            if w < tick || w % tick != 0 || w > 3_600_000 {
                return Err(Error::Config(format!("\"abuse.{key}\" must be a multiple of \"abuse.tick\" up to 1h, got {w} ms")));
            }
        }
        if self.baseline_half_life < Duration::from_secs(60) {
            return Err(Error::Config("\"abuse.baseline-half-life\" must be at least 1m".into()));
        }
        if self.quiet_windows == 0 || self.per_visitor_cap == 0 || self.top_n == 0 {
            return Err(Error::Config("\"abuse.quiet-windows\", \"abuse.per-visitor-cap\" and \"abuse.top-n\" must be at least 1".into()));
        }
        at_least("", "update-min-change", self.update_min_change, 0.0)?;
        let b = &self.click_burst;
        b.levels().validate("click-burst")?;
        at_least("click-burst", "min-ratio", b.min_ratio, 1.0)?;
        at_least("click-burst", "critical-min-ratio", b.critical_min_ratio, b.min_ratio)?;
        at_least("click-burst", "min-z", b.min_z, 0.0)?;
        at_least("click-burst", "critical-min-z", b.critical_min_z, b.min_z)?;
        let f = &self.visitor_flood;
        f.levels().validate("visitor-flood")?;
        f.network_levels().validate("visitor-flood.network")?;
        if f.network_per_visitor_cap == 0 {
            return Err(Error::Config("\"abuse.visitor-flood.network-per-visitor-cap\" must be at least 1".into()));
        }
        let s = &self.bot_share;
        s.levels().validate("bot-share")?;
        share("bot-share", "min-share", s.min_share)?;
        share("bot-share", "critical-min-share", s.critical_min_share)?;
        at_least("bot-share", "critical-min-share", s.critical_min_share, s.min_share)?;
        at_least("bot-share", "min-increase", s.min_increase, 0.0)?;
        for (name, c) in [("referrer-spam", &self.referrer_spam), ("geo-shift", &self.geo_shift)] {
            c.levels().validate(name)?;
            share(name, "min-share", c.min_share)?;
            share(name, "critical-min-share", c.critical_min_share)?;
            at_least(name, "critical-min-share", c.critical_min_share, c.min_share)?;
            share(name, "max-baseline-share", c.max_baseline_share)?;
            at_least(name, "min-baseline-rate", c.min_baseline_rate, 0.0)?;
        }
        if self.flood_cap.clicks_per_minute == 0 {
            return Err(Error::Config("\"abuse.flood-cap.clicks-per-minute\" must be at least 1 (set \"enabled = false\" to count every click)".into()));
        }
        self.blocklisted_target.levels().validate("blocklisted-target")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml_like_json() {
        let c = AbuseConfig::default();
        c.validate().expect("defaults valid");
        let json = serde_json::to_string(&c).expect("serialize");
        assert!(json.contains("\"link-window\":") && json.contains("\"warning-min-clicks\":30"), "{json}");
        let back: AbuseConfig = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, c);
        assert!((c.baseline_alpha() - (1.0 - 0.5f64.powf(0.1))).abs() < 1e-12);
    }

    #[test]
    fn partial_sections_keep_defaults_and_unknown_keys_are_refused() {
        let c: AbuseConfig = serde_json::from_str(r#"{"click-burst": {"min-z": 8.0}, "link-window": "30s"}"#).expect("partial");
        assert_eq!(c.click_burst.min_z, 8.0);
        assert_eq!(c.click_burst.warning_min_clicks, 30);
        assert_eq!(c.link_window_ms(), 30_000);
        c.validate().expect("valid");
        assert!(serde_json::from_str::<AbuseConfig>(r#"{"click-burst": {"min-zz": 8.0}}"#).is_err());
    }

    #[test]
    fn invalid_values_name_their_key() {
        type Edit = Box<dyn Fn(&mut AbuseConfig)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("abuse.tick", Box::new(|c| c.tick = Duration::from_millis(7))),
            ("abuse.link-window", Box::new(|c| c.link_window = Duration::from_millis(1500))),
            ("abuse.click-burst", Box::new(|c| c.click_burst.warning_min_clicks = 500)),
            ("abuse.bot-share.min-share", Box::new(|c| c.bot_share.min_share = f64::NAN)),
            ("abuse.geo-shift.max-baseline-share", Box::new(|c| c.geo_shift.max_baseline_share = 1.5)),
            ("abuse.click-burst.critical-min-ratio", Box::new(|c| c.click_burst.critical_min_ratio = 2.0)),
            ("abuse.baseline-half-life", Box::new(|c| c.baseline_half_life = Duration::from_secs(5))),
            ("abuse.flood-cap.clicks-per-minute", Box::new(|c| c.flood_cap.clicks_per_minute = 0)),
        ];
        for (key, f) in cases {
            let mut c = AbuseConfig::default();
            f(&mut c);
            let err = c.validate().expect_err(key).to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
