//! A process-wide metrics recorder for tests (STYLE.md §3.6 compliance): installed once, it
//! keeps every counter and gauge by name and sorted labels so a test can assert that the
//! connector emitted its required metrics with the required labels. Tests use unique topic
//! names, so their label sets never collide.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

#[derive(Default)]
struct TestRecorder {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

fn render(name: &str, labels: &mut [(String, String)]) -> String {
    labels.sort();
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{name}{{{}}}", l.join(","))
}

fn key_of(key: &Key) -> String {
    let mut labels: Vec<(String, String)> = key.labels().map(|l| (l.key().to_string(), l.value().to_string())).collect();
    render(key.name(), &mut labels)
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let cell = self.counters.lock().expect("lock").entry(key_of(key)).or_default().clone();
        Counter::from_arc(cell)
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let cell = self.gauges.lock().expect("lock").entry(key_of(key)).or_default().clone();
        Gauge::from_arc(cell)
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn recorder() -> &'static TestRecorder {
    static REC: OnceLock<&'static TestRecorder> = OnceLock::new();
    REC.get_or_init(|| {
        let rec: &'static TestRecorder = Box::leak(Box::default());
        metrics::set_global_recorder(rec).expect("no other global metrics recorder in this test binary");
        rec
    })
}

/// Installs the recorder (call before the code under test emits anything).
pub(crate) fn install() {
    recorder();
}

/// The value of counter `name` with exactly `labels` (0 if never emitted).
pub(crate) fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut l: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let key = render(name, &mut l);
    recorder().counters.lock().expect("lock").get(&key).map_or(0, |c| c.load(Ordering::Relaxed))
}

/// The value of gauge `name` with exactly `labels`, if ever set.
pub(crate) fn gauge(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut l: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let key = render(name, &mut l);
    recorder().gauges.lock().expect("lock").get(&key).map(|g| f64::from_bits(g.load(Ordering::Relaxed)))
}
