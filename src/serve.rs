//! `sluice serve`: builds the API and redirect states over a link store, wires the
//! link-change hooks (redirect cache invalidation, the dataflow's metadata feed) and the
//! stats routes, and runs the whole process ([`crate::job::system::System`]) on the
//! configured listener until Ctrl-C / SIGTERM.
//!
//! Stopping: a Ctrl-C / SIGTERM while the process is still starting (before it serves)
//! gives the start up, removing what it created, and exits with code 0. Once serving, the
//! first Ctrl-C / SIGTERM starts the graceful stop ([`System::shutdown`]),
//! which takes at most `[server] shutdown-timeout` + `[server] drain-timeout`; past that
//! the process logs what was left and exits with code 1. A second Ctrl-C / SIGTERM during
//! the stop logs a line and exits at once with code 128 + the signal number (130 for
//! SIGINT, 143 for SIGTERM): whatever was still queued for the click log is lost.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use sluice_connectors::click_log::ClickLog;
use sluice_connectors::{LinkChange, LinkStore};
use sluice_ingest::{DurableAppender, EventsConfig, EventsState, events_router};
use sluice_redirect::{ClickSink, RedirectConfig, RedirectState};
use sluice_schemas::VisitorSalt;
use sluice_serving::stats::{StatsConfig, StatsState};
use sluice_serving::{ApiConfig, ApiState, LinkChangeHook};

use crate::config::Config;
use crate::health::HealthState;
use crate::job::system::{Start, StopTimedOut, System};
use crate::{router, telemetry};

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
        forwarded_header: cfg.forwarded_header()?,
        edge_region: cfg.redirect.edge_region.clone(),
        prefetch: cfg.prefetch()?,
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
        // A listener on an unspecified or a loopback address is reached through loopback
        // hosts at its port, whatever `--base-url` says.
        loopback_port: (cfg.server.listen.ip().is_unspecified() || cfg.server.listen.ip().is_loopback()).then_some(cfg.server.listen.port()),
    })
}

/// The `POST /v1/events` settings taken from `cfg` (`[ingest]`; the future-skew tolerance
/// is [`Config::intake_future_skew_ms`]).
pub fn events_config(cfg: &Config) -> EventsConfig {
    EventsConfig {
        token: cfg.ingest.token.as_ref().map(|t| t.0.clone()),
        max_events: cfg.ingest.max_events,
        max_body_bytes: cfg.ingest.max_body_bytes,
        max_future_skew_ms: cfg.intake_future_skew_ms(),
        client_header: cfg.forwarded_header_name(),
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
    build_stack_with(cfg, store, sink, secret, StackExtras { hooks: extra_hooks, events_log, ..StackExtras::default() })
}

/// Optional parts of a [`Stack`] beyond the link API and the redirect.
#[derive(Default)]
pub struct StackExtras {
    /// Called after every link change, after the redirect cache invalidation (e.g. the
    /// dataflow's metadata feed).
    pub hooks: Vec<Arc<dyn LinkChangeHook>>,
    /// `POST /v1/events` appends durably to this log when given.
    pub events_log: Option<ClickLog>,
    /// Kafka mode: `POST /v1/events` appends to the Kafka producer's spill instead of
    /// `events_log`.
    pub events_kafka: Option<crate::kafka::KafkaEventLog>,
    /// The counters of the click log writer appending to the same log as `POST /v1/events`
    /// (`/readyz`'s `click_log_writer`): a successful `POST /v1/events` append clears their
    /// append failure ([`DurableAppender::with_stats`]).
    pub events_stats: Option<Arc<sluice_ingest::IngestStats>>,
    /// The stats endpoints' state; `None` mounts them answering 503 `stats_unavailable`.
    pub stats: Option<StatsState>,
    /// Further routers served with the API (role `all` or `api`).
    pub api_routes: Vec<Router>,
    /// The redirect's second-level link cache (Redis), shared by every process: link
    /// changes made here are published to it, invalidations from other processes applied.
    pub link_cache_l2: Option<Arc<sluice_connectors::redis::RedisLinkCache>>,
    /// Reported by `/readyz` (Redis, ClickHouse sinks).
    pub dependencies: Vec<Arc<dyn crate::health::Dependency>>,
}

/// The stats settings taken from `cfg` (`[stats]`).
pub fn stats_config(cfg: &Config) -> StatsConfig {
    StatsConfig { cache_max_age: cfg.stats.cache_max_age }
}

/// Builds the states and router over `store` with `extras` (see [`build_stack`]).
pub fn build_stack_with(cfg: &Config, store: Arc<dyn LinkStore>, sink: Arc<dyn ClickSink>, secret: [u8; 32], extras: StackExtras) -> anyhow::Result<Stack> {
    build_stack_app(cfg, store, sink, secret, extras).map(|(stack, _app)| stack)
}

/// [`build_stack_with`], plus the same application as a [`router::App`] (router and
/// redirect fast path apart) for [`crate::http_server::serve`].
pub fn build_stack_app(
    cfg: &Config,
    store: Arc<dyn LinkStore>,
    sink: Arc<dyn ClickSink>,
    secret: [u8; 32],
    extras: StackExtras,
) -> anyhow::Result<(Stack, router::App)> {
    let StackExtras { hooks: extra_hooks, events_log, events_kafka, events_stats, stats, api_routes, link_cache_l2, dependencies } = extras;
    let prometheus = telemetry::prometheus();
    let salt = VisitorSalt::new(secret, cfg.visitor.salt_period.period_ms());
    // POST /v1/events refuses unknown codes and events the dataflow would drop as too late.
    let gate: Arc<dyn sluice_ingest::http::IntakeGate> = Arc::new(crate::intake_gate::StoreAndViewsGate::new(
        Arc::clone(&store),
        stats.as_ref().and_then(|s| s.views().cloned()),
        cfg.dataflow.allowed_lateness,
        cfg.dataflow.long_retention,
    ));
    fn appender<L: sluice_ingest::EventLog>(log: L, stats: &Option<Arc<sluice_ingest::IngestStats>>) -> DurableAppender<L> {
        match stats {
            Some(s) => DurableAppender::new(log).with_stats(Arc::clone(s)),
            None => DurableAppender::new(log),
        }
    }
    // Role redirect serves no /v1/ route (router::API_NOT_HERE): no events state either.
    let events = match events_kafka {
        _ if cfg.server.role == crate::config::Role::Redirect => None,
        Some(k) => Some(events_router(EventsState::new(appender(k, &events_stats), salt.clone(), events_config(cfg)).with_gate(gate))),
        None => events_log.map(|log| events_router(EventsState::new(appender(log, &events_stats), salt.clone(), events_config(cfg)).with_gate(gate))),
    };
    let l2 = link_cache_l2.clone().map(|l| l as Arc<dyn sluice_connectors::LinkCacheL2>);
    let redirect = RedirectState::with_l2(Arc::clone(&store), redirect_config(cfg)?, salt, sink, l2.clone());
    if let Some(cache) = &link_cache_l2 {
        let r = redirect.clone();
        cache.subscribe(Arc::new(move |inv| r.apply_invalidation(&inv)))?;
    }
    let invalidate = {
        let redirect = redirect.clone();
        move |change: &LinkChange| {
            match change {
                LinkChange::Upserted(link) => redirect.invalidate(&link.code),
                LinkChange::Deleted(code) => redirect.invalidate(code),
            }
            if let Some(l2) = &l2 {
                l2.publish(change);
            }
        }
    };
    let mut api = ApiState::new(Arc::clone(&store), api_config(cfg)?).with_hook(Arc::new(invalidate));
    for hook in extra_hooks {
        api = api.with_hook(hook);
    }
    if let Some(limit) = cfg.api.create_rate_limit()? {
        let resolver = cfg.client_ip_resolver()?;
        let resolve: sluice_serving::ratelimit::ClientIpFn = Arc::new(move |peer, headers| resolver.resolve(peer, headers));
        api = api.with_create_limiter(Arc::new(sluice_serving::ratelimit::RateLimiter::new(limit, resolve)));
    }
    let admin_auth = crate::anomalies::admin_auth(cfg);
    let admin = sluice_serving::admin::routes(sluice_serving::admin::AdminState::new(api.clone(), admin_auth, None));
    let stats = stats.unwrap_or_else(|| StatsState::without_views(Arc::clone(&store), stats_config(cfg)));
    let events = events.unwrap_or_else(router::events_not_here_routes);
    let api_extra = [events, sluice_serving::stats::routes(stats), admin].into_iter().chain(api_routes).reduce(Router::merge);
    let health = HealthState { store, prometheus, dependencies };
    let mut app = router::build_app(cfg.server.role, Some(api.clone()), Some(redirect.clone()), api_extra, health, cfg.server.max_body_bytes);
    // The processes that serve the API (and so enforce `[links] blocklist` on new links)
    // apply it to the existing links before they serve any redirect or API request (the
    // readiness gate answers those 503 `starting` meanwhile, crate::start_gate).
    if matches!(cfg.server.role, crate::config::Role::All | crate::config::Role::Api) {
        app = app.with_before_serving(configured_blocklist_task(api.clone()));
    } else if !cfg.links.blocklist.is_empty() {
        // Said once, so an operator does not expect this process to hold links itself.
        tracing::info!(
            entries = cfg.links.blocklist.len(),
            "[links] blocklist is applied to existing links by the processes serving the API (role all or api), not by this redirect-only process; links they hold stop redirecting here once this process's cache entry expires"
        );
    }
    Ok((Stack { router: app.clone().into_router(), api, redirect }, app))
}

/// Longest wait between two attempts of [`configured_blocklist_task`].
const CONFIGURED_BLOCKLIST_MAX_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// The start-up task ([`router::App::with_before_serving`]) of a process serving the API:
/// the configuration's `[links] blocklist` applied to the existing links
/// ([`sluice_serving::admin::configured::apply_configured_blocklist`]: covered links held,
/// entries the configuration dropped released), the changes logged. A store failure is
/// logged, reported to `/readyz` ([`crate::start_gate::StartGate::report_failure`]) and
/// retried (after 0.2 s, doubling up to 5 s) until it succeeds: until then the server's
/// readiness gate answers every request but `/healthz`, `/readyz` (503 `not_ready`, naming
/// `configured_blocklist`) and `/metrics` with 503 `starting`, so no link the configuration
/// blocks is redirected ([`crate::start_gate`]).
fn configured_blocklist_task(api: ApiState) -> router::BeforeServing {
    let run: router::StartupWork = Arc::new(move |gate| {
        let api = api.clone();
        Box::pin(async move {
            let mut retry_in = std::time::Duration::from_millis(200);
            let mut failed = 0u32;
            loop {
                match sluice_serving::admin::configured::apply_configured_blocklist(&api).await {
                    Ok(out) => {
                        if !out.is_empty() {
                            tracing::info!(
                                added = ?out.added,
                                held_links = out.held.len(),
                                removed = ?out.removed,
                                released_links = out.released.len(),
                                "[links] blocklist applied to the existing links"
                            );
                        }
                        if failed > 0 {
                            tracing::info!(
                                failed_attempts = failed,
                                "[links] blocklist applied to the existing links after failed attempts; serving every request now"
                            );
                        }
                        return;
                    }
                    Err(e) => {
                        failed += 1;
                        let error = crate::health::error_chain(&e);
                        tracing::warn!(
                            %error,
                            ?retry_in,
                            "could not apply [links] blocklist to the existing links; until it is applied, redirects and the API answer 503 starting and /readyz 503; retrying"
                        );
                        gate.report_failure(error);
                        tokio::time::sleep(retry_in).await;
                        retry_in = (retry_in * 2).min(CONFIGURED_BLOCKLIST_MAX_RETRY);
                    }
                }
            }
        })
    });
    router::BeforeServing { name: "configured_blocklist", pending: "the configured [links] blocklist is not applied to the existing links yet", run }
}

/// Runs `sluice serve` with `cfg` until Ctrl-C or SIGTERM: the whole process of
/// [`System`] (link store, click log and writer, the click dataflow, HTTP), then a graceful
/// stop (in-flight requests, queued clicks into the log, dataflow workers).
///
/// Errors: first, before the port is bound, a data dir that is a file (a usage error, exit 2:
/// [`crate::config::refuse_non_directory`]); then anything that stops the start.
pub async fn run(mut cfg: Config) -> anyhow::Result<()> {
    crate::config::refuse_non_directory(&cfg.server.data_dir)?;
    crate::sinks::apply_conventional_env(&mut cfg);
    crate::kafka::apply_env(&mut cfg);
    // Again with the conventional variables applied: they can switch a sink on, and with it
    // the checks that span sections (`[redis] day-ttl` against `[dataflow] long-retention`).
    cfg.validate()?;
    if cfg.server.role != crate::config::Role::Redirect {
        crate::anomalies::admin_auth(&cfg).log_mode();
        if let Some(limit) = cfg.api.create_rate_limit()? {
            tracing::info!(limit = %limit, "link creation is rate limited per client ([api] create-rate-limit)");
        }
    }
    let listener = crate::http_listener::bind(cfg.server.listen).with_context(|| format!("could not listen on {}", cfg.server.listen))?;
    // Listening from here on: a signal during the start is not lost.
    let mut signals = StopSignals::listen();
    let system = match System::start_or_stop(cfg, listener, signals.next()).await? {
        Start::Started(system) => *system,
        Start::Stopped(signal) => stopped_while_starting(signal),
    };
    serve_until_stopped(system, signals, || {}).await
}

/// The end of a `sluice serve` whose start a stop signal cut short (a link store that does
/// not answer, say): [`System::start_or_stop`] has closed what the start opened and removed
/// what it created in the data dir, as for a refused start. Nothing was served, so nothing is
/// left to drain: the process exits at once with code 0, as after a graceful stop, without
/// waiting for blocking work the start left running (an integrity check of a large click
/// log, say: dropping the runtime would wait for it; [`exit_now`]).
fn stopped_while_starting(signal: StopSignal) -> ! {
    tracing::info!(signal = signal.name(), "stop signal during start-up: the start was given up, what it created in the data dir removed; exiting");
    exit_now(0)
}

/// A stop signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopSignal {
    Interrupt,
    Terminate,
    /// SIGHUP: the terminal or ssh session that started the process went away. Stopping
    /// gracefully keeps its queued clicks (the default action would kill the process).
    Hangup,
}

impl StopSignal {
    pub(crate) fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Hangup => "SIGHUP",
        }
    }

    /// The signal number (POSIX: SIGHUP 1, SIGINT 2, SIGTERM 15).
    pub(crate) fn number(self) -> i32 {
        match self {
            StopSignal::Interrupt => 2,
            StopSignal::Terminate => 15,
            StopSignal::Hangup => 1,
        }
    }
}

/// Serves `system` until the first Ctrl-C / SIGTERM of `signals`, then stops it gracefully
/// (module docs): a second signal (not a copy of the first within [`SIGNAL_DEBOUNCE`])
/// exits at once with 128 + its number, a stop that outlasts
/// `[server] drain-timeout` exits with code 1; `on_abort` runs just before either early exit
/// (the demo removes its temporary data dir there). Used by `sluice serve` and `sluice demo`.
///
/// Errors: as [`System::serve_until`].
pub(crate) async fn serve_until_stopped(system: System, mut signals: StopSignals, on_abort: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    let on_abort = Arc::new(parking_lot::Mutex::new(Some(on_abort)));
    let abort = {
        let on_abort = Arc::clone(&on_abort);
        move || {
            if let Some(f) = on_abort.lock().take() {
                f();
            }
        }
    };
    let abort_on_signal = abort.clone();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let first = signals.next().await;
        let at = std::time::Instant::now();
        tracing::info!(signal = first.name(), "shutting down (a second Ctrl-C / SIGTERM exits at once)");
        let _ = first_tx.send(());
        let second = signals.next_after(first, at).await;
        tracing::warn!(signal = second.name(), "second stop signal during the graceful stop: exiting now, without finishing it");
        abort_on_signal();
        exit_now(128 + second.number());
    });
    match system.serve_until(async move { drop(first_rx.await) }).await {
        Err(e) if e.is::<StopTimedOut>() => {
            // Leaving now: dropping the runtime would wait for the blocking work still running.
            tracing::error!(error = %e, "exiting with the graceful stop unfinished");
            abort();
            exit_now(1);
        }
        r => r,
    }
}

/// Ends the process at once with `code`, without the C library's exit handlers: the exit of
/// a stop that is given up (a second stop signal, a stop past `drain-timeout`), which must
/// not wait for anything once its line is logged.
///
/// Why not [`std::process::exit`]: it runs `exit(3)`, which first runs the handlers the
/// process registered: mimalloc's final collection (it hands back to the OS, one `madvise`
/// per span, all memory freed within the purge delay, 10 s in `src/main.rs`: work that
/// grows with the dataflow's state; measured on a server holding 12.8 GB, `exit(130)` took
/// 1.24 s to end the process after the "exiting now" line, `_exit(130)` 0.14 s, the rest
/// being the kernel freeing the memory), the TLS library's
/// zeroization of its random generators (it write-locks each thread's generator and so
/// waits for any thread inside one, e.g. mid-handshake of a webhook) and the thread-local
/// destructors of the calling worker thread. None of that is needed by a process that is
/// leaving (the kernel takes its memory back), and each can hold the exit up. `_exit(2)`
/// ends every thread at once. Standard error is unbuffered, so every line logged before is
/// out; standard output is line-buffered and only ever gets whole lines during a stop.
#[allow(unsafe_code)]
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions (it is even async-signal-safe) and never returns;
    // it skips the exit handlers on purpose (see above).
    unsafe { libc::_exit(code) }
}

/// Two stop signals of one kind observed less than this apart (ms: 250) are one stop. `timeout` and a
/// `kill` of a process group deliver one signal to the process and again to its group
/// ~0.2 ms later; counting the copy as a second Ctrl-C would skip the graceful stop (queued
/// clicks, the last checkpoint). A person pressing Ctrl-C twice is slower than this.
pub(crate) const SIGNAL_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(250);

/// SIGINT (Ctrl-C), SIGTERM and SIGHUP, listened to from creation on; each signal is
/// reported once.
pub(crate) struct StopSignals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
    hangup: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    pub(crate) fn listen() -> StopSignals {
        use tokio::signal::unix::{SignalKind, signal};
        let open = |kind: SignalKind, name: &str| signal(kind).map_err(|e| tracing::warn!(error = %e, "could not listen for {name}")).ok();
        StopSignals {
            interrupt: open(SignalKind::interrupt(), "SIGINT"),
            terminate: open(SignalKind::terminate(), "SIGTERM"),
            hangup: open(SignalKind::hangup(), "SIGHUP"),
        }
    }

    /// The next signal after `first`, which arrived at `since`: another kind at once, the
    /// same kind once at least [`SIGNAL_DEBOUNCE`] has passed (a copy that arrives sooner is
    /// the same stop and is ignored).
    pub(crate) async fn next_after(&mut self, first: StopSignal, since: std::time::Instant) -> StopSignal {
        loop {
            let s = self.next().await;
            if s != first || since.elapsed() >= SIGNAL_DEBOUNCE {
                return s;
            }
            tracing::debug!(signal = s.name(), "a copy of the stop signal right after the first: the same stop, ignored");
        }
    }

    /// The next signal (never, when none could be listened to).
    pub(crate) async fn next(&mut self) -> StopSignal {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            let received = match s {
                Some(s) => s.recv().await.is_some(),
                None => false,
            };
            if !received {
                std::future::pending::<()>().await;
            }
        }
        tokio::select! {
            () = recv(&mut self.interrupt) => StopSignal::Interrupt,
            () = recv(&mut self.terminate) => StopSignal::Terminate,
            () = recv(&mut self.hangup) => StopSignal::Hangup,
        }
    }
}
