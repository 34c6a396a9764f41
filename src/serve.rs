//! `sluice serve`: opens the link store, the click log and its writer, builds the API and
//! redirect states, wires the link-change hook (redirect cache invalidation), and serves
//! the router on the configured listener until Ctrl-C / SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use sluice_connectors::click_log::ClickLog;
use sluice_connectors::{LinkChange, LinkStore, open_store};
use sluice_ingest::{DurableAppender, EventsConfig, EventsState, LogWriterConfig, click_channel, events_router, spawn_log_writer};
use sluice_redirect::{ClickSink, RedirectConfig, RedirectState};
use sluice_schemas::VisitorSalt;
use sluice_serving::{ApiConfig, ApiState, LinkChangeHook};

use crate::config::{Config, Role};
use crate::health::HealthState;
use crate::{router, telemetry, visitor_secret};

/// Everything `sluice serve` answers with, built without a socket (tests drive `router`
/// with `oneshot` or serve it on `127.0.0.1:0`).
#[derive(Clone)]
pub struct Stack {
    /// The complete router for the configured role.
    pub router: Router,
    /// The API state (its hooks include redirect cache invalidation).
    pub api: ApiState,
    /// The redirect state.
    pub redirect: RedirectState,
}

/// The redirect settings taken from `cfg`.
pub fn redirect_config(cfg: &Config) -> anyhow::Result<RedirectConfig> {
    Ok(RedirectConfig {
        cache_capacity: cfg.redirect.cache_capacity,
        cache_ttl: cfg.redirect.cache_ttl,
        cache_ttl_jitter: cfg.redirect.cache_ttl_jitter,
        negative_ttl: cfg.redirect.negative_ttl,
        append_query: cfg.links.append_query,
        permanent_max_age: cfg.links.permanent_max_age,
        trusted_proxies: cfg.trusted_proxies()?,
        edge_region: cfg.redirect.edge_region.clone(),
    })
}

/// The API settings taken from `cfg`.
pub fn api_config(cfg: &Config) -> anyhow::Result<ApiConfig> {
    Ok(ApiConfig {
        base_url: cfg.base_url()?,
        short_domains: cfg.server.short_domains.clone(),
        code_length: cfg.links.code_length,
        max_url_bytes: cfg.links.max_url_bytes,
        blocklist: cfg.links.blocklist.clone(),
    })
}

/// The `POST /v1/events` settings taken from `cfg` (`[ingest]`).
pub fn events_config(cfg: &Config) -> EventsConfig {
    EventsConfig {
        token: cfg.ingest.token.as_ref().map(|t| t.0.clone()),
        max_events: cfg.ingest.max_events,
        max_body_bytes: cfg.ingest.max_body_bytes,
        max_future_skew_ms: i64::try_from(cfg.ingest.max_future_skew.as_millis()).unwrap_or(i64::MAX),
    }
}

/// Builds the states and router over `store`, sending clicks to `sink`, deriving visitor
/// ids from `secret`. After every link change the API calls the redirect cache's
/// invalidation, then each of `extra_hooks` (e.g. the dataflow's metadata feed).
pub fn build_stack(
    cfg: &Config,
    store: Arc<dyn LinkStore>,
    sink: Arc<dyn ClickSink>,
    secret: [u8; 32],
    extra_hooks: Vec<Arc<dyn LinkChangeHook>>,
) -> anyhow::Result<Stack> {
    build_stack_with_log(cfg, store, sink, secret, extra_hooks, None)
}

/// [`build_stack`], plus `POST /v1/events` appending durably to `events_log` when given.
pub fn build_stack_with_log(
    cfg: &Config,
    store: Arc<dyn LinkStore>,
    sink: Arc<dyn ClickSink>,
    secret: [u8; 32],
    extra_hooks: Vec<Arc<dyn LinkChangeHook>>,
    events_log: Option<ClickLog>,
) -> anyhow::Result<Stack> {
    let prometheus = telemetry::prometheus();
    let salt = VisitorSalt::new(secret, cfg.visitor.salt_period.period_ms());
    let events = events_log.map(|log| events_router(EventsState::new(DurableAppender::new(log), salt.clone(), events_config(cfg))));
    let redirect = RedirectState::new(Arc::clone(&store), redirect_config(cfg)?, salt, sink);
    let invalidate = {
        let redirect = redirect.clone();
        move |change: &LinkChange| match change {
            LinkChange::Upserted(link) => redirect.invalidate(&link.code),
            LinkChange::Deleted(code) => redirect.invalidate(code),
        }
    };
    let mut api = ApiState::new(Arc::clone(&store), api_config(cfg)?).with_hook(Arc::new(invalidate));
    for hook in extra_hooks {
        api = api.with_hook(hook);
    }
    let health = HealthState { store, prometheus };
    let router = router::build_with_events(cfg.server.role, Some(api.clone()), Some(redirect.clone()), events, health, cfg.server.max_body_bytes);
    Ok(Stack { router, api, redirect })
}

/// Runs `sluice serve` with `cfg` until Ctrl-C or SIGTERM, then drains the click channel
/// into the log before returning.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let data_dir = cfg.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir).with_context(|| format!("could not create data dir \"{}\"", data_dir.display()))?;
    let store = open_store(&cfg.store_location()).await.context("could not open the link store")?;
    let secret = visitor_secret::load_or_create(cfg.visitor.secret.as_ref().map(|s| s.0.as_str()), &data_dir)?;
    // The click log is held exclusively by one process: an API-only process does not open it.
    let (sink, writer, log): (Arc<dyn ClickSink>, _, _) = if cfg.server.role == Role::Api {
        let (sink, _receiver) = sluice_redirect::ChannelClickSink::new(1);
        (Arc::new(sink), None, None)
    } else {
        let log = ClickLog::open(&data_dir).context("could not open the click log")?;
        let (sender, receiver) = click_channel(cfg.redirect.click_channel_capacity);
        (Arc::new(sender), Some(spawn_log_writer(receiver, log.clone(), LogWriterConfig::default())), Some(log))
    };
    let stack = build_stack_with_log(&cfg, store, sink, secret, Vec::new(), log)?;
    let listener = tokio::net::TcpListener::bind(cfg.server.listen).await.with_context(|| format!("could not listen on {}", cfg.server.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, base_url = %cfg.base_url()?, role = ?cfg.server.role, data_dir = %data_dir.display(), store = %stack.api.store().backend(), "sluice listening");
    let Stack { router, api, redirect } = stack;
    drop((api, redirect));
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server failed")?;
    if let Some(writer) = writer {
        let summary = writer.await.context("click log writer panicked")?;
        tracing::info!(logged = summary.logged, dropped = summary.dropped, "click log writer drained");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "could not listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
