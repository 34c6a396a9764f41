//! The `sluice` binary: parses the CLI, loads the layered configuration and runs the
//! chosen subcommand (see `sluice --help`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use sluice::cli::{BenchCommand, Cli, Command, LogCommand};
use sluice::config::{Config, FlagOverrides};
use sluice::{bench, log_tail, serve, telemetry};

/// mimalloc instead of the system allocator (per-request allocations on the redirect path;
/// figures in BENCHMARKS.md, "Redirect").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long (ms) mimalloc keeps freed memory before returning it to the OS
/// (`mi_option_purge_delay`; mimalloc v3's own default is 1,000 ms, `-1` never purges).
///
/// Trade-off: memory freed by a long-running server stays in the process (counted in its
/// RSS) for up to this long before the OS gets it back; in exchange the dataflow's growing
/// state (rollup blocks, hash tables, vectors that reallocate as they grow) reuses pages
/// instead of faulting in freshly zeroed ones (on a VM with transparent huge pages, first-touch
/// zeroing was 18 % of a dataflow worker's time in a 2026-11-30 profile). Measurements and
/// their limits: BENCHMARKS.md, "Dataflow throughput", session 6 rollup side.
/// The environment variable `MIMALLOC_PURGE_DELAY` still overrides this value.
const MIMALLOC_PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Applies [`MIMALLOC_PURGE_DELAY_MS`] unless `MIMALLOC_PURGE_DELAY` is set, and turns
/// transparent huge pages off for this process unless `MIMALLOC_ALLOW_THP` is set
/// ([`disable_transparent_huge_pages`]). mimalloc reads the purge option on every purge
/// decision, so setting it at the top of `main` (before any thread starts) covers all later
/// frees. The binary's only `unsafe` calls (the workspace denies `unsafe_code`; neither FFI
/// call has a safe wrapper in our dependencies).
#[allow(unsafe_code)]
fn configure_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mimalloc's option setter writes one word of its static option table; it is
        // not thread safe, and no other thread exists yet at the top of `main`.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, MIMALLOC_PURGE_DELAY_MS) };
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        disable_transparent_huge_pages();
    }
}

/// Opts this process (and the children it starts) out of transparent huge pages
/// (`prctl(PR_SET_THP_DISABLE)`, Linux ≥ 3.15; elsewhere nothing). With THP `always` (the
/// kernel default on many distributions), every first touch of a 2 MiB-aligned region of the
/// dataflow's growing state faults in and zeroes a whole huge page (and may compact memory
/// first); with it off, 4 KiB pages are zeroed as they are touched. Measured on the dataflow
/// bench: +12–14 % events per CPU second and ~40 MiB less peak RSS (BENCHMARKS.md,
/// "Session 38"), as the latency advice of Redis and of most databases on THP has it. Setting
/// `MIMALLOC_ALLOW_THP` (any value; mimalloc reads it too) keeps the system's THP setting.
/// A refused call (e.g. a seccomp filter) leaves THP as it was; nothing else changes.
#[allow(unsafe_code)]
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory of ours;
    // on error it returns -1 and changes nothing.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) };
}

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (index 15 in v2 and v3; the sys
/// crate exports only the stable options as constants).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    configure_allocator();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let log_source = matches.value_source("log");
    // The demo prints a report on stdout; keep its stderr to warnings unless asked.
    let quiet_demo = matches!(cli.command, Command::Demo(_)) && log_source == Some(ValueSource::DefaultValue);
    match telemetry::parse_log_filter(if quiet_demo { "warn" } else { &cli.log }) {
        Ok(filter) => telemetry::init_tracing(filter),
        Err(bad) => {
            // A usage error like any other refused flag value: clap's format, exit code 2.
            let from = if log_source == Some(ValueSource::EnvVariable) { "the SLUICE_LOG environment variable" } else { "--log" };
            let msg = format!("invalid log filter {:?} in {from}: {bad}", cli.log);
            Cli::command().error(clap::error::ErrorKind::ValueValidation, msg).exit()
        }
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of the output went away (`sluice log tail | head -1`): done, quietly.
        Err(e) if sluice::stdout::is_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // 2 for refused arguments, 128 + signo for a benchmark or demo stopped by a signal, else 1.
            ExitCode::from(sluice::demo::exit_code(&e).unwrap_or_else(|| bench::exit_code(&e)))
        }
    }
}

fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with_slice(workers, None)
}

/// The request runtime: `slice` is the scheduler slice its threads request
/// ([`sluice::sched`], `[server] worker-slice`; `None` = the kernel's default).
fn runtime_with_slice(workers: usize, slice: Option<std::time::Duration>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all().thread_name("sluice-worker").on_thread_start(sluice::sched::request_thread_slice(slice));
    if workers > 0 {
        b.worker_threads(workers);
    }
    b.build().context("could not start the tokio runtime")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let cfg = args.load_config()?;
            let slice = Some(cfg.server.worker_slice).filter(|s| !s.is_zero());
            runtime_with_slice(cfg.server.workers, slice)?.block_on(serve::run(cfg))
        }
        Command::Migrate(args) => {
            // Before anything is read or created: a usage error (exit 2) naming the path.
            sluice::migrate::check_store_arg(&args)?;
            let flags = FlagOverrides { data_dir: args.common.data_dir.clone(), ..FlagOverrides::default() };
            let cfg = Config::load(args.common.config.as_deref(), &flags)?;
            let location = sluice::migrate::store_location(&args, &cfg)?;
            runtime(1)?.block_on(async {
                let report = sluice_connectors::migrate_within(&location, cfg.store.timeouts()).await.context("migration failed")?;
                let line = format!("{}: applied {:?}; schema versions now {:?}\n", report.backend, report.newly_applied(), report.after);
                std::io::stdout().lock().write_all(line.as_bytes()).map_err(sluice::stdout::write_error)
            })
        }
        Command::Loadgen(args) => runtime(0)?.block_on(sluice::loadgen::run_cli(&args)),
        Command::Import(args) => runtime(0)?.block_on(sluice::import::run_cli(&args)),
        Command::Demo(args) => {
            if runtime(0)?.block_on(sluice::demo::run(args))? {
                Ok(())
            } else {
                anyhow::bail!("the stats did not match the ground truth (see the report above)")
            }
        }
        Command::Log { command: LogCommand::Tail(args) } => {
            let flags = FlagOverrides { data_dir: args.data_dir.clone(), ..FlagOverrides::default() };
            let cfg = Config::load(args.config.as_deref(), &flags)?;
            log_tail::run_with_config(&cfg, args.from, args.lines)
        }
        Command::Log { command: LogCommand::Reset(args) } => {
            let flags = FlagOverrides { data_dir: args.data_dir.clone(), ..FlagOverrides::default() };
            let mut cfg = Config::load(args.config.as_deref(), &flags)?;
            // Kafka mode as `sluice serve` sees it (attack of session 52: a `KAFKA_BROKERS`
            // deployment's reset went ahead).
            sluice::kafka::apply_env(&mut cfg);
            let report = sluice::log_reset::run(&cfg)?;
            std::io::stdout().lock().write_all(report.as_bytes()).map_err(sluice::stdout::write_error)
        }
        Command::Bench { command: BenchCommand::Dataflow(args) } => bench::dataflow::run(args),
        Command::Bench { command: BenchCommand::Redirect(args) } => bench::redirect::run(args),
        Command::Bench { command: BenchCommand::Freshness(args) } => bench::freshness::run(args),
    }
}
