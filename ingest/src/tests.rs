use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use sluice_connectors::click_log::ClickLog;
use sluice_schemas::ClickEvent;
use uuid::Uuid;

use crate::*;

pub(crate) fn event(i: u64) -> ClickEvent {
    ClickEvent {
        event_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(i)),
        code: format!("c{}", i % 11),
        ts: 1_700_000_000_000 + i as i64,
        ip_trunc: Some("192.0.2.0".into()),
        visitor_id: i * 7919,
        user_agent: "test-agent".into(),
        referrer: None,
        accept_language: Some("en".into()),
        edge_region: None,
    }
}

/// The value of one sample line `name{labels} value` in Prometheus text, 0 when absent.
fn sample(rendered: &str, series: &str) -> u64 {
    rendered
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().expect("integer counter"))
        .unwrap_or(0)
}

fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new().build_recorder()
}

/// A log that fails its first `failures` appends, then delegates.
#[derive(Clone)]
struct FlakyLog {
    inner: Option<ClickLog>,
    failures: u32,
    calls: Arc<AtomicU32>,
}

impl EventLog for FlakyLog {
    fn append(&self, events: &[ClickEvent]) -> sluice_connectors::Result<Range<u64>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        match &self.inner {
            Some(log) if call >= self.failures => log.append(events),
            _ => Err(sluice_connectors::Error::Config("injected append failure".into())),
        }
    }
}

fn fast_retries(max_attempts: u32) -> LogWriterConfig {
    LogWriterConfig {
        max_batch: 1000,
        linger: Duration::from_millis(1),
        retry_initial: Duration::from_millis(1),
        retry_max: Duration::from_millis(4),
        max_attempts,
        ..LogWriterConfig::default()
    }
}

/// Name, niceness and scheduling policy (Linux `SCHED_*` number) of the thread of each append.
#[cfg(target_os = "linux")]
type SeenThreads = Arc<std::sync::Mutex<Vec<(Option<String>, i32, u32)>>>;

/// The calling thread's scheduling policy: field 41 of `/proc/thread-self/stat`.
#[cfg(target_os = "linux")]
fn thread_policy() -> u32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    // `rest` starts at field 3 (state); policy is field 41.
    rest.split_whitespace().nth(41 - 3).expect("policy field").parse().expect("number")
}

/// A log that records which thread appended and at what niceness, and panics on the
/// appends numbered in `panic_on` (0-based).
#[cfg(target_os = "linux")]
#[derive(Clone)]
struct ProbeLog {
    inner: ClickLog,
    panic_on: Vec<u32>,
    calls: Arc<AtomicU32>,
    seen: SeenThreads,
}

#[cfg(target_os = "linux")]
impl EventLog for ProbeLog {
    fn append(&self, events: &[ClickEvent]) -> sluice_connectors::Result<Range<u64>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("getpriority");
        self.seen.lock().expect("lock").push((std::thread::current().name().map(str::to_owned), nice, thread_policy()));
        assert!(!self.panic_on.contains(&call), "injected panic in append {call}");
        self.inner.append(events)
    }
}

#[cfg(target_os = "linux")]
fn probe(dir: &std::path::Path, panic_on: Vec<u32>) -> ProbeLog {
    ProbeLog { inner: ClickLog::open(dir).expect("open"), panic_on, calls: Arc::new(AtomicU32::new(0)), seen: Arc::default() }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn appends_run_on_the_click_log_thread_at_a_raised_niceness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = probe(dir.path(), vec![]);
    let base = rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("getpriority");
    let inherited = thread_policy();
    let batch = u32::try_from(libc::SCHED_BATCH).expect("policy number");
    let idle = u32::try_from(libc::SCHED_IDLE).expect("policy number");
    let cases = [
        (5, AppendPolicy::Batch, ((base + 5).min(19), batch)),
        (0, AppendPolicy::Batch, (base, batch)),
        (0, AppendPolicy::Idle, (base, idle)),
        (0, AppendPolicy::Inherit, (base, inherited)),
    ];
    assert_eq!(LogWriterConfig::default().policy, AppendPolicy::Batch);
    for (increment, policy, (want, want_policy)) in cases {
        let (tx, rx) = click_channel(100);
        for i in 0..3 {
            assert!(tx.try_send(event(i)));
        }
        drop(tx);
        log.seen.lock().expect("lock").clear();
        let config = LogWriterConfig { nice_increment: increment, policy, ..LogWriterConfig::default() };
        let summary = spawn_log_writer(rx, log.clone(), config).await.expect("join");
        assert_eq!((summary.logged, summary.dropped), (3, 0));
        let seen = log.seen.lock().expect("lock").clone();
        assert_eq!(seen, vec![(Some("sluice-click-log".to_owned()), want, want_policy)], "increment {increment}, {policy:?}");
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_panicking_append_drops_its_batch_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = probe(dir.path(), vec![0]);
    let (tx, rx) = click_channel(100);
    for i in 0..9 {
        assert!(tx.try_send(event(i)));
    }
    let stats = Arc::clone(tx.stats());
    drop(tx);
    let config = LogWriterConfig { max_batch: 5, ..LogWriterConfig::default() };
    let summary = spawn_log_writer(rx, log.clone(), config).await.expect("join");
    assert_eq!(summary, WriterSummary { batches: 1, logged: 4, dropped: 5, failed_attempts: 0 });
    assert_eq!(stats.snapshot().dropped_log_error, 5);
    let logged: Vec<ClickEvent> = log.inner.read(0, 100).expect("read").into_iter().map(|(_, e)| e).collect();
    assert_eq!(logged, (5..9).map(event).collect::<Vec<_>>());
}

#[test]
fn try_send_never_blocks_and_counts_drops() {
    let rec = recorder();
    let (tx, rx) = click_channel(2);
    let results = metrics::with_local_recorder(&rec, || (0..5).map(|i| tx.try_send(event(i))).collect::<Vec<_>>());
    assert_eq!(results, vec![true, true, false, false, false]);
    assert_eq!(tx.available(), 0);
    drop(rx);
    let closed = metrics::with_local_recorder(&rec, || tx.try_send(event(9)));
    assert!(!closed);
    let s = tx.stats().snapshot();
    assert_eq!((s.dropped_channel_full, s.dropped_closed, s.logged), (3, 1, 0));
    let text = rec.handle().render();
    assert_eq!(sample(&text, r#"sluice_click_events_dropped_total{reason="channel_full"}"#), 3);
    assert_eq!(sample(&text, r#"sluice_click_events_dropped_total{reason="closed"}"#), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_logs_everything_in_order_and_drains_on_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    let (tx, rx) = click_channel(10_000);
    let writer = spawn_log_writer(rx, log.clone(), LogWriterConfig { max_batch: 100, ..LogWriterConfig::default() });
    for i in 0..2_500 {
        assert!(tx.try_send(event(i)));
        if i % 300 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let stats = Arc::clone(tx.stats());
    drop(tx);
    let summary = tokio::time::timeout(Duration::from_secs(30), writer).await.expect("drains in time").expect("join");
    assert_eq!(summary.logged, 2_500);
    assert_eq!(summary.dropped, 0);
    assert!(summary.batches >= 25, "max_batch 100 bounds every batch: {summary:?}");
    assert_eq!(stats.snapshot().logged, 2_500);
    let stored = log.read(0, 10_000).expect("read");
    let expected: Vec<(u64, ClickEvent)> = (0..2_500).map(|i| (i, event(i))).collect();
    assert_eq!(stored, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_senders_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    let (tx, rx) = click_channel(100_000);
    let writer = spawn_log_writer(rx, log.clone(), LogWriterConfig::default());
    let tasks: Vec<_> = (0..4u64)
        .map(|t| {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0..1_000 {
                    assert!(tx.try_send(event(t * 10_000 + i)));
                }
            })
        })
        .collect();
    drop(tx);
    for t in tasks {
        t.await.expect("sender task");
    }
    let summary = writer.await.expect("join");
    assert_eq!(summary.logged, 4_000);
    let mut got: Vec<u128> = log.read(0, 10_000).expect("read").into_iter().map(|(_, e)| e.event_id.as_u128()).collect();
    got.sort_unstable();
    let mut want: Vec<u128> = (0..4u64).flat_map(|t| (0..1_000).map(move |i| event(t * 10_000 + i).event_id.as_u128())).collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[tokio::test]
async fn batches_are_bounded_by_max_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    let (tx, rx) = click_channel(100);
    for i in 0..10 {
        assert!(tx.try_send(event(i)));
    }
    drop(tx);
    let config = LogWriterConfig { max_batch: 4, linger: Duration::from_millis(50), ..LogWriterConfig::default() };
    let summary = spawn_log_writer(rx, log.clone(), config).await.expect("join");
    assert_eq!((summary.batches, summary.logged), (3, 10), "4 + 4 + 2");
    assert_eq!(log.head(), 10);
}

#[tokio::test]
async fn failed_appends_are_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    let flaky = FlakyLog { inner: Some(log.clone()), failures: 2, calls: Arc::new(AtomicU32::new(0)) };
    let (tx, rx) = click_channel(100);
    for i in 0..10 {
        assert!(tx.try_send(event(i)));
    }
    let stats = Arc::clone(tx.stats());
    assert_eq!(stats.append_failure(), None);
    drop(tx);
    let summary = spawn_log_writer(rx, flaky.clone(), fast_retries(5)).await.expect("join");
    assert_eq!(summary, WriterSummary { batches: 1, logged: 10, dropped: 0, failed_attempts: 2 });
    assert_eq!(stats.append_failure(), None, "cleared by the append that succeeded");
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    assert_eq!(log.read(0, 100).expect("read").len(), 10);
}

#[tokio::test] // current-thread runtime: the thread-local recorder sees the writer's metrics
async fn persistent_log_failure_drops_the_batch_and_counts_it() {
    let rec = recorder();
    let _guard = metrics::set_default_local_recorder(&rec);
    let broken = FlakyLog { inner: None, failures: u32::MAX, calls: Arc::new(AtomicU32::new(0)) };
    let (tx, rx) = click_channel(100);
    for i in 0..7 {
        assert!(tx.try_send(event(i)));
    }
    let stats = Arc::clone(tx.stats());
    drop(tx);
    let summary = spawn_log_writer(rx, broken.clone(), fast_retries(3)).await.expect("join");
    assert_eq!(summary, WriterSummary { batches: 0, logged: 0, dropped: 7, failed_attempts: 3 });
    assert_eq!(broken.calls.load(Ordering::SeqCst), 3);
    assert_eq!(stats.snapshot().dropped_log_error, 7);
    assert_eq!(stats.append_failure().as_deref(), Some("invalid configuration: injected append failure"), "/readyz reports it");
    let text = rec.handle().render();
    assert_eq!(sample(&text, r#"sluice_click_events_dropped_total{reason="log_error"}"#), 7);
    assert_eq!(sample(&text, "sluice_click_log_write_errors_total"), 3);
    assert_eq!(sample(&text, r#"sluice_click_events_logged_total{source="redirect"}"#), 0);
}

#[tokio::test]
async fn logged_events_are_counted_once_per_event() {
    let rec = recorder();
    let _guard = metrics::set_default_local_recorder(&rec);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    let (tx, rx) = click_channel(100);
    for i in 0..9 {
        assert!(tx.try_send(event(i)));
    }
    drop(tx);
    let config = LogWriterConfig { max_batch: 5, ..LogWriterConfig::default() };
    let summary = spawn_log_writer(rx, log, config).await.expect("join");
    let text = rec.handle().render();
    assert_eq!(sample(&text, r#"sluice_click_events_logged_total{source="redirect"}"#), 9);
    assert_eq!(sample(&text, "sluice_click_log_batches_total"), summary.batches);
    assert_eq!(summary.batches, 2);
}

#[tokio::test]
async fn append_durable_returns_offsets_after_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    let api = DurableAppender::new(log.clone());
    assert_eq!(api.append_durable((0..3).map(event).collect()).await.expect("append"), 0..3);
    assert_eq!(api.append_durable(vec![]).await.expect("empty"), 3..3);
    assert_eq!(api.append_durable((3..5).map(event).collect()).await.expect("append"), 3..5);
    drop(api);
    drop(log);
    let reopened = ClickLog::open(dir.path()).expect("reopen");
    assert_eq!(reopened.read(0, 10).expect("read"), (0..5).map(|i| (i, event(i))).collect::<Vec<_>>());

    let broken = DurableAppender::new(FlakyLog { inner: None, failures: u32::MAX, calls: Arc::new(AtomicU32::new(0)) });
    match broken.append_durable(vec![event(0)]).await {
        Err(Error::Log(_)) => {}
        other => panic!("expected a log error, got {other:?}"),
    }
}

/// A click log whose appends wait until it is opened (a blackhole while closed).
#[derive(Clone)]
struct HeldLog {
    inner: ClickLog,
    gate: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl HeldLog {
    fn closed(dir: &std::path::Path) -> HeldLog {
        HeldLog { inner: ClickLog::open(dir).expect("open"), gate: Arc::default() }
    }

    fn open(&self) {
        *self.gate.0.lock().expect("lock") = true;
        self.gate.1.notify_all();
    }
}

impl EventLog for HeldLog {
    fn append(&self, events: &[ClickEvent]) -> sluice_connectors::Result<Range<u64>> {
        let mut open = self.gate.0.lock().expect("lock");
        while !*open {
            open = self.gate.1.wait(open).expect("wait");
        }
        drop(open);
        self.inner.append(events)
    }
}

/// Polls `f` every 5 ms until it is true; panics after 20 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn stamped(i: u64, ts: i64) -> ClickEvent {
    ClickEvent { ts, ..event(i) }
}

/// Accepted clicks hold the floor at their lowest `ts` while the log holds the writer back
/// (across many claims: the writer keeps waking), and once the floor is gone they are all
/// in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pending_floor_covers_accepted_clicks_until_they_are_appended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = HeldLog::closed(dir.path());
    let (tx, rx) = click_channel(100);
    let pending = Arc::clone(tx.pending());
    assert_eq!(pending.floor(), None);
    let writer = spawn_log_writer(rx, log.clone(), LogWriterConfig::default());
    for (i, ts) in [(0, 5_005), (1, 5_003), (2, 5_009)] {
        assert!(tx.try_send(stamped(i, ts)));
    }
    assert_eq!(pending.floor(), Some(5_003));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pending.floor(), Some(5_003), "still held");
    assert!(tx.try_send(stamped(3, 5_001)), "accepted while the first batch is being appended");
    assert_eq!(pending.floor(), Some(5_001));
    assert_eq!(log.inner.head(), 0);
    log.open();
    // Floor first, then the head: no floor means every accepted click is readable.
    eventually("the floor to clear", || {
        let floor = pending.floor();
        let head = log.inner.head();
        assert!(floor.is_some() || head == 4, "no floor, but only {head} of 4 clicks in the log");
        floor.is_none()
    })
    .await;
    drop(tx);
    let summary = writer.await.expect("join");
    assert_eq!((summary.logged, summary.dropped), (4, 0));
}

/// A batch cut at `max_batch` leaves accepted clicks in the channel: the claim stays until a
/// batch has emptied it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_batch_keeps_the_floor_until_the_channel_is_emptied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = HeldLog::closed(dir.path());
    let (tx, rx) = click_channel(100);
    let pending = Arc::clone(tx.pending());
    for i in 0..5 {
        assert!(tx.try_send(stamped(i, 9_000 - i as i64)));
    }
    let config = LogWriterConfig { max_batch: 2, linger: Duration::ZERO, ..LogWriterConfig::default() };
    let writer = spawn_log_writer(rx, log.clone(), config);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pending.floor(), Some(8_996), "the first batch holds 9000 and 8999; 8996 waits in the channel");
    log.open();
    eventually("the floor to clear", || {
        let floor = pending.floor();
        let head = log.inner.head();
        assert!(floor.is_some() || head == 5, "no floor, but only {head} of 5 clicks in the log");
        floor.is_none()
    })
    .await;
    drop(tx);
    let summary = writer.await.expect("join");
    assert_eq!((summary.batches, summary.logged), (3, 5), "2 + 2 + 1");
}

/// A mark left by a sender after the writer already took its event (a preempted sender) is
/// claimed and cleared by the idle writer.
#[tokio::test]
async fn an_idle_writer_clears_a_leftover_mark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    let (tx, rx) = click_channel(100);
    let pending = Arc::clone(tx.pending());
    let writer = spawn_log_writer(rx, log.clone(), LogWriterConfig::default());
    pending.accepted(1_234);
    assert_eq!(pending.floor(), Some(1_234));
    eventually("the leftover mark to clear", || pending.floor().is_none()).await;
    drop(tx);
    let summary = writer.await.expect("join");
    assert_eq!((summary.batches, summary.logged), (0, 0));
}

/// `sched_runtime` of the calling thread (`sched_getattr(2)`): its scheduler slice in ns on
/// Linux 6.12+ (0 before).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn thread_slice_ns() -> u64 {
    // SAFETY: zeroed bytes are a valid `sched_attr`; the kernel writes at most `size` bytes.
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    let size = u32::try_from(std::mem::size_of::<libc::sched_attr>()).expect("size");
    // SAFETY: `attr` is writable for `size` bytes; pid 0 is the calling thread.
    let r = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr as *mut libc::sched_attr, size, 0u32) };
    assert_eq!(r, 0, "sched_getattr: {}", std::io::Error::last_os_error());
    attr.sched_runtime
}

/// Requests a slice of `ns` for the calling thread; false where the kernel refuses (< 6.12).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn request_slice_ns(ns: u64) -> bool {
    let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("getpriority");
    let attr = libc::sched_attr {
        size: u32::try_from(std::mem::size_of::<libc::sched_attr>()).expect("size"),
        sched_policy: 0,
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: ns,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: `attr` is a valid `sched_attr` read by the kernel during the call only.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const libc::sched_attr, 0u32) };
    r == 0 && thread_slice_ns() == ns
}

/// The slice each append ran with.
#[cfg(target_os = "linux")]
#[derive(Clone)]
struct SliceProbe(ClickLog, Arc<std::sync::Mutex<Vec<u64>>>);

#[cfg(target_os = "linux")]
impl EventLog for SliceProbe {
    fn append(&self, events: &[ClickEvent]) -> sluice_connectors::Result<Range<u64>> {
        self.1.lock().expect("lock").push(thread_slice_ns());
        self.0.append(events)
    }
}

/// A request thread's short slice (`[server] worker-slice`) is inherited by threads it
/// spawns; the append thread drops it under `SCHED_BATCH` and an inherited policy, so
/// request threads keep preempting its bursts. (`SCHED_IDLE` is not checked: the kernel
/// keeps the slice field there, and any waking normal task preempts an idle one anyway.)
#[cfg(target_os = "linux")]
#[test]
fn the_append_thread_drops_a_short_slice_inherited_from_a_request_thread() {
    let default_ns = std::thread::spawn(thread_slice_ns).join().expect("thread");
    let short = 100_000;
    if default_ns == 0 || !std::thread::spawn(move || request_slice_ns(short)).join().expect("thread") {
        eprintln!("kernel before 6.12: no custom slices, nothing to check");
        return;
    }
    assert_ne!(default_ns, short);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(move || assert!(request_slice_ns(short), "request thread slice"))
        .build()
        .expect("runtime");
    for policy in [AppendPolicy::Batch, AppendPolicy::Inherit] {
        let dir = tempfile::tempdir().expect("tempdir");
        let probe = SliceProbe(ClickLog::open(dir.path()).expect("open"), Arc::default());
        let seen = Arc::clone(&probe.1);
        let summary = rt.block_on(async move {
            tokio::spawn(async move {
                assert_eq!(thread_slice_ns(), short, "the spawning worker has the short slice");
                let (tx, rx) = click_channel(10);
                assert!(tx.try_send(event(1)));
                drop(tx);
                spawn_log_writer(rx, probe, LogWriterConfig { policy, ..LogWriterConfig::default() }).await.expect("join")
            })
            .await
            .expect("task")
        });
        assert_eq!(summary.logged, 1);
        assert_eq!(*seen.lock().expect("lock"), vec![default_ns], "{policy:?}: the append ran with the default slice");
    }
}

/// A `POST /v1/events` append that stores events clears the channel writer's append failure
/// (the log takes writes again); an empty one, which writes nothing, does not.
#[tokio::test]
async fn a_durable_append_with_the_writers_stats_clears_its_append_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open");
    let (tx, _rx) = click_channel(4);
    let stats = Arc::clone(tx.stats());
    stats.append_failed("click log could not append events: I/O error: No space left on device (os error 28)".into());
    let api = DurableAppender::new(log.clone()).with_stats(Arc::clone(&stats));
    assert_eq!(api.append_durable(vec![]).await.expect("empty"), 0..0);
    assert_eq!(stats.append_failure().as_deref(), Some("click log could not append events: I/O error: No space left on device (os error 28)"));
    assert_eq!(api.append_durable(vec![event(0), event(1)]).await.expect("append"), 0..2);
    assert_eq!(stats.append_failure(), None);
    assert_eq!(stats.snapshot().logged, 0, "the writer's count of logged clicks is its own");
}
