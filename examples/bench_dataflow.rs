//! Runs `sluice bench dataflow` without the CLI wiring:
//! `cargo run --release --example bench_dataflow -- --events 2000000`.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    bench: sluice::bench::dataflow::DataflowBenchArgs,
}

fn main() -> anyhow::Result<()> {
    sluice::bench::dataflow::run(Args::parse().bench)
}
