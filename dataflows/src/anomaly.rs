//! The abuse detectors' inputs and outputs at the edge of the graph: the anomaly sink the
//! binary hands in ([`AnomalySink`], counted in [`AnomalyCounters`] and
//! `sluice_anomalies_total{kind, severity, status}`), and the blocklist feed the admin API
//! sends entries through ([`BlocklistSender`]).
//!
//! The detectors themselves are operators of the graph (`operators/abuse/`); the
//! [`sluice_schemas::Anomaly`] type is in `schemas` because connectors and serving need it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};

use parking_lot::Mutex;
use sluice_schemas::{Anomaly, AnomalyKind, AnomalyStatus};

use crate::{Error, Result};

/// Receives each batch of anomaly events (open, updated, closed), from worker threads.
/// Events of one `(kind, key)` arrive in order, from one worker; batches of different
/// workers interleave. Keep it cheap (e.g. a channel send).
pub type AnomalySink = Arc<dyn Fn(&[Anomaly]) + Send + Sync>;

/// Reads the anomaly store's closed anomalies for the abuse detectors: `(after_ms, keep)` →
/// the latest state of every closed anomaly with `window_end > after_ms` (ms UTC) that `keep`
/// accepts, in any order; evidence and summary may be left empty (nothing reads them). Called
/// on worker threads, once per detector and worker, when the detector's event-time schedule
/// starts (module `operators::abuse::known`); it may block. A store that cannot be read
/// yields what it could (the implementation logs why).
pub type ClosedAnomalyReader = Arc<dyn Fn(i64, &dyn Fn(&Anomaly) -> bool) -> Vec<Anomaly> + Send + Sync>;

/// What the anomaly store holds, as the abuse detectors reconcile the episodes they open with
/// it (module `operators::abuse::known`): the anomalies still open, all of them, given at the
/// start; the closed ones only as far back as a detector's replay can meet them, read through
/// [`StoredAnomalies::closed`] once its schedule starts, so that a start never holds every
/// anomaly ever stored.
#[derive(Clone, Default)]
pub struct StoredAnomalies {
    /// The latest event of every anomaly still open (`open`/`updated`).
    pub open: Arc<[Anomaly]>,
    /// Reads the closed ones (`None`: none are stored).
    pub closed: Option<ClosedAnomalyReader>,
}

impl StoredAnomalies {
    /// The closed anomalies with `window_end > after_ms` that `keep` accepts
    /// ([`ClosedAnomalyReader`]); empty without a reader.
    pub fn closed_ending_after(&self, after_ms: i64, keep: &dyn Fn(&Anomaly) -> bool) -> Vec<Anomaly> {
        self.closed.as_ref().map_or_else(Vec::new, |read| read(after_ms, keep))
    }
}

/// Latest states held in memory (tests, tools): the open ones, and a reader filtering the
/// closed ones.
impl From<Vec<Anomaly>> for StoredAnomalies {
    fn from(latest: Vec<Anomaly>) -> StoredAnomalies {
        let (closed, open): (Vec<Anomaly>, Vec<Anomaly>) = latest.into_iter().partition(|a| a.status == AnomalyStatus::Closed);
        let closed: Arc<[Anomaly]> = closed.into();
        let read: ClosedAnomalyReader = Arc::new(move |after_ms, keep| closed.iter().filter(|a| a.window_end > after_ms && keep(a)).cloned().collect());
        StoredAnomalies { open: open.into(), closed: Some(read) }
    }
}

impl std::fmt::Debug for StoredAnomalies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAnomalies").field("open", &self.open.len()).field("closed", &self.closed.is_some()).finish()
    }
}

/// Anomaly events emitted by this process since start, by kind and status.
#[derive(Debug, Default)]
pub struct AnomalyCounters {
    counts: [[AtomicU64; 3]; 6],
}

fn status_index(s: AnomalyStatus) -> usize {
    match s {
        AnomalyStatus::Open => 0,
        AnomalyStatus::Updated => 1,
        AnomalyStatus::Closed => 2,
    }
}

impl AnomalyCounters {
    /// Events of `kind` with `status` since start.
    pub fn get(&self, kind: AnomalyKind, status: AnomalyStatus) -> u64 {
        self.counts[kind as usize][status_index(status)].load(Ordering::Relaxed)
    }

    /// Anomalies opened since start (all kinds).
    pub fn opened(&self) -> u64 {
        AnomalyKind::ALL.iter().map(|k| self.get(*k, AnomalyStatus::Open)).sum()
    }
}

/// Counts one batch (counters and the metric, once per label set) and hands it to the sink.
pub(crate) fn emit(batch: &[Anomaly], counters: &AnomalyCounters, sink: Option<&AnomalySink>) {
    if batch.is_empty() {
        return;
    }
    let mut tally: std::collections::BTreeMap<(AnomalyKind, sluice_schemas::Severity, AnomalyStatus), u64> = Default::default();
    for a in batch {
        *tally.entry((a.kind, a.severity, a.status)).or_default() += 1;
    }
    for ((kind, severity, status), n) in tally {
        counters.counts[kind as usize][status_index(status)].fetch_add(n, Ordering::Relaxed);
        metrics::counter!(
            "sluice_anomalies_total",
            "kind" => kind.as_str(),
            "severity" => severity.as_str(),
            "status" => status.as_str()
        )
        .increment(n);
    }
    for a in batch.iter().filter(|a| a.status == AnomalyStatus::Open) {
        tracing::info!(kind = a.kind.as_str(), severity = a.severity.as_str(), key = %a.key, id = %a.anomaly_id, "anomaly opened");
    }
    if let Some(s) = sink {
        s(batch);
    }
}

/// Normalizes a blocklist entry: a domain, matched with all its subdomains, or an IP
/// address. Accepts any spelling a person may paste: case, a trailing dot, a port, a scheme
/// and path, Unicode (IDN) labels — all mapped to the lowercase ASCII (punycode) host that
/// link targets carry (`LinkMeta::target_host`). `"Bücher.Example.:443"` →
/// `"xn--bcher-kva.example"`. An IPv6 address may be given bare (`2001:db8::1`) or in URL
/// brackets (`[2001:db8::1]`, with a port `[2001:db8::1]:443`); either becomes its
/// compressed form without brackets (`2001:0db8:0:0:0:0:0:1` → `2001:db8::1`), and one that
/// embeds an IPv4 address (`::ffff:1.2.3.4`) becomes that IPv4 address, as link targets do
/// ([`sluice_schemas::link::canonical_host`]).
///
/// Errors with [`Error::Blocklist`] when no host can be read from it (for something that
/// looks like an IPv6 address but is not one, the message says how to write one).
pub fn normalize_pattern(pattern: &str) -> Result<String> {
    let p = pattern.trim();
    // URL syntax needs brackets around an IPv6 address: without them its colons would be
    // read as a port separator ("invalid port number").
    if let Ok(ip) = p.parse::<std::net::Ipv6Addr>() {
        return Ok(sluice_schemas::link::canonical_host(&ip.to_string()));
    }
    if !p.contains("://") && !p.starts_with('[') && p.matches(':').count() >= 2 {
        return Err(Error::Blocklist(format!(
            "\"{pattern}\" is neither a domain nor an IPv6 address; write an IPv6 address bare (2001:db8::1) or in brackets ([2001:db8::1], with a port [2001:db8::1]:443)"
        )));
    }
    let with_scheme = if p.contains("://") { p.to_string() } else { format!("http://{p}/") };
    let url = url::Url::parse(&with_scheme).map_err(|e| Error::Blocklist(format!("\"{pattern}\" is not a domain: {e}")))?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => sluice_schemas::link::canonical_host(&ip.to_string()),
        None => return Err(Error::Blocklist(format!("\"{pattern}\" has no host"))),
    };
    if host.is_empty() {
        return Err(Error::Blocklist(format!("\"{pattern}\" has no host")));
    }
    Ok(host)
}

/// A blocklist change: `+1` adds a normalized pattern, `-1` removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlocklistChange {
    pub pattern: String,
    pub diff: isize,
}

/// Sending half of the blocklist input (the admin API forwards its list here; at start, send
/// every current entry). Set semantics: adding an entry twice or removing an absent one
/// changes nothing. Cheap to clone; clones share the set.
#[derive(Debug, Clone)]
pub struct BlocklistSender {
    tx: Sender<BlocklistChange>,
    set: Arc<Mutex<BTreeSet<String>>>,
}

/// Receiving half, read by global worker 0 of the pipeline.
#[derive(Debug)]
pub(crate) struct BlocklistFeed(pub(crate) Receiver<BlocklistChange>);

/// A new blocklist channel.
pub(crate) fn blocklist_channel() -> (BlocklistSender, BlocklistFeed) {
    let (tx, rx) = mpsc::channel();
    (BlocklistSender { tx, set: Arc::default() }, BlocklistFeed(rx))
}

impl BlocklistSender {
    /// Adds an entry (normalized, see [`normalize_pattern`]); returns the normalized form.
    /// Errors with [`Error::Blocklist`] for an entry without a host; a pipeline that has shut
    /// down ignores the change.
    pub fn insert(&self, pattern: &str) -> Result<String> {
        let p = normalize_pattern(pattern)?;
        if self.set.lock().insert(p.clone()) {
            let _ = self.tx.send(BlocklistChange { pattern: p.clone(), diff: 1 });
        }
        Ok(p)
    }

    /// Removes an entry (normalized first); returns the normalized form. Errors as
    /// [`Self::insert`].
    pub fn remove(&self, pattern: &str) -> Result<String> {
        let p = normalize_pattern(pattern)?;
        if self.set.lock().remove(&p) {
            let _ = self.tx.send(BlocklistChange { pattern: p.clone(), diff: -1 });
        }
        Ok(p)
    }

    /// The current entries, sorted.
    pub fn entries(&self) -> Vec<String> {
        self.set.lock().iter().cloned().collect()
    }
}

/// Every domain suffix of `host` that a blocklist entry can match (the host itself and each
/// parent domain): `a.b.example` → `a.b.example`, `b.example`, `example`. IP literals
/// match only themselves.
pub(crate) fn host_suffixes(host: &str) -> Vec<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Vec::new();
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return vec![host];
    }
    let mut out = vec![host.clone()];
    let mut rest = host.as_str();
    while let Some((_, parent)) = rest.split_once('.') {
        if parent.is_empty() {
            break;
        }
        out.push(parent.to_string());
        rest = parent;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_normalize_case_dot_port_scheme_and_idn() {
        for (input, want) in [
            ("Evil.Example", "evil.example"),
            ("evil.example.", "evil.example"),
            ("evil.example:8443", "evil.example"),
            ("https://Evil.Example/path?q", "evil.example"),
            ("Bücher.Example", "xn--bcher-kva.example"),
            (" xn--bcher-kva.example ", "xn--bcher-kva.example"),
            ("203.0.113.9", "203.0.113.9"),
            ("2001:db8::1", "2001:db8::1"),
            (" 2001:DB8:0:0:0:0:0:1 ", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("https://[2001:db8::1]/x", "2001:db8::1"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("[::ffff:c000:201]:443", "192.0.2.1"),
            ("::192.0.2.1", "192.0.2.1"),
            ("::1", "::1"),
        ] {
            assert_eq!(normalize_pattern(input).expect(input), want, "{input}");
        }
        for bad in ["2001:db8::zz", "2001:db8:::1", "fe80::1%eth0"] {
            let Err(Error::Blocklist(msg)) = normalize_pattern(bad) else { panic!("{bad:?} must be refused") };
            assert_eq!(
                msg,
                format!(
                    "\"{bad}\" is neither a domain nor an IPv6 address; write an IPv6 address bare (2001:db8::1) or in brackets ([2001:db8::1], with a port [2001:db8::1]:443)"
                )
            );
        }
        for bad in ["", "   ", "http://", "a b"] {
            assert!(matches!(normalize_pattern(bad), Err(Error::Blocklist(_))), "{bad:?}");
        }
    }

    #[test]
    fn suffixes_cover_parents_but_not_siblings() {
        assert_eq!(host_suffixes("a.b.example"), vec!["a.b.example", "b.example", "example"]);
        assert_eq!(host_suffixes("203.0.113.9"), vec!["203.0.113.9"]);
        assert!(host_suffixes("").is_empty());
        assert!(!host_suffixes("notevil.example").contains(&"evil.example".to_string()));
    }

    #[test]
    fn sender_has_set_semantics() {
        let (tx, rx) = blocklist_channel();
        tx.insert("Evil.example").expect("valid");
        tx.insert("evil.example.").expect("valid");
        tx.remove("other.example").expect("valid");
        tx.remove("EVIL.example").expect("valid");
        let got: Vec<BlocklistChange> = rx.0.try_iter().collect();
        assert_eq!(got, vec![BlocklistChange { pattern: "evil.example".into(), diff: 1 }, BlocklistChange { pattern: "evil.example".into(), diff: -1 }]);
        assert!(tx.entries().is_empty());
    }
}
