//! Reading the stats API like a client and checking it against the generator's ground
//! truth (`sluice demo`, and tests that run loadgen).
//!
//! The rule: per link, `clicks` (humans, bots excluded) and `bot_clicks` must
//! equal the truth exactly (after dedup); `uniques` must be exact up to the sketches'
//! exact-set limit (48 visitors) and within 3 standard errors of HLL++ at precision 14
//! above it: |estimate − visitors| ≤ ⌈3 × 1.04/√16384 × visitors⌉ (±2.44 %; Heule et al.,
//! "HyperLogLog in Practice", EDBT 2013, §2).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde_json::Value;
use sluice_dataflows::sketch::{EXACT_LIMIT, hll_relative_error};
use url::Url;

use crate::loadgen::{GroundTruth, LinkTruth};

/// Largest accepted |estimate − exact| of a unique count (module docs).
pub fn uniques_tolerance(exact: u64) -> u64 {
    if exact <= EXACT_LIMIT as u64 { 0 } else { (3.0 * hll_relative_error() * exact as f64).ceil() as u64 }
}

/// Whether `estimate` is within [`uniques_tolerance`] of `exact`.
pub fn uniques_within_bound(estimate: u64, exact: u64) -> bool {
    estimate.abs_diff(exact) <= uniques_tolerance(exact)
}

/// One link's stats next to its truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkCheck {
    /// Short code.
    pub code: String,
    /// What the generator sent.
    pub truth: LinkTruth,
    /// `totals.clicks` of the stats API.
    pub clicks: u64,
    /// `totals.bot_clicks` (`None` if the API could not read it consistently).
    pub bot_clicks: Option<u64>,
    /// `totals.uniques`.
    pub uniques: u64,
}

impl LinkCheck {
    /// Clicks match exactly.
    pub fn clicks_ok(&self) -> bool {
        self.clicks == self.truth.clicks
    }
    /// Bot clicks match exactly.
    pub fn bots_ok(&self) -> bool {
        self.bot_clicks == Some(self.truth.bot_clicks)
    }
    /// Uniques within the bound.
    pub fn uniques_ok(&self) -> bool {
        uniques_within_bound(self.uniques, self.truth.visitors)
    }
    /// All three.
    pub fn ok(&self) -> bool {
        self.clicks_ok() && self.bots_ok() && self.uniques_ok()
    }
}

/// `GET {base}/v1/links/{code}/stats?{query}` as JSON; errors on a non-200 answer.
pub async fn get_stats(client: &reqwest::Client, base: &Url, code: &str, query: &str) -> anyhow::Result<Value> {
    let url = format!("{}v1/links/{code}/stats?{query}", base.as_str());
    let resp = client.get(&url).send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.with_context(|| format!("GET {url}: body is not json"))?;
    if status != reqwest::StatusCode::OK {
        bail!("GET {url}: {status} {body}");
    }
    Ok(body)
}

/// Percent-encodes an RFC 3339 instant for a query string (`+` → `%2B`).
pub fn q_instant(ms: i64) -> String {
    sluice_serving::stats::params::rfc3339_utc(ms).replace('+', "%2B")
}

/// Checks every link of `truth` over `[from_ms, to_ms)` (whole minutes, UTC days).
///
/// Errors: an unreachable API or a non-200 answer.
pub async fn check_links(client: &reqwest::Client, base: &Url, truth: &GroundTruth, from_ms: i64, to_ms: i64) -> anyhow::Result<Vec<LinkCheck>> {
    let query = format!("bucket=day&from={}&to={}", q_instant(from_ms), q_instant(to_ms));
    let mut out = Vec::with_capacity(truth.links.len());
    for (code, t) in &truth.links {
        let body = get_stats(client, base, code, &query).await?;
        let totals = &body["totals"];
        out.push(LinkCheck {
            code: code.clone(),
            truth: *t,
            clicks: totals["clicks"].as_u64().context("totals.clicks")?,
            bot_clicks: totals["bot_clicks"].as_u64(),
            uniques: totals["uniques"].as_u64().context("totals.uniques")?,
        });
    }
    out.sort_by(|a, b| b.truth.clicks.cmp(&a.truth.clicks).then_with(|| a.code.cmp(&b.code)));
    Ok(out)
}

/// Human clicks per value of `dimension`, summed over `codes` (sums are valid for clicks,
/// never for uniques), largest first.
///
/// Errors: as [`check_links`].
pub async fn breakdown(
    client: &reqwest::Client,
    base: &Url,
    codes: &[String],
    dimension: &str,
    from_ms: i64,
    to_ms: i64,
) -> anyhow::Result<Vec<(String, u64)>> {
    let query = format!("bucket=day&from={}&to={}&dimensions={dimension}", q_instant(from_ms), q_instant(to_ms));
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    for code in codes {
        let body = get_stats(client, base, code, &query).await?;
        for d in body["dimension_totals"].as_array().into_iter().flatten() {
            let value = d[dimension].as_str().unwrap_or("?").to_string();
            *sums.entry(value).or_default() += d["clicks"].as_u64().unwrap_or(0);
        }
    }
    let mut v: Vec<(String, u64)> = sums.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(v)
}

/// Nearest-rank percentile `p` (0..=100) of `sorted` (ascending); `None` when empty.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniques_bound_is_exact_up_to_48_then_three_standard_errors() {
        assert_eq!(uniques_tolerance(0), 0);
        assert_eq!(uniques_tolerance(48), 0);
        // 3 × 1.04 / 128 = 0.024375
        assert_eq!(uniques_tolerance(49), 2);
        assert_eq!(uniques_tolerance(1_000), 25);
        assert_eq!(uniques_tolerance(10_000), 244);
        assert!(uniques_within_bound(1_025, 1_000));
        assert!(!uniques_within_bound(1_026, 1_000));
        assert!(!uniques_within_bound(47, 48));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
