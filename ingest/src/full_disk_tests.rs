//! The writer on a real full disk (a small tmpfs; root only): what it logs while the click
//! log fails (once per failure episode, `writer.rs` docs, "Failures").

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sluice_connectors::click_log::ClickLog;
use sluice_connectors::test_fs::{CapturedLogs, SmallFileSystem, fill};
use sluice_schemas::ClickEvent;

use crate::tests::event;
use crate::*;

/// The lines this crate logged (debug level and up, no time, no ANSI, no target) on the
/// calling thread, without its name. The subscriber is the global one (a scoped one misses
/// the events of a callsite another test thread registered first); the thread tells this
/// test's lines from those of tests running alongside.
fn logged_on_this_thread() -> Vec<String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    static LOGS: std::sync::OnceLock<CapturedLogs> = std::sync::OnceLock::new();
    let logs = LOGS.get_or_init(|| {
        let captured = CapturedLogs::default();
        let targets = tracing_subscriber::filter::Targets::new().with_target("sluice_ingest", tracing::Level::DEBUG);
        let fmt = tracing_subscriber::fmt::layer().with_writer(captured.clone()).with_ansi(false).without_time().with_target(false).with_thread_names(true);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(fmt).with(targets)).expect("the only global subscriber");
        captured
    });
    let name = format!(" {} ", std::thread::current().name().expect("a named test thread"));
    let text = logs.text();
    // The fmt layer pads thread names to the longest one seen so far.
    text.lines().filter_map(|l| l.split_once(&name).map(|(level, rest)| format!("{} {}", level.trim_end(), rest.trim_start()))).collect()
}

/// The click log, counting the failed attempts of the writer (appends and probes).
#[derive(Clone)]
struct Counted {
    log: ClickLog,
    failures: Arc<AtomicU64>,
}

impl Counted {
    fn count<T>(&self, r: sluice_connectors::Result<T>) -> sluice_connectors::Result<T> {
        if r.is_err() {
            self.failures.fetch_add(1, Ordering::SeqCst);
        }
        r
    }
}

impl EventLog for Counted {
    fn append(&self, events: &[ClickEvent]) -> sluice_connectors::Result<Range<u64>> {
        self.count(self.log.append(events))
    }

    fn probe(&self) -> Option<sluice_connectors::Result<()>> {
        Some(self.count(self.log.probe_write()))
    }
}

/// Polls `f` every 5 ms until it is true; panics after 30 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A real full disk (a 4 MiB tmpfs; root only): the writer retries its batch until there is
/// room again. The first failed attempt of each episode is a warning, the others (as many
/// as the disk takes) debug lines; the append that succeeds once there is room ends the
/// episode with one info line counting them, and the next full disk is a new episode,
/// warned about again. The metric and the summary count every failed attempt.
#[test]
fn a_full_disk_logs_the_writers_warning_once_per_episode() {
    let Some(fs) = SmallFileSystem::temporary(4 << 20) else { return };
    let mnt = fs.path().to_path_buf();
    logged_on_this_thread();
    // Current-thread runtime: the writer's task, which logs, runs on this test's thread.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let counted = Counted { log: ClickLog::open(&mnt).expect("open on tmpfs"), failures: Arc::default() };
    let (summary, episodes) = rt.block_on(async {
        let (tx, rx) = click_channel(1_000);
        let stats = Arc::clone(tx.stats());
        let config = LogWriterConfig {
            max_batch: 1_000,
            linger: Duration::ZERO,
            retry_initial: Duration::from_millis(1),
            retry_max: Duration::from_millis(20),
            max_attempts: u32::MAX,
            file_check: Duration::ZERO,
            ..LogWriterConfig::default()
        };
        let writer = spawn_log_writer(rx, counted.clone(), config);
        (0..100).for_each(|i| assert!(tx.try_send(event(i))));
        eventually("the first batch", || stats.snapshot().logged == 100).await;
        let mut episodes = Vec::new();
        for episode in 1..=2u64 {
            let before = counted.failures.load(Ordering::SeqCst);
            fill(&mnt);
            (episode * 100..episode * 100 + 100).for_each(|i| assert!(tx.try_send(event(i))));
            eventually("failed attempts", || counted.failures.load(Ordering::SeqCst) >= before + 8).await;
            assert!(stats.append_failure().is_some(), "/readyz shows the failure");
            std::fs::remove_file(mnt.join("filler")).expect("free space");
            eventually("the batch once there is room", || stats.snapshot().logged == 100 + episode * 100).await;
            assert_eq!(stats.append_failure(), None);
            episodes.push(counted.failures.load(Ordering::SeqCst) - before);
        }
        drop(tx);
        (writer.await.expect("join"), episodes)
    });
    assert_eq!((summary.logged, summary.dropped), (300, 0));
    assert_eq!(summary.failed_attempts, episodes.iter().sum::<u64>(), "every failed attempt is counted");
    let stored: Vec<ClickEvent> = counted.log.read(0, 1_000).expect("read").into_iter().map(|(_, e)| e).collect();
    assert_eq!(stored, (0..300).map(event).collect::<Vec<_>>());
    drop(counted);
    drop(rt);
    drop(fs);

    let lines = logged_on_this_thread();
    let text = lines.join("\n");
    const RETRYING: &str = "click log append failed; retrying";
    const RECOVERED: &str = "the click log takes writes again";
    let loud: Vec<&str> = lines.iter().filter(|l| !l.starts_with("DEBUG")).map(String::as_str).collect();
    assert_eq!(loud.len(), 4, "one warning and one info line per episode: {text}");
    for (pair, failed) in loud.chunks(2).zip(&episodes) {
        // The error is the click log's (its wording is redb's in part): the OS's cause.
        let (warning, info) = (pair[0], pair[1]);
        assert!(warning.starts_with(&format!(" WARN {RETRYING} error=")), "{text}");
        assert!(warning.contains("No space left on device (os error 28)") && warning.ends_with(" attempt=1 batch=100"), "{text}");
        assert_eq!(info, format!(" INFO {RECOVERED}: recovered after {failed} failed attempts failed_attempts={failed} by=\"append\""), "{text}");
    }
    let repeats = lines.iter().filter(|l| l.starts_with("DEBUG") && l.contains(RETRYING)).count() as u64;
    assert_eq!(repeats, episodes.iter().map(|n| n - 1).sum::<u64>(), "the other attempts, at debug level: {text}");
}
