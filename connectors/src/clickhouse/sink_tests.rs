//! [`ClickHouseSink`] without a ClickHouse server: a TCP listener that accepts connections
//! and never answers stands in for a ClickHouse that hangs (the failure under test).

use std::time::Duration;

use sluice_schemas::rollup::{RollupBatch, RollupGranularity, RollupRow, RollupView};

use super::config::ClickHouseConfig;
use super::sink::{ClickHouseSink, SinkInput};

/// A listener on 127.0.0.1 that accepts every connection and holds it open, silent, until
/// the returned task is aborted.
async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    (addr, task)
}

fn rollup_rows(n: usize) -> Vec<RollupRow> {
    (0..n)
        .map(|i| RollupRow {
            code: format!("c{i}"),
            granularity: RollupGranularity::Minute,
            bucket_start_ms: 1_700_000_040_000,
            view: RollupView::Total,
            is_bot: false,
            dims: Vec::new(),
            clicks: 1,
            uniques: 1,
            sketch: Vec::new(),
        })
        .collect()
}

/// Finding: with a ClickHouse that accepts connections and never answers, `pending_rows`
/// (`/readyz`'s detail) stayed 0 for up to `request-timeout` while rows were handed to the
/// sink: the writer waits on its request in flight (here the migrations of its first
/// attempt) and takes no input meanwhile, and only rows it had taken were counted. Every
/// row given to the sink counts until ClickHouse acknowledges it; a stopped sink reports
/// the rows it never wrote.
#[tokio::test]
async fn pending_rows_count_the_rows_sent_while_clickhouse_does_not_answer() {
    let (addr, server) = silent_server().await;
    let config = ClickHouseConfig {
        url: Some(format!("http://{addr}")),
        request_timeout: Duration::from_secs(120),
        flush_interval: Duration::from_millis(10),
        ..ClickHouseConfig::default()
    };
    let sink = ClickHouseSink::start(&config).expect("sink");
    sink.send(SinkInput::Rollups(RollupBatch { epoch_upper: 1, watermark_ms: 0, rows: rollup_rows(5) })).await.expect("send");
    sink.try_send(SinkInput::Rollups(RollupBatch { epoch_upper: 2, watermark_ms: 0, rows: rollup_rows(3) })).expect("try_send");
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let st = sink.status();
        assert_eq!((st.pending_rows, st.inserts, st.migrated), (5 + 3, 0, false), "{st:?}");
    }
    let st = sink.shutdown(Duration::from_millis(100)).await;
    assert_eq!(st.pending_rows, 5 + 3, "stopped without writing them: {st:?}");
    server.abort();
}
