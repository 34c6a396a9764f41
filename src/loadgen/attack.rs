//! Attack shapes for the abuse team's drills and detector tests: extra redirect
//! requests on one target link, added on top of the normal traffic from `--attack-start`
//! for `--attack-duration` at `--attack-rate` requests per second.
//!
//! | shape | the extra requests |
//! |---|---|
//! | `burst` | ordinary visitors (the normal mix of humans and bots, new and returning) |
//! | `flood` | one visitor: one client address and one browser user agent |
//! | `bots` | bots and link-preview fetchers only, each a new visitor |
//! | `referrer-spam` | new human visitors all referred by one new domain ([`SPAM_REFERRER`]) |
//! | `geo-shift` | new human visitors all from one country ([`GEO_SHIFT_COUNTRY`]) |
//!
//! Attack requests are real clicks: the ground truth counts them like any other. The
//! report says when the attack started and ended (wall clock, ms) and on which link, so a
//! test can check detection latency.

use clap::ValueEnum;

use super::plan::{Request, TrafficModel, Visitor};

/// The referrer of `referrer-spam` (a reserved `.example` name: never a real site).
pub const SPAM_REFERRER: &str = "https://free-followers-now.example/offer?id=7731";
/// The country of `geo-shift`: far from the normal mix's top countries.
pub const GEO_SHIFT_COUNTRY: &str = "VN";

/// `--attack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttackKind {
    /// A sudden surge of ordinary clicks on one link.
    Burst,
    /// Many clicks from one visitor.
    Flood,
    /// A surge of bot and link-preview clicks.
    Bots,
    /// A new referrer domain suddenly dominating a link.
    ReferrerSpam,
    /// A link's traffic suddenly from one country.
    GeoShift,
}

impl AttackKind {
    /// The anomaly kind the dataflow's abuse detectors should raise (`Anomaly.kind`, see
    /// `sluice_schemas::anomaly`).
    pub fn anomaly_kind(self) -> &'static str {
        match self {
            AttackKind::Burst => "click_burst",
            AttackKind::Flood => "visitor_flood",
            AttackKind::Bots => "bot_share",
            AttackKind::ReferrerSpam => "referrer_spam",
            AttackKind::GeoShift => "geo_shift",
        }
    }
}

/// Draws the extra requests of one attack.
pub struct Attack {
    kind: AttackKind,
    link: usize,
    model: TrafficModel,
    flooder: Visitor,
}

impl Attack {
    /// An attack of `kind` on link index `link`, drawing from its own `model` (seeded apart
    /// from the normal traffic, so the normal request sequence is the same with or without
    /// an attack).
    pub fn new(kind: AttackKind, link: usize, mut model: TrafficModel) -> Attack {
        let ua = model.human_ua();
        let flooder = model.visitor_with(ua);
        Attack { kind, link, model, flooder }
    }

    /// The attack's shape.
    pub fn kind(&self) -> AttackKind {
        self.kind
    }

    /// The attacked link index.
    pub fn link(&self) -> usize {
        self.link
    }

    /// The next attack request (always a `GET`: an attack is made of clicks).
    pub fn request(&mut self) -> Request {
        let m = &mut self.model;
        let (visitor, referrer) = match self.kind {
            AttackKind::Burst => {
                let v = m.visitor();
                let bot = m.intended_bot(v);
                (v, m.referrer(bot))
            }
            AttackKind::Flood => (self.flooder, None),
            AttackKind::Bots => {
                let ua = m.bot_ua();
                let v = m.visitor_with(ua);
                (v, m.referrer(true))
            }
            AttackKind::ReferrerSpam => {
                let ua = m.human_ua();
                (m.visitor_with(ua), Some(SPAM_REFERRER))
            }
            AttackKind::GeoShift => {
                let ua = m.human_ua();
                let v = m.visitor_in(ua, GEO_SHIFT_COUNTRY);
                (v, m.referrer(false))
            }
        };
        Request { link: self.link, head: false, visitor, referrer }
    }
}
