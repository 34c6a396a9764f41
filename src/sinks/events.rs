//! `events_enriched` in ClickHouse: a tail of the click events — the embedded click log
//! ([`tail`]) or, in Kafka mode, the click topic ([`tail_kafka`], where the log stays empty)
//! — that enriches every event with the dataflow's own [`Enricher`] (same configuration, so
//! the same country, device, browser, OS, referrer and bot verdict as the rollups) and hands
//! it to the ClickHouse sink as [`SinkInput::Events`].
//!
//! The tail starts at the log's low offset (the topic's earliest offsets: its own consumer,
//! explicit assignment of every partition, no group) at every process start: events already inserted
//! before a crash are inserted again and collapse by key (`ReplacingMergeTree` ordered by
//! `(code, ts, event_id)`), exactly as duplicates sent by clients do — the same event id
//! counted once, as the dataflow's dedup does. It never lets the sink buffer more than
//! [`MAX_IN_FLIGHT_ROWS`] rows: while ClickHouse is down it waits, and when ClickHouse
//! returns it continues where it stopped (no row dropped for a full buffer).
//!
//! Differences from the rollups: events the dataflow dead-letters (later than the allowed
//! lateness, not backfill) are still rows here, and `org` is not filled (it comes from link
//! metadata the tail does not follow).

use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::click_log::ClickLog;
use sluice_connectors::clickhouse::{ClickHouseSink, SinkInput};
use sluice_connectors::kafka::{KafkaConfig, KafkaSource, StartOffsets};
use sluice_dataflows::enrich::Enricher;
use sluice_schemas::{ClickEvent, EnrichedClick};
use tokio::sync::watch;

/// Events read from the log per batch.
pub const READ_BATCH: usize = 10_000;
/// Most rows the tail lets the ClickHouse sink buffer before it waits.
pub const MAX_IN_FLIGHT_ROWS: usize = 50_000;
/// How often the tail re-checks the sink's buffer while waiting.
const WAIT_STEP: Duration = Duration::from_millis(20);

/// One click enriched for `events_enriched` (`org` left empty, module docs).
pub fn enriched(enricher: &mut Enricher, ev: &ClickEvent) -> EnrichedClick {
    let e = enricher.enrich(ev);
    EnrichedClick {
        event_id: ev.event_id,
        code: ev.code.clone(),
        ts: ev.ts,
        visitor_id: ev.visitor_id,
        country: e.country.as_str().to_string(),
        device: e.device.as_str().to_string(),
        browser: e.browser.to_string(),
        os: e.os.to_string(),
        referrer_domain: e.referrer_domain.to_string(),
        referrer_medium: e.referrer_medium.as_str().to_string(),
        is_bot: e.is_bot,
        org: None,
    }
}

/// Runs the tail (module docs) until `stop` turns true or the sink stops.
pub async fn tail(log: ClickLog, mut enricher: Enricher, sink: Arc<ClickHouseSink>, mut stop: watch::Receiver<bool>) {
    let mut next = log.low();
    let mut head = log.subscribe();
    let mut skipped = 0u64;
    loop {
        if *stop.borrow() {
            return;
        }
        // Back-pressure: never let the sink's buffer grow past the bound.
        while sink.status().pending_rows >= MAX_IN_FLIGHT_ROWS {
            tokio::select! {
                () = tokio::time::sleep(WAIT_STEP) => {}
                _ = stop.changed() => return,
            }
        }
        if next >= log.head() {
            tokio::select! {
                r = head.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
            continue;
        }
        let (l, from) = (log.clone(), next);
        let read = tokio::task::spawn_blocking(move || {
            let raw = l.read_raw(from, READ_BATCH)?;
            let last = raw.last().map(|(o, _)| *o);
            let events: Vec<Result<ClickEvent, u64>> = raw.into_iter().map(|(o, b)| sluice_schemas::avro::decode_click_event(&b).map_err(|_| o)).collect();
            Ok::<_, sluice_connectors::Error>((last, events))
        })
        .await;
        let (last, events) = match read {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, offset = next, "could not read the click log for events_enriched, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "click log read task failed");
                return;
            }
        };
        let Some(last) = last else {
            // Everything from `next` was truncated meanwhile.
            next = next.max(log.low());
            continue;
        };
        let mut rows = Vec::with_capacity(events.len());
        for e in events {
            match e {
                Ok(ev) => rows.push(enriched(&mut enricher, &ev)),
                Err(_) => skipped += 1,
            }
        }
        if skipped > 0 && rows.is_empty() {
            tracing::warn!(skipped, "undecodable click log entries skipped for events_enriched");
        }
        next = last + 1;
        if !rows.is_empty() && sink.send(SinkInput::Events(rows)).await.is_err() {
            return;
        }
    }
}

/// Longest wait of one Kafka poll (the tail then re-checks `stop` and the sink's buffer).
const KAFKA_POLL: Duration = Duration::from_millis(200);

/// [`tail`] over the click topic of `kafka` (module docs): every partition from its earliest
/// offset, until `stop` turns true or the sink stops. Undecodable messages are skipped (the
/// dataflow's source counts them as dead letters).
pub async fn tail_kafka(kafka: KafkaConfig, mut enricher: Enricher, sink: Arc<ClickHouseSink>, mut stop: watch::Receiver<bool>) {
    let mut source = loop {
        let k = kafka.clone();
        match tokio::task::spawn_blocking(move || KafkaSource::open(&k, 0, 1, StartOffsets::Explicit(Default::default()))).await {
            Ok(Ok(s)) => break s,
            Ok(Err(e)) => tracing::warn!(error = %e, "could not open the click topic for events_enriched, retrying"),
            Err(e) => {
                tracing::warn!(error = %e, "events_enriched consumer open task failed");
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    };
    loop {
        if *stop.borrow() {
            return;
        }
        while sink.status().pending_rows >= MAX_IN_FLIGHT_ROWS {
            tokio::select! {
                () = tokio::time::sleep(WAIT_STEP) => {}
                _ = stop.changed() => return,
            }
        }
        let polled = tokio::task::spawn_blocking(move || {
            let r = source.poll_batch(READ_BATCH, KAFKA_POLL);
            (source, r)
        })
        .await;
        let batch = match polled {
            Ok((s, r)) => {
                source = s;
                r
            }
            Err(e) => {
                tracing::warn!(error = %e, "events_enriched poll task failed");
                return;
            }
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the click topic for events_enriched, retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        };
        let rows: Vec<EnrichedClick> = batch.records.iter().map(|r| enriched(&mut enricher, &r.event)).collect();
        if !rows.is_empty() && sink.send(SinkInput::Events(rows)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_dataflows::enrich::EnrichConfig;
    use sluice_dataflows::operators::ClickEnricher;

    #[test]
    fn enrichment_equals_the_dataflows_dims() {
        let mut e = Enricher::new(&EnrichConfig::default()).expect("bundled data");
        let ev = ClickEvent {
            event_id: uuid::Uuid::from_u128(7),
            code: "abc".into(),
            ts: 1_772_323_200_123,
            ip_trunc: Some("81.2.69.0".into()),
            visitor_id: 42,
            user_agent:
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1".into(),
            referrer: Some("https://t.co/abc".into()),
            accept_language: None,
            edge_region: None,
        };
        let row = enriched(&mut e, &ev);
        let dims = e.dims(&ev);
        let got = [&row.country, &row.device, &row.browser, &row.os, &row.referrer_domain, &row.referrer_medium];
        for (g, want) in got.iter().zip(dims.values.iter()) {
            assert_eq!(g.as_str(), want.as_str());
        }
        assert_eq!((row.is_bot, row.event_id, row.ts, row.visitor_id), (dims.is_bot, ev.event_id, ev.ts, 42));
        assert_eq!((row.country.as_str(), row.device.as_str(), row.referrer_domain.as_str()), ("GB", "mobile", "t.co"));
    }
}
