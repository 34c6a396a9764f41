//! A real `sluice serve` stack (SQLite store, click log, log writer, `POST /v1/events`) on
//! `127.0.0.1:0` in a temporary data directory, for the loadgen and import tests.

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_connectors::click_log::ClickLog;
use sluice_ingest::{LogWriterConfig, WriterSummary, click_channel, spawn_log_writer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

use crate::config::{Config, DEFAULT_TOML};
use crate::serve::{Stack, build_stack_with_log};

/// A running server.
pub(crate) struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub url: Url,
    dir: tempfile::TempDir,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<()>,
    writer: JoinHandle<WriterSummary>,
}

impl TestServer {
    /// Starts a server with the default configuration, trusting 127.0.0.1 as a proxy, then
    /// `tweak`.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
        config.server.data_dir = dir.path().to_path_buf();
        config.server.listen = addr;
        config.server.trusted_proxies = vec!["127.0.0.1".into()];
        tweak(&mut config);
        config.validate().expect("test config valid");
        let store = sluice_connectors::open_store(&config.store_location()).await.expect("store");
        let secret = crate::visitor_secret::load_or_create(config.visitor.secret.as_ref().map(|s| s.0.as_str()), dir.path()).expect("secret");
        let log = ClickLog::open(dir.path()).expect("log");
        let (sender, receiver) = click_channel(config.redirect.click_channel_capacity);
        let writer = spawn_log_writer(receiver, log.clone(), LogWriterConfig::default());
        let Stack { router, api, redirect } = build_stack_with_log(&config, store, Arc::new(sender), secret, Vec::new(), Some(log)).expect("stack");
        drop((api, redirect));
        let (shutdown, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .expect("serve");
        });
        let url = Url::parse(&format!("http://{addr}")).expect("url");
        TestServer { url, dir, shutdown, server, writer }
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops the server, waits until every queued click is in the log, and returns the
    /// data directory with the reopened log.
    pub async fn stop(self) -> (tempfile::TempDir, ClickLog) {
        let _ = self.shutdown.send(());
        self.server.await.expect("server task");
        self.writer.await.expect("writer task");
        let log = ClickLog::open(self.dir.path()).expect("reopen log");
        (self.dir, log)
    }
}
