//! dfd-evaluate: scores the test split with each trained fold's checkpoint and writes
//! `runs/<pipeline>/<run-id>/eval/` (scores.csv, metrics.json, curves.png, confusion.png,
//! roc.png, report.md, report.html) and the `evaluate` stage marker; with `--on X`, scores all of
//! another data set and writes the same files to `eval/<X's name>/`.

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
    #[command(flatten)]
    device: dfd_layout::cli::DeviceArg,
    /// Checkpoint to score in every fold (`best`, `last`, …); defaults to `evaluate.checkpoint`.
    #[arg(long)]
    checkpoint: Option<String>,
    /// Score another data set instead of the run's test split: a pipeline file (its [dataset]
    /// section is used) or a folder with the class sub-folders of the run's dataset.classes.
    /// All of its images are prepared and extracted with the run's settings (cached under
    /// prepared/<name>@all/ and features/<name>@all/); outputs go to eval/<name>/.
    #[arg(long, value_name = "PIPELINE_OR_FOLDER")]
    on: Option<std::path::PathBuf>,
}

fn main() -> std::process::ExitCode {
    dfd_layout::cli::init_tracing();
    dfd_layout::cli::exit("dfd-evaluate", run(&Args::parse()))
}

fn run(args: &Args) -> Result<()> {
    let ctx = args.common.load()?;
    eval::run(
        &ctx,
        &args.common,
        args.checkpoint.as_deref(),
        args.on.as_deref(),
        &args.device,
    )
}
