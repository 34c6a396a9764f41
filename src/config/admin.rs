//! `[admin]` (admin endpoints' credentials) and `[api]` (the link API's request limits).

use serde::{Deserialize, Serialize};
use sluice_serving::ratelimit::RateLimit;

use super::Secret;

/// `[admin]`: who may call `/v1/admin/...` (and the other admin-role endpoints).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AdminSection {
    /// Bearer token admin callers must present (`SLUICE__ADMIN__TOKEN`), compared without
    /// surrounding whitespace; unset, empty or blank = direct loopback clients only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// `[admin.auto-actions]`: automatic actions on critical anomalies (off by default).
    pub auto_actions: crate::auto_actions::AutoActionsSection,
}

/// `[api]`: limits of the link API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ApiSection {
    /// `POST /v1/links` per client and window, `"60/1m"` style, or `"off"` (the default).
    pub create_rate_limit: String,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection { create_rate_limit: "off".into() }
    }
}

impl ApiSection {
    /// The creation limit, `None` when `"off"` (or empty).
    ///
    /// Errors: a value that is neither `"off"` nor a [`RateLimit`].
    pub fn create_rate_limit(&self) -> anyhow::Result<Option<RateLimit>> {
        let v = self.create_rate_limit.trim();
        if v.is_empty() || v.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        v.parse::<RateLimit>().map(Some).map_err(|e| anyhow::anyhow!("api.create-rate-limit: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rate_limit_values() {
        let s = |v: &str| ApiSection { create_rate_limit: v.into() };
        assert_eq!(s("off").create_rate_limit().expect("off"), None);
        assert_eq!(s("").create_rate_limit().expect("empty"), None);
        assert_eq!(s("60/1m").create_rate_limit().expect("60/1m"), Some(RateLimit { max: 60, window: Duration::from_secs(60) }));
        assert!(s("60 per minute").create_rate_limit().is_err());
        assert_eq!(ApiSection::default().create_rate_limit().expect("default"), None);
    }
}
