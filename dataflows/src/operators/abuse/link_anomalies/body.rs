//! The body (code, org, summary, evidence) of the per-link detectors' events.

use sluice_schemas::{Evidence, LinkMeta};

use super::super::anomaly_lifecycle::{Assessment, Body, top_n};
use super::super::link_window::LinkWindow;
use super::super::share_shift::Shift;
use super::super::sym::Sym;
use super::super::{blocklisted_target, bot_share, click_burst, geo_shift, referrer_spam};
use super::{BOTS, BURST, GEO, REFERRER};
use crate::model::DimSym;

/// What the per-link detectors' events say besides the verdict: the link's window, metadata
/// and shapes at the tick, read only when an event is emitted.
pub(super) struct BodyCtx<'a> {
    pub(super) code: &'a Sym,
    pub(super) w: &'a LinkWindow<DimSym>,
    pub(super) meta: Option<&'a LinkMeta>,
    pub(super) window: i64,
    pub(super) top_n: usize,
    pub(super) referrer: Option<&'a Shift>,
    pub(super) geo: Option<&'a Shift>,
    pub(super) entries: &'a [(String, String)],
}

impl BodyCtx<'_> {
    /// The body of an event of kind index `kind` with verdict `a`.
    pub(super) fn body(&self, kind: usize, a: &Assessment) -> Body {
        let s = &self.w.sums;
        let code = self.code.as_str();
        let top_visit = s.visitors.values().copied().max().unwrap_or(0);
        let host = self.entries.first().map(|(_, h)| h.clone()).or_else(|| self.meta.and_then(|m| m.target_host.clone()));
        let evidence = Evidence {
            window_ms: self.window,
            clicks: s.raw,
            human_clicks: s.human,
            bot_clicks: s.bots,
            visitors: s.visitors.len() as u64,
            top_visitor_share: if s.raw > 0 { f64::from(top_visit) / s.raw as f64 } else { 0.0 },
            top_countries: top_n(s.countries.iter().map(|(k, v)| (k.as_str(), *v)), self.top_n),
            top_referrers: top_n(s.referrers.iter().map(|(k, v)| (k.as_str(), *v)), self.top_n),
            top_user_agents: top_n(s.browsers.iter().map(|(k, v)| (k.as_str(), *v)), self.top_n),
            top_codes: Vec::new(),
            top_visitors: Vec::new(),
            network: None,
            target_host: host.clone(),
            blocklist_patterns: self.entries.iter().map(|(e, _)| e.clone()).collect(),
            baseline_minutes: self.w.base.minutes,
        };
        let summary = match kind {
            BURST => click_burst::summary(code, a, self.window),
            BOTS => bot_share::summary(code, a, s.bots, s.human + s.bots, self.window),
            REFERRER => self.referrer.map(|sh| referrer_spam::summary(code, a, sh, self.window)).unwrap_or_default(),
            GEO => self.geo.map(|sh| geo_shift::summary(code, a, sh, self.window)).unwrap_or_default(),
            _ => blocklisted_target::summary(code, a, host.as_deref().unwrap_or("?"), &evidence.blocklist_patterns, self.window),
        };
        Body { code: Some(code.to_string()), org: self.meta.and_then(|m| m.org.clone()), summary, evidence }
    }
}
