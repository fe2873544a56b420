//! dfd-evaluate: scores the test split with each trained fold's checkpoint and writes
//! `runs/<pipeline>/<run-id>/eval/` (metrics.json, curves.png, confusion.png, roc.png,
//! report.md, report.html) and the `evaluate` stage marker.

mod eval;
mod features;
mod plots;
mod report;
mod schema;
mod scores;

use anyhow::Result;
use clap::Parser;

/// Score a run's checkpoints on the test split and write metrics, plots and reports.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: dfd_layout::cli::CommonArgs,
    /// Checkpoint to score in every fold (`best`, `last`, …); defaults to `evaluate.checkpoint`.
    #[arg(long)]
    checkpoint: Option<String>,
}

fn main() -> std::process::ExitCode {
    dfd_layout::cli::init_tracing();
    dfd_layout::cli::exit("dfd-evaluate", run(&Args::parse()))
}

fn run(args: &Args) -> Result<()> {
    let ctx = args.common.load()?;
    eval::run(&ctx, &args.common, args.checkpoint.as_deref())
}
