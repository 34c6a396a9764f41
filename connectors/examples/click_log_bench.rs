//! Measures the embedded click log: append throughput in fsync'd batches of 1000 and replay
//! (read + Avro decode) throughput.
//!
//! `cargo run --release -p sluice-connectors --example click_log_bench -- [EVENTS] [DIR]`
//! (defaults: 200000 events, a temporary directory). DIR should be on the disk you care about:
//! the numbers are dominated by fsync latency there.

use std::time::Instant;

use sluice_connectors::click_log::ClickLog;
use sluice_schemas::ClickEvent;

fn event(i: u64) -> ClickEvent {
    ClickEvent {
        // A UUIDv7-shaped id (version 7, variant 10) from the counter.
        event_id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(i)),
        code: format!("k{:06}", i % 50_000),
        ts: 1_700_000_000_000 + i as i64,
        ip_trunc: Some(format!("203.0.{}.0", i % 256)),
        visitor_id: i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                     Chrome/124.0.0.0 Safari/537.36"
            .to_string(),
        referrer: Some("https://www.google.com/".to_string()),
        accept_language: Some("en-US,en;q=0.9".to_string()),
        edge_region: Some("local".to_string()),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200_000);
    let tmp;
    let dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let batch = 1000u64;
    let events: Vec<ClickEvent> = (0..total).map(event).collect();
    let encoded = sluice_schemas::avro::encode_click_event(&events[0])?.len();

    let log = ClickLog::open(&dir)?;
    let start_head = log.head();
    let t = Instant::now();
    for chunk in events.chunks(batch as usize) {
        log.append(chunk)?;
    }
    let append = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut offset = start_head;
    let mut replayed = 0u64;
    loop {
        let got = log.read(offset, 10_000)?;
        let Some((last, _)) = got.last() else { break };
        offset = last + 1;
        replayed += got.len() as u64;
    }
    let replay = t.elapsed().as_secs_f64();
    assert_eq!(replayed, total, "replayed every appended event");

    let file_mb = std::fs::metadata(log.path())?.len() as f64 / 1e6;
    println!("events: {total}, batch: {batch}, encoded event: {encoded} bytes, file: {file_mb:.1} MB ({})", dir.display());
    println!("append: {:.0} events/s ({:.2} ms per fsync'd batch)", total as f64 / append, append * 1e3 / (total / batch) as f64);
    println!("replay: {:.0} events/s (read + decode, 10k per read)", total as f64 / replay);
    Ok(())
}
