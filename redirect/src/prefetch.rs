//! Speculative requests: a browser fetching a short link before anyone follows it (Chrome's
//! speculation rules and `<link rel=prefetch>` send `Sec-Purpose: prefetch`, prerendering
//! `Sec-Purpose: prefetch;prerender`; older browsers `Purpose: prefetch` or `X-Moz:
//! prefetch`; Safari's page previews `X-Purpose: preview`). Such a request is nobody's
//! click, and what it should get is the [`PrefetchPolicy`] (`[redirect] prefetch`).
//!
//! Why refusing is the default: a browser that prefetched the redirect and the target serves
//! the user's later navigation from what it fetched, so that navigation never reaches us — a
//! prefetch answered with the redirect but not counted loses the click when the user does
//! follow the link, and one counted counts hovers and search-result prefetches that are
//! never followed. A non-2xx final answer makes the browser drop the prefetch and fetch
//! normally on navigation (Fetch metadata / Prefetch specifications, `Sec-Purpose`; Chrome's
//! speculation rules docs), which reaches us and is counted exactly once. The cost is the
//! head start the prefetch would have given: one round trip to the redirect on navigation.

use axum::http::HeaderName;

use crate::Error;
use crate::head::HeaderFields;

/// What a speculative `GET` gets (`[redirect] prefetch`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PrefetchPolicy {
    /// `"refuse"` (default): 503 `prefetch_refused` with `Cache-Control: no-store`, no
    /// click; the browser drops the prefetch and the navigation, if any, is the click.
    #[default]
    Refuse,
    /// `"redirect"`: the redirect as for a navigation, without a click (saves the user the
    /// round trip; a navigation served from the prefetch is then not counted).
    Redirect,
    /// `"count"`: no different from a navigation — the redirect and a click.
    Count,
}

impl PrefetchPolicy {
    /// The configuration spelling (`"refuse"`, `"redirect"`, `"count"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::Redirect => "redirect",
            Self::Count => "count",
        }
    }
}

impl std::str::FromStr for PrefetchPolicy {
    type Err = Error;

    /// `"refuse"`, `"redirect"` or `"count"` (any case, surrounding blanks ignored).
    /// Errors: [`Error::Prefetch`] for anything else.
    fn from_str(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        [Self::Refuse, Self::Redirect, Self::Count]
            .into_iter()
            .find(|p| t.eq_ignore_ascii_case(p.as_str()))
            .ok_or_else(|| Error::Prefetch { value: s.to_owned() })
    }
}

const SEC_PURPOSE: HeaderName = HeaderName::from_static("sec-purpose");
const PURPOSE: HeaderName = HeaderName::from_static("purpose");
const X_PURPOSE: HeaderName = HeaderName::from_static("x-purpose");
const X_MOZ: HeaderName = HeaderName::from_static("x-moz");

/// Every request header [`is_speculative`] reads.
pub const READ_HEADERS: [HeaderName; 4] = [SEC_PURPOSE, PURPOSE, X_PURPOSE, X_MOZ];

/// Whether `headers` mark the request as speculative (module docs): `Sec-Purpose` with a
/// list member `prefetch` on any of its lines (RFC 8941 list; parameters such as
/// `;prerender` or `;anonymous-client-ip` allowed), or a list member `prefetch` of
/// `Purpose`, `X-Purpose` or `X-Moz` on any of their lines (`X-Purpose` also `preview`);
/// members are split at commas (RFC 9110 section 5.3: repeated lines and a comma-separated
/// list are the same field), compared case-insensitively, blanks around them ignored.
pub fn is_speculative<H: HeaderFields + ?Sized>(headers: &H) -> bool {
    // Members of every line of header `name`, parameters (`;...`) cut off.
    let any_member = |name: HeaderName, pred: &dyn Fn(&[u8]) -> bool| {
        headers.all(&name).any(|v| v.split(|&b| b == b',').any(|m| pred(m.split(|&b| b == b';').next().unwrap_or_default().trim_ascii())))
    };
    let is_prefetch = |v: &[u8]| v.eq_ignore_ascii_case(b"prefetch");
    any_member(SEC_PURPOSE, &is_prefetch)
        || any_member(PURPOSE, &is_prefetch)
        || any_member(X_MOZ, &is_prefetch)
        || any_member(X_PURPOSE, &|v| is_prefetch(v) || v.eq_ignore_ascii_case(b"preview"))
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn speculative_requests_are_recognised_and_navigations_are_not() {
        for spec in [
            &[("sec-purpose", "prefetch")][..],
            &[("sec-purpose", "prefetch;prerender")],
            &[("sec-purpose", "prefetch; anonymous-client-ip")],
            &[("sec-purpose", " PREFETCH ")],
            &[("purpose", "prefetch")],
            &[("x-moz", "prefetch")],
            &[("x-purpose", "preview")],
            &[("x-purpose", "Prefetch")],
            &[("accept", "text/html"), ("sec-purpose", "prefetch"), ("purpose", "prefetch")],
            &[("sec-purpose", "prerender, prefetch")],
            &[("sec-purpose", "x-other;a=1 , Prefetch;prerender")],
            &[("purpose", "prefetch, other")],
            &[("purpose", "other,Prefetch")],
            &[("x-moz", " other , prefetch")],
            &[("x-purpose", "other, preview")],
        ] {
            assert!(is_speculative(&headers(spec)), "{spec:?}");
        }
        // The marker on a later line of a repeated Sec-Purpose header counts too.
        let mut h = HeaderMap::new();
        h.append(SEC_PURPOSE, HeaderValue::from_static("x-other"));
        h.append(SEC_PURPOSE, HeaderValue::from_static("prefetch"));
        assert!(is_speculative(&h));
        for nav in [
            &[][..],
            &[("accept", "text/html"), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "document")],
            &[("sec-purpose", "")],
            &[("sec-purpose", "prerender")],
            &[("sec-purpose", "prefetchx")],
            &[("sec-purpose", "nonprefetch;prefetch")],
            &[("sec-purpose", "x-other, prerender;prefetch")],
            &[("purpose", "prefetch-ish")],
            &[("x-moz", "preview")],
            &[("x-purpose", "")],
            &[("purpose", "prefetchx, other")],
            &[("x-moz", "preview, other")],
        ] {
            assert!(!is_speculative(&headers(nav)), "{nav:?}");
        }
        // A value that is no text (obs-text bytes) is no prefetch marker.
        let mut h = HeaderMap::new();
        h.insert(SEC_PURPOSE, HeaderValue::from_bytes(b"\xffprefetch").expect("obs-text"));
        assert!(!is_speculative(&h));
    }

    #[test]
    fn policies_parse_in_any_case_and_refuse_anything_else() {
        for (s, want) in [("refuse", PrefetchPolicy::Refuse), (" Redirect ", PrefetchPolicy::Redirect), ("COUNT", PrefetchPolicy::Count)] {
            assert_eq!(s.parse::<PrefetchPolicy>().expect(s), want);
            assert_eq!(want.as_str().parse::<PrefetchPolicy>().expect("round trip"), want);
        }
        for bad in ["", "ignore", "refused", "count,redirect"] {
            let e = bad.parse::<PrefetchPolicy>().expect_err(bad);
            assert_eq!(e.to_string(), format!("redirect.prefetch {bad:?} is not one of \"refuse\" (the default), \"redirect\" or \"count\""));
        }
    }
}
