//! The `sluice` binary: parses the CLI, loads the layered configuration and runs the
//! chosen subcommand (see `sluice --help`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use sluice::cli::{BenchCommand, Cli, Command, LogCommand};
use sluice::config::{Config, FlagOverrides};
use sluice::{bench, log_tail, serve, telemetry};

/// mimalloc instead of the system allocator (per-request allocations on the redirect path;
/// figures in BENCHMARKS.md, "Redirect").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints a report on stdout; keep its stderr to warnings unless asked.
    let quiet_demo = matches!(cli.command, Command::Demo(_)) && cli.log == "info" && std::env::var_os("SLUICE_LOG").is_none();
    telemetry::init_tracing(if quiet_demo { "warn" } else { &cli.log });
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all().thread_name("sluice-worker");
    if workers > 0 {
        b.worker_threads(workers);
    }
    b.build().context("could not start the tokio runtime")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let cfg = args.load_config()?;
            runtime(cfg.server.workers)?.block_on(serve::run(cfg))
        }
        Command::Migrate(args) => {
            let flags = FlagOverrides { data_dir: args.common.data_dir.clone(), ..FlagOverrides::default() };
            let cfg = Config::load(args.common.config.as_deref(), &flags)?;
            let location = args.store.clone().unwrap_or_else(|| cfg.store_location());
            runtime(1)?.block_on(async {
                let report = sluice_connectors::migrate(&location).await.context("migration failed")?;
                println!("{}: applied {:?}; schema versions now {:?}", report.backend, report.newly_applied(), report.after);
                Ok(())
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
            let flags = FlagOverrides { data_dir: args.common.data_dir.clone(), ..FlagOverrides::default() };
            let cfg = Config::load(args.common.config.as_deref(), &flags)?;
            log_tail::run(&cfg.server.data_dir, args.from, args.lines)
        }
        Command::Bench { command: BenchCommand::Dataflow(args) } => bench::dataflow::run(args),
        Command::Bench { command: BenchCommand::Redirect(args) } => bench::redirect::run(args),
        Command::Bench { command: BenchCommand::Freshness(args) } => bench::freshness::run(args),
    }
}
